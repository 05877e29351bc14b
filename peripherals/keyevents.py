"""The events every key source reports, whatever the wiring: serial window unit, GPIO, evdev.

`unit` events (priority normal) say a source came online, went offline, or is unknown. A press
is a `KeyPress` (window, key, unit, n: presses since the source started, ms: the source's uptime)
handed to an `OnKey` callable that returns once whatever it caused is on disk: in a gateway with
station logic, `edge.station.Station.press`; without one, `record_keys`, which stores each press
as a `key` event (priority critical).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge.events import Emit, NewEvent, Priority

PENDING_MAX = 256  # presses kept while emit fails (outbox unavailable); the oldest go first


def unit_event(state: str, window: int | None, unit: str, port: str, **extra: Any) -> NewEvent:
    return NewEvent("unit", Priority.NORMAL, {"window": window, "unit": unit, "state": state, "port": port, **extra})


@dataclass(frozen=True)
class KeyPress:
    window: int
    key: str  # good, bad, r1..r5, next, start, ticket[:cat], ..., signin or card (with card), code (with code)
    unit: str
    n: int
    ms: int
    extra: dict[str, Any] = field(default_factory=dict)  # card for signin/card, code for code


OnKey = Callable[[KeyPress], object]
"""Takes one press; returns once its effect is durable (the serial driver ACKs only then)."""


def key_event(press: KeyPress) -> NewEvent:
    extra = dict(press.extra)
    if "code" in extra:  # a clerk's sign-in code is a password: never published
        extra["code"] = "*" * len(str(extra["code"]))
    return NewEvent(
        "key",
        Priority.CRITICAL,
        {"window": press.window, "key": press.key, "unit": press.unit, "n": press.n, "ms": press.ms, **extra},
    )


def record_keys(emit: Emit) -> OnKey:
    """Without station logic: each press is recorded as a `key` event."""
    return lambda press: emit(key_event(press))


class KeyReporter:
    """Numbers the presses of a source that cannot keep them itself (GPIO, evdev) and emits them.

    A serial window unit keeps a press until the gateway acknowledges it; a GPIO pin or a USB
    keypad cannot, so a press that `on_key` refused (outbox full or closed) waits here and is tried
    again at the next press or `flush()`, at most PENDING_MAX of them.
    """

    def __init__(self, on_key: OnKey, window: int, unit: str, log: logging.Logger) -> None:
        self.on_key = on_key
        self.window = window
        self.unit = unit
        self.log = log
        self.n = 0
        self.dropped = 0
        self._started = time.monotonic()
        self._pending: deque[KeyPress] = deque()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def press(self, key: str, **extra: Any) -> None:
        self.n += 1
        ms = int((time.monotonic() - self._started) * 1000)
        if len(self._pending) >= PENDING_MAX:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append(KeyPress(self.window, key, self.unit, self.n, ms, extra))
        self.flush()

    def flush(self) -> None:
        while self._pending:
            try:
                self.on_key(self._pending[0])
            except Exception:
                self.log.exception("could not record a press of window %d; will retry", self.window)
                return
            self._pending.popleft()
