"""The batch format (mqtt/batch.py) as pure bytes: round trips, and the attacks a county must
survive from a hostile station (bombs, lies about counts and lengths, cut and mangled bytes)."""

from __future__ import annotations

import random
import tracemalloc
import zlib

import pytest

from edge.events import Priority
from edge.outbox import Pending
from mqtt import batch
from mqtt.batch import BatchError, Batches, BatchLimits, groups, pack, unpack


def payloads(n: int) -> list[bytes]:
    return [
        f'{{"id":"hy-1-{i}","station":"hy-1","seq":{i},"kind":"rating","data":{{"n":"{"é" * (i % 7)}"}}}}'.encode()
        for i in range(1, n + 1)
    ]


@pytest.mark.parametrize("codec", [batch.CODEC_ZLIB, batch.CODEC_ZLIB_DICT])
def test_round_trip_is_byte_identical(codec: int) -> None:
    events = [*payloads(200), b"{}", b"{" + b"x" * 70_000 + b"}"]  # lengths of 1, 2 and 3 varint bytes
    packed = pack(events, codec=codec)
    assert batch.is_batch(packed) and not batch.is_batch(events[0])
    assert unpack(packed) == events


def test_dictionary_pays_for_small_batches() -> None:
    events = payloads(10)
    assert len(pack(events, codec=batch.CODEC_ZLIB_DICT)) < len(pack(events, codec=batch.CODEC_ZLIB))


def header(count: int, size: int, codec: int = batch.CODEC_ZLIB) -> bytes:
    return batch.MAGIC + bytes((batch.VERSION, codec)) + batch._uvarint(count) + batch._uvarint(size)


def test_a_zlib_bomb_inflates_no_further_than_declared() -> None:
    bomb = zlib.compress(b"\x00" * (200 << 20), 9)  # 200 MB of zeros in about 200 KB
    tracemalloc.start()
    try:
        with pytest.raises(BatchError, match="not the declared"):
            unpack(header(1, 1000) + bomb)
        with pytest.raises(BatchError, match="at most"):
            unpack(header(1, 500 << 20) + bomb)  # declaring the truth is refused before inflating
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"unpacking a bomb allocated {peak} bytes"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"YB", "no YB header"),
        (b'{"id":1}', "no YB header"),
        (b"YB\x02\x01\x01\x01", "version 2"),
        (b"YB\x01\x09\x01\x01", "codec 9"),
        (header(0, 0), "batch of 0 events"),
        (header(1001, 10), "batch of 1001 events"),
        (header(1, (1 << 20) + 1), "at most"),
        (b"YB\x01\x01" + b"\xff" * 6, "more than 5 bytes"),
        (b"YB\x01\x01\x01", "cut short"),
        (header(1, 5) + b"\x00\x01", "does not inflate"),
    ],
)
def test_malformed_headers_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(BatchError, match=why):
        unpack(data)


def test_lies_inside_the_body_are_refused() -> None:
    def body(raw: bytes, count: int) -> bytes:
        return header(count, len(raw)) + zlib.compress(raw)

    with pytest.raises(BatchError, match="runs past its end"):
        unpack(body(b"\x7f{}", 1))  # says 127 bytes, holds 2
    with pytest.raises(BatchError, match="left over"):
        unpack(body(b"\x02{}\x02{}", 1))  # two events where the header says one
    with pytest.raises(BatchError, match="cut short"):
        unpack(body(b"\x02{}", 2))  # one event where the header says two
    with pytest.raises(BatchError, match="after the end"):
        unpack(body(b"\x02{}", 1) + b"junk")


def test_mangled_batches_raise_batch_error_and_nothing_else() -> None:
    good = pack(payloads(30))
    rng = random.Random(11)
    for _ in range(3000):
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cut = bytes(data[: rng.randint(0, len(data))] if rng.random() < 0.3 else data)
        try:
            out = unpack(cut)
        except BatchError:
            continue
        assert 1 <= len(out) <= batch.MAX_EVENTS


def pending(seq: int, kind: str = "rating", size: int = 100) -> Pending:
    return Pending(seq, kind, Priority.CRITICAL, b"{" + b"x" * (size - 2) + b"}")


def test_groups_one_kind_and_one_replay_flag_each_within_limits() -> None:
    items = [pending(i, "rating" if i % 3 else "queue") for i in range(1, 31)]
    made = groups(items, lambda p: p.seq <= 10, BatchLimits(max_events=4, max_body=1000))
    assert [p.seq for g in made for p in g] != [p.seq for p in items]  # regrouped by kind...
    for g in made:
        assert len({(p.kind, p.seq <= 10) for p in g}) == 1 and len(g) <= 4
        assert [p.seq for p in g] == sorted(p.seq for p in g)  # ...each in send order
    assert sorted(p.seq for g in made for p in g) == list(range(1, 31))
    big = groups([pending(i, size=400) for i in range(5)], lambda _p: False, BatchLimits(max_body=1000))
    assert [len(g) for g in big] == [2, 2, 1]


def test_a_refused_batch_is_split_until_the_bad_event_is_alone() -> None:
    """The broker here refuses any message holding seq 13: halving finds it in 2 log2(n) steps."""
    b = Batches(BatchLimits(), max_inflight=64)
    b.published(1, [pending(i) for i in range(1, 33)], 0)
    delivered: list[int] = []
    parked: list[int] = []
    mid = 1
    assert b.acked(1, 0x80) == []
    while (group := b.next_again()) is not None:
        mid += 1
        refused = any(p.seq == 13 for p in group)
        if len(group) == 1:  # the uplink sends a half of one as a single event; refused, it parks
            (parked if refused else delivered).append(group[0].seq)
            continue
        b.published(mid, group, 0)
        delivered += [p.seq for p in b.acked(mid, 0x87 if refused else 0)]
    assert parked == [13]
    assert sorted(delivered) == [s for s in range(1, 33) if s != 13]
    assert b.status()["refused"] == 5 and mid < 2 * 5 + 2
