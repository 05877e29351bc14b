"""The store on both engines: each event once, whatever arrives twice, and what a restart reads back.

PostgreSQL is a private server the tests start (tests/support/postgres.py, the `postgres_dsn`
fixture); each test gets a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from centre.config import StoreConfig
from centre.store import Incoming, Store, open_store


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = open_store(StoreConfig(path=tmp_path / "centre.db"))
        yield s
        s.close()
        return
    dsn = request.getfixturevalue("postgres_dsn")
    schema = f"yimen_test_{uuid.uuid4().hex[:12]}"
    s = open_store(StoreConfig(path=tmp_path / "unused.db", dsn=dsn, schema=schema))
    yield s
    s.close()
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def row(seq: int, station: str = "st-1") -> Incoming:
    payload = f'{{"id":"{station}-{seq}","seq":{seq}}}'
    return Incoming(
        f"{station}-{seq}", station, seq, "queue", f"2026-11-25T09:00:{seq:02d}.000+08:00", payload, False, 1.0
    )


def test_each_event_is_stored_once(store: Store) -> None:
    assert store.insert_events([row(1), row(2), row(3)]) == {"st-1-1", "st-1-2", "st-1-3"}
    store.commit()
    # A re-send, a replay and a new event in one batch: only the new one is new.
    assert store.insert_events([row(2), row(4), row(3, "st-2")]) == {"st-1-4", "st-2-3"}
    store.commit()
    assert store.count() == 5
    assert store.seqs("st-1") == [1, 2, 3, 4]


def test_status_outages_floor_and_losses_survive_a_reopen(store: Store) -> None:
    store.save_station("st-1", "offline", 4, 100.0, "lost")
    store.open_outage("st-1", 100.0, "lost")
    store.close_outage("st-1", 160.0)
    store.open_outage("st-1", 200.0, "shutdown")
    store.save_floor("st-1", 41)
    store.save_floor("st-9", 3)
    store.record_loss("st-1", 7, 9, "eviction", 150.0)
    store.commit()
    assert sorted(store.stations()) == [
        ("st-1", "offline", 4, 100.0, "lost", 41),
        ("st-9", "unknown", -1, None, None, 3),
    ]
    assert store.outages() == [("st-1", 100.0, 160.0, "lost"), ("st-1", 200.0, None, "shutdown")]
    assert store.losses() == [("st-1", 7, 9, "eviction")]
