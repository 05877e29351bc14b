"""Gateway driver and firmware together over pseudo-terminals: what the station sees."""

from __future__ import annotations

import logging

import pytest

from edge.events import Priority
from peripherals.window_unit import AUTO, WindowConfig
from tests.peripherals.window_unit.rig import fw_link, wait_until


def test_a_press_becomes_a_critical_key_event_after_the_unit_comes_online(
    make_line, make_unit, make_gateway, recorder
) -> None:
    line = make_line()
    unit = make_unit(line, ticket="ticket:A")
    gateway = make_gateway(WindowConfig(3, line.path))
    wait_until(lambda: recorder.events("unit"), "the unit to come online")
    unit.press("good")
    unit.press("next")
    unit.press("ticket:A")
    wait_until(lambda: len(recorder.events("key")) == 3, "three key events")
    online, *_ = recorder.events()
    assert online["state"] == "online"
    assert (online["window"], online["unit"], online["port"]) == (3, "e6614103e7", line.path)
    assert online["priority"] == Priority.NORMAL
    keys = recorder.events("key")
    assert [(k["window"], k["key"], k["unit"], k["n"]) for k in keys] == [
        (3, "good", "e6614103e7", 1),
        (3, "next", "e6614103e7", 2),
        (3, "ticket:A", "e6614103e7", 3),
    ]
    assert all(k["priority"] == Priority.CRITICAL for k in keys)
    assert keys[0]["ms"] < keys[1]["ms"] < keys[2]["ms"]
    status = gateway.status()["units"][0]
    assert (status["state"], status["window"], status["uid"], status["fw"]) == (
        "online",
        3,
        "e6614103e7",
        "2.0.0",
    )
    assert status["keys"] == [
        "good",
        "bad",
        "next",
        "recall",
        "skip",
        "pause",
        "start",
        "done",
        "put-back",
        "resume",
        "ticket:A",
    ]
    assert status["presses"] == 3


def test_the_unit_keeps_a_press_until_it_is_on_disk(make_line, make_unit, make_gateway, recorder) -> None:
    line = make_line()
    unit = make_unit(line)
    make_gateway(WindowConfig(1, line.path))
    wait_until(lambda: recorder.events("unit"), "the unit to come online")
    recorder.gate.clear()  # the outbox is slow to commit
    unit.press("bad")
    wait_until(lambda: unit.app.unit.link.resends > 0, "the unit to retransmit the unacknowledged press")
    assert unit.unacked == 1
    assert recorder.events("key") == []
    recorder.gate.set()
    wait_until(lambda: unit.unacked == 0, "the press to be acknowledged")
    assert recorder.keys() == [("bad", 1)]  # once, though the unit sent it more than once


def test_the_gateway_lights_the_units_leds(make_line, make_unit, make_gateway, recorder) -> None:
    line = make_line()
    unit = make_unit(line)
    gateway = make_gateway(WindowConfig(1, line.path))
    wait_until(lambda: recorder.events("unit"), "the unit to come online")
    gateway.set_led(1, "ready")
    wait_until(lambda: unit.app.unit.led_state(fw_link.ticks_ms()) == "ready", "the unit to show ready")
    wait_until(lambda: unit.led("green") and not unit.led("red"), "a steady green LED")
    unit.press("good")  # the citizen rates: thanked at once, by the unit itself
    assert unit.app.unit.led_state(fw_link.ticks_ms()) == "thanks"
    with pytest.raises(ValueError, match="not one of"):
        gateway.set_led(1, "purple")


def test_a_unit_speaking_another_protocol_is_refused_by_name(
    make_line, make_unit, make_gateway, recorder, caplog
) -> None:
    line = make_line()
    make_unit(line, uid="abcd0002", proto=3)
    caplog.set_level(logging.ERROR)
    gateway = make_gateway(WindowConfig(1, line.path))
    wait_until(lambda: gateway.status()["units"][0]["state"] == "refused", "the gateway to refuse the unit")
    assert any("abcd0002" in r.message and line.path in r.message and "protocol 3" in r.message for r in caplog.records)
    assert recorder.events() == []


def test_auto_binds_units_by_uid_and_reports_a_stranger(make_line, make_unit, make_gateway, recorder) -> None:
    lines = [make_line(f"ttyACM{i}") for i in range(3)]
    units = [make_unit(line, uid=uid) for line, uid in zip(lines, ["aaaa0001", "bbbb0002", "cccc0003"], strict=True)]
    make_gateway(
        WindowConfig(1, AUTO, "aaaa0001"),
        WindowConfig(2, AUTO, "bbbb0002"),
        find_ports=lambda: [line.path for line in lines],
    )
    wait_until(lambda: len(recorder.events("unit")) == 3, "two units online and one stranger reported")
    units[1].press("bad")
    units[0].press("good")
    units[2].press("good")  # the stranger keeps its press: nobody acknowledges it
    wait_until(lambda: len(recorder.events("key")) == 2, "the two known units' presses")
    assert sorted((e["window"], e["key"], e["unit"]) for e in recorder.events("key")) == [
        (1, "good", "aaaa0001"),
        (2, "bad", "bbbb0002"),
    ]
    states = {e["unit"]: (e["state"], e["window"]) for e in recorder.events("unit")}
    assert states == {"aaaa0001": ("online", 1), "bbbb0002": ("online", 2), "cccc0003": ("unknown", None)}
    wait_until(lambda: units[2].app.unit.led_state(fw_link.ticks_ms()) == "error", "the stranger's error LED")
    assert units[2].unacked == 1
    assert len(recorder.events("unit")) == 3  # the stranger is reported once, not at every HELLO
