"""The simulator reports what the driver reports, so the rest of the gateway cannot tell them apart."""

from __future__ import annotations

from edge.events import Priority
from peripherals.window_unit import WindowConfig, WindowsConfig
from peripherals.window_unit.sim import SimWindowUnits
from tests.peripherals.window_unit.rig import wait_until


def test_simulated_units_come_online_and_press_keys(recorder) -> None:
    sim = SimWindowUnits(WindowsConfig((WindowConfig(1), WindowConfig(2))), recorder, interval_s=0.01, seed=3)
    sim.start()
    try:
        wait_until(lambda: len(recorder.events("key")) >= 5, "simulated presses")
    finally:
        sim.stop()
    units = recorder.events("unit")
    assert {(u["window"], u["state"]) for u in units} == {(1, "online"), (2, "online")}
    keys = recorder.events("key")
    # The same fields as the serial driver's key events (tests/peripherals/window_unit/test_link.py).
    assert all(set(k) == {"kind", "priority", "window", "key", "unit", "n", "ms"} for k in keys)
    assert all(k["priority"] == Priority.CRITICAL and k["window"] in (1, 2) for k in keys)
    assert [s["state"] for s in sim.status()["units"]] == ["absent", "absent"]
