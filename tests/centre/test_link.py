"""Batches end to end: a station's backlog drained in compressed batches to the real console
(`yimen centre`), through a kill -9 mid-batch and a broker restart, under MQTT 5 and 3.1.1,
a batch the broker refuses split until exactly the refused events are parked, and hostile
batches the console refuses."""

from __future__ import annotations

import sqlite3
import threading
import zlib
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.clock import ClockSource
from edge.config import ClockConfig
from edge.events import Clock, Event, NewEvent, Priority
from edge.outbox import Outbox
from mqtt import batch, topics
from mqtt.broker import Mosquitto
from tests.conftest import COUNTY, STATION, GatewayProcess, station_config, wait_until
from tests.support.shaped import ShapedRelay

pytestmark = pytest.mark.slow


def prefill(storage: Path, kinds: list[str]) -> dict[int, str]:
    """The backlog a station piles up while its line is down, appended by four producers;
    returns each seq's kind."""
    box = Outbox(storage / "outbox.db", STATION, clock=ClockSource(ClockConfig(sync="assume")), max_bytes=64 << 20)
    prio = {"rating": Priority.CRITICAL, "telemetry": Priority.BULK}

    seqs: dict[int, str] = {}

    def produce(part: list[str]) -> None:
        for i, kind in enumerate(part):
            data = {"n": i, "ticket": f"A{i % 1000:03d}"}
            if kind == "rating":  # what the county's figures read from a rating
                data |= {"verdict": "good" if i % 5 else "bad", "window": 1, "clerk": "c01"}
            event = box.append(NewEvent(kind, prio.get(kind, Priority.NORMAL), data))
            seqs[event.seq] = kind

    threads = [threading.Thread(target=produce, args=(kinds[k::4],)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    box.close()
    return seqs


def stored_seqs(console) -> list[int]:
    with sqlite3.connect(console.directory / "centre.db") as db:
        return [r[0] for r in db.execute("SELECT seq FROM events WHERE station = ? ORDER BY seq", (STATION,))]


def stored(console) -> int:
    """Events the console has stored (the floor stays low while higher priorities go first)."""
    return console.get("/api/metrics")["ingest"]["stored"]


def floor(console) -> int:
    return (console.station(STATION) or {"seq": {"floor": 0}})["seq"]["floor"]


def test_backlog_in_batches_through_kill_minus_nine_and_broker_restart(tmp_path: Path, console_factory) -> None:
    storage = tmp_path / "state"
    n = 6000
    prefill(storage, ["queue", "queue", "rating", "telemetry"] * (n // 4))
    with Mosquitto(tmp_path / "broker") as broker:
        console = console_factory(broker.port).start()
        line = ShapedRelay(broker.port, kbps=512, delay_s=0.03)  # slow enough to stop it mid-drain
        config = station_config(tmp_path, line.port, storage=storage)
        gw = GatewayProcess(config).start()
        try:
            wait_until(lambda: stored(console) > 1000, 30, "a first part of the backlog")
            gw.kill()  # SIGKILL: batches in flight, their delivery marks perhaps unwritten
            assert stored(console) < n, "the backlog drained before the kill: the test proves nothing"
            gw = GatewayProcess(config).start()
            wait_until(lambda: stored(console) > 3000, 30, "more of the backlog after the restart")
            broker.stop()  # the county's broker goes away mid-drain, and comes back
            broker.start()
            final = gw.stop_and_drain()
            last = final["last_seq"]
            wait_until(lambda: floor(console) == last, 60, f"every seq up to {last} at the console")
            metrics = console.get("/api/metrics")["ingest"]
        finally:
            gw.kill()
            line.close()
        assert console.stop() == 0
    assert stored_seqs(console) == list(range(1, last + 1)), "each event stored exactly once"
    assert metrics["event_batches"] > 10 and metrics["batch_events"] >= n // 2, metrics
    assert metrics["batch_refused"] == 0 and metrics["batch_events_refused"] == 0


def test_refused_kind_in_a_backlog_parks_exactly_those_events(tmp_path: Path, gateways, console_factory) -> None:
    acl = tmp_path / "acl"
    acl.write_text(f"topic readwrite yimen/#\ntopic deny yimen/v1/{COUNTY}/{STATION}/events/clerk\n")
    storage = tmp_path / "state"
    kinds = ["queue"] * 400
    for at in (7, 8, 150, 151, 152, 399):
        kinds[at] = "clerk"  # refused by the broker's ACL; they ride in batches of their own kind
    clerk = {seq for seq, kind in prefill(storage, kinds).items() if kind == "clerk"}
    with Mosquitto(tmp_path / "broker", extra=f"acl_file {acl}") as broker:
        console = console_factory(broker.port).start()
        gw = GatewayProcess(station_config(tmp_path, broker.port, storage=storage)).start()
        gateways.append(gw)
        wait_until(lambda: gw.status()["parked"]["count"] == 6, 20, "the six refused events parked")
        parked = {e["seq"] for e in gw.status()["parked"]["events"]}
        assert parked == clerk, "exactly the refused events are parked"
        last = gw.stop_and_drain()["last_seq"]
        wait_until(lambda: len(stored_seqs(console)) == last - 6, 30, "everything else at the console")
        assert set(stored_seqs(console)) == set(range(1, last + 1)) - clerk
        metrics = console.get("/api/metrics")["ingest"]
        assert metrics["event_batches"] > 0, metrics
        with sqlite3.connect(console.directory / "centre.db") as db:
            reports = [r[0] for r in db.execute("SELECT payload FROM events WHERE kind = 'parked'")]
        assert len(reports) == 6 and all('"kind":"clerk"' in r and "0x87" in r for r in reports)
        assert console.stop() == 0


def test_backlog_in_batches_over_mqtt_311(tmp_path: Path, broker, gateways, console_factory) -> None:
    storage = tmp_path / "state"
    prefill(storage, ["queue", "rating"] * 1000)
    console = console_factory(broker.port, protocol="3.1.1").start()
    config = station_config(tmp_path, broker.port, storage=storage, broker_extra='protocol = "3.1.1"')
    gw = GatewayProcess(config).start()
    gateways.append(gw)
    last = gw.stop_and_drain()["last_seq"]
    wait_until(lambda: floor(console) == last, 30, f"every seq up to {last} over MQTT 3.1.1")
    assert console.get("/api/metrics")["ingest"]["event_batches"] > 0
    assert console.stop() == 0
    assert stored_seqs(console) == list(range(1, last + 1))


def test_hostile_batches_at_the_console(tmp_path: Path, broker, console_factory) -> None:
    """The topic is the truth: a batch on station A's topic may carry only A's events of the
    topic's kind; the others are refused and counted, the rest stored. A zlib bomb, and a batch
    that lies about its count, are refused whole."""
    console = console_factory(broker.port).start()

    def envelope(station: str, seq: int, kind: str = "queue") -> bytes:
        event = Event(station, seq, kind, "2026-11-29T09:00:00.000+08:00", Clock.SYNCED, Priority.NORMAL, {"n": seq})
        return event.to_bytes()

    good = [envelope("st-a", 1), envelope("st-a", 2)]
    smuggled = [envelope("st-b", 1), envelope("st-a", 3, kind="rating")]  # another station; another kind
    bomb = batch.MAGIC + bytes((batch.VERSION, batch.CODEC_ZLIB)) + b"\x01\xff\xff\x3f"
    bomb += zlib.compress(b"{" * (64 << 20), 9)  # declares 1 MiB - 1, inflates to 64 MiB
    liar = bytearray(batch.pack([envelope("st-a", 4)]))
    liar[4] = 5  # says five events, holds one
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="hostile-station", protocol=paho.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        topic = topics.event_topic(COUNTY, "st-a", "queue")
        for payload in (batch.pack([*good, *smuggled]), bomb, bytes(liar)):
            client.publish(topic, payload, qos=1).wait_for_publish(5)
        wait_until(lambda: console.get("/api/metrics")["ingest"]["batch_refused"] == 2, 15, "the bad batches refused")
        metrics = console.get("/api/metrics")["ingest"]
    finally:
        client.disconnect()
        client.loop_stop()
    assert metrics["event_batches"] == 1 and metrics["batch_events"] == 2 and metrics["batch_events_refused"] == 2
    assert console.stop() == 0
    with sqlite3.connect(console.directory / "centre.db") as db:
        stored_ids = {r[0] for r in db.execute("SELECT id FROM events")}
    assert stored_ids == {"st-a-1", "st-a-2"}
