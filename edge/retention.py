"""Age-based retention: delivered events are kept [storage] retention_days for replay, then forgotten.

Only delivered events are ever removed here; undelivered ones leave the outbox only by
delivery or, under disk pressure, by edge/eviction.py (which reports them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from edge.outbox import Outbox

log = logging.getLogger("yimen.retention")

DAY_S = 86400.0


def expire(outbox: Outbox, retention_days: float, now: Callable[[], float] = time.time) -> int:
    """Forget events delivered more than `retention_days` ago; returns how many."""
    removed = outbox.delete_delivered_before(now() - retention_days * DAY_S)
    if removed:
        log.info("retention: forgot %d events delivered over %g days ago", removed, retention_days)
    return removed
