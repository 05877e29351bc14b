"""The station's tables inside outbox.db: how a state is read from them and a change written.

Laid out for what a commit writes, since every page a commit touches is written whole to the
WAL and fsynced (1 KiB pages, edge/outbox.py):
- `station_tickets`: the day's tickets, one JSON row each (some 330 bytes: an ordinary rowid
  table, whose rows stay on their page; in a WITHOUT ROWID table a row over ~230 bytes of a
  1 KiB page spills onto an overflow page, one more page a commit). A change updates its
  tickets in place (an upsert, not a replace, so the id index is only read).
- `station_records`: the station's small records in one table, so a change's writes share a
  page: key 0 is the day (`op`, the date, closed categories, counts), keys 1.. the windows.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable
from typing import Any

from edge.events import compact_json
from edge.station.state import Change, State, Ticket, Window, from_json, to_json

SCHEMA = """
    CREATE TABLE IF NOT EXISTS station_tickets (id TEXT PRIMARY KEY, day TEXT NOT NULL, body TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS station_records (key INTEGER PRIMARY KEY, body TEXT NOT NULL);
"""
DAY_KEY = 0  # station_records: the day's row; windows are keyed by their number (1 and up)


def read_state(conn: sqlite3.Connection) -> tuple[State, int] | None:
    """The state these tables hold and its last op; None if they hold none."""
    records = dict(conn.execute("SELECT key, body FROM station_records").fetchall())
    if DAY_KEY not in records:
        return None
    day = json.loads(records.pop(DAY_KEY))
    tickets = (body for (body,) in conn.execute("SELECT body FROM station_tickets"))
    return assemble(day, tickets, records.values())


def assemble(day: dict[str, Any], tickets: Iterable[str], windows: Iterable[str]) -> tuple[State, int]:
    """A state from its day record and its tickets' and windows' JSON rows."""
    state = State(day=day["day"], closed=set(day.get("closed", ())), counts=Counter(day.get("counts", {})))
    for body in tickets:
        ticket = from_json(Ticket, json.loads(body))
        state.tickets[ticket.id] = ticket
    for body in windows:
        window = from_json(Window, json.loads(body))
        state.windows[window.number] = window
    return state, int(day.get("op", 0))


def write(conn: sqlite3.Connection, state: State, change: Change, op: int, *, day: bool) -> None:
    """The change's records, and the day record (with `op`) when `day` is set."""
    conn.executemany(
        "INSERT INTO station_tickets VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET body = excluded.body",
        [(t.id, t.day, compact_json(to_json(t))) for t in change.tickets.values()],
    )
    records = [(w.number, compact_json(to_json(w))) for w in change.windows.values()]
    if day:
        doc = {"op": op, "day": state.day, "closed": sorted(state.closed), "counts": dict(state.counts)}
        records.append((DAY_KEY, compact_json(doc)))
    conn.executemany("INSERT OR REPLACE INTO station_records VALUES (?, ?)", records)
    if change.purge_before is not None:
        conn.execute("DELETE FROM station_tickets WHERE day < ?", (change.purge_before,))


def write_whole(conn: sqlite3.Connection, state: State, op: int) -> None:
    """Every record of a state taken in whole (from station.db, or a renamed-aside outbox)."""
    write(conn, state, Change(tickets=dict(state.tickets), windows=dict(state.windows)), op, day=True)
