"""The station's state as the owner thread holds it: tickets, windows, day counters.

Plain mutable records, touched only by the owner thread. Every handler collects what it
changed in a `Change` (records and the events they cause), and the store commits a `Change`
in one SQLite transaction, so memory and disk never disagree by more than the change under way.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from edge.events import NewEvent, Priority


class Feedback(StrEnum):
    """What a window unit's LED shows (the values of the link protocol's SET frame)."""

    IDLE = "idle"
    READY = "ready"  # waiting for the citizen: a rating, or a reason after a bad one
    THANKS = "thanks"
    ERROR = "error"
    OFF = "off"  # the window is paused


class Status(StrEnum):
    ISSUING = "issuing"  # number taken, the printer not yet done: not callable yet
    WAITING = "waiting"
    CALLED = "called"
    SERVING = "serving"  # the clerk pressed `start`, or (without it) a called ticket being served
    DONE = "done"
    SKIPPED = "skipped"
    EXPIRED = "expired"


ACTIVE = (Status.CALLED, Status.SERVING)
QUEUED = (Status.ISSUING, Status.WAITING)


@dataclass
class Ticket:
    id: str  # unique: station, day and number, e.g. "st-0001-20260125-A001" (the QR payload)
    day: str  # local date, ISO
    number: str  # what the citizen is called by, e.g. "A001"
    category: str  # the category it is queued in now (a transfer changes it)
    green: bool  # green channel: the elderly and disabled are called first
    order: int  # position among the day's queued tickets; renewed on transfer and put-back
    status: Status
    issued: datetime
    queued: datetime  # issued, or last transferred or put back: where this wait started
    requeued: bool = False  # transferred or put back: goes ahead of those who never waited
    window: int | None = None
    clerk: str | None = None
    called: datetime | None = None  # first call of this wait
    recalls: int = 0
    started: datetime | None = None  # the clerk marked the citizen arrived (`start`)
    ended: datetime | None = None
    rated: bool = False
    wait_light: str = "ok"  # the time-limit light this wait has reached: ok, warn, over
    service_light: str = "ok"  # ... and this service


@dataclass
class Window:
    number: int
    clerk: str | None = None
    paused: bool = False
    current: str | None = None  # ticket id called or being served here
    last_ended: str | None = None  # the last service that ended here: what a rating links to
    rating_until: datetime | None = None  # last_ended may be rated until then
    last_rating: datetime | None = None
    last_press: datetime | None = None  # last rating key, for abuse detection
    pending_bad: dict[str, Any] | None = None  # a bad rating waiting for its reason key
    reason_until: datetime | None = None
    thanks_until: datetime | None = None


@dataclass
class State:
    day: str
    tickets: dict[str, Ticket] = field(default_factory=dict)
    windows: dict[int, Window] = field(default_factory=dict)
    closed: set[str] = field(default_factory=set)  # categories closed out today
    counts: Counter[str] = field(default_factory=Counter)  # today's suppressed and refused presses

    def next_order(self) -> int:
        return max((t.order for t in self.tickets.values()), default=0) + 1


@dataclass
class Change:
    """What one handler did: records to write and events to emit, committed together."""

    tickets: dict[str, Ticket] = field(default_factory=dict)
    windows: dict[int, Window] = field(default_factory=dict)
    events: list[NewEvent] = field(default_factory=list)
    day_state: bool = False  # day, closed categories or counts changed
    purge_before: str | None = None  # forget tickets of days before this one

    def ticket(self, ticket: Ticket) -> Ticket:
        self.tickets[ticket.id] = ticket
        return ticket

    def window(self, window: Window) -> Window:
        self.windows[window.number] = window
        return window

    def emit(self, kind: str, priority: Priority, data: dict[str, Any]) -> None:
        self.events.append(NewEvent(kind, priority, data))

    def __bool__(self) -> bool:
        return bool(self.tickets or self.windows or self.events or self.day_state or self.purge_before)


R = TypeVar("R", Ticket, Window)
_REQUIRED = object()  # no default: never left out


def _timed(f: dataclasses.Field) -> bool:
    return "datetime" in str(f.type)


# Per record type, each field as (name, default, whether it holds a datetime), worked out once.
_LAYOUT = {
    cls: tuple(
        (f.name, _REQUIRED if f.default is dataclasses.MISSING else f.default, _timed(f))
        for f in dataclasses.fields(cls)
    )
    for cls in (Ticket, Window)
}


def to_json(record: Ticket | Window) -> dict[str, Any]:
    """A record as JSON-ready values, datetimes as ISO 8601 with their offset, leaving out fields
    at their defaults (`from_json` puts them back): each change rewrites its records, and a
    smaller row is fewer pages written per commit. Read field by field from a layout made once:
    `dataclasses.asdict`'s deep copy was a tenth of the station's CPU at 20 events a second
    (bench/RESULTS-link.md)."""
    out: dict[str, Any] = {}
    for name, default, timed in _LAYOUT[type(record)]:
        value = getattr(record, name)
        if value is default or value == default:
            continue
        out[name] = value.isoformat() if timed and value is not None else value
    return out


def from_json(cls: type[R], doc: dict[str, Any]) -> R:
    times = {f.name for f in dataclasses.fields(cls) if _timed(f)}
    values = {k: datetime.fromisoformat(v) if k in times and v is not None else v for k, v in doc.items()}
    if cls is Ticket:
        values["status"] = Status(values["status"])
    return cls(**values)


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def seconds(start: datetime | None, end: datetime | None) -> float | None:
    """Whole-second durations: what the county reports, and what a scripted test can predict."""
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 1)
