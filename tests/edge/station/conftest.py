"""Fixtures for the station tests: a hand-moved clock and a station on a real outbox in tmp_path."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.edge.station.station_support import FakeClock, Harness, morning


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(morning())


@pytest.fixture
def make_station(tmp_path: Path, clock: FakeClock) -> Iterator[Callable[..., Harness]]:
    opened: list[Harness] = []

    def make(**options: Any) -> Harness:
        harness = Harness(tmp_path, clock, **options)
        opened.append(harness)
        return harness

    yield make
    for harness in opened:
        harness.close()


@pytest.fixture
def station(make_station: Callable[..., Harness]) -> Harness:
    return make_station()
