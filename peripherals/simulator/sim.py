"""Citizens arriving at a simulated station: tickets, calls, service, ratings.

Each citizen is a small script (ticket issued, called to a window, served, rates the clerk);
scripts interleave so the outbox sees the mix a real station produces. Arrivals are a
Poisson process at the configured event rate; everything goes through `emit`, exactly as a
driver's events do.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import deque
from typing import Any

from edge.events import Emit, NewEvent, Priority
from peripherals.simulator import SimulateConfig

log = logging.getLogger("yimen.simulator")

CATEGORIES = ("A", "B")


class SimulatedStation:
    def __init__(self, config: SimulateConfig, emit: Emit) -> None:
        self._config = config
        self._emit = emit
        self._rng = random.Random(config.seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="yimen-simulator", daemon=True)
        self._script: deque[NewEvent] = deque()
        self._numbers = dict.fromkeys(CATEGORIES, 0)
        self._emitted = 0
        self._errors = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def status(self) -> dict[str, Any]:
        return {
            "state": "running" if self._thread.is_alive() else "stopped",
            "emitted": self._emitted,
            "errors": self._errors,
        }

    def _citizen(self) -> list[NewEvent]:
        cat = self._rng.choice(CATEGORIES)
        self._numbers[cat] += 1
        ticket = f"{cat}{self._numbers[cat]:03d}"
        window = self._rng.randint(1, self._config.windows)
        level = self._rng.choices((5, 4, 3, 2, 1), weights=(60, 25, 8, 5, 2))[0]
        queue = [
            NewEvent(
                "queue",
                Priority.NORMAL,
                {
                    "action": action,
                    "ticket": ticket,
                    "category": cat,
                    "window": window if action != "issued" else None,
                    "simulated": True,
                },
            )
            for action in ("issued", "called", "served")
        ]
        rating = NewEvent(
            "rating",
            Priority.CRITICAL,
            {
                "verdict": "good" if level >= 3 else "bad",
                "level": level,
                "window": window,
                "ticket": ticket,
                "channel": "simulator",
                "linked": True,
                "simulated": True,
            },
        )
        return [*queue, rating]

    def _run(self) -> None:
        rate = self._config.events_per_second
        while not self._stop.wait(self._rng.expovariate(rate)):
            if not self._script:
                self._script.extend(self._citizen())
            try:
                self._emit(self._script.popleft())
                self._emitted += 1
            except Exception:
                self._errors += 1
                log.exception("simulated event not recorded")
