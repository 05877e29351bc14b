"""Helpers the printer tests share: an Emit that records, and bounded waits."""

from __future__ import annotations

import itertools
import queue
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from edge.events import Clock, Event, NewEvent, format_ts
from peripherals.printer.driver import SerialPrinter

STATION = "青山村便民服务站"
# Short enough to keep the suite quick, long enough that a loaded CI machine's scheduler
# does not turn a slow answer into "no_answer".
TIMEOUT_S = 0.3
POLL_S = 0.02
WAIT_S = 10.0  # a generous bound so that a broken test fails instead of hanging


def wait_until(predicate: Callable[[], Any], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.005)


class Recorder:
    """An Emit: finishes the event as the outbox would (checking it serialises) and keeps it."""

    def __init__(self) -> None:
        self._seq = itertools.count(1)
        self._events: queue.Queue[Event] = queue.Queue()

    def __call__(self, new: NewEvent) -> Event:
        event = Event(
            station="test",
            seq=next(self._seq),
            kind=new.kind,
            ts=format_ts(datetime.now().astimezone()),
            clock=Clock.SYNCED,
            priority=new.priority,
            data=new.data,
        )
        assert Event.from_bytes(event.to_bytes()) == event
        self._events.put(event)
        return event

    def next(self) -> Event:
        try:
            return self._events.get(timeout=WAIT_S)
        except queue.Empty:
            raise AssertionError("no event came") from None

    def pending(self) -> list[Event]:
        found = []
        while not self._events.empty():
            found.append(self._events.get_nowait())
        return found


def settle(printer: SerialPrinter, polls: int = 3) -> None:
    """Let the printer poll a few more times, so a duplicate event would have been emitted."""
    target = printer.status()["polls"] + polls
    wait_until(lambda: printer.status()["polls"] >= target, f"{polls} more polls")
