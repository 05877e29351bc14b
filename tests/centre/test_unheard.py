"""Events the broker acknowledged while no console listened: the console's broker session keeps
them through its restart, and what the broker dropped anyway (0x10 "no matching subscribers")
and the station's disk budget then evicted is a loss the station reports and the console records.
Real gateway and console processes against a private Mosquitto."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from centre.ingest import DELIVERED_EVICTED
from edge.clock import ClockSource
from edge.config import ClockConfig
from edge.events import NewEvent, Priority
from edge.outbox import Outbox
from tests.conftest import STATION, GatewayProcess, station_config, wait_until


def test_events_published_while_the_console_restarts_wait_at_the_broker(
    tmp_path: Path, broker, gateways, console_factory
) -> None:
    console = console_factory(broker.port).start()
    gw = GatewayProcess(station_config(tmp_path, broker.port, rate=20)).start()
    gateways.append(gw)
    wait_until(lambda: (console.station(STATION) or {}).get("seq", {}).get("floor", 0) >= 20, 20, "20 events")
    assert console.stop() == 0
    before = gw.status()["last_seq"]
    wait_until(lambda: gw.status()["last_seq"] >= before + 30, 20, "30 events published while the console is down")
    # The station is gone before the console returns: nothing can answer a replay request, so
    # whatever arrives comes from the console's broker session.
    last = gw.stop_and_drain()["last_seq"]
    console.start()
    wait_until(lambda: console.station(STATION)["seq"]["floor"] == last, 20, f"every seq up to {last}")
    seq = console.station(STATION)["seq"]
    assert seq["missing_count"] == 0 and seq["lost"] == 0 and seq["replayed"] == 0, seq
    assert console.stop() == 0
    with sqlite3.connect(console.directory / "centre.db") as db:
        seqs = [r[0] for r in db.execute("SELECT seq FROM events WHERE station = ? ORDER BY seq", (STATION,))]
    assert seqs == list(range(1, last + 1))


def _append(storage: Path, count: int) -> None:
    """Events the station makes while its gateway is stopped (ratings: ~1.5 KB each)."""
    box = Outbox(storage / "outbox.db", STATION, clock=ClockSource(ClockConfig(sync="assume")), max_bytes=1 << 20)
    for n in range(count):
        box.append(NewEvent("rating", Priority.CRITICAL, {"verdict": "good", "window": 1, "pad": "x" * 1500, "n": n}))
    box.close()


def test_acknowledged_but_unheard_events_evicted_at_the_station_are_losses_at_the_console(
    tmp_path: Path, broker, gateways, console_factory
) -> None:
    storage = tmp_path / "state"
    config = station_config(tmp_path, broker.port, storage=storage)
    config.write_text(config.read_text().replace("max_mb = 64", "max_mb = 1"))
    # No console yet: the broker answers each publish 0x10 and drops it; the station counts them delivered.
    _append(storage, 300)
    gw = GatewayProcess(config).start()
    gateways.append(gw)
    wait_until(lambda: gw.status()["undelivered"] == 0 and gw.status()["last_seq"] >= 300, 30, "300 acknowledged")
    assert gw.stop() == 0
    console = console_factory(broker.port).start()
    # More than the budget holds: the delivered (unheard) events are evicted to make room.
    _append(storage, 350)
    gw = GatewayProcess(config).start()  # running on: it answers the console's replay requests
    gateways.append(gw)
    wait_until(lambda: gw.status()["undelivered"] == 0 and gw.status()["last_seq"] >= 650, 30, "the backlog sent")
    last = gw.status()["last_seq"]
    wait_until(lambda: (console.station(STATION) or {}).get("seq", {}).get("floor", 0) >= last, 30, f"seqs to {last}")
    assert gw.stop() == 0
    seq = console.station(STATION)["seq"]
    assert console.stop() == 0
    with sqlite3.connect(console.directory / "centre.db") as db:
        stored = {r[0] for r in db.execute("SELECT seq FROM events WHERE station = ?", (STATION,))}
        losses = list(db.execute("SELECT first_seq, last_seq, reason FROM losses WHERE station = ?", (STATION,)))
        reports = [json.loads(r[0]) for r in db.execute("SELECT payload FROM events WHERE kind = 'eviction'")]
    lost = {s for first, end, _ in losses for s in range(first, end + 1)}
    missing = set(range(1, last + 1)) - stored
    assert missing, "nothing was both unheard and evicted: the test proves nothing"
    assert missing == lost and seq["lost"] == len(lost), (seq, losses)
    assert {reason for *_, reason in losses} == {DELIVERED_EVICTED}, "the station reported them, no replay gave up"
    reported = {s for doc in reports for a, b in doc["data"].get("delivered", []) for s in range(a, b + 1)}
    assert missing <= reported and not stored & lost, "only seqs the station reported and the console lacks"
