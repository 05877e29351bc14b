"""The hall's functions from the county (MQTT commands) and from `yimen hall` on the Pi (the
control socket), against a running gateway process with its station logic and a real broker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge.station.commands import hall_commands
from mqtt.commands import CommandError, parse_request
from tests.conftest import ROOT, GatewayProcess, station_config, wait_until
from tests.hall import categories
from tests.mqtt.test_commands import Requester


def yimen_hall(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", "hall", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_county_commands_and_the_cli_reach_the_station(tmp_path: Path, broker, subscriber, gateways) -> None:
    config = station_config(tmp_path, broker.port, extra=categories())
    gw = GatewayProcess(config).start()
    gateways.append(gw)
    wait_until(lambda: gw.status()["broker"]["connection"] == "connected", 20, "the gateway to connect")
    county = Requester(broker.port)
    try:
        _msg, issued = county.request("hall-issue", json.dumps({"category": "A", "green": True}).encode())
        assert issued["ok"] and issued["result"]["ticket"] == "A001", issued
        _msg, bad = county.request("hall-call", b'{"window": "one"}')
        assert bad["error"]["code"] == "bad-request"
        _msg, closed = county.request("hall-issue", b'{"category": "C"}')
        assert closed["error"] == {"code": "refused", "message": "category C is closed now"}

        called = yimen_hall(config, "call", "--window", "1")
        assert called.returncode == 0, called.stderr
        assert json.loads(called.stdout)["ticket"] == "A001"
        refused = yimen_hall(config, "transfer", "--window", "1", "--category", "Z")
        assert refused.returncode == 1 and "no service category 'Z'" in refused.stderr
        started = yimen_hall(config, "start", "--window", "1")
        assert started.returncode == 0, started.stderr
    finally:
        county.close()
    wait_until(
        lambda: [d["data"]["action"] for d in subscriber.docs() if d["kind"] == "queue"] == ["issue", "call", "start"],
        15,
        "the queue events at the county",
    )
    sources = [d["data"]["source"] for d in subscriber.docs() if d["kind"] == "queue"]
    assert sources == ["county", "cli", "cli"]
    assert gw.stop() == 0
    gone = yimen_hall(config, "call", "--window", "1")
    assert gone.returncode == 1 and "is `yimen run` running?" in gone.stderr


def test_a_hall_commands_text_arguments_are_bounded() -> None:
    """A category is one letter and a ticket number a few characters: a request carrying
    64 KiB of either is refused by its schema, before the station echoes it in a refusal (a
    reply too large for the county to take) and in its log."""
    schemas = {c.name: c for c in hall_commands(None, "county")}  # type: ignore[arg-type]
    for name, args in [
        ("hall-issue", {"category": "A" * 60_000}),
        ("hall-issue", {"category": ""}),
        ("hall-transfer", {"window": 1, "category": "B" * 9}),
        ("hall-put-back-ticket", {"ticket": "A" + "0" * 60_000}),
    ]:
        with pytest.raises(CommandError) as info:
            parse_request(schemas[name], name, json.dumps(args).encode())
        assert info.value.code == "bad-request" and "characters" in info.value.message, info.value.message
    assert parse_request(schemas["hall-put-back-ticket"], "hall-put-back-ticket", b'{"ticket": "A1000"}')
