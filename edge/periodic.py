"""A named thread that runs one job at an interval until stopped (Frigate's cleanup loop shape).

It sleeps on an Event, so stopping is immediate and idle costs no CPU; a job that raises is
logged and tried again next time rather than killing the thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("yimen.periodic")


class Periodic:
    def __init__(self, name: str, interval_s: float, job: Callable[[], object], *, run_first: bool = False) -> None:
        self.name = name
        self.interval_s = interval_s
        self._job = job
        self._run_first = run_first
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _loop(self) -> None:
        if self._run_first:
            self._run()
        while not self._stop.wait(self.interval_s):
            self._run()

    def _run(self) -> None:
        try:
            self._job()
        except Exception:
            log.exception("periodic job %s failed; will retry in %.0f s", self.name, self.interval_s)
