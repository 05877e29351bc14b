"""Talking to systemd: readiness, the watchdog, and log lines the journal can file by priority.

The unit (deploy/yimen.service) is `Type=notify` with `WatchdogSec=`: systemd considers the
gateway started only once it says READY=1, and kills and restarts it when WATCHDOG=1 stops
arriving. The protocol is one datagram per message to the AF_UNIX socket named in
$NOTIFY_SOCKET (sd_notify(3)); it is small enough to speak here rather than depend on an
unmaintained package. Outside systemd none of this does anything.

WATCHDOG=1 is sent only while the gateway is healthy, so a wedged gateway (a commit stuck on
a dead SD card, on whichever thread: the commit thread's probe waits behind it; a crashed uplink
thread) is restarted instead of sitting there
looking alive. Healthy means every check passes: see `Watchdog`.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable

log = logging.getLogger("yimen.systemd")


def under_systemd() -> bool:
    """Started by systemd as a notify service (it gave us a socket to report to)."""
    return bool(os.environ.get("NOTIFY_SOCKET"))


def notify(message: str) -> bool:
    """Send one sd_notify message (e.g. "READY=1"); False when not run by systemd or it failed."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # Linux abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("cannot notify systemd at %s: %s", os.environ["NOTIFY_SOCKET"], exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """systemd's WatchdogSec= in seconds, if it asked this process for keep-alives."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        seconds = int(usec) / 1e6
    except ValueError:
        return None
    return seconds if seconds > 0 else None


Check = tuple[str, Callable[[], bool]]


class Watchdog:
    """Sends WATCHDOG=1 every interval/4 while every check passes, and says why when one fails.

    `checks` are (what, predicate) pairs; a predicate must return quickly. `responsive` is the
    outbox's probe: it hands the commit thread a no-op and returns an Event set when answered.
    The commit thread is healthy while a probe was answered within interval/2, so a gateway
    whose commit thread is stuck is killed by systemd at most 1.5 intervals after it stuck.
    """

    def __init__(self, interval: float, checks: list[Check], responsive: Callable[[], threading.Event]) -> None:
        self._interval = interval
        self._checks = checks
        self._responsive = responsive
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="yimen-watchdog", daemon=True)
        self._probe: threading.Event | None = None
        self._answered = time.monotonic()
        self._failing: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def problem(self) -> str | None:
        """What is wrong now, or None when healthy."""
        now = time.monotonic()
        if self._probe is not None and self._probe.is_set():
            self._answered = now
            self._probe = None
        if self._probe is None:
            self._probe = self._responsive()
        silent = now - self._answered
        if silent > self._interval / 2:
            return f"the outbox commit thread has not answered for {silent:.0f} s"
        for what, alive in self._checks:
            if not alive():
                return f"the {what} is not running"
        return None

    def _run(self) -> None:
        while not self._stop.wait(self._interval / 4):
            problem = self.problem()
            if problem is None:
                if self._failing is not None:
                    log.warning("healthy again")
                    notify("STATUS=running")
                notify("WATCHDOG=1")
            elif problem != self._failing:
                log.error("unhealthy: %s; no longer telling systemd we are alive, so it restarts us", problem)
                notify(f"STATUS=unhealthy: {problem}")
            self._failing = problem


def ready_while(what: str, stop: threading.Event) -> None:
    """A phase that may last (enrolment waiting for a claim for days): tell systemd we are up
    and what we are doing, and keep the watchdog fed until `stop` is set, from a thread."""
    notify(f"READY=1\nSTATUS={what}")
    interval = watchdog_interval()
    if interval is None:
        return

    def feed() -> None:
        while not stop.wait(interval / 4):
            notify("WATCHDOG=1")

    threading.Thread(target=feed, name="yimen-watchdog-enrol", daemon=True).start()


# Python levels to the syslog priorities that journald reads from a "<N>" line prefix.
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


class JournalFormatter(logging.Formatter):
    """One line per record, prefixed with its syslog priority; no timestamp: journald adds its own."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        priority = next((p for level, p in _PRIORITIES if record.levelno >= level), 7)
        # journald makes one entry per line: each line of a traceback carries the priority too.
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


def stderr_is_journal() -> bool:
    """Whether stderr is the journal's stream (systemd sets JOURNAL_STREAM to its device:inode)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"
