"""Citizens and clerks at a simulated station, pressing the station logic's keys.

Each step is one press, chosen among what makes sense now (a citizen takes a ticket, an idle
window calls the next, the called citizen arrives, the service ends, the citizen rates it), at
Poisson-distributed times averaging `events_per_second`; most presses produce one event. The
simulator keeps its own picture of each window and trusts the station's answer: a press the
station refuses (feedback `error`) leaves the picture unchanged.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Any

from edge.station.service import Station
from edge.station.state import Feedback
from peripherals.simulator import SimulateConfig

log = logging.getLogger("yimen.simulator")

SOURCE = "simulator"
MAX_WAITING = 12
# After a call the citizen walks up, is served, and rates: the window's next key in turn.
_NEXT_KEY = {"called": "start", "serving": "done"}


class SimulatedStation:
    def __init__(self, config: SimulateConfig, station: Station, windows: list[int], clerk_codes: list[str]) -> None:
        self._config = config
        self._station = station
        self._rng = random.Random(config.seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="yimen-simulator", daemon=True)
        self._phase = dict.fromkeys(windows, "idle")
        self._codes = dict(zip(windows, clerk_codes, strict=False))
        self._waiting = 0
        self._presses = 0
        self._refused = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def status(self) -> dict[str, Any]:
        return {
            "state": "running" if self._thread.is_alive() else "stopped",
            "presses": self._presses,
            "refused": self._refused,
        }

    def _steps(self) -> list[tuple[str, int | None]]:
        """What could happen next: (what, window)."""
        steps: list[tuple[str, int | None]] = []
        if self._waiting < MAX_WAITING:
            steps.append(("ticket", None))
        for window, phase in self._phase.items():
            if phase == "idle" and self._waiting > 0:
                steps.append(("next", window))
            elif phase in _NEXT_KEY:
                steps.append((_NEXT_KEY[phase], window))
            elif phase == "ended":
                steps.append(("rate", window))
        return steps

    def _step(self, what: str, window: int | None) -> None:
        if what == "ticket":
            category = self._rng.choice("AB")
            outcome = self._station.command("issue", category=category, green=self._rng.random() < 0.1, source=SOURCE)
            self._count(outcome.ok)
            self._waiting += outcome.ok
            return
        assert window is not None
        if what == "rate":
            level = self._rng.choices((5, 4, 3, 2, 1), weights=(60, 25, 8, 5, 2))[0]
            key = f"r{level}"
        else:
            key = what
        ok = self._station.press(window, key, source=SOURCE) != Feedback.ERROR
        self._count(ok)
        if not ok:
            # The station disagrees with our picture (a restart mid-service, a day change): start over.
            self._phase[window] = "idle"
            return
        if what == "next":
            self._waiting -= 1
        self._phase[window] = {"next": "called", "start": "serving", "done": "ended", "rate": "idle"}[what]

    def _count(self, ok: bool) -> None:
        self._presses += 1
        self._refused += not ok

    def _sign_in(self) -> None:
        for window, code in self._codes.items():
            self._station.keypad_code(window, code, source=SOURCE)

    def _run(self) -> None:
        try:
            self._sign_in()
        except Exception:
            log.exception("simulated clerks could not sign in")
        rate = self._config.events_per_second
        while not self._stop.wait(self._rng.expovariate(rate)):
            try:
                self._step(*self._rng.choice(self._steps()))
            except Exception:
                log.exception("simulated press not recorded")
