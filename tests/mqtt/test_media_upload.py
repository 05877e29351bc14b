"""Chunked media upload against a real Mosquitto: what the county puts back together, in what
order, at what rate, and what is sent again after a broker restart or a gateway restart.

The station runs in this process (real outbox, media store, uploader and uplink on SQLite
files in the test's directory); the county is a separate MQTT connection that records every
message it receives.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.clock import ClockSource
from edge.config import ClockConfig
from edge.events import Event, NewEvent, Priority
from edge.media import MediaStore, MediaType
from edge.outbox import Outbox, Pending
from mqtt import topics
from mqtt.batch import is_batch, unpack
from mqtt.broker import Mosquitto
from mqtt.config import BrokerConfig, MediaConfig
from mqtt.media_upload import MAX_INFLIGHT, PROGRESS_DB, Pacer, publish_size
from mqtt.media_upload import MediaUploader as Uploader
from mqtt.uplink import Uplink
from tests.conftest import COUNTY, STATION, wait_until
from tests.support.media_county import MediaCounty
from tests.support.proxy import Proxy

T0 = 1795595400.0


class Station:
    """Outbox, media store, uploader and uplink in this process, on `storage`, to a broker port."""

    def __init__(self, storage: Path, port: int, *, kbps: float, chunk_kb: int) -> None:
        self.storage = storage
        self.outbox = Outbox(
            storage / "outbox.db", STATION, clock=ClockSource(ClockConfig(sync="assume")), max_bytes=64 << 20
        )
        self.media = MediaStore(storage, self.outbox.append)
        self.uploader = Uploader(MediaConfig(upload_kbps=kbps, chunk_kb=chunk_kb), storage, COUNTY, STATION)
        broker = BrokerConfig(port=port, keepalive_s=4, reconnect_min_s=0.1, reconnect_max_s=0.5)
        self.uplink = Uplink(broker, COUNTY, STATION, self.outbox, media=self.uploader)

    def start(self) -> Station:
        self.uplink.start()
        return self

    def stop(self) -> None:
        self.uplink.stop()
        self.outbox.close()
        self.uploader.close()

    def put(self, nbytes: int, *, seed: int, caused_by: str | None = None) -> Event:
        """A media item of `nbytes` random bytes (incompressible, like JPEG)."""
        data = random.Random(seed).randbytes(nbytes)
        kind = MediaType.CLIP if caused_by else MediaType.SNAPSHOT
        return self.media.put(kind, 1, data, started=T0 + seed, ended=T0 + seed, caused_by=caused_by)

    def progress(self) -> tuple[set[int], bool]:
        """(chunks acknowledged so far, upload finished) for the one job, read from the files."""
        conn = sqlite3.connect(f"file:{self.storage / PROGRESS_DB}?mode=ro", uri=True)
        try:
            acked = {r[0] for r in conn.execute("SELECT part FROM acked WHERE part >= 0")}
            done = conn.execute("SELECT count(*) FROM jobs WHERE done IS NOT NULL").fetchone()[0]
        finally:
            conn.close()
        return acked, done > 0


@pytest.fixture
def county(broker: Mosquitto) -> Iterator[MediaCounty]:
    watcher = MediaCounty(broker.port, COUNTY).start()
    yield watcher
    watcher.stop()


def file_bytes(station: Station, event: Event) -> bytes:
    return (station.storage / event.data["path"]).read_bytes()


# ----- pure parts --------------------------------------------------------------------------------


def test_media_topics_round_trip() -> None:
    mid = "evidence-w12-20261125-083000-123-0a1b2c3d-2"
    chunk = topics.parse(topics.media_topic(COUNTY, STATION, mid, 7))
    assert (chunk.channel, chunk.kind, chunk.part) == ("media", mid, "7")
    assert topics.parse(topics.media_topic(COUNTY, STATION, mid, topics.MANIFEST)).part == "manifest"
    assert topics.parse(topics.live_topic(COUNTY, STATION, 3)).kind == "3"
    for bad in ("Has-Caps", "x" * 65):
        with pytest.raises(ValueError, match="media id"):
            topics.media_topic(COUNTY, STATION, bad, 0)
    with pytest.raises(ValueError, match="chunk number"):
        topics.media_topic(COUNTY, STATION, mid, -1)


def test_pacer_never_exceeds_its_rate_by_more_than_one_message() -> None:
    clock = [0.0]
    pacer = Pacer(10_000, now=lambda: clock[0])
    sent = 0
    rng = random.Random(1)
    while clock[0] < 60:
        if pacer.wait_s() == 0:
            size = rng.randint(100, 5000)
            pacer.spend(size)
            sent += size
            assert sent <= 10_000 * clock[0] + 5000
        clock[0] += rng.uniform(0.001, 0.02)
    assert sent >= 10_000 * 60 * 0.9  # and it uses what it may, polled every 10 ms on average


def test_publish_size_counts_the_mqtt_header() -> None:
    assert publish_size("a/b", 10, qos=1, v5=True) == 1 + 1 + (2 + 3 + 2 + 1 + 10)
    assert publish_size("a/b", 20_000, qos=1, v5=False) == 1 + 3 + (2 + 3 + 2 + 20_000)


def test_bad_rating_clips_go_before_snapshots(tmp_path: Path) -> None:
    station = Station(tmp_path / "state", 1, kbps=1000, chunk_kb=4)  # never started: no broker needed
    try:
        snap = station.put(10_000, seed=1)
        clip = station.put(10_000, seed=2, caused_by=f"{STATION}-1")
        station.uploader.delivered([Pending(e.seq, e.kind, e.priority, e.to_bytes()) for e in (snap, clip)])
        first = station.uploader.take(10)
        assert [m.key for m in first] == [(clip.data["media_id"], -1)]  # one message, then the pace
        assert first[0].topic == topics.media_topic(COUNTY, STATION, clip.data["media_id"], topics.MANIFEST)
    finally:
        station.outbox.close()
        station.uploader.close()


# ----- against the broker ------------------------------------------------------------------------


def test_files_arrive_byte_identical_after_every_event(tmp_path: Path, broker: Mosquitto, county) -> None:
    station = Station(tmp_path / "state", broker.port, kbps=2000, chunk_kb=8)
    try:
        snap = station.put(50_000, seed=1)
        station.outbox.append(NewEvent("rating", Priority.CRITICAL, {"verdict": "bad", "window": 1}))
        clip = station.put(130_000, seed=2, caused_by=f"{STATION}-2")
        empty = station.media.put(MediaType.SNAPSHOT, 2, b"", started=T0, ended=T0)
        for i in range(40):
            prio = Priority.CRITICAL if i % 2 else Priority.NORMAL
            station.outbox.append(NewEvent("rating" if i % 2 else "queue", prio, {"i": i}))
        station.start()
        for event in (snap, clip, empty):
            wait_until(lambda e=event: county.file(e.data["media_id"]) is not None, 20, f"{event.data['media_id']}")
            data = county.file(event.data["media_id"])
            assert data == file_bytes(station, event)
            assert hashlib.sha256(data).hexdigest() == event.data["sha256"]
            manifest = county.manifest(event.data["media_id"])
            assert manifest["event"] == event.id and manifest["size"] == event.data["size"]
            assert manifest["chunk_size"] == 8192 and manifest["chunks"] == -(-event.data["size"] // 8192)
        assert county.manifest(clip.data["media_id"])["caused_by"] == f"{STATION}-2"

        order = [r.topic.channel for r in county.received() if r.topic.channel in ("events", "media")]
        first_media = order.index("media")
        assert "events" not in order[first_media:], "a media chunk went out before an event that was waiting"
        carried = [len(unpack(r.payload)) if is_batch(r.payload) else 1 for r in county.received("events")]
        assert sum(carried) == 44 and len(carried) < 44, "the 44 waiting events go in batches"
        ids = {e.data["media_id"] for e in (snap, clip, empty)}
        wait_until(lambda: station.uploader.uploaded() == ids, 5, "the station to count them uploaded")
    finally:
        station.stop()


def test_upload_keeps_to_the_bandwidth_cap(tmp_path: Path, broker: Mosquitto, county) -> None:
    kbps = 256
    station = Station(tmp_path / "state", broker.port, kbps=kbps, chunk_kb=4).start()
    try:
        event = station.put(100_000, seed=3)
        wait_until(lambda: county.file(event.data["media_id"]) is not None, 20, "the file")
        media = county.received("media")
        # The pace holds each message back until the one before is paid for: all but the last
        # message's bytes, over the time from the first to the last.
        rate = sum(r.wire for r in media[:-1]) / (media[-1].at - media[0].at)
        cap = kbps * 1000 / 8
        assert 0.6 * cap < rate < 1.15 * cap, f"{rate * 8 / 1000:.0f} kbit/s measured for a {kbps} kbit/s cap"
    finally:
        station.stop()


@pytest.mark.slow
def test_broker_restart_mid_upload_resends_no_acknowledged_chunk(tmp_path: Path) -> None:
    with Mosquitto(tmp_path / "broker") as broker:
        county = MediaCounty(broker.port, COUNTY).start()
        link = Proxy(broker.port)  # lets the county back in before the station after the restart
        station = Station(tmp_path / "state", link.port, kbps=320, chunk_kb=4).start()
        try:
            event = station.put(160_000, seed=4)  # 40 chunks, about 4 s at this cap
            wait_until(lambda: len(station.progress()[0]) >= 12, 20, "a third of the chunks acknowledged")
            link.set_mode(Proxy.REFUSE)
            time.sleep(0.3)  # what the broker took reaches the county before it stops
            acked_before = station.progress()[0]
            broker.stop()
            assert not station.progress()[1], "the upload finished before the restart: make the file bigger"
            subs = county.subscriptions
            broker.start()
            wait_until(lambda: county.subscriptions > subs, 15, "the county to subscribe again")
            link.set_mode(Proxy.PASS)
            media_id = event.data["media_id"]
            wait_until(lambda: county.file(media_id) is not None, 30, "the whole file at the county")
            assert county.file(media_id) == file_bytes(station, event)
            copies = county.chunk_copies(media_id)
            assert all(len(copies[n]) == 1 for n in acked_before), "an acknowledged chunk was sent again"
            resent = sum(len(c) - 1 for c in copies.values())
            assert resent <= MAX_INFLIGHT, f"{resent} chunks sent twice: only those in flight may be"
        finally:
            station.stop()
            link.close()
            county.stop()


def test_gateway_restart_resumes_where_the_broker_left_off(tmp_path: Path, broker: Mosquitto, county) -> None:
    storage = tmp_path / "state"
    station = Station(storage, broker.port, kbps=320, chunk_kb=4).start()
    event = station.put(120_000, seed=5)
    wait_until(lambda: len(station.progress()[0]) >= 8, 20, "some chunks acknowledged")
    station.stop()
    acked_before = station.progress()[0]
    assert 8 <= len(acked_before) < 30
    again = Station(storage, broker.port, kbps=2000, chunk_kb=16).start()  # settings changed meanwhile
    try:
        media_id = event.data["media_id"]
        wait_until(lambda: county.file(media_id) is not None, 20, "the whole file at the county")
        assert county.file(media_id) == file_bytes(again, event)
        copies = county.chunk_copies(media_id)
        assert all(len(copies[n]) == 1 for n in acked_before), "an acknowledged chunk was sent again"
        assert county.manifest(media_id)["chunk_size"] == 4096, "a job keeps the chunk size it started with"
    finally:
        again.stop()
