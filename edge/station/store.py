"""Where the station's state lives between restarts: `station.db`, beside the outbox.

Its own database file rather than tables inside outbox.db: the outbox's commit thread owns
its connection and transaction, so a second writer in the same file could not share a
transaction with it anyway, and would contend for the one WAL write lock with every group
commit; in its own file the station's state neither counts against nor is evicted under the
outbox's disk budget, and survives the outbox being renamed aside as corrupt.

Consistency between the two files comes from a journal (the transactional-outbox pattern):
each `Change` is committed here, with the events it causes, in one `synchronous=FULL`
transaction. Only then are the events appended to the outbox, and each is forgotten here once
appended. After a crash, journal rows still present are appended unless the outbox already
holds them (every station event carries its `op` number, and the journal remembers the
outbox's last seq before it, so the check reads only the few events written since).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from edge.events import NewEvent, Priority
from edge.station.state import Change, State, Ticket, Window, from_json, to_json

NAME = "station.db"


@dataclass(frozen=True)
class Journaled:
    op: int
    after_seq: int  # the outbox's last seq when this was committed: the event has a higher one
    event: NewEvent  # its data carries "op"


class StationStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout = 5000")
        self._conn.execute("PRAGMA page_size = 1024")  # a new file: fewer bytes per commit (edge/outbox.py)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS tickets (id TEXT PRIMARY KEY, day TEXT NOT NULL, body TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS windows (number INTEGER PRIMARY KEY, body TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS journal (
                op INTEGER PRIMARY KEY, after_seq INTEGER NOT NULL,
                kind TEXT NOT NULL, priority INTEGER NOT NULL, data TEXT NOT NULL);
            """
        )

    def _meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def load(self, today: str) -> State:
        """The state as last committed; a new station starts with an empty `today`."""
        day = self._meta("day")
        if day is None:
            return State(day=today)
        state = State(
            day=day,
            closed=set(json.loads(self._meta("closed") or "[]")),
            counts=Counter(json.loads(self._meta("counts") or "{}")),
        )
        for (body,) in self._conn.execute("SELECT body FROM tickets"):
            ticket = from_json(Ticket, json.loads(body))
            state.tickets[ticket.id] = ticket
        for (body,) in self._conn.execute("SELECT body FROM windows"):
            window = from_json(Window, json.loads(body))
            state.windows[window.number] = window
        return state

    def commit(self, state: State, change: Change, after_seq: int) -> list[Journaled]:
        """Write the change and journal its events, all or nothing, durably; returns the journal
        rows to append to the outbox."""
        journaled = []
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            op = int(self._meta("op") or 0)
            for new in change.events:
                op += 1
                data = {**new.data, "op": op}
                journaled.append(Journaled(op, after_seq, NewEvent(new.kind, new.priority, data)))
                self._conn.execute(
                    "INSERT INTO journal VALUES (?, ?, ?, ?, ?)",
                    (op, after_seq, new.kind, int(new.priority), json.dumps(data, ensure_ascii=False)),
                )
            self._conn.executemany(
                "INSERT OR REPLACE INTO tickets VALUES (?, ?, ?)",
                [(t.id, t.day, json.dumps(to_json(t), ensure_ascii=False)) for t in change.tickets.values()],
            )
            self._conn.executemany(
                "INSERT OR REPLACE INTO windows VALUES (?, ?)",
                [(w.number, json.dumps(to_json(w))) for w in change.windows.values()],
            )
            if change.purge_before is not None:
                self._conn.execute("DELETE FROM tickets WHERE day < ?", (change.purge_before,))
            meta = {"op": str(op)}
            if change.day_state or self._meta("day") is None:
                meta |= {
                    "day": state.day,
                    "closed": json.dumps(sorted(state.closed)),
                    "counts": json.dumps(dict(state.counts)),
                }
            self._conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:  # a COMMIT that failed (disk full) has rolled back already
                self._conn.execute("ROLLBACK")
            raise
        return journaled

    def journal(self) -> list[Journaled]:
        rows = self._conn.execute("SELECT op, after_seq, kind, priority, data FROM journal ORDER BY op").fetchall()
        return [
            Journaled(op, after, NewEvent(kind, Priority(prio), json.loads(data)))
            for op, after, kind, prio, data in rows
        ]

    def forget(self, op: int) -> None:
        """The event is in the outbox. Not fsynced: if this is lost, recovery finds the event
        there by its op and forgets the row again."""
        self._conn.execute("PRAGMA synchronous = NORMAL")
        try:
            self._conn.execute("DELETE FROM journal WHERE op = ?", (op,))
        finally:
            self._conn.execute("PRAGMA synchronous = FULL")

    def close(self) -> None:
        self._conn.close()
