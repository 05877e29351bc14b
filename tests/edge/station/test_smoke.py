from __future__ import annotations

from tests.edge.station.station_support import FakeClock, Harness


def test_issue_call_rate(station: Harness, clock: FakeClock) -> None:
    st = station.station
    assert st.press(1, "ticket", source="window-unit") == "thanks"
    clock.advance(60)
    assert st.press(1, "next", source="window-unit") == "idle"
    clock.advance(300)
    assert st.press(1, "good", source="window-unit") == "thanks"
    print([(e.kind, e.data) for e in station.events()])
    rating = station.data("rating")[0]
    assert rating["ticket"] == "A001" and rating["wait_s"] == 60 and rating["service_s"] == 300 and rating["linked"]
