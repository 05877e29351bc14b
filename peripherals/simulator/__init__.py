"""A simulated station: realistic queue and rating traffic before, and beside, real hardware.

Switched on by a `[simulate]` section, absent by default, so a production config can never
produce made-up ratings by accident.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.configfile import Section


@dataclass(frozen=True)
class SimulateConfig:
    events_per_second: float = 5.0
    windows: int = 2
    seed: int | None = None


def parse_simulate(section: Section) -> SimulateConfig:
    cfg = SimulateConfig(
        events_per_second=section.get_float(
            "events_per_second", SimulateConfig.events_per_second, minval=0.01, maxval=10000
        ),
        windows=section.get_int("windows", SimulateConfig.windows, minval=1, maxval=32),
        seed=section.get_int("seed", None),
    )
    section.done()
    return cfg
