"""Disk-budget pressure: what to give up when [storage] max_mb would be exceeded.

Separate from retention (edge/retention.py), which forgets delivered events by age: this
acts only under pressure, in a fixed order: delivered events first (the county has them),
then undelivered bulk, then undelivered normal, never critical. Every undelivered event
given up is listed in an `eviction` event so the county can tell a loss from a gap.
It runs inside the outbox's commit transaction, on the outbox's connection.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field

from edge.events import NewEvent, Priority

log = logging.getLogger("yimen.eviction")

_CHUNK = 64

# (what, WHERE clause) in eviction order.
_ORDER: tuple[tuple[str, str], ...] = (
    ("delivered", "delivered IS NOT NULL"),
    ("bulk", f"delivered IS NULL AND priority = {int(Priority.BULK)}"),
    ("normal", f"delivered IS NULL AND priority = {int(Priority.NORMAL)}"),
)


def ranges(seqs: list[int]) -> list[list[int]]:
    """[1,2,3,7,9,10] -> [[1,3],[7,7],[9,10]]: compact enough to report thousands of seqs."""
    out: list[list[int]] = []
    for seq in sorted(seqs):
        if out and seq == out[-1][1] + 1:
            out[-1][1] = seq
        else:
            out.append([seq, seq])
    return out


@dataclass
class EvictionResult:
    still_over: bool = False
    delivered_removed: int = 0
    lost: dict[str, list[int]] = field(default_factory=dict)

    def report(self) -> NewEvent | None:
        """The `eviction` event for undelivered events given up, or None if none were."""
        if not self.lost:
            return None
        return NewEvent(
            "eviction",
            Priority.CRITICAL,
            {
                "reason": "disk budget ([storage] max_mb) exceeded",
                "evicted": {prio: ranges(seqs) for prio, seqs in self.lost.items()},
                "count": sum(len(s) for s in self.lost.values()),
            },
        )


def make_room(conn: sqlite3.Connection, used_bytes: Callable[[], int], incoming: int, max_bytes: int) -> EvictionResult:
    """Delete rows in eviction order until `incoming` more bytes fit under `max_bytes`."""
    result = EvictionResult()
    if used_bytes() + incoming <= max_bytes:
        return result
    for what, where in _ORDER:
        while used_bytes() + incoming > max_bytes:
            seqs = [r[0] for r in conn.execute(f"SELECT seq FROM events WHERE {where} ORDER BY seq LIMIT {_CHUNK}")]
            if not seqs:
                break
            conn.execute(f"DELETE FROM events WHERE seq IN ({','.join('?' * len(seqs))})", seqs)
            if what == "delivered":
                result.delivered_removed += len(seqs)
            else:
                result.lost.setdefault(what, []).extend(seqs)
        if used_bytes() + incoming <= max_bytes:
            break
    result.still_over = used_bytes() + incoming > max_bytes
    if result.lost:
        log.error("disk budget exceeded: evicted undelivered events %s", {k: len(v) for k, v in result.lost.items()})
    return result
