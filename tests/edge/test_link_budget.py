"""The month's data budget: stages, the month's turn, totals across a restart (edge/budget.py),
and end to end: a station on a small budget stops sending media, never events."""

from __future__ import annotations

import time
from datetime import date, datetime
from pathlib import Path

import pytest

from edge.budget import DataBudget, month_of
from edge.clock import ClockSource
from edge.config import ClockConfig
from edge.events import Event
from edge.outbox import Outbox
from mqtt.link import LinkConfig
from tests.conftest import STATION, GatewayProcess, station_config, wait_until


@pytest.fixture
def box(tmp_path: Path):
    outbox = Outbox(tmp_path / "outbox.db", STATION, clock=ClockSource(ClockConfig(sync="assume")), max_bytes=1 << 26)
    yield outbox
    outbox.close()


def test_month_begins_on_the_budget_day() -> None:
    assert month_of(date(2026, 11, 29), 1) == "2026-11"
    assert month_of(date(2026, 11, 14), 15) == "2026-10"
    assert month_of(date(2026, 1, 3), 5) == "2025-12"


def test_stages_lower_media_first_snapshots_then_clips_evidence_last(box: Outbox) -> None:
    mb = 1 << 20
    budget = DataBudget(LinkConfig(budget_mb=1), box)
    seen = []
    for used in (0.5, 0.7, 0.9, 0.99):
        budget.count(round(used * mb) - budget.status()["sent_bytes"], 0)
        throttle = budget.throttle()
        allowed = [m for m in ("snapshot-w1-x", "clip-w1-x", "evidence-w1-x") if budget.may_upload(m)]
        seen.append((budget.stage(), throttle.snapshot_every, throttle.snapshots, allowed))
    assert seen == [
        ("normal", 1, True, ["snapshot-w1-x", "clip-w1-x", "evidence-w1-x"]),
        ("thrift", 4, True, ["snapshot-w1-x", "clip-w1-x", "evidence-w1-x"]),
        ("media-deferred", 1, False, ["evidence-w1-x"]),
        ("events-only", 1, False, []),
    ]
    assert DataBudget(LinkConfig(budget_mb=0), box).stage() == "normal"  # no budget: unmetered


def test_the_month_survives_a_restart_and_ends_on_its_day(box: Outbox) -> None:
    today = [date(2026, 11, 20)]
    budget = DataBudget(LinkConfig(budget_mb=10, budget_day=1), box, today=lambda: today[0])
    budget.count(1000, 200)
    budget.save()
    again = DataBudget(LinkConfig(budget_mb=10, budget_day=1), box, today=lambda: today[0])
    assert (again.status()["sent_bytes"], again.status()["received_bytes"]) == (1000, 200)
    today[0] = date(2026, 12, 1)
    assert again.status() | {"budget_bytes": 0} == {
        "month": "2026-12", "sent_bytes": 0, "received_bytes": 0, "budget_bytes": 0, "stage": "normal",
    }  # fmt: skip


CAMERA = """
[[cameras]]
window = 1
backend = "sim"
fps = 2.0
snapshot_interval_s = 1
snapshot_skip_diff = 0

[link]
budget_mb = 0.25
"""


def test_a_small_budget_stops_media_never_events(tmp_path: Path, broker, subscriber, gateways) -> None:
    gw = GatewayProcess(station_config(tmp_path, broker.port, rate=20, extra=CAMERA)).start()
    gateways.append(gw)
    wait_until(lambda: (gw.status()["link"] or {}).get("stage") == "events-only", 60, "the budget to run out")
    spent_at = time.time()
    time.sleep(4)  # events go on; media do not
    final = gw.stop_and_drain()
    events = {seq: Event.from_bytes(copies[0]) for seq, copies in subscriber.assert_complete(final["last_seq"]).items()}
    after = [e for e in events.values() if datetime.fromisoformat(e.ts).timestamp() > spent_at]
    assert sum(e.kind != "media" for e in after) > 40, "events kept flowing"
    media = [e for e in events.values() if e.kind == "media"]
    assert media, "snapshots were taken while the budget allowed"
    late = [e for e in media if datetime.fromisoformat(e.data["started"]).timestamp() > spent_at + 1]
    assert not late, "a scheduled snapshot was taken after the budget ran out"
    uploaded = {m["topic"].split("/")[5] for m in subscriber.messages("media") if m["topic"].endswith("/manifest")}
    assert uploaded < {e.data["media_id"] for e in media}, "some snapshots wait for next month"
    link = gw.status()["link"]
    assert link["sent"] + link["received"] >= 0.95 * 0.25 * 2**20 and link["stage"] == "events-only"
