"""TLS to the broker, the telemetry event with its outage log, and the CLI's own answers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edge import __version__
from mqtt.broker import Mosquitto
from tests.conftest import ROOT, GatewayProcess, message_doc, station_config, wait_until
from tests.support.proxy import Proxy
from tests.support.tls import make_ca_and_server


def test_tls_with_a_private_ca(tmp_path: Path, gateways) -> None:
    ca, cert, key = make_ca_and_server(tmp_path / "pki")
    with Mosquitto(tmp_path / "broker", extra=f"cafile {ca}\ncertfile {cert}\nkeyfile {key}") as broker:
        gw = GatewayProcess(
            station_config(tmp_path, broker.port, rate=20, broker_extra=f'tls = true\nca_file = "{ca}"')
        ).start()
        gateways.append(gw)
        wait_until(lambda: gw.status()["broker"]["connection"] == "connected", 15, "a TLS connection")
        wait_until(lambda: gw.status()["last_delivery"] is not None, 10, "a delivery over TLS")
        assert gw.stop() == 0


def test_tls_refuses_a_broker_it_cannot_verify(tmp_path: Path, gateways) -> None:
    ca, cert, key = make_ca_and_server(tmp_path / "pki")
    other_ca, _, _ = make_ca_and_server(tmp_path / "other")
    with Mosquitto(tmp_path / "broker", extra=f"cafile {ca}\ncertfile {cert}\nkeyfile {key}") as broker:
        gw = GatewayProcess(
            station_config(tmp_path, broker.port, broker_extra=f'tls = true\nca_file = "{other_ca}"')
        ).start()
        gateways.append(gw)
        wait_until(lambda: "CERTIFICATE_VERIFY_FAILED" in gw.status()["broker"]["cause"], 15, "a verify failure")
        assert gw.status()["broker"]["connection"] != "connected"
        assert gw.stop() == 0


def test_telemetry_reports_backlog_and_each_outage_once(tmp_path: Path, broker, subscriber, gateways) -> None:
    link = Proxy(broker.port)
    config = station_config(tmp_path, link.port, rate=10)
    config.write_text(config.read_text().replace("interval_s = 3600", "interval_s = 1"))
    gw = GatewayProcess(config).start()
    gateways.append(gw)
    try:
        wait_until(lambda: gw.status()["broker"]["connection"] == "connected", 15, "connect")
        link.set_mode(Proxy.REFUSE)
        wait_until(lambda: gw.status()["broker"]["connection"] != "connected", 10, "the outage")
        link.set_mode(Proxy.PASS)
        wait_until(lambda: gw.status()["broker"]["connection"] == "connected", 15, "reconnect")

        def telemetry() -> list[dict]:
            out = []
            for msg in subscriber.messages():
                doc = message_doc(msg)
                if doc["kind"] == "telemetry" and doc["seq"] not in {d["seq"] for d in out}:
                    out.append(doc)
            return out

        wait_until(lambda: any(t["data"]["outages"] for t in telemetry()), 15, "telemetry with the outage")
        assert gw.stop() == 0
    finally:
        link.close()
    reports = telemetry()
    outages = [o for t in reports for o in t["data"]["outages"]]
    assert len(outages) == 1, "each outage is reported exactly once"
    assert outages[0]["end"] >= outages[0]["start"] and outages[0]["cause"]
    data = reports[-1]["data"]
    assert set(data["backlog"]) == {"critical", "normal", "bulk"}
    assert data["memory_rss_bytes"] > 1_000_000 and data["uptime_s"] > 0
    assert data["storage"]["budget_bytes"] == 64 * 1024 * 1024 and data["storage"]["used_bytes"] > 0
    assert reports[-1]["priority"] == "bulk"


def yimen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=30
    )


def test_version_and_status_of_a_station_that_never_ran(tmp_path: Path) -> None:
    assert yimen("--version").stdout.strip() == f"yimen {__version__}"
    config = station_config(tmp_path, 1)
    result = yimen("status", "--config", str(config), "--json")
    doc = json.loads(result.stdout)
    assert result.returncode == 0 and doc["last_seq"] == 0 and doc["undelivered"] == 0
    assert "has not run" in yimen("status", "--config", str(config)).stdout


def test_status_text_while_running_and_after(tmp_path: Path, broker, gateways) -> None:
    gw = GatewayProcess(station_config(tmp_path, broker.port, rate=20)).start()
    gateways.append(gw)
    wait_until(lambda: gw.status()["last_delivery"] is not None, 15, "a delivery")
    text = yimen("status", "--config", str(gw.config)).stdout
    assert "running (pid" in text and "connected" in text and "last delivery" in text
    assert gw.stop() == 0
    doc = json.loads(yimen("status", "--config", str(gw.config), "--json").stdout)
    assert doc["gateway"] == "stopped" and doc["last_seq"] > 0
    assert doc["broker"]["connection"].startswith("stopped")
