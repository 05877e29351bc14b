"""The day's figures as the page gets them: written with the events, read from the store (on
both engines), the same for every console process and after a restart."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from centre import figures
from centre.config import StoreConfig
from centre.figures import FiguresReader
from centre.model import CountyModel
from centre.store import open_store
from edge.events import Event, Priority, format_ts

NOW = 1_000_000.0


def event(seq: int, kind: str, data: dict) -> Event:
    return Event("st-1", seq, kind, format_ts(datetime.now().astimezone()), "synced", Priority.NORMAL, data)


@pytest.fixture(params=["sqlite", "postgresql"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreConfig]:
    if request.param == "sqlite":
        yield StoreConfig(path=tmp_path / "centre.db")
        return
    dsn = request.getfixturevalue("postgres_dsn")
    yield StoreConfig(path=tmp_path / "unused.db", dsn=dsn, schema=f"yimen_fig_{uuid.uuid4().hex[:10]}")


def test_figures_by_window_clerk_and_item_with_clips_and_queue(config: StoreConfig) -> None:
    store = open_store(config)
    figures.create(store)
    model = CountyModel("c", "C")
    clip = {"type": "clip", "window": 2, "caused_by": "st-1-5", "media_id": "evidence-x", "path": "m/evidence-x.mjpeg"}
    events = [
        event(1, "queue", {"action": "issue", "ticket": "A001"}),
        event(2, "queue", {"action": "issue", "ticket": "A002"}),
        event(3, "queue", {"action": "call", "ticket": "A001", "window": 1}),
        event(4, "rating", {"verdict": "good", "window": 1, "clerk": "王芳", "item": {"code": "X1", "name": "社保"}}),
        event(5, "rating", {"verdict": "bad", "window": 2, "clerk": "李强", "level": 1, "reason": {"name": "慢"}}),
        event(6, "media", clip),
    ]
    for e in events:
        model.apply_event(e, NOW)
        figures.record(store, e)
    store.commit()
    reader = FiguresReader(config)  # another connection, as the page's (or another console's)
    day = model.today.isoformat()
    d = model.detail("st-1", NOW + 60)
    assert d is not None
    reader.apply_detail(d, day, NOW + 60)
    assert d["by_window"]["1"] == {"good": 1, "bad": 0, "good_share": 1.0}
    assert d["by_clerk"]["李强"] == {"good": 0, "bad": 1, "good_share": 0.0}
    assert d["by_item"]["社保"]["good"] == 1
    bad = d["bad"][0]
    assert (bad["id"], bad["reason"], bad["clip"]["url"]) == ("st-1-5", "慢", "/media/st-1/evidence-x.mjpeg")
    assert d["queue"]["source"] == "events" and d["queue"]["waiting"] == 1
    summary = model.summary(NOW)
    reader.apply_summary(summary, NOW)
    assert {k: summary["totals"][k] for k in ("good", "bad", "waiting")} == {"good": 1, "bad": 1, "waiting": 1}
    # The station's own queue report, once telemetry carries one, is what counts.
    figures.record(
        store, event(8, "telemetry", {"queue": {"waiting": {"A": 3, "B": 1}, "longest_wait_s": {"A": 420.0}}})
    )
    store.commit()
    d = model.detail("st-1", NOW)
    assert d is not None
    reader.apply_detail(d, day, NOW)
    assert (d["queue"]["source"], d["queue"]["waiting"], d["queue"]["longest_wait_s"]) == ("telemetry", 4, 420.0)
    store.close()
    if config.dsn:
        import psycopg

        with psycopg.connect(config.dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{config.schema}" CASCADE')


def test_hostile_numbers_and_shapes_neither_fail_the_batch_nor_count(config: StoreConfig) -> None:
    """A rating with no verdict, or a 10**30 window, level or waiting count, once failed the whole
    ingest batch (NOT NULL, INTEGER overflow) and so every other station's events in it."""
    store = open_store(config)
    figures.create(store)
    hostile = [
        event(1, "rating", {"window": 1}),
        event(2, "rating", {"verdict": "meh", "window": 1}),
        event(3, "rating", {"verdict": "good", "window": 10**30, "level": 10**30}),
        event(4, "rating", {"verdict": "bad", "window": True, "level": -1, "reason": {"name": "慢" * 10_000}}),
        event(5, "telemetry", {"queue": {"waiting": {"A": 10**30}, "longest_wait_s": {"A": float("inf")}}}),
        event(6, "telemetry", {"queue": {"waiting": 10**30, "longest_wait_s": 10**30}}),
    ]
    model = CountyModel("c", "C")
    for e in hostile:
        model.apply_event(e, NOW)
        figures.record(store, e)
    store.commit()
    reader = FiguresReader(config)
    d = model.detail("st-1", NOW)
    assert d is not None
    reader.apply_detail(d, model.today.isoformat(), NOW)
    assert d["by_window"].get("0") == {"good": 1, "bad": 1, "good_share": 0.5}, d["by_window"]
    assert (d["queue"]["waiting"], d["queue"]["longest_wait_s"]) == (None, None)
    store.close()
