"""Fixtures shared by every test folder."""

from __future__ import annotations

from datetime import datetime

import pytest

from edge.events import Clock, Event, NewEvent, format_ts


class MemoryOutbox:
    """Stands in for the outbox where a test needs `emit`: assigns seqs, keeps events in order."""

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


@pytest.fixture
def outbox() -> MemoryOutbox:
    return MemoryOutbox()
