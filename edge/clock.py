"""Can the wall clock be trusted yet?

A Raspberry Pi has no real-time clock: until NTP has set it, it boots at the last time
fake-hwclock saved, possibly days ago. Every event says whether its timestamp came from a
synced clock; the outbox asks this module at each commit.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path

from edge.config import ClockConfig

# adjtimex(2) returns TIME_ERROR while the kernel considers the clock unsynchronised.
_TIME_ERROR = 5
_TIMEX_SIZE = 512  # struct timex is 208 bytes on 64-bit Linux; over-allocate for safety.


class ClockSource:
    def __init__(self, config: ClockConfig) -> None:
        self._config = config
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if config.sync == "kernel" else None

    def synced(self) -> bool:
        if self._config.sync == "assume":
            return True
        if self._config.sync == "file":
            return Path(self._config.sync_file or "").exists()
        buf = ctypes.create_string_buffer(_TIMEX_SIZE)  # modes = 0: read only
        return self._libc.adjtimex(buf) not in (-1, _TIME_ERROR)  # type: ignore[union-attr]


def boot_id() -> str:
    """Identifies this boot: monotonic readings are comparable only within one."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"
