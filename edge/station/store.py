"""Where the station's state lives between restarts: tables of its own inside outbox.db.

Each `Change` (tickets, windows, the day's state) is written by the outbox's commit in the
same transaction as the events it causes (`Outbox.append_all`): one fsync covers both, and
after a crash the state is never ahead of or behind the events the county sees, with nothing to
reconcile. (Earlier builds kept the state in a file of its own, `station.db`, with a journal
appended to the outbox after its own commit: two fsyncs an action. `edge/station/legacy.py`
takes such a file in once.)

What that costs: the state counts against the outbox's disk budget (a day's tickets, some
kilobytes; eviction only ever deletes events), and a database renamed aside as corrupt takes
the state with it. The station then reads its tables back from the renamed file where they can
still be read; where not, it starts with the day empty and says so in an `incident` event.

Every station event carries `op`, the station's action number, one higher per station event
(mqtt/TOPICS.md): the county can tell the station's events apart from the gateway's own.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from edge.events import Event, NewEvent, Priority
from edge.outbox import Incident, Pending
from edge.station import legacy
from edge.station.state import Change, State
from edge.station.tables import SCHEMA, read_state, write, write_whole

log = logging.getLogger("yimen.station")

T = TypeVar("T")


class EventLog(Protocol):
    """What the station needs of the outbox (edge/outbox.py)."""

    @property
    def path(self) -> Path: ...

    def append_all(
        self, news: Sequence[NewEvent], write: Callable[[sqlite3.Connection], None] | None = None
    ) -> list[Event]: ...

    def use(self, run: Callable[[sqlite3.Connection], T]) -> T: ...

    @property
    def last_seq(self) -> int: ...

    def replay(self, first: int, last: int) -> list[Pending]: ...

    @property
    def incident(self) -> Incident | None: ...


class StationStore:
    def __init__(self, outbox: EventLog, station_kinds: tuple[str, ...]) -> None:
        self._outbox = outbox
        self._kinds = station_kinds  # the kinds whose events carry `op`
        self._op = 0  # the last op committed
        self._stored = False  # whether the day record has been written yet
        outbox.use(lambda conn: conn.executescript(SCHEMA))

    def load(self, today: str) -> State:
        """The state as last committed; a new station starts with an empty `today`, and one
        whose state is elsewhere (station.db, a renamed-aside outbox) takes it in first."""
        held = self._outbox.use(read_state) or self._take_in(today)
        legacy.put_aside(self._outbox)  # taken in now or before a crash: never again
        if held is None:
            return State(day=today)
        state, self._op = held
        self._stored = True
        return state

    def _take_in(self, today: str) -> tuple[State, int] | None:
        """State found outside the outbox, stored in it (with the events and incident that go
        with it) in one transaction; None when there is none."""
        try:
            found = legacy.take(self._outbox, self._kinds) or salvage(self._outbox, today)
        except legacy.Unreadable as exc:
            found = lost(today, str(exc), legacy.NAME)
        if found is None:
            return None
        state, op, news = found
        self._outbox.append_all(news, lambda conn: write_whole(conn, state, op))
        return state, op

    def commit(self, state: State, change: Change) -> list[Event]:
        """Write the change with the events it causes, all or nothing, durably; returns the
        events as the outbox stored them. Raises what the outbox raises: nothing was written."""
        first = self._op + 1
        news = [
            NewEvent(new.kind, new.priority, {**new.data, "op": op})
            for op, new in enumerate(change.events, start=first)
        ]
        last = first + len(news) - 1
        # The day record carries op: written when op moves, the day's state changed, or never yet.
        day = bool(news) or change.day_state or not self._stored
        events = self._outbox.append_all(news, lambda conn: write(conn, state, change, last, day=day))
        self._op, self._stored = last, True
        return events


def salvage(outbox: EventLog, today: str) -> tuple[State, int, list[NewEvent]] | None:
    """The state from an outbox renamed aside as corrupt, if its tables can still be read, with
    an `incident` saying whether they could; None when no outbox was renamed aside as corrupt."""
    found = outbox.incident
    if found is None or found.what != "outbox-corrupt" or found.renamed_to is None:
        return None
    aside = outbox.path.with_name(found.renamed_to)
    try:
        conn = sqlite3.connect(f"file:{aside}?mode=ro", uri=True)
        try:
            held = read_state(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        held, why = None, f"its tables cannot be read: {exc}"
    else:
        why = "it holds no station state" if held is None else ""
    if held is None:
        return lost(today, f"{aside}: {why}", found.renamed_to)
    state, op = held
    log.warning("station state read back from %s (day %s, op %d)", aside, state.day, op)
    kept = {"what": "station-state-salvaged", "from": found.renamed_to, "day": state.day, "op": op}
    return state, op, [NewEvent("incident", Priority.CRITICAL, kept)]


def lost(today: str, why: str, source: str) -> tuple[State, int, list[NewEvent]]:
    """The station's state could not be taken in: the day starts empty, and the county is told
    (ticket numbers restart, so a number may be issued twice today)."""
    log.error("station state lost (%s): the day %s starts empty", why, today)
    data = {"what": "station-state-lost", "reason": why, "from": source, "day": today}
    return State(day=today), 0, [NewEvent("incident", Priority.CRITICAL, data)]
