"""`station.db`, where earlier builds kept the station's state: taken into outbox.db once.

That file held the state (tables meta, tickets, windows) and a journal of events committed
there but perhaps not yet in the outbox (a crash between its two commits). Taking it in: the
state as it stands, plus each journal event the outbox does not already hold (found by its
`op` among the events written after the journal row's `after_seq`). The store commits these
with the state in one transaction; then the file is renamed `station.db.taken-in`, so a second
start never takes it in again (and a rollback to such an earlier build finds no stale state to
resume from: it starts the day empty).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Protocol

from edge.events import Event, NewEvent, Priority
from edge.outbox import Pending
from edge.station.state import State
from edge.station.tables import assemble

log = logging.getLogger("yimen.station")

NAME = "station.db"
_SUFFIXES = ("", "-wal", "-shm")


class Unreadable(Exception):
    """station.db is there but SQLite cannot read it: the state in it is lost."""


class Replayable(Protocol):
    @property
    def path(self) -> Path: ...

    @property
    def last_seq(self) -> int: ...

    def replay(self, first: int, last: int) -> list[Pending]: ...


def take(outbox: Replayable, station_kinds: tuple[str, ...]) -> tuple[State, int, list[NewEvent]] | None:
    """The state in station.db beside the outbox and the journal events the outbox lacks; None
    when there is no such file or it holds no state. Raises Unreadable."""
    path = outbox.path.with_name(NAME)
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(path)
        try:
            held = _read_state(conn)
            journal = conn.execute("SELECT op, after_seq, kind, priority, data FROM journal ORDER BY op").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise Unreadable(f"{path}: SQLite cannot read it: {exc}") from None
    if held is None:
        return None
    state, op = held
    news = _missing(outbox, journal, station_kinds)
    log.warning("taking in %s: day %s, op %d, %d journal events the outbox lacked", path, state.day, op, len(news))
    return state, op, news


def _read_state(conn: sqlite3.Connection) -> tuple[State, int] | None:
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    if "day" not in meta:
        return None
    day = {
        "day": meta["day"],
        "op": int(meta.get("op", 0)),
        "closed": json.loads(meta.get("closed", "[]")),
        "counts": json.loads(meta.get("counts", "{}")),
    }
    tickets = (body for (body,) in conn.execute("SELECT body FROM tickets"))
    return assemble(day, tickets, (body for (body,) in conn.execute("SELECT body FROM windows")))


def _missing(outbox: Replayable, journal: list[tuple], station_kinds: tuple[str, ...]) -> list[NewEvent]:
    if not journal:
        return []
    held = {
        Event.from_bytes(p.payload).data.get("op")
        for p in outbox.replay(min(row[1] for row in journal) + 1, outbox.last_seq)
        if p.kind in station_kinds
    }
    return [
        NewEvent(kind, Priority(prio), json.loads(data)) for op, _after, kind, prio, data in journal if op not in held
    ]


def put_aside(outbox: Replayable) -> None:
    """Rename station.db (and its WAL files) to station.db.taken-in, if it is still there."""
    path = outbox.path.with_name(NAME)
    for suffix in _SUFFIXES:
        src = Path(f"{path}{suffix}")
        if src.exists():
            src.rename(f"{path}.taken-in{suffix}")
