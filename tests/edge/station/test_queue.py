"""The queue: numbering, calling order, recall cap, skip and put-back, transfer, pause,
opening hours and the new day; state that survives a restart."""

from __future__ import annotations

from collections.abc import Callable

from tests.edge.station.station_support import FakeClock, Harness


def actions(harness: Harness, ticket: str) -> list[str]:
    return [e["action"] for e in harness.data("queue", ticket=ticket)]


def test_green_channel_and_requeued_tickets_are_called_first(station: Harness, clock: FakeClock) -> None:
    st = station.station
    for _ in range(3):
        st.press(1, "ticket", source="window-unit")
    assert st.command("issue", category="A", green=True, source="kiosk").ticket == "A004"
    assert station.data("queue", action="issue", ticket="A004")[0]["ahead"] == 0
    assert station.data("queue", action="issue", ticket="A003")[0]["ahead"] == 2
    called = []
    for _ in range(2):
        st.press(1, "next", source="window-unit")
        called.append(st.snapshot()["windows"]["1"]["ticket"])
    assert called == ["A004", "A001"]
    st.press(1, "skip", source="window-unit")  # A001 did not come
    assert st.command("put-back", ticket="A001").ok
    st.press(1, "next", source="window-unit")
    assert st.snapshot()["windows"]["1"]["ticket"] == "A001"  # ahead of A002, which never waited twice
    assert actions(station, "A001") == ["issue", "call", "skip", "put-back", "call"]


def test_recall_is_capped_then_the_clerk_must_skip(station: Harness, clock: FakeClock) -> None:
    st = station.station
    st.press(1, "ticket", source="window-unit")
    st.press(1, "next", source="window-unit")
    assert [st.press(1, "recall", source="window-unit") for _ in range(4)] == ["idle"] * 3 + ["error"]
    assert st.press(1, "skip", source="window-unit") == "idle"
    assert actions(station, "A001") == ["issue", "call", "recall", "recall", "recall", "skip"]
    assert st.command("put-back", ticket="A009").detail == "no ticket 'A009' today"


def test_times_of_a_service_with_start(station: Harness, clock: FakeClock) -> None:
    st = station.station
    st.press(3, "ticket", source="window-unit")
    clock.advance(120)
    st.press(3, "next", source="window-unit")
    clock.advance(45)
    st.press(3, "start", source="window-unit")
    assert st.press(3, "recall", source="window-unit") == "error"  # the citizen is here
    clock.advance(400)
    assert st.press(3, "done", source="window-unit") == "ready"  # ready for a rating
    end = station.data("queue", action="end")[0]
    assert (end["wait_s"], end["walk_s"], end["service_s"], end["by"]) == (120, 45, 400, "done")


def test_transfer_keeps_the_number_and_waits_again(station: Harness, clock: FakeClock) -> None:
    st = station.station
    st.press(1, "ticket", source="window-unit")
    st.press(1, "next", source="window-unit")
    clock.advance(200)
    outcome = st.command("transfer", window=1, category="B")
    assert outcome.ok and outcome.ticket == "A001"
    transfer = station.data("queue", action="transfer")[0]
    assert transfer["to"] == "B" and transfer["service_s"] == 200 and transfer["category"] == "A"
    clock.advance(60)
    st.press(3, "next", source="window-unit")
    call = station.data("queue", action="call")[-1]
    assert (call["ticket"], call["category"], call["window"], call["wait_s"]) == ("A001", "B", 3, 60)


def test_pause_stops_calling_and_turns_the_light_off(station: Harness, clock: FakeClock) -> None:
    st = station.station
    st.press(1, "ticket", source="window-unit")
    assert st.press(1, "pause", source="window-unit") == "off"
    assert st.press(1, "next", source="window-unit") == "error"
    assert not st.command("pause", window=1).ok
    assert st.snapshot()["paused"] == [1] and st.snapshot()["waiting"] == {"A": 1, "B": 0}
    assert st.command("resume", window=1).ok
    assert st.press(1, "next", source="window-unit") == "idle"
    assert (1, "off") in station.lights and station.lights[-1] == (1, "idle")


def test_no_tickets_outside_hours_and_waiting_tickets_expire_at_closing(station: Harness, clock: FakeClock) -> None:
    st = station.station
    st.press(1, "ticket", source="window-unit")
    clock.at(12, 30)
    assert st.press(1, "ticket", source="window-unit") == "error"  # A is closed for lunch
    assert st.snapshot()["waiting"]["A"] == 1  # the morning's ticket still waits
    clock.at(17, 30)
    st.tick()
    assert actions(station, "A001") == ["issue", "expire"]
    assert station.data("queue", action="expire")[0]["reason"] == "closing"
    assert st.snapshot()["counts"] == {"refused": 1}


def test_a_new_day_restarts_numbers_and_closes_out_the_old_one(
    make_station: Callable[..., Harness], clock: FakeClock
) -> None:
    station = make_station()
    st = station.station
    st.swipe(2, "0001000002", source="card-reader")
    for _ in range(2):
        st.press(3, "ticket", source="window-unit")
    st.press(2, "next", source="window-unit")
    station.close()
    clock.advance(24 * 3600)  # the gateway was off overnight
    station = make_station()
    st = station.station
    st.tick()
    assert [e["action"] for e in station.data("queue", ticket="B001")][-1] == "end"
    assert station.data("queue", ticket="B002")[-1]["reason"] == "day-end"
    assert station.data("clerk")[-1] == {**station.data("clerk")[-1], "action": "sign-out", "by": "day-end"}
    st.press(3, "ticket", source="window-unit")
    assert station.data("queue", action="issue")[-1]["ticket_id"] == "st-0001-20260127-B001"


def test_queue_state_survives_a_restart(make_station: Callable[..., Harness], clock: FakeClock) -> None:
    station = make_station()
    station.station.swipe(1, "0001000001", source="card-reader")
    for _ in range(3):
        station.station.press(1, "ticket", source="window-unit")
    station.station.press(1, "next", source="window-unit")
    clock.advance(300)
    station.restart()
    st = station.station
    assert st.snapshot()["windows"]["1"] == {"state": "open", "clerk": "c01", "ticket": "A001"}
    assert st.press(1, "r5", source="window-unit") == "thanks"
    st.press(1, "ticket", source="window-unit")
    rating = station.data("rating")[0]
    assert (rating["ticket"], rating["clerk"], rating["service_s"]) == ("A001", "c01", 300)
    assert station.data("queue", action="issue")[-1]["ticket"] == "A004"
