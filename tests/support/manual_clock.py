"""A clock a test moves by hand, so minutes of camera time pass in milliseconds and nothing sleeps.

It has the shape of `peripherals.camera.pipeline.FrameClock`.
"""

from __future__ import annotations

import threading

# 2026-11-25 08:30:00 UTC: any fixed moment will do; a fixed one makes failures repeatable.
START = 1795595400.0


class ManualClock:
    """Time stands still until `advance_to`; the camera thread then runs every frame up to that time.

    `advance_to(t)` returns once the camera thread is asleep waiting for a moment after `t`, so all
    frames up to `t` are handled and what the test reads next is settled. One camera per clock.
    """

    def __init__(self, start: float = START) -> None:
        self._now = start
        self._limit = start
        self._sleeper_wakes: float | None = None
        self._cond = threading.Condition()

    def now(self) -> float:
        with self._cond:
            return self._now

    def sleep(self, seconds: float, stopping: threading.Event) -> bool:
        with self._cond:
            wake = self._now + seconds
            self._sleeper_wakes = wake
            self._cond.notify_all()
            while wake > self._limit:
                if stopping.is_set():
                    return True
                self._cond.wait(0.02)
            self._sleeper_wakes = None
            self._now = max(self._now, wake)
            return stopping.is_set()

    def advance_to(self, t: float) -> None:
        with self._cond:
            self._limit = t
            self._cond.notify_all()
            settled = self._cond.wait_for(
                lambda: self._sleeper_wakes is not None and self._sleeper_wakes > t, timeout=30
            )
            assert settled, "camera thread never went back to sleep (did it fail? see its status)"
            self._now = t

    def advance(self, seconds: float) -> None:
        self.advance_to(self.now() + seconds)
