"""Media in the disk budget: under pressure media go before any undelivered event, uploaded ones
first, then oldest snapshots, bad-rating clips last; what was never uploaded is reported."""

from __future__ import annotations

import random
from pathlib import Path

from edge.clock import ClockSource
from edge.config import ClockConfig
from edge.events import Event, NewEvent, Priority
from edge.media import MediaStore, MediaType
from edge.outbox import Outbox

T0 = 1795595400.0
ITEM = 100_000
ASSUME = ClockSource(ClockConfig(sync="assume"))


def outbox(storage: Path, max_bytes: int, media: MediaStore | None = None, uploaded: frozenset = frozenset()) -> Outbox:
    if media is None:
        return Outbox(storage / "outbox.db", "st1", clock=ASSUME, max_bytes=max_bytes)
    return Outbox(
        storage / "outbox.db",
        "st1",
        clock=ASSUME,
        max_bytes=max_bytes,
        extra_usage=media.used_bytes,
        reclaim=lambda nbytes: media.reclaim(nbytes, lambda: uploaded),
    )


def test_media_go_first_uploaded_then_snapshots_bad_rating_clips_last(tmp_path: Path) -> None:
    roomy = outbox(tmp_path, 1 << 30)
    store = MediaStore(tmp_path, roomy.append)

    def item(kind: MediaType, started: float, caused_by: str | None = None) -> str:
        data = random.Random(started).randbytes(ITEM)
        return store.put(kind, 1, data, started=started, ended=started, caused_by=caused_by).data["media_id"]

    evidence_old = item(MediaType.CLIP, T0, "st1-1")
    snap_new = item(MediaType.SNAPSHOT, T0 + 300)
    plain_clip = item(MediaType.CLIP, T0 + 200)
    snap_old = item(MediaType.SNAPSHOT, T0 + 100)
    evidence_new = item(MediaType.CLIP, T0 + 400, "st1-2")
    for i in range(20):
        roomy.append(NewEvent("telemetry", Priority.BULK, {"i": i}))
    db_bytes = roomy.used_bytes()
    roomy.close()

    media = MediaStore(tmp_path, lambda new: tight.append(new))  # counts what an earlier run left
    assert media.used_bytes() == 5 * ITEM
    # Room for the database and two and a half items: three must go, and no event.
    tight = outbox(tmp_path, db_bytes + 5 * ITEM // 2, media, uploaded=frozenset({evidence_old}))
    tight.append(NewEvent("rating", Priority.CRITICAL, {"verdict": "good"}))

    left = sorted(p.stem for p in media.dir.iterdir())
    assert left == sorted([plain_clip, evidence_new])
    assert media.used_bytes() == 2 * ITEM
    held = [Event.from_bytes(p.payload) for p in tight.replay(1, 1000)]
    assert sum(e.kind == "telemetry" for e in held) == 20, "an undelivered event went before media did"
    [report] = [e for e in held if e.kind == "eviction"]
    # The uploaded clip was deleted first, and is no loss: only the two snapshots are reported.
    assert report.data["media"] == [snap_old, snap_new]
    assert (report.data["count"], report.data["evicted"], report.priority) == (0, {}, Priority.CRITICAL)
    tight.close()
