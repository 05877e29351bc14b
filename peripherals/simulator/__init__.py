"""A simulated station: citizens and clerks pressing the real station logic's keys.

Switched on by a `[simulate]` section, absent by default, so a production config can never
produce made-up ratings by accident. It drives `edge.station.Station` exactly as window units
do (tickets, calls, service, ratings), so the demo and the benchmarks exercise the same queue
and rating code a real station runs. A config with `[simulate]` and no station sections gets
the small station of `DEFAULT_STATION`.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.configfile import Section


@dataclass(frozen=True)
class SimulateConfig:
    events_per_second: float = 5.0
    windows: int = 2
    seed: int | None = None
    # False: the simulated station has no ticket printer (tickets issued without paper, as where
    # none is configured); true: the simulated printer prints each one.
    printer: bool = True


def parse_simulate(section: Section) -> SimulateConfig:
    cfg = SimulateConfig(
        events_per_second=section.get_float(
            "events_per_second", SimulateConfig.events_per_second, minval=0.01, maxval=10000
        ),
        windows=section.get_int("windows", SimulateConfig.windows, minval=1, maxval=32),
        seed=section.get_int("seed", None),
        printer=section.get_bool("printer", SimulateConfig.printer),
    )
    section.done()
    return cfg


def default_station(windows: int) -> str:
    """The station a bare `[simulate]` runs: two categories served by every window, one clerk
    per window (keypad code 100<n>), open all day."""
    numbers = ", ".join(str(n) for n in range(1, windows + 1))
    clerks = "".join(
        f'[[clerks]]\nid = "sim-{n:02d}"\nname = "模拟办事员{n}"\ncode = "{1000 + n}"\n\n'
        for n in range(1, windows + 1)
    )
    return f"""
[[categories]]
code = "A"
name = "社会保障"
item = "SIM-A"
windows = [{numbers}]

[[categories]]
code = "B"
name = "民政事务"
item = "SIM-B"
windows = [{numbers}]

{clerks}"""
