"""What the station says about itself: the periodic telemetry event and the live status fields.

Telemetry goes through the outbox (kind `telemetry`, bulk) so the county gets the history of a
station's link even for hours it was offline; the retained status carries the current picture.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.events import NewEvent, Priority
from edge.outbox import Outbox

_THERMAL = Path("/sys/class/thermal/thermal_zone0/temp")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Resident memory now (not the peak that getrusage reports)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_temp_c() -> float | None:
    try:
        return int(_THERMAL.read_text()) / 1000
    except (OSError, ValueError):
        return None


class Health:
    def __init__(
        self,
        outbox: Outbox,
        storage: Path,
        max_bytes: int,
        clock_synced: Any,
        queue_snapshot: Callable[[], dict[str, Any]] | None = None,
        link: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self._link = link  # the month's bytes on the line (edge/budget.py): the county sees them
        self._outbox = outbox
        # The station's queue (waiting per category, longest wait, windows open/paused), when
        # the station runs one: telemetry is where the county sees a queue building up.
        self._queue_snapshot = queue_snapshot
        self._storage = storage
        self._max_bytes = max_bytes
        self._clock_synced = clock_synced
        self._started = time.monotonic()
        self.boot_time = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
        self._outage_cursor = int(outbox.get_meta("outage_cursor") or 0)

    def status_fields(self) -> dict[str, Any]:
        """Extra fields of the retained online status."""
        stats = self._outbox.stats()
        return {
            "boot": round(self.boot_time, 3),
            "clock": "synced" if self._clock_synced() else "unsynced",
            "backlog": stats["backlog"],
            "last_seq": stats["last_seq"],
        }

    def report(self) -> None:
        """Append one telemetry event; each closed outage is reported in exactly one of them."""
        outages = self._outbox.outages_since(self._outage_cursor)
        self._outbox.append(self.telemetry(outages))
        if outages:
            self._outage_cursor = outages[-1]["id"]
            self._outbox.set_meta("outage_cursor", str(self._outage_cursor))

    def telemetry(self, outages: list[dict]) -> NewEvent:
        stats = self._outbox.stats()
        disk = os.statvfs(self._storage)
        return NewEvent(
            "telemetry",
            Priority.BULK,
            {
                "backlog": stats["backlog"],
                "oldest_undelivered_age_s": (stats["oldest_undelivered"] or {}).get("age_s"),
                "parked": stats["parked"]["count"],
                "storage": {
                    "used_bytes": self._outbox.used_bytes(),
                    "budget_bytes": self._max_bytes,
                    "free_bytes": disk.f_bavail * disk.f_frsize,
                },
                "memory_rss_bytes": rss_bytes(),
                "cpu_temp_c": cpu_temp_c(),
                "uptime_s": round(time.monotonic() - self._started, 1),
                "clock": "synced" if self._clock_synced() else "unsynced",
                "outages": [{"start": o["start"], "end": o["end"], "cause": o["cause"]} for o in outages],
                **({"queue": self._queue_snapshot()} if self._queue_snapshot is not None else {}),
                **({"link": self._link()} if self._link is not None else {}),
            },
        )
