"""A station and the console unchanged on another broker: NATS server's MQTT listener (JetStream).

MQTT 3.1.1 only, so the station runs with `[broker] protocol = "3.1.1"` and the console with a
plain subscription: QoS 1, the retained status, the last will and command replies over
`.../cmd-reply/<name>` with the correlation in the payload are all that is used."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import STATION, GatewayProcess, station_config, wait_until
from tests.support.nats import NatsServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("nats-server") is None, reason="nats-server is not installed"),
]


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


def test_station_and_console_on_nats_mqtt(tmp_path: Path, nats: NatsServer, gateways, console_factory) -> None:
    console = console_factory(nats.mqtt_port, protocol="3.1.1").start()
    config = station_config(tmp_path, nats.mqtt_port, rate=20, broker_extra='protocol = "3.1.1"')
    gw = GatewayProcess(config).start()
    gateways.append(gw)
    wait_until(lambda: (console.station(STATION) or {}).get("state") == "online", 15, "the station online (retained)")
    wait_until(lambda: console.station(STATION)["seq"]["floor"] >= 20, 20, "events through NATS")

    # A gap while the console is away is filled by a replay asked and answered over 3.1.1.
    assert console.stop() == 0
    before = gw.status()["last_seq"]
    wait_until(lambda: gw.status()["last_seq"] >= before + 20, 20, "events the console missed")
    console.start()
    wait_until(lambda: console.station(STATION)["seq"]["floor"] >= before + 20, 30, "the gap filled by replay")
    assert console.station(STATION)["seq"]["replay"]["answer"]["ok"] is True

    # SIGKILL: NATS publishes the last will, retained, and the console marks the station offline.
    gw.kill()
    wait_until(lambda: console.station(STATION)["state"] == "offline", 5, "the will to mark the station offline")
    assert console.station(STATION)["cause"] == "lost"
    top = console.station(STATION)["seq"]["top"]
    assert console.stop() == 0
    with sqlite3.connect(console.directory / "centre.db") as db:
        seqs = [r[0] for r in db.execute("SELECT seq FROM events WHERE station = ? ORDER BY seq", (STATION,))]
    assert seqs == list(range(1, top + 1)), "each event stored once, none missing"
