"""The real outbox in a test directory, remembering the events each `emit` returned."""

from __future__ import annotations

import threading
from pathlib import Path

from edge.clock import ClockSource
from edge.config import ClockConfig
from edge.events import Event, NewEvent
from edge.outbox import Outbox


class RecordingOutbox:
    """`emit` is what a producer is given: a real, durable append to SQLite."""

    def __init__(self, directory: Path, station: str = "st1") -> None:
        self.outbox = Outbox(
            directory / "outbox.db", station, clock=ClockSource(ClockConfig(sync="assume")), max_bytes=64 << 20
        )
        self._events: list[Event] = []
        self._lock = threading.Lock()

    def emit(self, new: NewEvent) -> Event:
        event = self.outbox.append(new)
        with self._lock:
            self._events.append(event)
        return event

    @property
    def events(self) -> list[Event]:
        """Everything emitted so far, in seq order."""
        with self._lock:
            return sorted(self._events, key=lambda e: e.seq)

    def close(self) -> None:
        self.outbox.close()
