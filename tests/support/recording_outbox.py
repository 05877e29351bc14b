"""`emit` for producer tests: the real outbox in a test directory, remembering what it returned.

Drivers are tested against the same durable append the gateway gives them; this only adds what
a test needs to look: the events in order, the next one as it comes, and a gate that makes
`emit` block, as a stalled SD card would.
"""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path
from typing import Any

from edge.clock import ClockSource
from edge.config import ClockConfig
from edge.events import Event, NewEvent, Priority
from edge.outbox import Outbox

WAIT_S = 15.0


class RecordingOutbox:
    def __init__(self, directory: Path, station: str = "st1") -> None:
        self.outbox = Outbox(
            directory / "outbox.db", station, clock=ClockSource(ClockConfig(sync="assume")), max_bytes=64 << 20
        )
        self.gate = threading.Event()  # cleared: emit blocks
        self.gate.set()
        self._emitted: list[Event] = []
        self._lock = threading.Lock()
        self._fresh: queue.SimpleQueue[Event] = queue.SimpleQueue()

    def emit(self, new: NewEvent) -> Event:
        self.gate.wait()
        event = self.outbox.append(new)
        with self._lock:
            self._emitted.append(event)
        self._fresh.put(event)
        return event

    __call__ = emit

    @property
    def emitted(self) -> list[Event]:
        """Everything emitted so far, in seq order."""
        with self._lock:
            return sorted(self._emitted, key=lambda e: e.seq)

    def next(self, timeout: float = WAIT_S) -> Event:
        """The next event emitted that no `next`/`pending` has returned yet."""
        try:
            return self._fresh.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event came within {timeout} s") from None

    def pending(self) -> list[Event]:
        """Every event emitted and not yet returned by `next`/`pending`."""
        found = []
        while not self._fresh.empty():
            found.append(self._fresh.get_nowait())
        return found

    def stored(self, kind: str | None = None) -> list[dict[str, Any]]:
        """What is on disk, in seq order, read back from the outbox itself: each event's data
        with its kind and priority (an int, as Priority)."""
        docs = [json.loads(p.payload) for p in self.outbox.replay(1, 2**62)]
        return [
            {"kind": d["kind"], "priority": int(Priority.parse(d["priority"])), **d["data"]}
            for d in docs
            if kind is None or d["kind"] == kind
        ]

    def close(self) -> None:
        self.outbox.close()
