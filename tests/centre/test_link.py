"""Batches end to end: a station's backlog drained in compressed batches to the real console
(`yimen centre`), through a kill -9 mid-batch and a broker restart, under MQTT 5 and 3.1.1,
and a batch the broker refuses split until exactly the refused events are parked."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from edge.clock import ClockSource
from edge.config import ClockConfig
from edge.events import NewEvent, Priority
from edge.outbox import Outbox
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
            event = box.append(NewEvent(kind, prio.get(kind, Priority.NORMAL), {"n": i, "ticket": f"A{i % 1000:03d}"}))
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
