"""An in-memory stand-in for the outbox, for tests of producers that only need `emit`."""

from __future__ import annotations

from datetime import datetime

from edge.events import Clock, Event, NewEvent, format_ts


class MemoryOutbox:
    """Assigns seqs and keeps events in order; `emit` is what a driver is given."""

    def __init__(self, station: str = "st1") -> None:
        self.station = station
        self.events: list[Event] = []

    def emit(self, new: NewEvent) -> Event:
        event = Event(
            station=self.station,
            seq=len(self.events) + 1,
            kind=new.kind,
            ts=format_ts(datetime.now().astimezone()),
            clock=Clock.SYNCED,
            priority=new.priority,
            data=new.data,
        )
        self.events.append(event)
        return event
