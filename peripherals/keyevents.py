"""The events every key source reports, whatever the wiring: serial window unit, GPIO, evdev.

`unit` events (priority normal) say a source came online, went offline, or is unknown; `key`
events (priority critical) carry one press: window, key, unit, n (presses since the source
started) and ms (the source's uptime at the press). Station logic (the next issue) will take
presses from here; until then they are recorded as they are.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

from edge.events import Emit, NewEvent, Priority

PENDING_MAX = 256  # presses kept while emit fails (outbox unavailable); the oldest go first


def unit_event(state: str, window: int | None, unit: str, port: str, **extra: Any) -> NewEvent:
    return NewEvent(
        "unit", Priority.NORMAL, {"window": window, "unit": unit, "state": state, "port": port, **extra}
    )


def key_event(window: int, key: str, unit: str, n: int, ms: int, **extra: Any) -> NewEvent:
    return NewEvent(
        "key", Priority.CRITICAL, {"window": window, "key": key, "unit": unit, "n": n, "ms": ms, **extra}
    )


class KeyReporter:
    """Numbers the presses of a source that cannot keep them itself (GPIO, evdev) and emits them.

    A serial window unit keeps a press until the gateway acknowledges it; a GPIO pin or a USB
    keypad cannot, so a press that `emit` refused (outbox full or closed) waits here and is tried
    again at the next press or `flush()`, at most PENDING_MAX of them.
    """

    def __init__(self, emit: Emit, window: int, unit: str, log: logging.Logger) -> None:
        self.emit = emit
        self.window = window
        self.unit = unit
        self.log = log
        self.n = 0
        self.dropped = 0
        self._started = time.monotonic()
        self._pending: deque[NewEvent] = deque()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def press(self, key: str, **extra: Any) -> None:
        self.n += 1
        ms = int((time.monotonic() - self._started) * 1000)
        if len(self._pending) >= PENDING_MAX:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append(key_event(self.window, key, self.unit, self.n, ms, **extra))
        self.flush()

    def flush(self) -> None:
        while self._pending:
            try:
                self.emit(self._pending[0])
            except Exception:
                self.log.exception("could not record a press of window %d; will retry", self.window)
                return
            self._pending.popleft()
