"""One bad station cannot hurt the others: each hostile input of issue 11 as a test.

Unit tests show the numbers stay bounded (ranges, never sets); the process test sends every
hostile message at a real console through a real broker, next to an honest simulated station,
and checks that the page keeps answering within 2 s, the honest station's events keep being
stored, and the bad station is marked with what it sent."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import datetime

import paho.mqtt.client as paho
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from centre import bounds
from centre.live import MAX_STREAMS
from centre.tracker import MAX_RANGES, SeqTracker, TooFragmented
from edge.events import Event, Priority, format_ts
from mqtt import topics
from tests.conftest import COUNTY, wait_until

EVIL = "st-evil"


def envelope(station: str, seq: int, kind: str = "queue", data: dict | None = None) -> bytes:
    now = format_ts(datetime.now().astimezone())
    return Event(station, seq, kind, now, "synced", Priority.NORMAL, data or {}).to_bytes()


def test_hostile_seqs_cost_one_range_each() -> None:
    t = SeqTracker()
    t.add(1, 0.0)
    t.add(10**9, 0.0)
    assert t.missing() == [(2, 10**9 - 1)] and t.missing_count() == 10**9 - 2
    assert t.lose(1, 10**10, 0.0) == 10**10 - 2  # closes it at once, never walks it
    assert t.floor == 10**10 and t.held == [] and t.lost == 10**10 - 2


def test_a_station_cannot_fragment_its_seqs_without_bound() -> None:
    t = SeqTracker()
    for n in range(MAX_RANGES):
        t.add(3 + 2 * n, 0.0)
    assert len(t.held) == MAX_RANGES and t.would_fragment(10**6)
    try:
        t.add(10**6, 0.0)
    except TooFragmented:
        pass
    else:
        raise AssertionError("a new range past MAX_RANGES must be refused")
    assert not t.would_fragment(4) and not t.would_fragment(2)  # filling a gap is always fine


def test_the_topic_is_the_truth() -> None:
    topic = topics.parse(topics.event_topic(COUNTY, EVIL, "queue"))
    for payload, reason in [
        (envelope("st-good", 5), "station-mismatch"),
        (envelope(EVIL, 10**9), "seq-jump"),
        (envelope(EVIL, 5, kind="rating"), "kind-mismatch"),
        (b"x" * (bounds.MAX_EVENT_BYTES + 1), "too-large"),
        (b"{", "malformed"),
    ]:
        try:
            bounds.check_event(topic, payload, top=0)
        except bounds.Refused as exc:
            assert exc.reason == reason
        else:
            raise AssertionError(f"{reason} was accepted")
    assert bounds.check_event(topic, envelope(EVIL, 5), top=0).seq == 5


def test_loss_ranges_are_cut_to_what_the_report_may_say() -> None:
    def report(ranges: object, seq: int = 50) -> tuple[list[tuple[int, int]], str | None]:
        return bounds.loss_ranges(Event(EVIL, seq, "eviction", "t", "synced", Priority.BULK, {"evicted": ranges}))

    assert report({"bulk": [[3, 9]]}) == ([(3, 9)], None)
    ranges, problem = report({"bulk": [[1, 10**10]]})
    assert ranges == [(1, 49)] and "past the report's own seq" in (problem or "")
    ranges, problem = report({"bulk": [[n, n] for n in range(1, 5000)]}, seq=10_000)
    assert len(ranges) == bounds.MAX_LOSS_RANGES and problem
    assert report({"bulk": [["a", 2], [5, 1], 7]})[0] == []


def test_a_hostile_station_does_not_hurt_the_others(broker, console_factory, fleet_factory) -> None:
    console = console_factory(broker.port)
    text = console.config.read_text().replace("[ingest]", "[ingest]\nstation_rate = 100\nstation_burst = 300")
    console.config.write_text(text)
    console.start()
    fleet = fleet_factory(broker.port, ["st-good"], rate=5.0, telemetry_s=1.0)
    good = fleet.station("st-good")
    wait_until(lambda: (console.station("st-good") or {}).get("seq", {}).get("floor", 0) >= 3, 15, "honest events")

    evil = paho.Client(CallbackAPIVersion.VERSION2, client_id="evil", protocol=paho.MQTTv5)
    evil.connect("127.0.0.1", broker.port)
    evil.loop_start()
    slow: list[float] = []
    stop = threading.Event()

    def watch_page() -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            console.get("/api/summary")
            console.get("/api/station/st-good")
            slow.append(time.monotonic() - t0)
            time.sleep(0.1)

    watcher = threading.Thread(target=watch_page, daemon=True)
    watcher.start()
    try:

        def send(payload: bytes, kind: str = "queue") -> None:
            evil.publish(topics.event_topic(COUNTY, EVIL, kind), payload, qos=1).wait_for_publish(5)

        send(envelope(EVIL, 1))
        send(envelope("st-good", 10**6))  # on the evil topic, claiming to be another station
        send(envelope(EVIL, 10**9))
        send(envelope(EVIL, 2, "eviction", {"evicted": {"bulk": [[1, 10**10]]}}), "eviction")
        wait_until(lambda: "loss-ranges" in console.station(EVIL)["guard"]["hostile"], 10, "the eviction marked")
        # Media: a manifest claiming 10^6 chunks, and chunks out of range of an honest-looking one.
        claim = {"media_id": "clip-x", "event": f"{EVIL}-3", "type": "clip", "window": 1, "caused_by": None,
                 "size": 3000, "sha256": "0" * 64, "chunk_size": 1024, "chunks": 10**6}  # fmt: skip
        media = lambda mid, part, body: evil.publish(topics.media_topic(COUNTY, EVIL, mid, part), body, qos=1)  # noqa: E731
        media("clip-x", topics.MANIFEST, json.dumps(claim)).wait_for_publish(5)
        media("clip-y", topics.MANIFEST, json.dumps({**claim, "media_id": "clip-y", "chunks": 3})).wait_for_publish(5)
        for part in (3, 10**6, 10**12):
            media("clip-y", part, b"z" * 1024).wait_for_publish(5)
        counts = lambda: console.get(f"/api/station/{EVIL}/media")["counts"]  # noqa: E731
        wait_until(lambda: counts().get("refused:chunk-range") == 3, 10, "chunks out of range refused")
        assert counts()["refused:bad-manifest"] == 1 and counts()["hostile:bad-manifest"] == 1
        floor_before = console.station("st-good")["seq"]["floor"]
        # A flood: 5,000 events as fast as the broker takes them.
        for seq in range(3, 5003):
            evil.publish(topics.event_topic(COUNTY, EVIL, "queue"), envelope(EVIL, seq), qos=0)
        wait_until(lambda: console.station(EVIL)["guard"]["rate_limited"] > 1000, 30, "the flood limited")
        wait_until(lambda: console.station("st-good")["seq"]["floor"] >= floor_before + 10, 20, "honest events go on")
    finally:
        stop.set()
        watcher.join(10)
        evil.loop_stop()
        evil.disconnect()
    detail = console.station(EVIL)
    guard = detail["guard"]
    assert guard["refused"]["station-mismatch"] == 1 and guard["refused"]["seq-jump"] == 1, guard
    assert set(guard["hostile"]) >= {"station-mismatch", "seq-jump", "loss-ranges"}, guard
    assert detail["seq"]["floor"] < 5003  # the eviction was cut to below its own seq, not to 10^10
    assert next(s for s in console.get("/api/summary")["stations"] if s["id"] == EVIL)["hostile"] is True
    assert console.station("st-good")["guard"] == {"refused": {}, "hostile": {}, "rate_limited": 0}
    assert fleet.call(lambda: good.seq) > 0
    assert max(slow) < 2.0, f"the page took {max(slow):.2f} s at worst"
    assert psutil.Process(console.proc.pid).memory_info().rss < 200 * 2**20
    # Nothing of the bad station's was stored under another station's name.
    rows = console.get("/api/metrics")["ingest"]
    assert rows["refused"] >= 2 and rows["rate_limited"] > 1000


def test_a_status_is_bounded_too() -> None:
    assert bounds.check_status(b'{"state":"online","session":7,"version":"0.1.0"}')["session"] == 7
    for payload, reason in [
        (b'{"state":"online","session":1e300}', "bad-status"),
        (b'{"state":"online","session":-1}', "bad-status"),
        (b'{"state":"online","session":1,"version":"' + b"v" * 100 + b'"}', "bad-status"),
        (b"{" + b" " * 5000 + b"}", "too-large"),
        (b'{"state":"sideways","session":1}', "malformed"),
    ]:
        try:
            bounds.check_status(payload)
        except bounds.Refused as exc:
            assert exc.reason == reason, (payload[:60], exc)
        else:
            raise AssertionError(f"{payload[:60]!r} was accepted")


def test_live_view_streams_are_bounded(broker, console_factory, fleet_factory) -> None:
    """Viewers of live view at once are bounded per console process (each holds a connection
    and a loop on the console's event loop): past MAX_STREAMS, a stream ends at once, saying
    why, and the ones open go on receiving frames."""
    console = console_factory(broker.port, extra="live_view_s = 20").start()
    fleet = fleet_factory(broker.port, ["st-l"], rate=1.0, telemetry_s=5.0)
    assert console.post("/api/station/st-l/live/1/start")["error"] is None  # logged in as the page is
    cookie = "; ".join(f"{c.name}={c.value}" for c in console.http.cookies).encode()
    streams = []

    def open_stream() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", console.web_port), timeout=10)
        sock.sendall(b"GET /api/station/st-l/live/1/stream HTTP/1.1\r\nHost: x\r\nCookie: " + cookie + b"\r\n\r\n")
        return sock

    def read_until(sock: socket.socket, marker: bytes) -> bytes:
        data = b""
        while marker not in data:
            part = sock.recv(65536)
            assert part, f"closed before {marker!r}: {data[:200]!r}"
            data += part
        return data

    try:
        for _ in range(MAX_STREAMS):
            streams.append(open_stream())
            read_until(streams[-1], b"event: frame")
        extra = open_stream()
        assert b'"error": "too many viewers' in read_until(extra, b"event: end")
        extra.close()
        assert b"event: frame" in read_until(streams[0], b"event: frame")
    finally:
        for sock in streams:
            sock.close()
    assert fleet.call(lambda: fleet.station("st-l").live_requests) == 1


def test_lose_missing_closes_only_the_gaps_in_a_range() -> None:
    t = SeqTracker()
    for seq in (1, 2, 5, 9, 10**9):
        t.add(seq, 0.0)
    assert t.lose_missing(2, 8, 0.0) == [(3, 4), (6, 8)]
    assert t.lost == 5 and t.floor == 9
    # One call over a huge span costs the held ranges in it, not the span.
    assert t.lose_missing(1, 10**10, 0.0) == [(10, 10**9 - 1), (10**9 + 1, 10**10)]
    assert t.held == [] and t.floor == 10**10
