"""`bind-unit` against a running gateway: a unit it does not know is reported, bound to a window
by command, and after the restart its presses reach the station logic as that window's."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from tests.conftest import GatewayProcess, Subscriber, station_config, wait_until
from tests.mqtt.test_commands import Requester
from tests.peripherals.window_unit.rig import Line, Unit

STRANGER = "bbbb0002"


def events(sub: Subscriber, kind: str) -> list[dict]:
    docs = sub.docs()
    return [d["data"] for d in docs if d["kind"] == kind]


def test_an_unknown_unit_is_bound_by_command_and_serves_its_window(tmp_path: Path, broker, subscriber, gateways):
    units = tmp_path / "units"
    units.mkdir()
    line = Line(units, "unit-b")
    unit = Unit(line.unit_fd, STRANGER, layout="2", ticket="ticket:A")
    extra = f"""
[window_unit]
ping_s = 1
scan_s = 0.2
ports = ["{units}/unit-*"]   # the rig's ptys have no USB id

[[windows]]
number = 1
unit = "auto"
uid = "aaaa0001"

[[windows]]
number = 3
unit = "{tmp_path}/fixed-unit"
# window 2 gets its unit by command

[[categories]]
code = "A"
name = "社会保障"
item = "SB-001"
windows = [1, 2, 3]
"""
    gw = GatewayProcess(station_config(tmp_path, broker.port, extra=extra)).start()
    gateways.append(gw)
    req = Requester(broker.port)
    try:
        wait_until(
            lambda: (
                {"state": "unknown", "unit": STRANGER}
                in [{k: u[k] for k in ("state", "unit")} for u in events(subscriber, "unit")]
            ),
            20,
            "the gateway to report the unknown unit",
        )
        before = gw.config.read_bytes()
        for args, message in [
            ({"uid": STRANGER, "window": 3}, f"fixed device path '{tmp_path}/fixed-unit'"),
            ({"uid": "aaaa0001", "window": 2}, "already window 1's"),
            ({"uid": STRANGER, "window": 7}, "window 7 is not one of this station's windows (1, 2, 3)"),
            ({"uid": "Not-A-Uid", "window": 2}, "is not a unit's uid"),
            ({"uid": STRANGER}, "'window' is required"),
        ]:
            _msg, reply = req.request("bind-unit", json.dumps(args).encode())
            assert reply["ok"] is False and reply["error"]["code"] == "bad-request", args
            assert message in reply["error"]["message"], reply
        assert gw.config.read_bytes() == before, "a refused binding leaves the file as it was"

        _msg, reply = req.request("bind-unit", json.dumps({"uid": STRANGER, "window": 2}).encode())
        assert reply == {"ok": True, "result": {"restarting": True, "confirm_s": 60.0, "replaced": None}}
        wait_until(lambda: {"result": "applied"} in events(subscriber, "config"), 30, "the change confirmed")
        online = {"state": "online", "unit": STRANGER, "window": 2}
        wait_until(
            lambda: online in [{k: u.get(k) for k in online} for u in events(subscriber, "unit")],
            20,
            "the unit online for window 2 after the restart",
        )
        unit.press("ticket:A")
        unit.press("next")
        calls = lambda: [q for q in events(subscriber, "queue") if q["action"] == "call"]  # noqa: E731
        wait_until(calls, 15, "the unit's presses to reach the station logic")
        assert gw.stop() == 0
    finally:
        req.close()
        unit.shutdown()
        line.close()
    assert [c["window"] for c in calls()] == [2], "the call came from the window the unit was bound to"
    assert gw.config.read_bytes() == before, "the binding goes to the station's own file"
    text = (gw.config.parent / "state" / "local.toml").read_text()
    assert "# window 2 gets its unit by command" in text, "the installer's comments survive the first edit"
    window2 = next(w for w in tomllib.loads(text)["windows"] if w["number"] == 2)
    assert window2 == {"number": 2, "unit": "auto", "uid": STRANGER}
