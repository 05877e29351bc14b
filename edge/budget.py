"""The month's data budget of a metered line: count what the link carries, spend media last.

The uplink counts every MQTT packet it sends and receives (events, batches, media chunks, live
frames, acknowledgements, commands: MQTT bytes, not TCP/IP or TLS overhead) through `count`.
The month starts on `[link] budget_day` (local time); its totals survive restarts in the
outbox's meta table (saved every minute and at stop: a power cut forgets at most a minute).
Telemetry carries `link` (`status()`), so the county sees each station's month so far.

As the budget runs low, media give way, never events:

| used | stage | what changes |
|---|---|---|
| < 60 % | `normal` | nothing |
| 60-80 % | `thrift` | scheduled snapshots 4x less often, at JPEG quality 40 at most |
| 80-95 % | `media-deferred` | no scheduled snapshots; snapshots and plain clips wait (on disk) |
| >= 95 % | `events-only` | evidence clips of bad ratings wait too |

Media that wait stay on disk (the disk budget may still take them, as ever) and go once a new
month begins. Events always go: they are what the county must never lose, and they are small.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from edge.outbox import Outbox
from mqtt.link import LinkConfig
from peripherals.camera import MediaThrottle

log = logging.getLogger("yimen.budget")

META_KEY = "link_month"
STAGES = ((0.60, "normal"), (0.80, "thrift"), (0.95, "media-deferred"), (float("inf"), "events-only"))
THROTTLES = {
    "normal": MediaThrottle(),
    "thrift": MediaThrottle(snapshot_every=4, snapshot_quality=40),
    "media-deferred": MediaThrottle(snapshots=False),
    "events-only": MediaThrottle(snapshots=False),
}
# Which media may upload at each stage, by the media id's prefix (edge/media.py names them).
UPLOADS = {
    "normal": ("snapshot", "clip", "evidence"),
    "thrift": ("snapshot", "clip", "evidence"),
    "media-deferred": ("evidence",),
    "events-only": (),
}


def month_of(day: date, start_day: int) -> str:
    """The budget month a day belongs to: `YYYY-MM` of the month whose `start_day` began it."""
    year, month = day.year, day.month
    if day.day < start_day:
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return f"{year:04d}-{month:02d}"


class DataBudget:
    """Bytes per month and the stage they put media in. `count` from any thread."""

    def __init__(
        self, config: LinkConfig, outbox: Outbox, *, today: Callable[[], date] = lambda: datetime.now().date()
    ) -> None:
        self._budget = round(config.budget_mb * 1024 * 1024)
        self._start_day = config.budget_day
        self._outbox = outbox
        self._today = today
        self._lock = threading.Lock()
        self._month = month_of(today(), self._start_day)
        self._sent = 0
        self._received = 0
        self._stage = "normal"
        saved = outbox.get_meta(META_KEY)
        if saved:
            try:
                doc = json.loads(saved)
                if doc.get("month") == self._month:
                    self._sent, self._received = int(doc["sent"]), int(doc["received"])
            except (ValueError, KeyError, TypeError):
                log.warning("link budget: unreadable saved month %r; counting from zero", saved[:80])

    def count(self, sent: int, received: int) -> None:
        with self._lock:
            self._sent += sent
            self._received += received

    def _roll(self) -> None:
        month = month_of(self._today(), self._start_day)
        if month != self._month:
            used = self._sent + self._received
            log.info("link budget: month %s ended at %d bytes; %s begins", self._month, used, month)
            self._month, self._sent, self._received = month, 0, 0

    def stage(self) -> str:
        """Where this month's use stands against the budget (always `normal` without one)."""
        with self._lock:
            self._roll()
            if self._budget <= 0:
                return "normal"
            used = (self._sent + self._received) / self._budget
        stage = next(name for limit, name in STAGES if used < limit)
        if stage != self._stage:
            log.warning("link budget: %.0f %% of %.1f MB used: media now %s", used * 100, self._budget / 2**20, stage)
            self._stage = stage
            self.save()  # `yimen status` shows a change of stage at once
        return stage

    def throttle(self) -> MediaThrottle:
        """What the cameras may do now."""
        return THROTTLES[self.stage()]

    def may_upload(self, media_id: str) -> bool:
        """Whether this media item may go now (else it waits, on disk, for a better month)."""
        return media_id.split("-", 1)[0] in UPLOADS[self.stage()]

    def save(self) -> None:
        with self._lock:
            doc = {
                "month": self._month, "sent": self._sent, "received": self._received,
                "budget": self._budget, "stage": self._stage, "at": time.time(),
            }  # fmt: skip
        self._outbox.set_meta(META_KEY, json.dumps(doc))

    def status(self) -> dict[str, Any]:
        """The month so far, for telemetry and `yimen status`."""
        stage = self.stage()
        with self._lock:
            return {
                "month": self._month,
                "sent_bytes": self._sent,
                "received_bytes": self._received,
                "budget_bytes": self._budget or None,
                "stage": stage,
            }
