"""`config-set` and `restart` against a running gateway: refused, applied, or rolled back.

What the station writes goes to its own file in the storage directory (`state/local.toml`);
the installer's file is never written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import GatewayProcess, Subscriber, message_doc, station_config, wait_until
from tests.mqtt.test_commands import Requester


def config_events(sub: Subscriber) -> list[dict]:
    return [message_doc(m)["data"] for m in sub.messages() if m["topic"].endswith("/config")]


@pytest.fixture
def running(tmp_path: Path, broker, subscriber, gateways):
    gw = GatewayProcess(station_config(tmp_path, broker.port)).start()
    gateways.append(gw)
    wait_until(lambda: gw.status()["broker"]["connection"] == "connected", 15, "the gateway to connect")
    req = Requester(broker.port)
    yield gw, req, subscriber
    req.close()


BAD = [
    (lambda t: t.replace("[storage]", "[storage]\nmax_mbb = 3"), "max_mbb: unknown key"),
    (lambda t: t.replace('id = "st-0001"', 'id = "st-0002"'), "[station] id cannot be changed"),
    (lambda t: t + "\n[broker", "not valid TOML"),
    (lambda t: t.replace("[storage]", "[storage-x]"), "[storage-x]: unknown section"),
    (lambda t: t.replace('path = "', 'path = "/elsewhere'), "[storage] path: set only in"),
]


def local(gw: GatewayProcess) -> Path:
    return gw.config.parent / "state" / "local.toml"


def test_a_bad_config_is_refused_and_the_old_one_keeps_running(running) -> None:
    gw, req, _sub = running
    before = gw.config.read_bytes()
    for change, message in BAD:
        _msg, reply = req.request("config-set", json.dumps({"toml": change(before.decode())}).encode())
        assert reply["ok"] is False and reply["error"]["code"] == "bad-request", message
        assert message in reply["error"]["message"]
    assert gw.config.read_bytes() == before
    assert not local(gw).exists() and not local(gw).with_name("local.toml.pending.json").exists()
    _msg, reply = req.request("ping", b"{}")
    assert reply["ok"] and gw.proc.poll() is None


def test_a_good_config_is_applied_by_a_restart_and_confirmed(running) -> None:
    gw, req, sub = running
    pid = gw.proc.pid
    installer = gw.config.read_bytes()
    new = gw.config.read_text().replace("interval_s = 3600", "interval_s = 1800")
    _msg, reply = req.request("config-set", json.dumps({"toml": new}).encode())
    assert reply == {"ok": True, "result": {"restarting": True, "confirm_s": 60.0}}
    wait_until(lambda: {"result": "applied"} in config_events(sub), 20, "the `config` applied event")
    assert gw.proc.pid == pid and gw.proc.poll() is None
    assert "interval_s = 1800" in local(gw).read_text() and gw.config.read_bytes() == installer
    _msg, reply = req.request("config-get", b"{}")
    assert "interval_s = 1800" in reply["result"]["toml"]
    assert not local(gw).with_name("local.toml.previous").exists()

    _msg, reply = req.request("restart", b"{}")
    assert reply == {"ok": True, "result": {"restarting": True}}
    wait_until(lambda: gw.logs().count("yimen 0.1.0 starting") == 3, 20, "the restart")
    wait_until(lambda: gw.status()["broker"]["connection"] == "connected", 15, "reconnect after restart")


@pytest.mark.slow
def test_a_config_that_does_not_come_back_is_rolled_back(running) -> None:
    gw, req, sub = running
    before = gw.config.read_text()
    unreachable = before.replace(f"port = {sub.port}", "port = 9")  # nothing listens on port 9
    assert unreachable != before
    _msg, reply = req.request("config-set", json.dumps({"toml": unreachable, "confirm_s": 5}).encode())
    assert reply["ok"] is True
    wait_until(lambda: config_events(sub), 30, "the `config` event after the rollback")
    (event,) = config_events(sub)
    assert event["result"] == "rolled-back" and "within 5 s" in event["reason"]
    assert gw.config.read_text() == before and local(gw).read_text() == "", "back to nothing laid over it"
    _msg, reply = req.request("ping", b"{}")
    assert reply["ok"] and gw.proc.poll() is None


def test_a_change_is_confirmed_only_by_a_gateway_started_on_it(tmp_path: Path) -> None:
    """The gateway that wrote a change is still connected while it stops to restart: that must
    not confirm the change (nor let another one in) before the new start has tried it."""
    from edge import config as config_mod
    from edge.configset import ConfigChanges, check_at_start

    base = station_config(tmp_path, 1883)
    (tmp_path / "state").mkdir()
    emitted: list = []
    changes = ConfigChanges(config_mod.load(base), emitted.append, restart=lambda: None)
    new = base.read_text().replace("interval_s = 3600", "interval_s = 1800")
    assert changes._set({"toml": new})["restarting"] is True
    changes.watch(connected=True)
    assert emitted == [] and local_pending(tmp_path).exists(), "not confirmed by the process that wrote it"
    check_at_start(base)  # the restart onto it
    ConfigChanges(config_mod.load(base), emitted.append, restart=lambda: None).watch(connected=True)
    assert [e.data for e in emitted] == [{"result": "applied"}] and not local_pending(tmp_path).exists()


def local_pending(tmp_path: Path) -> Path:
    return tmp_path / "state" / "local.toml.pending.json"
