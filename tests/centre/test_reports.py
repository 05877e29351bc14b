"""Reports from the store, on both engines, against figures the test computes from the events:
a simulated month of three stations (the fleet's backfill), stored as ingest stores them."""

from __future__ import annotations

from datetime import datetime

import pytest

from centre.fleet import Fleet
from centre.reports import Query, ReportError, Reports
from centre.store import Incoming
from centre.webstore import WebStore
from tests.centre.appraisal import expected, matches

FIRST = datetime(2026, 10, 1, tzinfo=datetime.now().astimezone().tzinfo)


def month(db: WebStore) -> list:
    fleet = Fleet("127.0.0.1", 1, "c", ["st-a", "st-b", "st-c"], windows=3)  # never connected: events only
    events = [e for station in fleet.stations.values() for e in station.backfill(FIRST, 31, 12)]
    rows = [Incoming(e.id, e.station, e.seq, e.kind, e.ts, e.to_bytes().decode(), False, 0.0) for e in events]
    db.store.insert_events(rows)
    db.store.record_loss("st-b", 5, 9, "test", FIRST.timestamp() + 86400)
    db.store.commit()
    return events


@pytest.mark.parametrize("by", [("station",), ("station", "clerk"), ("month", "station", "clerk"), ("item",)])
def test_report_matches_the_events(db: WebStore, by: tuple[str, ...]) -> None:
    events = month(db)
    query = Query.parse("2026-10-01", "2026-10-31", ",".join(by), None)
    rows = Reports(db).figures(query)
    matches(rows, expected(events, by), by)
    if by == ("station",):
        assert {r["station"]: r["lost"] for r in rows} == {"st-a": 0, "st-b": 5, "st-c": 0}


def test_report_scope_and_range(db: WebStore) -> None:
    events = month(db)
    week = [e for e in events if e.ts[:10] <= "2026-10-07" and e.station == "st-a"]
    rows = Reports(db).figures(Query.parse("2026-10-01", "2026-10-07", "station,day", ["st-a"]))
    assert {r["station"] for r in rows} == {"st-a"} and len(rows) == 7
    matches(rows, expected(week, ("station", "day")), ("station", "day"))
    assert Reports(db).figures(Query.parse("2026-10-01", "2026-10-07", "station", [])) == []
    for start, end, by in (("2026-10-07", "2026-10-01", "station"), ("x", "2026-10-01", "station")):
        with pytest.raises(ReportError):
            Query.parse(start, end, by, None)
    with pytest.raises(ReportError):
        Query.parse("2026-10-01", "2026-10-02", "station;drop table events", None)
