"""Disk-budget pressure: what to give up when [storage] max_mb would be exceeded.

Separate from retention (edge/retention.py), which forgets delivered events by age: this
acts only under pressure, in a fixed order: delivered events first (the county has them),
then media files (the `reclaim` hook: uploaded ones, then the rest by edge.media's deletion
order), then undelivered bulk, then undelivered normal, never critical. Every undelivered event
and never-uploaded media item given up is listed in an `eviction` event so the county can tell
a loss from a gap.
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


Reclaim = Callable[[int], list[str]]
"""Free at least this many bytes outside the database; returns ids of items lost doing so."""


def nothing_to_reclaim(_nbytes: int) -> list[str]:
    return []


@dataclass
class EvictionResult:
    still_over: bool = False
    delivered_removed: int = 0
    lost: dict[str, list[int]] = field(default_factory=dict)
    media_lost: list[str] = field(default_factory=list)

    def report(self) -> NewEvent | None:
        """The `eviction` event for what was given up undelivered, or None if nothing was."""
        if not self.lost and not self.media_lost:
            return None
        data = {
            "reason": "disk budget ([storage] max_mb) exceeded",
            "evicted": {prio: ranges(seqs) for prio, seqs in self.lost.items()},
            "count": sum(len(s) for s in self.lost.values()),
        }
        if self.media_lost:
            data["media"] = self.media_lost
        return NewEvent("eviction", Priority.CRITICAL, data)


def make_room(
    conn: sqlite3.Connection,
    used_bytes: Callable[[], int],
    incoming: int,
    max_bytes: int,
    reclaim: Reclaim = nothing_to_reclaim,
) -> EvictionResult:
    """Delete rows (and, through `reclaim`, media) in eviction order until `incoming` more
    bytes fit under `max_bytes`."""
    result = EvictionResult()
    if used_bytes() + incoming <= max_bytes:
        return result
    for what, where in _ORDER:
        if what == "bulk" and used_bytes() + incoming > max_bytes:
            result.media_lost = reclaim(used_bytes() + incoming - max_bytes)
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
