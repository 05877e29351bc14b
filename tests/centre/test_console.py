"""The console as a process against a private Mosquitto: a real gateway's events arrive once each,
a gap left while the console was down is filled by replay, and workers share the stations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.conftest import STATION, GatewayProcess, station_config, wait_until


def test_a_gateway_reaches_the_console_and_a_gap_is_filled_by_replay(
    tmp_path: Path, broker, gateways, console_factory
) -> None:
    # Without a broker session (tests/centre/test_unheard.py has one), a restart leaves a gap.
    console = console_factory(broker.port)
    console.config.write_text(console.config.read_text().replace("[broker]", "[broker]\nsession_expiry_s = 0"))
    console.start()
    gw = GatewayProcess(station_config(tmp_path, broker.port, rate=20)).start()
    gateways.append(gw)
    wait_until(lambda: (console.station(STATION) or {}).get("state") == "online", 15, "the station online")
    wait_until(lambda: console.station(STATION)["seq"]["floor"] >= 20, 20, "20 events at the console")

    # The console is down while the station goes on: what it missed is a gap when it is back.
    assert console.stop() == 0
    before = gw.status()["last_seq"]
    wait_until(lambda: gw.status()["last_seq"] >= before + 30, 20, "30 events the console never saw")
    console.start()
    wait_until(lambda: console.station(STATION)["seq"]["replayed"] > 0, 20, "a replay to bring back the gap")
    wait_until(lambda: console.station(STATION)["seq"]["floor"] >= before + 30, 20, "the gap closed")

    final = gw.stop_and_drain()
    last = final["last_seq"]
    wait_until(lambda: console.station(STATION)["seq"]["floor"] == last, 20, f"every seq up to {last}")
    detail = console.station(STATION)
    assert detail["seq"]["missing_count"] == 0 and detail["seq"]["lost"] == 0
    assert detail["state"] == "offline" and detail["cause"] == "shutdown", detail["outages"]
    assert console.stop() == 0
    with sqlite3.connect(console.directory / "centre.db") as db:
        seqs = [r[0] for r in db.execute("SELECT seq FROM events WHERE station = ? ORDER BY seq", (STATION,))]
    assert seqs == list(range(1, last + 1)), "each event stored exactly once"


def test_two_workers_share_the_stations_and_store_each_event_once(broker, console_factory, fleet_factory) -> None:
    console = console_factory(broker.port, extra="").start()
    assert console.stop() == 0
    console.config.write_text(console.config.read_text().replace("[ingest]", "[ingest]\nworkers = 2"))
    console.start()
    ids = [f"st-{n:02d}" for n in range(20)]
    fleet = fleet_factory(broker.port, ids, rate=5.0, telemetry_s=1.0)
    wait_until(lambda: console.get("/api/summary")["totals"].get("online") == 20, 10, "20 stations online")
    wait_until(lambda: fleet.sent >= 400, 20, "400 events sent")
    fleet.stop()
    sent = {sid: st.seq for sid, st in fleet.stations.items()}
    wait_until(
        lambda: all(console.station(sid)["seq"]["floor"] == seq for sid, seq in sent.items()), 20, "every seq stored"
    )
    metrics = console.get("/api/metrics")["ingest"]
    assert all(n > 50 for n in metrics["per_worker"][1:]), f"the broker gave both workers a share: {metrics}"
    assert metrics["stored"] == sum(sent.values())
    assert console.get("/api/summary")["totals"]["offline"] == 20
