"""Helpers the printer tests share: an Emit that records, and bounded waits."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

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


def settle(printer: SerialPrinter, polls: int = 3) -> None:
    """Let the printer poll a few more times, so a duplicate event would have been emitted."""
    target = printer.status()["polls"] + polls
    wait_until(lambda: printer.status()["polls"] >= target, f"{polls} more polls")
