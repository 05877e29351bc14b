"""The clock across a power cut with no network: the last known time is kept in storage (as
fake-hwclock does), no event is stamped before it, events say what the clock was, and the
station's day (its ticket numbers) goes on until the clock is synced."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

from edge.clock import SAVED_NAME, ClockSource
from edge.config import ClockConfig
from edge.events import Clock, Event, NewEvent, Priority
from edge.outbox import Outbox
from tests.edge.station.station_support import FakeClock, Harness, morning

DAY_S = 86400.0


def unsynced(tmp_path: Path) -> ClockConfig:
    return ClockConfig(sync="file", sync_file=tmp_path / "synchronized")


def test_a_clock_behind_the_last_known_time_counts_on_from_it(tmp_path: Path) -> None:
    saved = tmp_path / SAVED_NAME
    seen = time.time() + DAY_S  # this station saw tomorrow already: the wall clock is a day behind
    saved.write_text(f"{seen:.0f}\n")
    clock = ClockSource(unsynced(tmp_path), saved=saved)
    stamp, what = clock.reading()
    assert what == Clock.BEHIND and stamp >= seen - 1

    box = Outbox(tmp_path / "outbox.db", "st-0001", clock=clock, max_bytes=64 << 20)
    try:
        box.append(NewEvent("telemetry", Priority.BULK, {}))
        (held,) = box.replay(1, box.last_seq)
        event = Event.from_bytes(held.payload)
        assert event.clock == "behind", "the event says what the clock was"
        assert datetime.fromisoformat(event.ts).timestamp() >= seen - 1, "never stamped before a time already seen"
    finally:
        box.close()

    (tmp_path / "synchronized").touch()  # NTP answered
    assert clock.reading()[1] == Clock.SYNCED


def test_the_last_known_time_is_saved_and_read_at_the_next_start(tmp_path: Path) -> None:
    saved = tmp_path / SAVED_NAME
    ClockSource(ClockConfig(sync="assume"), saved=saved).save()
    assert abs(float(saved.read_text()) - time.time()) < 5
    after_cut = ClockSource(unsynced(tmp_path), saved=saved)
    assert after_cut.reading()[1] == Clock.UNSYNCED, "a wall clock not behind what we knew is only unsynced"
    for junk in ("", "soon", "-5", "1e30"):
        saved.write_text(junk)
        assert ClockSource(unsynced(tmp_path), saved=saved).reading()[1] == Clock.UNSYNCED, junk


def test_the_day_goes_on_until_the_clock_is_synced(tmp_path: Path) -> None:
    clock = FakeClock(morning(17, 0))
    station = Harness(tmp_path, clock)
    try:
        issue = lambda: station.station.command("issue", category="A", source="kiosk").ticket  # noqa: E731
        assert [issue(), issue()] == ["A001", "A002"]

        def power_cut() -> None:  # the Pi comes back next morning, no network
            clock.now = clock.now + timedelta(hours=16)
            station.day_known = False

        station.restart(power_cut)
        assert issue() == "A003", "an unsynced clock cannot say a new day began: numbers go on"
        station.day_known = True  # NTP answered: it is the next day indeed
        assert issue() == "A001"
    finally:
        station.close()
