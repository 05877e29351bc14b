from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from peripherals.window_unit import WindowConfig, WindowsConfig, WindowUnitOptions
from peripherals.window_unit.driver import WindowUnits
from tests.peripherals.window_unit.rig import Line, Recorder, Unit

# Short intervals so that faults show within a test; the protocol's own 250 ms x 8 is unchanged.
FAST = WindowUnitOptions(ping_s=0.5, scan_s=0.1)


@pytest.fixture
def make_line(tmp_path: Path) -> Iterator[Callable[..., Line]]:
    lines: list[Line] = []

    def make(name: str = "unit", **faults: float) -> Line:
        lines.append(Line(tmp_path, name, **faults))
        return lines[-1]

    yield make
    for line in lines:
        line.close()


@pytest.fixture
def make_unit() -> Iterator[Callable[..., Unit]]:
    units: list[Unit] = []

    def make(line: Line, uid: str = "e6614103e7", **kwargs: str) -> Unit:
        units.append(Unit(line.unit_fd, uid, **kwargs))
        return units[-1]

    yield make
    for unit in units:
        unit.shutdown()


@pytest.fixture
def make_gateway(recorder: Recorder) -> Iterator[Callable[..., WindowUnits]]:
    gateways: list[WindowUnits] = []

    def make(*windows: WindowConfig, **kwargs: object) -> WindowUnits:
        gateway = WindowUnits(WindowsConfig(windows, FAST), recorder, **kwargs)  # type: ignore[arg-type]
        gateway.start()
        gateways.append(gateway)
        return gateway

    yield make
    for gateway in gateways:
        gateway.stop()
