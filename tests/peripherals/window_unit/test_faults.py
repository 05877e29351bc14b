"""Presses survive what happens at a village station: restarts, unplugging, a bad line, silence."""

from __future__ import annotations

import pytest

from edge.station.service import NotRecorded
from peripherals.window_unit import WindowConfig
from tests.peripherals.window_unit.rig import wait_until

pytestmark = pytest.mark.slow


def online_count(recorder) -> int:
    return sum(e["state"] == "online" for e in recorder.events("unit"))


def test_presses_made_while_the_gateway_is_down_arrive_when_it_restarts(
    make_line, make_unit, make_gateway, recorder
) -> None:
    line = make_line()
    unit = make_unit(line)
    gateway = make_gateway(WindowConfig(1, line.path))
    wait_until(lambda: online_count(recorder) == 1, "the unit to come online")
    unit.press("good")
    wait_until(lambda: len(recorder.keys()) == 1, "the first press")
    gateway.stop()
    for key in ("bad", "next", "good"):
        unit.press(key)
    wait_until(lambda: unit.led("red"), "the unit to show its red LED: gateway away")
    assert unit.unacked == 3
    make_gateway(WindowConfig(1, line.path))
    wait_until(lambda: len(recorder.keys()) == 4, "the presses kept by the unit")
    assert recorder.keys() == [("good", 1), ("bad", 2), ("next", 3), ("good", 4)]
    assert online_count(recorder) == 2


def test_a_unit_reboot_starts_a_new_session_and_counts_again(make_line, make_unit, make_gateway, recorder) -> None:
    line = make_line()
    unit = make_unit(line)
    make_gateway(WindowConfig(1, line.path))
    wait_until(lambda: online_count(recorder) == 1, "the unit to come online")
    unit.press("good")
    unit.press("bad")
    wait_until(lambda: len(recorder.keys()) == 2, "two presses")
    unit.boot()
    wait_until(lambda: online_count(recorder) == 2, "the rebooted unit to come online again")
    unit.press("next")
    wait_until(lambda: len(recorder.keys()) == 3, "the press after the reboot")
    assert recorder.keys() == [("good", 1), ("bad", 2), ("next", 1)]


def test_every_press_crosses_a_line_that_drops_and_corrupts_bytes(make_line, make_unit, make_gateway, recorder) -> None:
    line = make_line(drop=0.005, corrupt=0.005, seed=7)  # per byte: about 1 frame in 4 is hit
    unit = make_unit(line)
    gateway = make_gateway(WindowConfig(1, line.path))
    wait_until(lambda: online_count(recorder) >= 1, "the unit to come online")
    presses = ["good", "bad", "next", "recall", "skip", "pause"] * 4
    for key in presses:
        unit.press(key)
    wait_until(lambda: len(recorder.keys()) >= len(presses) and unit.unacked == 0, "every press", timeout=60)
    assert recorder.keys() == list(zip(presses, range(1, len(presses) + 1), strict=True))
    status = gateway.status()["units"][0]
    assert sum(status["errors"].values()) > 0  # the line really was bad, and it was counted
    assert status["resends"] + unit.app.unit.link.resends > 0


def test_a_silent_unit_is_reported_offline_and_then_online_again(make_line, make_unit, make_gateway, recorder) -> None:
    line = make_line()
    unit = make_unit(line)
    make_gateway(WindowConfig(2, line.path))
    wait_until(lambda: online_count(recorder) == 1, "the unit to come online")
    line.silent = True
    wait_until(lambda: any(e["state"] == "offline" for e in recorder.events("unit")), "an offline report")
    unit.press("good")  # made while the line is dead
    line.silent = False
    wait_until(lambda: online_count(recorder) == 2, "the unit to come back online")
    wait_until(lambda: recorder.keys() == [("good", 1)], "the press made meanwhile")
    offline = next(e for e in recorder.events("unit") if e["state"] == "offline")
    assert (offline["window"], offline["unit"], offline["reason"]) == (2, "e6614103e7", "silent")


def test_unplugging_and_plugging_back_in_recovers_by_itself(make_line, make_unit, make_gateway, recorder) -> None:
    line = make_line()
    unit = make_unit(line)
    gateway = make_gateway(WindowConfig(1, line.path))
    wait_until(lambda: online_count(recorder) == 1, "the unit to come online")
    line.unplug()
    wait_until(lambda: any(e["state"] == "offline" for e in recorder.events("unit")), "an offline report")
    assert gateway.status()["units"][0]["state"] in ("offline", "absent")
    unit.press("bad")
    line.plug()
    wait_until(lambda: recorder.keys() == [("bad", 1)], "the press made while unplugged")
    assert online_count(recorder) == 2
    offline = next(e for e in recorder.events("unit") if e["state"] == "offline")
    assert offline["reason"] == "port closed"


def test_a_press_not_recorded_is_not_acknowledged_and_comes_again(make_line, make_unit, make_gateway, recorder) -> None:
    """The station could not record it (stopping, full disk): no ACK, so the unit sends it again."""
    line = make_line()
    unit = make_unit(line)
    taken: list[tuple[str, int]] = []
    refusals = [NotRecorded("the station is stopping")] * 3

    def on_key(press) -> None:
        if refusals:
            raise refusals.pop()
        taken.append((press.key, press.n))

    gateway = make_gateway(WindowConfig(1, line.path), on_key=on_key)
    wait_until(lambda: online_count(recorder) == 1, "the unit to come online")
    unit.press("good")
    wait_until(lambda: taken, "the press, once the station records it", timeout=30)
    assert taken == [("good", 1)] and not refusals
    wait_until(lambda: unit.unacked == 0, "the ACK")
    assert gateway.status()["units"][0]["emit_failures"] == 3
