"""A simulated window unit per configured window: the same events as the serial driver, no hardware.

For a gateway on a laptop or a demo station: each window's unit comes online, then citizens and
clerks press keys at random, and each press goes through `on_key` exactly as the
driver would report it. Runs on one named thread, `window-unit-sim`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any

from edge.events import Emit
from firmware import link
from peripherals.keyevents import KeyPress, OnKey, record_keys, unit_event
from peripherals.window_unit import WindowsConfig

SIM_KEYS = ("good", "good", "good", "bad", "next", "recall")


class SimWindowUnits:
    """Presses a random key at a random window about every `interval_s`."""

    def __init__(
        self,
        config: WindowsConfig,
        emit: Emit,
        *,
        on_key: OnKey | None = None,
        interval_s: float = 5.0,
        seed: int | None = None,
    ) -> None:
        self.config = config
        self.emit = emit
        self.on_key = on_key or record_keys(emit)
        self.interval_s = interval_s
        self._random = random.Random(seed)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="window-unit-sim", daemon=True)
        self._presses: dict[int, int] = {w.number: 0 for w in config.windows}
        self._leds: dict[int, str] = {}
        self._started = time.monotonic()
        self.log = logging.getLogger("yimen.window_unit.sim")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)

    def status(self) -> dict[str, Any]:
        return {
            "units": [
                {
                    "port": f"sim:{number}",
                    "state": "online" if self._thread.is_alive() else "absent",
                    "window": number,
                    "uid": self._uid(number),
                    "presses": self._presses[number],
                    "led": self._leds.get(number, "idle"),
                }
                for number in sorted(self._presses)
            ]
        }

    def set_led(self, window: int, led: str) -> None:
        if led not in link.LEDS:
            raise ValueError(f"led {led!r} is not one of {', '.join(link.LEDS)}")
        self._leds[window] = led

    def set_limit(self, window: int, level: str) -> None:
        """A simulated unit has no lights to show it on."""

    def show(self, window: int, fields: dict[str, str]) -> None:
        """A simulated unit has no display."""

    def _uid(self, window: int) -> str:
        return f"5170{window:04x}"

    def _run(self) -> None:
        for number in self._presses:
            self.emit(unit_event("online", number, self._uid(number), f"sim:{number}"))
        while not self._stopping.wait(self._random.expovariate(1 / self.interval_s)):
            if not self._presses:
                continue
            number = self._random.choice(sorted(self._presses))
            self._presses[number] += 1
            ms = int((time.monotonic() - self._started) * 1000)
            key = self._random.choice(SIM_KEYS)
            self.on_key(KeyPress(number, key, self._uid(number), self._presses[number], ms))
