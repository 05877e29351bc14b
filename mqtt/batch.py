"""Event batches: many stored events in one compressed MQTT message, and how to take one apart.

Pure: bytes in, bytes out, no sockets. The station packs (mqtt/uplink.py decides when), the
county unpacks (centre/ingest.py), and both follow the format in mqtt/TOPICS.md ("Batches"):

    b"YB" | version 1 | codec | uvarint count | uvarint body length | compressed body
    body = (uvarint length | stored event bytes) x count

A batch travels on the event topic of its kind (`.../events/<kind>`), so a broker's ACL on a
kind means the same for a batch as for a single event, and a shared subscription on
`events/+` splits batches between console workers like events. A single event is JSON and
starts with `{`; a batch starts with `Y`: the first byte tells them apart, under MQTT 3.1.1 too.

The county treats a batch as hostile input: count and body length are bounded before anything
is allocated, and decompression stops at the declared length (a zlib bomb inflates to nothing
more than that).
"""

from __future__ import annotations

import collections
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the county unpacks without loading the station's outbox
    from edge.outbox import Pending

MAGIC = b"YB"
VERSION = 1
CODEC_ZLIB = 1  # zlib stream, no dictionary
CODEC_ZLIB_DICT = 2  # zlib stream with DICTIONARY as its preset dictionary
# What a county accepts at most; a station packs far less (see BatchLimits).
MAX_EVENTS = 1000
MAX_BODY = 1 << 20

# Preset dictionary (zlib's zdict) for codec 2: the envelope's keys and the values every
# station repeats, latest-most-likely last (zlib matches closer bytes more cheaply). Fixed for
# ever once stations use it: a county decodes old batches with it. A changed dictionary is a
# new codec number.
DICTIONARY = (
    b'"kind":"telemetry","priority":"bulk","data":{"backlog":{"critical":0,"normal":0,"bulk":0},'
    b'"oldest_undelivered_age_s":null,"parked":0,"storage":{"used_bytes":,"budget_bytes":,"free_bytes":},'
    b'"memory_rss_bytes":,"cpu_temp_c":null,"uptime_s":,"clock":"synced","outages":[]}}'
    b'"kind":"media","priority":"bulk","data":{"media_id":"snapshot-w1-","type":"snapshot","window":1,'
    b'"size":,"sha256":"","caused_by":null,"path":"media/","frames":1,"started":"","ended":""}}'
    b'"kind":"clerk","priority":"normal","data":{"action":"sign-in","by":"card","window":1,"clerk":"'
    b'"kind":"queue","priority":"normal","data":{"action":"issue","ticket":"A0","ticket_id":"'
    b'","category":"","green":false,"window":null,"clerk":null,"issued":"2026-","queued":"2026-",'
    b'"called":null,"started":null,"ended":null,"recalls":0,"wait_s":null,"walk_s":null,'
    b'"service_s":null,"ahead":0,"print":{"printed":true,"reason":null,"detail":null},'
    b'"at":"2026-","source":"station","op":1}}'
    b'"kind":"rating","priority":"critical","data":{"verdict":"good","level":5,"reason":null,'
    b'"window":1,"clerk":"clerk-0","ticket":"A0","ticket_id":"","item":{"code":"","name":""},'
    b'"category":"hukou","wait_s":1,"service_s":1,"served_s":1,"channel":"keypad","source":"keypad",'
    b'"linked":true,"camera":null,"simulated":true}}'
    b'{"id":"-1","station":"","seq":1,"kind":"","ts":"2026-11-25T09:14:03.118+08:00","clock":"synced",'
    b'"priority":"critical","data":{'
)


class BatchError(ValueError):
    """A batch that breaks the format or its bounds; the message says which, for the county's log."""


@dataclass(frozen=True)
class BatchLimits:
    """How big a station makes its batches: small enough that a refused or lost batch costs
    little to send again, large enough that compression and per-message overhead pay."""

    max_events: int = 256
    max_body: int = 96 * 1024  # raw event bytes per batch
    level: int = 6


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_uvarint(data: bytes | memoryview, pos: int, what: str) -> tuple[int, int]:
    """The uvarint at `pos` and the position after it; at most 5 bytes (values below 2**35)."""
    value = 0
    for shift in range(0, 35, 7):
        if pos >= len(data):
            raise BatchError(f"batch cut short inside {what}")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise BatchError(f"batch {what}: a length of more than 5 bytes")


def pack(payloads: Iterable[bytes], *, level: int = 6, codec: int = CODEC_ZLIB_DICT) -> bytes:
    """One batch holding `payloads` (the stored event bytes, unchanged) in order."""
    parts: list[bytes] = []
    count = 0
    for payload in payloads:
        parts.append(_uvarint(len(payload)))
        parts.append(payload)
        count += 1
    body = b"".join(parts)
    if codec == CODEC_ZLIB_DICT:
        squeezer = zlib.compressobj(level, zdict=DICTIONARY)
    elif codec == CODEC_ZLIB:
        squeezer = zlib.compressobj(level)
    else:
        raise ValueError(f"unknown batch codec {codec}")
    packed = squeezer.compress(body) + squeezer.flush()
    return MAGIC + bytes((VERSION, codec)) + _uvarint(count) + _uvarint(len(body)) + packed


def is_batch(payload: bytes) -> bool:
    """Whether a message on an event topic is a batch (a single event is JSON: `{...`)."""
    return payload[:2] == MAGIC


def unpack(payload: bytes, *, max_events: int = MAX_EVENTS, max_body: int = MAX_BODY) -> list[bytes]:
    """The event payloads in a batch, each exactly the bytes the station stored.

    Every bound is checked before it sizes anything: the declared count and body length
    against the limits, the inflated body against the declared length (decompression stops
    there), each event's length against what is left."""
    if len(payload) < 4 or payload[:2] != MAGIC:
        raise BatchError("not a batch (no YB header)")
    if payload[2] != VERSION:
        raise BatchError(f"batch version {payload[2]}: this county reads version {VERSION}")
    codec = payload[3]
    if codec not in (CODEC_ZLIB, CODEC_ZLIB_DICT):
        raise BatchError(f"batch codec {codec}: unknown")
    count, pos = _read_uvarint(payload, 4, "count")
    size, pos = _read_uvarint(payload, pos, "body length")
    if not 1 <= count <= max_events:
        raise BatchError(f"batch of {count} events: 1..{max_events} allowed")
    if size > max_body:
        raise BatchError(f"batch body of {size} bytes: at most {max_body} allowed")
    inflater = zlib.decompressobj(zdict=DICTIONARY) if codec == CODEC_ZLIB_DICT else zlib.decompressobj()
    try:
        body = inflater.decompress(payload[pos:], size)  # never more than the declared size
    except zlib.error as exc:
        raise BatchError(f"batch body does not inflate: {exc}") from None
    if len(body) != size or inflater.unconsumed_tail or not inflater.eof:
        raise BatchError(f"batch body is not the declared {size} bytes")
    if inflater.unused_data:
        raise BatchError("bytes after the end of the batch body")
    events: list[bytes] = []
    view = memoryview(body)
    at = 0
    for _ in range(count):
        length, at = _read_uvarint(view, at, "an event's length")
        if length > size - at:
            raise BatchError(f"event {len(events) + 1} of the batch runs past its end")
        events.append(bytes(view[at : at + length]))
        at += length
    if at != size:
        raise BatchError(f"{size - at} bytes left over after {count} events")
    return events


def groups(items: list[Pending], late: Callable[[Pending], bool], limits: BatchLimits) -> list[list[Pending]]:
    """Split events (in send order) into batches: one kind each (its topic), re-sends apart from
    first sends (the replay property is per message), within the limits. Order within each
    batch, and between batches of one kind, stays the send order."""
    open_groups: dict[tuple[str, bool], list[Pending]] = {}
    sizes: dict[tuple[str, bool], int] = {}
    out: list[list[Pending]] = []
    for item in items:
        key = (item.kind, late(item))
        group = open_groups.get(key)
        if group is not None and (len(group) >= limits.max_events or sizes[key] + len(item.payload) > limits.max_body):
            group = None
        if group is None:
            group = open_groups[key] = []
            sizes[key] = 0
            out.append(group)
        group.append(item)
        sizes[key] += len(item.payload)
    return out


class Batches:
    """The station's batches in flight, and the halves of refused ones waiting to go again.

    Owned by the uplink thread. A PUBACK below 0x80 delivers every event of its batch; one at
    or above 0x80 splits the batch in two, each half sent again (a half of one event goes as a
    single event, whose refusal parks it): about 2 log2(n) messages find one bad event in n."""

    def __init__(self, limits: BatchLimits, max_inflight: int = 4) -> None:
        self.limits = limits
        self.max_inflight = max_inflight
        self._inflight: dict[int, list[Pending]] = {}
        self._again: collections.deque[list[Pending]] = collections.deque()
        self.sent = 0
        self.events_sent = 0
        self.bytes_sent = 0
        self.refused = 0

    def __len__(self) -> int:
        return len(self._inflight)

    def room(self) -> int:
        return max(0, self.max_inflight - len(self._inflight))

    def holds(self) -> list[int]:
        """Seqs in flight in batches or waiting to be sent again: not to be read as pending."""
        return [p.seq for group in (*self._inflight.values(), *self._again) for p in group]

    def next_again(self) -> list[Pending] | None:
        return self._again.popleft() if self._again else None

    def published(self, mid: int, group: list[Pending], nbytes: int) -> None:
        self._inflight[mid] = group
        self.sent += 1
        self.events_sent += len(group)
        self.bytes_sent += nbytes

    def owns(self, mid: int) -> bool:
        return mid in self._inflight

    def acked(self, mid: int, code: int) -> list[Pending]:
        """The batch's events if the broker took it; else [] and its halves wait to go again."""
        group = self._inflight.pop(mid)
        if code < 0x80:
            return group
        self.refused += 1
        half = len(group) // 2
        self._again.extend([group[:half], group[half:]])
        return []

    def lost(self) -> None:
        """The connection is gone: the outbox sends these again, refused or not."""
        self._inflight.clear()
        self._again.clear()

    def status(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "events": self.events_sent,
            "bytes": self.bytes_sent,
            "refused": self.refused,
            "inflight": len(self._inflight),
        }
