"""Time-limit lights: a wait and a service reaching their warning and overrun levels, reported
once each as `limit` events, shown per window and per category, kept across a restart."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from edge.configfile import ConfigError
from tests.edge.station.station_support import CONFIG, FakeClock, Harness, settings

LIMITED = CONFIG.replace(
    'hours = ["08:30-12:00", "14:00-17:30"]',
    'hours = ["08:30-12:00", "14:00-17:30"]\nwait_warn_min = 5\nwait_over_min = 10\n'
    "service_warn_min = 2\nservice_over_min = 4",
)


def test_waits_and_services_light_yellow_then_red_once_each(
    make_station: Callable[..., Harness], clock: FakeClock
) -> None:
    harness = make_station(config=settings(LIMITED))
    shown: list[tuple[int, dict]] = []
    harness.station.on_window(lambda window, fields: shown.append((window, fields)))
    st = harness.station
    st.press(1, "ticket", source="u1")
    clock.advance(5 * 60)
    st.tick()
    assert st.snapshot()["limits"]["categories"]["A"] == {
        "light": "warn",
        "warn": 1,
        "over": 0,
        "wait_limits_s": [300.0, 600.0],
        "service_limits_s": [120.0, 240.0],
    }
    clock.advance(5 * 60)
    st.tick()
    st.tick()  # nothing new: no second event
    assert st.snapshot()["limits"]["categories"]["A"]["light"] == "over"
    st.press(1, "next", source="u1")
    st.press(1, "start", source="u1")
    assert st.snapshot()["limits"]["categories"]["A"]["light"] == "ok"
    clock.advance(4 * 60)
    st.tick()
    assert st.snapshot()["limits"]["windows"]["1"] == "over"
    assert (1, {"lim": "over", "show": {"name": "", "no": "", "ticket": "A001"}}) in shown
    harness.restart()
    harness.station.tick()
    st = harness.station
    st.press(1, "done", source="u1")
    assert st.snapshot()["limits"]["windows"]["1"] == "ok"
    events = [(e["action"], e["what"], e["ticket"], e["limit_s"]) for e in harness.data("limit")]
    # The service light went straight to red at the 4-minute tick: the warning passed is reported too.
    assert events == [
        ("warn", "wait", "A001", 300.0),
        ("over", "wait", "A001", 600.0),
        ("warn", "service", "A001", 120.0),
        ("over", "service", "A001", 240.0),
    ]
    assert harness.data("limit")[-1]["window"] == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("wait_warn_min = 5", "give both wait_warn_min"),
        ("service_warn_min = 5\nservice_over_min = 3", "is not after service_warn_min"),
    ],
)
def test_limits_in_the_config_are_checked(extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(CONFIG.replace('hours = ["08:30-17:30"]', 'hours = ["08:30-17:30"]\n' + extra))
