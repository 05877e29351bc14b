"""Ratings: tied to the service, one per service, reasons, abuse, the no-queue mode."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.edge.station.station_support import CONFIG, FakeClock, Harness, settings


def served(station: Harness, clock: FakeClock, window: int = 1, key: str = "ticket") -> None:
    """One citizen through the window: ticket, call, three minutes of service."""
    station.station.press(window, key, source="window-unit")
    clock.advance(30)
    station.station.press(window, "next", source="window-unit")
    clock.advance(180)


@pytest.mark.parametrize(
    ("key", "verdict", "level"),
    [("good", "good", None), ("bad", "bad", None), ("r5", "good", 5), ("r3", "good", 3), ("r2", "bad", 2)],
)
def test_a_rating_carries_the_service_it_rates(
    station: Harness, clock: FakeClock, key: str, verdict: str, level: int | None
) -> None:
    station.station.swipe(1, "0001000001", source="card-reader")
    served(station, clock)
    assert station.station.press(1, key, source="window-unit") == "thanks"
    (event,) = station.events("rating")
    assert event.priority.label == "critical"
    assert event.data | {"at": None, "op": None} == {
        "verdict": verdict,
        "level": level,
        "reason": None,
        "window": 1,
        "clerk": "c01",
        "ticket": "A001",
        "ticket_id": "st-0001-20260126-A001",
        "item": {"code": "11430000-SB-001", "name": "社会保障"},
        "category": "A",
        "wait_s": 30.0,
        "service_s": 180.0,
        "channel": "window-unit",
        "source": "window-unit",
        "linked": True,
        "camera": verdict == "bad",
        "at": None,
        "op": None,
    }


def test_one_rating_per_service(station: Harness, clock: FakeClock) -> None:
    st = station.station
    served(station, clock)
    st.press(1, "next", source="window-unit")  # ends the service; nobody else waits
    assert st.press(1, "ready", source="window-unit") == "error"  # not a key
    clock.advance(10)
    assert st.press(1, "good", source="window-unit") == "thanks"  # the citizen rates after `next`
    clock.advance(30)
    assert st.press(1, "bad", source="window-unit") == "thanks"  # a change of heart: suppressed
    assert [r["ticket"] for r in station.data("rating")] == ["A001"]
    assert st.snapshot()["counts"] == {"repeat": 1, "unknown_key": 1, "refused": 1}


def test_late_and_unlinked_presses(station: Harness, clock: FakeClock) -> None:
    st = station.station
    served(station, clock)
    st.press(1, "done", source="window-unit")
    clock.advance(121)  # past [ratings] window_s: the service can no longer be rated
    assert st.press(1, "good", source="window-unit") == "thanks"
    for _ in range(5):  # a child at the buttons
        clock.advance(0.5)
        st.press(1, "good", source="window-unit")
    ratings = station.data("rating")
    assert [(r["linked"], r["ticket"]) for r in ratings] == [(False, None)]
    assert st.snapshot()["counts"] == {"abuse": 5}
    clock.advance(21)  # past repeat_s, slowly: recorded again, unlinked
    st.press(1, "good", source="window-unit")
    assert [r["linked"] for r in station.data("rating")] == [False, False]


def test_the_previous_citizen_rates_while_the_next_is_called(station: Harness, clock: FakeClock) -> None:
    st = station.station
    served(station, clock)
    st.press(1, "ticket", source="window-unit")
    st.press(1, "next", source="window-unit")  # ends A001, calls A002
    clock.advance(5)
    st.press(1, "r4", source="window-unit")
    assert station.data("rating")[0]["ticket"] == "A001"
    assert st.snapshot()["windows"]["1"]["ticket"] == "A002"  # A002's service goes on
    clock.advance(200)
    st.press(1, "r5", source="window-unit")
    assert [r["ticket"] for r in station.data("rating")] == ["A001", "A002"]


def test_a_bad_rating_waits_for_a_reason(station: Harness, clock: FakeClock) -> None:
    st = station.station
    served(station, clock, window=2, key="ticket:B")
    assert st.press(2, "bad", source="window-unit") == "ready"  # waiting for a reason key
    assert station.data("rating") == []
    assert st.press(2, "good", source="window-unit") == "ready"  # one rating per service
    clock.advance(2)
    assert st.press(2, "slow", source="window-unit") == "thanks"
    (rating,) = station.data("rating")
    assert rating["reason"] == {"key": "slow", "name": "办理时间长"} and rating["camera"] is True
    assert rating["at"] == "2026-01-26T08:33:30.000+08:00"  # when rated, not when the reason came
    assert st.press(2, "attitude", source="window-unit") == "error"  # nothing waits for one now


def test_no_reason_given_is_recorded_as_none_even_across_a_restart(station: Harness, clock: FakeClock) -> None:
    served(station, clock, window=2, key="ticket:B")
    station.station.press(2, "r1", source="window-unit")
    station.restart()
    clock.advance(4)
    station.station.tick()
    assert station.data("rating") == []
    clock.advance(1)
    station.station.tick()
    (rating,) = station.data("rating")
    assert (rating["level"], rating["reason"], rating["ticket"]) == (1, None, "B001")
    assert (2, "thanks") in station.lights


def test_without_a_queue_ratings_link_to_the_clerk_signed_in(
    make_station: Callable[..., Harness], clock: FakeClock
) -> None:
    config = settings(CONFIG.replace("recall_max = 3", "recall_max = 3\nenabled = false"))
    station = make_station(config=config)
    st = station.station
    assert st.press(1, "ticket", source="window-unit") == "error"
    assert st.press(1, "good", source="window-unit") == "thanks"  # nobody signed in: unlinked
    clock.advance(5)
    assert st.keypad_code(1, "1111", source="keypad") == "ready"
    clock.advance(60)
    assert st.press(1, "r4", source="window-unit") == "thanks"
    clock.advance(5)
    st.press(1, "r4", source="window-unit")  # the same citizen again: a repeat
    ratings = station.data("rating")
    assert [(r["linked"], r["clerk"], r["ticket"]) for r in ratings] == [(False, None, None), (True, "c01", None)]
    assert ratings[1]["item"] == {"code": "11430000-SB-001", "name": "社会保障"}  # window 1 serves only A
    assert st.snapshot()["counts"] == {"repeat": 1, "refused": 1}
