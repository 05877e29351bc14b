"""The county's bookkeeping without a broker: seqs and gaps, statuses in session order, the day's figures."""

from __future__ import annotations

from datetime import datetime

from hypothesis import given
from hypothesis import strategies as st

from centre.model import CountyModel
from centre.tracker import SeqTracker
from edge.events import Event, Priority, format_ts

NOW = 1_000_000.0


def event(seq: int, kind: str, data: dict, station: str = "st-1") -> Event:
    return Event(station, seq, kind, format_ts(datetime.now().astimezone()), "synced", Priority.NORMAL, data)


def test_gaps_close_in_any_order_and_memory_stays_small() -> None:
    t = SeqTracker()
    for seq in (1, 2, 5, 7):
        t.add(seq, NOW)
    assert t.missing() == [(3, 4), (6, 6)]
    assert t.gap_since == NOW
    for seq in (4, 3, 6, 3):
        t.add(seq, NOW + 1)
    assert t.missing() == [] and t.gap_since is None
    assert t.floor == 7 and t.held == []


def test_an_eviction_closes_a_gap_as_a_known_loss() -> None:
    t = SeqTracker()
    t.add(1, NOW)
    t.add(10, NOW)
    assert t.lose(2, 6, NOW) == 5
    assert t.missing() == [(7, 9)] and t.lost == 5
    t.lose(5, 9, NOW)  # overlaps what is already closed: counted once
    assert t.lost == 8 and t.floor == 10


def test_a_late_will_from_an_older_session_is_ignored() -> None:
    m = CountyModel("c", "C")
    assert m.apply_status("st-1", {"state": "online", "session": 7}, NOW) == "online"
    # The will of session 6's half-dead connection arrives after session 7's birth.
    assert m.apply_status("st-1", {"state": "offline", "session": 6, "cause": "lost"}, NOW + 1) == "stale"
    assert m.stations["st-1"].state == "online"
    assert m.apply_status("st-1", {"state": "offline", "session": 7, "cause": "shutdown"}, NOW + 2) == "offline"
    # The same session's will after the station's own goodbye does not change the cause.
    assert m.apply_status("st-1", {"state": "offline", "session": 7, "cause": "lost"}, NOW + 3) == "unchanged"
    assert m.apply_status("st-1", {"state": "online", "session": 8}, NOW + 9) == "online"
    detail = m.detail("st-1", NOW + 10)
    assert detail is not None
    assert detail["outages"] == [{"start": NOW + 2, "end": NOW + 9, "cause": "shutdown"}]


def test_replay_is_asked_only_after_the_grace_period_and_only_of_online_stations() -> None:
    m = CountyModel("c", "C")
    m.apply_status("st-1", {"state": "online", "session": 1}, NOW)
    for seq in (1, 4):
        m.apply_event(event(seq, "queue", {}), NOW)
    assert m.replay_due(NOW + 5, grace=10, retry=30, tries=3) == []
    assert m.replay_due(NOW + 11, grace=10, retry=30, tries=3) == [("st-1", [(2, 3)])]
    m.replay_sent("st-1", [(2, 3)], NOW + 11)
    assert m.replay_due(NOW + 12, grace=10, retry=30, tries=3) == []  # not again before the retry period
    m.apply_status("st-1", {"state": "offline", "session": 1}, NOW + 13)
    assert m.replay_due(NOW + 100, grace=10, retry=30, tries=3) == []


def test_replay_asks_for_every_gap_and_gives_up_only_on_what_it_asked_for() -> None:
    """A request names the lowest five gaps. A backlog the broker thinned out (its queue for a
    slow console is bounded) has many more: each answered request must count as progress, not
    as a failed try, and only seqs asked for and never brought back may be recorded lost."""
    m = CountyModel("c", "C")
    m.apply_status("st-1", {"state": "online", "session": 1}, NOW)
    for seq in range(1, 36, 2):  # 17 one-seq gaps: 2, 4, ..., 34
        m.apply_event(event(seq, "queue", {}), NOW)
    asked = []
    for n in range(4):  # every request answered in full
        now = NOW + 11 + 30 * n
        assert m.exhausted(3, 30, now) == []
        ((_sid, ranges),) = m.replay_due(now, grace=10, retry=30, tries=3)
        m.replay_sent("st-1", ranges, now)
        asked += ranges
        for first, _last in ranges:
            m.apply_event(event(first, "queue", {}), now + 1)
    assert asked == [(s, s) for s in range(2, 35, 2)]
    seq = m.detail("st-1", NOW + 200)["seq"]
    assert (seq["floor"], seq["lost"]) == (35, 0)

    # A station that no longer holds the lowest gaps: those asked for are lost after the tries,
    # the ones above them are asked for next, not given up unasked.
    m = CountyModel("c", "C")
    m.apply_status("st-1", {"state": "online", "session": 1}, NOW)
    for seq in range(1, 16, 2):  # 7 gaps: 2, 4, ..., 14
        m.apply_event(event(seq, "queue", {}), NOW)
    for n in range(3):
        ((_sid, ranges),) = m.replay_due(NOW + 11 + 30 * n, grace=10, retry=30, tries=3)
        assert ranges == [(2, 2), (4, 4), (6, 6), (8, 8), (10, 10)]
        m.replay_sent("st-1", ranges, NOW + 11 + 30 * n)
    assert m.exhausted(3, 30, NOW + 101) == [("st-1", [(2, 2), (4, 4), (6, 6), (8, 8), (10, 10)])]
    assert m.replay_due(NOW + 131, grace=10, retry=30, tries=3) == [("st-1", [(12, 12), (14, 14)])]


@given(st.lists(st.tuples(st.booleans(), st.integers(1, 60), st.integers(0, 8)), max_size=60))
def test_the_range_tracker_agrees_with_a_plain_set(steps: list[tuple[bool, int, int]]) -> None:
    """Ranges are an implementation detail: every answer is what a set of seqs would give."""
    t, held, lost = SeqTracker(), set(), 0
    for is_loss, first, length in steps:
        last = first + length if is_loss else first
        if is_loss:
            new = set(range(first, last + 1)) - held
            assert t.lose(first, last, NOW) == len(new)
            lost += len(new)
        else:
            t.add(first, NOW)
        held |= set(range(first, last + 1))
        top = max(held)
        floor = next(n for n in range(top + 2) if n + 1 not in held)
        gaps = [n for n in range(floor + 1, top + 1) if n not in held]
        assert (t.floor, t.top, t.missing_count(), t.lost) == (floor, top, len(gaps), lost)
        assert [n for a, b in t.missing(limit=10**6) for n in range(a, b + 1)] == gaps


def test_the_month_on_the_line_comes_from_telemetry_checked() -> None:
    model = CountyModel("c", "County")
    link = {"month": "2026-11", "sent_bytes": 12345, "received_bytes": 789, "budget_bytes": 1 << 20, "stage": "thrift"}
    model.apply_event(event(1, "telemetry", {"link": link}), NOW)
    shown = model.detail("st-1", NOW)["link"]
    assert {k: shown[k] for k in link} == link
    hostile = {"month": "x" * 10_000, "sent_bytes": -5, "received_bytes": 1e300, "stage": "<script>", "extra": 1}
    model.apply_event(event(2, "telemetry", {"link": hostile}), NOW)
    shown = model.detail("st-1", NOW)["link"]
    assert [shown[k] for k in ("month", "sent_bytes", "received_bytes", "budget_bytes", "stage")] == [None] * 5
    assert "extra" not in shown
