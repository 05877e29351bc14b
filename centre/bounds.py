"""One bad station cannot hurt the others: what the console checks before it uses anything a
station sent, and how much it will store from one station per second.

The topic is the truth (STYLE.md 15): the broker lets a station publish only under its own
topic, so the station an event belongs to is the topic's, and an event whose payload names
another station (or whose id, kind or numbers do not fit) is refused, never stored under
anyone. Every number that sizes a loop, a set or an allocation is bounded here first. Pure
functions and a small rate limiter; the counts they produce are kept by the model and shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge.events import Event
from mqtt import codec
from mqtt.topics import Topic

MAX_EVENT_BYTES = 256 * 1024  # an envelope; the largest real one (an inventory) is a few KiB
MAX_SEQ = 2**53  # JSON numbers beyond this are not exact integers anywhere
# Above the highest seq the console has accounted for (or the station's birth `last_seq`): a
# station's seqs grow by one per event, and a corrupted outbox skips at most a block of 1000.
MAX_SEQ_JUMP = 1_000_000
MAX_LOSS_RANGES = 1_000  # ranges in one eviction report or incident
MAX_REPLY_BYTES = 64 * 1024  # a command reply; ours are a few hundred bytes
MAX_STATUS_BYTES = 4096  # a birth with its backlog is about 200 bytes


class Refused(ValueError):
    """A message the console will not use. `reason` is a short fixed key (counted per station);
    `hostile` marks numbers or claims no honest station sends."""

    def __init__(self, reason: str, detail: str, *, hostile: bool = False) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.hostile = hostile


def check_event(topic: Topic, payload: bytes, top: int) -> Event:
    """The event of an `events/<kind>` message, if it belongs where its topic says; `top` is the
    highest seq known for the topic's station (held, or claimed by its birth)."""
    if len(payload) > MAX_EVENT_BYTES:
        raise Refused("too-large", f"{len(payload)} bytes, at most {MAX_EVENT_BYTES}", hostile=True)
    try:
        event = Event.from_bytes(payload)
    except (ValueError, KeyError, TypeError) as exc:
        raise Refused("malformed", str(exc)) from None
    if event.station != topic.station:
        raise Refused(
            "station-mismatch", f"payload says station {event.station!r}, topic {topic.station!r}", hostile=True
        )
    if event.kind != topic.kind:
        raise Refused("kind-mismatch", f"payload says kind {event.kind!r}, topic {topic.kind!r}")
    if not isinstance(event.seq, int) or isinstance(event.seq, bool) or not 1 <= event.seq <= MAX_SEQ:
        raise Refused("bad-seq", f"seq {event.seq!r} is not an integer in 1..2^53", hostile=True)
    if event.seq > top + MAX_SEQ_JUMP:
        raise Refused("seq-jump", f"seq {event.seq} is more than {MAX_SEQ_JUMP} above {top}", hostile=True)
    if not isinstance(event.ts, str) or len(event.ts) > 40 or not isinstance(event.data, dict):
        raise Refused("malformed", "ts must be a short string and data an object")
    return event


def check_status(payload: bytes) -> dict[str, Any]:
    """A retained status (birth or will) with its numbers and strings bounded."""
    if len(payload) > MAX_STATUS_BYTES:
        raise Refused("too-large", f"a status of {len(payload)} bytes, at most {MAX_STATUS_BYTES}", hostile=True)
    try:
        doc = codec.decode_status(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused("malformed", f"status: {exc}") from None
    session = doc.get("session")
    if not isinstance(session, int) or isinstance(session, bool) or not 0 <= session <= MAX_SEQ:
        raise Refused("bad-status", f"session {str(session)[:30]} is not an integer in 0..2^53", hostile=True)
    for key in ("version", "cause", "clock"):
        if key in doc and not (isinstance(doc[key], str) and len(doc[key]) <= 64):
            raise Refused("bad-status", f"{key} is not a short string", hostile=True)
    return doc


def loss_ranges(event: Event) -> tuple[list[tuple[int, int]], str | None]:
    """The seq ranges an `eviction` (or an `incident`'s `possibly_lost`) reports lost, bounded:
    only integers, first <= last, below the reporting event's own seq, at most MAX_LOSS_RANGES.
    Returns the usable ranges and, if anything had to be cut, what (the station is then marked)."""
    data = event.data
    if event.kind == "eviction":
        evicted = data.get("evicted")
        raw = (
            [r for ranges in evicted.values() if isinstance(ranges, list) for r in ranges]
            if isinstance(evicted, dict)
            else []
        )
    elif event.kind == "incident" and data.get("possibly_lost") is not None:
        raw = [data["possibly_lost"]]
    else:
        return [], None
    return _bounded_ranges(event, raw)


def delivered_ranges(event: Event) -> tuple[list[tuple[int, int]], str | None]:
    """The seq ranges an `eviction` lists under `delivered` (PUBACKed, then evicted: lost only
    where the county lacks them), bounded as loss_ranges bounds its ranges."""
    raw = event.data.get("delivered") if event.kind == "eviction" else None
    return _bounded_ranges(event, raw) if isinstance(raw, list) else ([], None)


def _bounded_ranges(event: Event, raw: list[Any]) -> tuple[list[tuple[int, int]], str | None]:
    problem = None
    if len(raw) > MAX_LOSS_RANGES:
        problem = f"{len(raw)} loss ranges, at most {MAX_LOSS_RANGES} used"
        raw = raw[:MAX_LOSS_RANGES]
    out = []
    for r in raw:
        ok = isinstance(r, list) and len(r) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in r)
        if not ok or not 1 <= r[0] <= r[1]:
            problem = f"loss range {str(r)[:40]} is not [first, last] with 1 <= first <= last"
            continue
        if r[1] >= event.seq:
            problem = f"loss range {r[0]}..{r[1]} reaches past the report's own seq {event.seq}"
            if r[0] >= event.seq:
                continue
        out.append((r[0], min(r[1], event.seq - 1)))
    return out, problem


def replay_answer(reply: dict[str, Any]) -> dict[str, Any]:
    """What the page shows of a `replay` reply: its few fields, typed and short."""
    result = reply.get("result") if isinstance(reply.get("result"), dict) else {}
    error = reply.get("error") if isinstance(reply.get("error"), dict) else None
    out: dict[str, Any] = {"ok": reply.get("ok") is True}
    if out["ok"]:
        out["result"] = {k: v for k in ("first", "last", "count") if isinstance(v := result.get(k), int)}
    else:
        out["error"] = {"code": str((error or {}).get("code"))[:40], "message": str((error or {}).get("message"))[:200]}
    return out


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimit:
    """What the console stores per station per second: a token bucket per station (`rate` a
    second, `burst` deep: a replay answer of 10,000 events fits). Owned by the ingest thread."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}

    def admit(self, station: str, now: float) -> bool:
        bucket = self._buckets.get(station)
        if bucket is None:
            bucket = self._buckets[station] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True
