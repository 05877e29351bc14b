"""The one event model of yimen, and its canonical JSON envelope.

Every peripheral and every piece of station logic hands the outbox a `NewEvent`; the outbox
gives it a seq and returns the finished `Event`. The envelope's bytes are made once, at append,
and stored: a re-send or replay is byte-identical to the first send because it is the same
stored bytes, never a re-rendering.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any

KIND_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# Compact UTF-8 JSON, as every stored and sent document is written. One encoder for all:
# `json.dumps` with any argument builds a new JSONEncoder per call, several times an event.
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def compact_json(doc: Any) -> str:
    return _COMPACT.encode(doc)


class Priority(IntEnum):
    """Send order: a higher value goes first. Eviction order is the reverse (bulk first)."""

    BULK = 0
    NORMAL = 1
    CRITICAL = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Priority:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown priority {text!r}: use critical, normal or bulk") from None


class Clock:
    """Values of the envelope's `clock` field."""

    SYNCED = "synced"
    UNSYNCED = "unsynced"
    # Not synced, and earlier than a time this station saw before (a power cut, no network):
    # stamped with that time counted on instead (edge/clock.py).
    BEHIND = "behind"
    CORRECTED = "corrected"
    # Re-stamped from the monotonic clock once synced; these two are, until then.
    UNTRUSTED = (UNSYNCED, BEHIND)


@dataclass(frozen=True)
class NewEvent:
    """What a producer reports: everything but the seq, which only the outbox may assign."""

    kind: str
    priority: Priority
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not KIND_RE.match(self.kind):
            raise ValueError(f"event kind {self.kind!r} must match {KIND_RE.pattern}")


Emit = Callable[[NewEvent], "Event"]
"""What a driver or simulator is given: blocks until the event is on disk, returns it."""


@dataclass(frozen=True)
class Event:
    """An event as it travels: the envelope the county receives."""

    station: str
    seq: int
    kind: str
    ts: str
    clock: str
    priority: Priority
    data: dict[str, Any]

    @property
    def id(self) -> str:
        """The county's dedup key."""
        return f"{self.station}-{self.seq}"

    def to_bytes(self) -> bytes:
        """The canonical envelope: compact UTF-8 JSON, keys in a fixed order."""
        envelope = {
            "id": self.id,
            "station": self.station,
            "seq": self.seq,
            "kind": self.kind,
            "ts": self.ts,
            "clock": self.clock,
            "priority": self.priority.label,
            "data": self.data,
        }
        return compact_json(envelope).encode()

    @classmethod
    def from_bytes(cls, payload: bytes) -> Event:
        """Parse an envelope, checking its shape; raises ValueError naming what is wrong."""
        try:
            doc = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"event payload is not UTF-8 JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ValueError("event payload must be a JSON object")
        missing = {"id", "station", "seq", "kind", "ts", "clock", "priority", "data"} - doc.keys()
        if missing:
            raise ValueError(f"event payload lacks {', '.join(sorted(missing))}")
        event = cls(
            station=doc["station"],
            seq=doc["seq"],
            kind=doc["kind"],
            ts=doc["ts"],
            clock=doc["clock"],
            priority=Priority.parse(doc["priority"]),
            data=doc["data"],
        )
        if event.id != doc["id"]:
            raise ValueError(f"event id {doc['id']!r} does not match station and seq")
        return event


def format_ts(moment: datetime) -> str:
    """ISO 8601 with the UTC offset and millisecond precision, e.g. 2026-11-25T08:30:00.123+08:00."""
    return moment.isoformat(timespec="milliseconds")
