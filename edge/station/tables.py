"""The station's tables inside outbox.db: how a state is read from them and a change written.

Shared by the store (edge/station/store.py) and by what takes a state in from elsewhere
(edge/station/legacy.py reads the same records from station.db under their old table names).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter

from edge.station.state import Change, State, Ticket, Window, from_json, to_json

# The outbox's own tables are meta, outages and events: the station's are prefixed.
TABLES = {"meta": "station_meta", "tickets": "station_tickets", "windows": "station_windows"}
SCHEMA = """
    CREATE TABLE IF NOT EXISTS station_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS station_tickets (id TEXT PRIMARY KEY, day TEXT NOT NULL, body TEXT NOT NULL)
        WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS station_windows (number INTEGER PRIMARY KEY, body TEXT NOT NULL);
"""


def read_state(conn: sqlite3.Connection, tables: dict[str, str] = TABLES) -> tuple[State, int] | None:
    """The state held in `conn`'s tables (named by `tables`) and its last op; None if it holds none."""
    meta = dict(conn.execute(f"SELECT key, value FROM {tables['meta']}").fetchall())
    if "day" not in meta:
        return None
    state = State(
        day=meta["day"],
        closed=set(json.loads(meta.get("closed", "[]"))),
        counts=Counter(json.loads(meta.get("counts", "{}"))),
    )
    for (body,) in conn.execute(f"SELECT body FROM {tables['tickets']}"):
        ticket = from_json(Ticket, json.loads(body))
        state.tickets[ticket.id] = ticket
    for (body,) in conn.execute(f"SELECT body FROM {tables['windows']}"):
        window = from_json(Window, json.loads(body))
        state.windows[window.number] = window
    return state, int(meta.get("op", 0))


def write(conn: sqlite3.Connection, state: State, change: Change, op: int, *, day_state: bool) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO station_tickets VALUES (?, ?, ?)",
        [(t.id, t.day, json.dumps(to_json(t), ensure_ascii=False)) for t in change.tickets.values()],
    )
    conn.executemany(
        "INSERT OR REPLACE INTO station_windows VALUES (?, ?)",
        [(w.number, json.dumps(to_json(w))) for w in change.windows.values()],
    )
    if change.purge_before is not None:
        conn.execute("DELETE FROM station_tickets WHERE day < ?", (change.purge_before,))
    meta = {"op": str(op)}
    if day_state:
        meta |= {
            "day": state.day,
            "closed": json.dumps(sorted(state.closed)),
            "counts": json.dumps(dict(state.counts)),
        }
    conn.executemany("INSERT OR REPLACE INTO station_meta VALUES (?, ?)", meta.items())
