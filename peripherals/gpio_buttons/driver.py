"""Reads GPIO buttons on a timer, debounces them, and reports presses as key events.

One named thread, `gpio-buttons`, owns every pin: it samples them all every POLL_S and feeds
each sample to a `Debouncer` (firmware/debounce.py, the same code the window unit runs).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge.events import Emit
from firmware.debounce import Debouncer
from firmware.link import ticks_diff, ticks_ms
from peripherals.gpio_buttons.pins import Pin, open_button
from peripherals.keyevents import KeyReporter, OnKey, record_keys, unit_event
from peripherals.window_unit import WindowsConfig

POLL_S = 0.005  # well inside the 20 ms a contact must be stable, so no press is too short to see
RETRY_MS = 1000  # how often presses the outbox refused are offered again


@dataclass
class Button:
    window: int
    key: str
    bcm: int
    pin: Pin
    debouncer: Debouncer
    reporter: KeyReporter


class GpioButtons:
    """All GPIO buttons of the station."""

    def __init__(
        self,
        config: WindowsConfig,
        emit: Emit,
        *,
        on_key: OnKey | None = None,
        open_pin: Callable[[int], Pin] = open_button,
    ) -> None:
        self.config = config
        self.emit = emit
        self.on_key = on_key or record_keys(emit)
        self.open_pin = open_pin
        self.log = logging.getLogger("yimen.gpio_buttons")
        self.buttons: list[Button] = []
        self.reporters: dict[int, KeyReporter] = {}
        self.failure: str | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpio-buttons", daemon=True)
        self._retried_at = 0

    def start(self) -> None:
        if self.open():
            self._thread.start()

    def open(self) -> bool:
        """Claim the pins and report the windows online; a pin that cannot be had fails this driver
        alone (False). Sampling is then `poll()`, which start() calls on a timer."""
        try:
            for window in self.config.with_gpio:
                reporter = KeyReporter(self.on_key, window.number, "gpio", self.log)
                self.reporters[window.number] = reporter
                for key, bcm in window.gpio:
                    pin = self.open_pin(bcm)
                    self.buttons.append(Button(window.number, key, bcm, pin, Debouncer(), reporter))
        except (OSError, RuntimeError, ValueError, AttributeError, ImportError) as exc:
            self.failure = f"cannot open GPIO pins: {exc}"
            self.log.error("%s", self.failure)
            self._release()
            return False
        for window in self.config.with_gpio:
            port = "gpio:" + ",".join(str(bcm) for _, bcm in window.gpio)
            self.emit(unit_event("online", window.number, "gpio", port, keys=[key for key, _ in window.gpio]))
        return True

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._release()

    def status(self) -> dict[str, Any]:
        return {
            "state": "failed" if self.failure else ("running" if self.buttons else "stopped"),
            "failure": self.failure,
            "buttons": [
                {"window": b.window, "key": b.key, "pin": b.bcm, "pressed": b.debouncer.pressed} for b in self.buttons
            ],
            "windows": {
                n: {"presses": r.n, "pending": r.pending, "dropped": r.dropped} for n, r in self.reporters.items()
            },
        }

    def poll(self, now: int) -> None:
        """Sample every button once at `now` (ticks_ms); report the presses that began."""
        for button in self.buttons:
            if button.debouncer.update(not button.pin.value, now):
                button.reporter.press(button.key)
        if ticks_diff(now, self._retried_at) >= RETRY_MS:
            self._retried_at = now
            for reporter in self.reporters.values():
                reporter.flush()

    def _run(self) -> None:
        while not self._stopping.wait(POLL_S):
            self.poll(ticks_ms())

    def _release(self) -> None:
        for button in self.buttons:
            button.pin.deinit()
        self.buttons.clear()
