"""Can the wall clock be trusted yet, and what is the latest time it can be?

A Raspberry Pi has no real-time clock: until NTP has set it, it boots at the last time
fake-hwclock saved, possibly days ago, or at 1970 where nothing saved one. Every event says
what its timestamp came from (`clock`: synced, unsynced, or behind); the outbox asks this
module at each commit.

Like fake-hwclock, the gateway keeps the last time it knew in its own storage (`clock.last`,
the gateway runs as `yimen` and cannot set the system clock itself). After a power cut with
no network the wall clock may then be earlier than a time this station has already seen:
that clock is `behind`, and `now()` counts on from the saved time (plus the time this process
has run) instead, so no event is stamped, and no ticket numbered, before a moment that has
already passed here. While the clock is not synced the station also keeps the day it has
(its ticket numbers go on, see edge/station/service.py): an unsynced clock cannot say that a
new day has begun.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from pathlib import Path

from edge.config import ClockConfig
from edge.configlayers import atomic_write

log = logging.getLogger("yimen.clock")

# adjtimex(2) returns TIME_ERROR while the kernel considers the clock unsynchronised.
_TIME_ERROR = 5
_TIMEX_SIZE = 512  # struct timex is 208 bytes on 64-bit Linux; over-allocate for safety.
SAVED_NAME = "clock.last"
# A saved time further ahead than this of a synced clock is not ours to believe (a clock that
# was set wildly ahead once): it is dropped, not followed.
_MAX_AHEAD_S = 366 * 86400.0


class ClockSource:
    def __init__(self, config: ClockConfig, saved: Path | None = None) -> None:
        self._config = config
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if config.sync == "kernel" else None
        self._saved = saved
        self._floor = _read_saved(saved) if saved is not None else 0.0
        self._floor_mono = time.monotonic()

    def synced(self) -> bool:
        if self._config.sync == "assume":
            return True
        if self._config.sync == "file":
            return Path(self._config.sync_file or "").exists()
        buf = ctypes.create_string_buffer(_TIMEX_SIZE)  # modes = 0: read only
        return self._libc.adjtimex(buf) not in (-1, _TIME_ERROR)  # type: ignore[union-attr]

    def _floor_now(self) -> float:
        """The last time known here, counted on by this process's monotonic clock."""
        return self._floor + (time.monotonic() - self._floor_mono) if self._floor else 0.0

    def reading(self) -> tuple[float, str]:
        """(the time to stamp, what the clock was): synced, unsynced, or behind."""
        wall = time.time()
        if self.synced():
            if self._floor and self._floor_now() > wall + _MAX_AHEAD_S:
                log.warning("the saved time %s is far ahead of the synced clock; dropped", _text(self._floor))
                self._floor = 0.0
            return wall, "synced"
        floor = self._floor_now()
        if wall < floor:
            return floor, "behind"
        return wall, "unsynced"

    def now(self) -> float:
        return self.reading()[0]

    def save(self) -> None:
        """Remember the time now for the next boot (as fake-hwclock does, in our own storage)."""
        if self._saved is None:
            return
        now = self.now()
        try:
            atomic_write(self._saved, f"{int(now)}\n".encode(), mode=0o644)  # rounded down
        except OSError as exc:
            log.warning("cannot save the time to %s: %s", self._saved, exc)
            return
        self._floor, self._floor_mono = now, time.monotonic()


def _read_saved(path: Path) -> float:
    try:
        value = float(path.read_text().strip())
    except (OSError, ValueError):
        return 0.0
    return value if 0 < value < 2**33 else 0.0  # bounded: a file is outside input


def _text(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def boot_id() -> str:
    """Identifies this boot: monotonic readings are comparable only within one."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"
