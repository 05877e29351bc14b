"""Disk-budget pressure: what to give up when [storage] max_mb would be exceeded.

Separate from retention (edge/retention.py), which forgets delivered events by age: this
acts only under pressure, in a fixed order: delivered events first (the county has them),
then media files (the `reclaim` hook: uploaded ones, then the rest by edge.media's deletion
order), then undelivered bulk, then undelivered normal, never critical. Every undelivered event
and never-uploaded media item given up is listed in an `eviction` event so the county can tell
a loss from a gap. Delivered events given up are listed too, apart (`delivered`): a PUBACK says
the broker took an event, not that the county has it (a broker with no console subscribed
answers 0x10 and drops it), and once it is evicted no replay can bring it back, so the county
records as lost whichever of those seqs it lacks. Delivered events go a slice of the budget
at a time (DELIVERED_SLACK), so a station living at its budget reports that once per slice,
not once per commit.
It runs inside the outbox's commit transaction, on the outbox's connection.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field

from edge.events import NewEvent, Priority

log = logging.getLogger("yimen.eviction")

_CHUNK = 64
# A list of seqs is one JSON parameter, never a `?` each: every distinct length of an `IN (?, ?,
# ...)` list is another statement in the connection's cache of 128, and one over thousands of
# seqs (a backlog's batches in flight) holds megabytes, so a drain grew the gateway to 500 MB.
# The outbox's own statements on the same connection use it too.
SEQS = "(SELECT value FROM json_each(?))"
DELIVERED_SLACK = 8  # delivered events are evicted down to 1/8 of the budget below it

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
    delivered: list[int] = field(default_factory=list)
    lost: dict[str, list[int]] = field(default_factory=dict)
    media_lost: list[str] = field(default_factory=list)

    def report(self) -> NewEvent | None:
        """The `eviction` event for what was given up, or None if nothing was. `evicted` and
        `count` are the undelivered events (lost); `delivered` the delivered ones, which are lost
        only if the county lacks them."""
        if not self.lost and not self.media_lost and not self.delivered:
            return None
        data: dict = {
            "reason": "disk budget ([storage] max_mb) exceeded",
            "evicted": {prio: ranges(seqs) for prio, seqs in self.lost.items()},
            "count": sum(len(s) for s in self.lost.values()),
        }
        if self.delivered:
            data["delivered"] = ranges(self.delivered)
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
        limit = max_bytes - (max_bytes // DELIVERED_SLACK if what == "delivered" else 0)
        while used_bytes() + incoming > limit:
            seqs = [r[0] for r in conn.execute(f"SELECT seq FROM events WHERE {where} ORDER BY seq LIMIT {_CHUNK}")]
            if not seqs:
                break
            conn.execute(f"DELETE FROM events WHERE seq IN {SEQS}", [json.dumps(seqs)])
            if what == "delivered":
                result.delivered.extend(seqs)
            else:
                result.lost.setdefault(what, []).extend(seqs)
        if used_bytes() + incoming <= max_bytes:
            break
    result.still_over = used_bytes() + incoming > max_bytes
    if result.lost:
        log.error("disk budget exceeded: evicted undelivered events %s", {k: len(v) for k, v in result.lost.items()})
    return result
