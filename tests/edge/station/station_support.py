"""What the station tests share: a clock a test moves by hand, and a station on a real outbox
that can be closed and reopened on the same files, as after a power cut."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from edge.clock import ClockSource
from edge.config import ClockConfig
from edge.configfile import Section
from edge.events import Event
from edge.outbox import Outbox
from edge.station.announce import Announcer
from edge.station.config import StationSettings, parse_station
from edge.station.service import Station
from peripherals.printer import NoPrinter, Printer

STATION = "st-0001"
TZ = timezone(timedelta(hours=8))  # China Standard Time, whatever the test machine says

CONFIG = """
[queue]
recall_max = 3

[ratings]
window_s = 120
repeat_s = 20
abuse_interval_s = 2
reason_wait_s = 5
thanks_s = 3

[[categories]]
code = "A"
name = "社会保障"
item = "11430000-SB-001"
windows = [1, 2]
hours = ["08:30-12:00", "14:00-17:30"]

[[categories]]
code = "B"
name = "民政事务"
item = "11430000-MZ-002"
item_name = "最低生活保障申请"
windows = [2, 3]
hours = ["08:30-17:30"]

[[windows]]
number = 1

[[windows]]
number = 2
reason_keys = true

[[windows]]
number = 3

[[clerks]]
id = "c01"
name = "张丽"
cards = ["0001000001"]
code = "1111"

[[clerks]]
id = "c02"
name = "王强"
cards = ["0001000002"]
code = "2222"

[[clerks]]
id = "c03"
name = "李娜"
cards = ["0001000003", "0009000003"]
code = "3333"
"""


def settings(text: str = CONFIG) -> StationSettings:
    top = Section("", tomllib.loads(text), source="test.toml")
    windows = top.tables("windows")
    parsed = parse_station(top, windows)
    for window in windows:
        window.done()
    assert parsed is not None
    return parsed


class FakeClock:
    """Local time that moves only when the test says so."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def at(self, hh: int, mm: int, ss: int = 0) -> datetime:
        target = self.now.replace(hour=hh, minute=mm, second=ss, microsecond=0)
        assert target >= self.now, f"the clock only moves forward ({self.now:%H:%M:%S} -> {target:%H:%M:%S})"
        self.now = target
        return target

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def morning(hh: int = 8, mm: int = 30) -> datetime:
    return datetime(2026, 1, 26, hh, mm, tzinfo=TZ)


class Harness:
    """A station on a real Outbox in `directory`; `restart()` closes both and reopens them."""

    def __init__(
        self,
        directory: Path,
        clock: FakeClock,
        *,
        config: StationSettings | None = None,
        printer: Printer | None = None,
        speak: Any = None,
    ) -> None:
        self.directory = directory
        self.day_known = True  # False: the clock is not synced (edge/clock.py)
        self.clock = clock
        self.config = config or settings()
        self.printer = printer or NoPrinter()
        self.speak = speak
        self.lights: list[tuple[int, str]] = []
        self._open()

    def _open(self) -> None:
        self.outbox = Outbox(
            self.directory / "outbox.db",
            STATION,
            clock=ClockSource(ClockConfig(sync="assume")),
            max_bytes=64 << 20,
        )
        announcer = Announcer(self.config.announce, self.outbox.append, speak=self.speak)
        self.station = Station(
            self.config,
            STATION,
            self.outbox,
            printer=self.printer,
            announcer=announcer,
            now=self.clock,
            day_known=lambda: self.day_known,
            tick_s=3600,  # the test ticks by hand
        )
        self.station.on_led(lambda window, light: self.lights.append((window, light)))
        self.station.start()

    def close(self) -> None:
        self.station.stop()
        self.outbox.close()

    def restart(self, meanwhile: Callable[[], object] = lambda: None) -> None:
        """Close station and outbox, run `meanwhile` (the power is off), open both again."""
        self.close()
        meanwhile()
        self._open()

    def events(self, kind: str | None = None) -> list[Event]:
        held = self.outbox.replay(1, self.outbox.last_seq)
        events = [Event.from_bytes(p.payload) for p in held]
        return [e for e in events if kind is None or e.kind == kind]

    def data(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        return [e.data for e in self.events(kind) if all(e.data.get(k) == v for k, v in match.items())]
