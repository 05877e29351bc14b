"""Console processes sharing one PostgreSQL store write the same `stations` rows (statuses, seq
floors). Two transactions that lock the same rows in opposite orders deadlock; PostgreSQL then
aborts one, and an ingest that carried on in that aborted transaction refused every statement
after it: no event stored, no gap filled from the store, no floor read, no replay asked, ever
(test_two_consoles timed out on a console stuck like that after the fleet's offline statuses).
So ingest writes station rows only in a transaction of their own, in station order, and rolls
back a transaction that failed before carrying on."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from centre import config as centre_config
from centre.ingest import Ingest
from centre.model import CountyModel
from centre.store import PostgresStore
from edge.events import Event, Priority, format_ts
from mqtt import codec, topics

pytestmark = pytest.mark.slow


class PausingStore(PostgresStore):
    """Stops after its first floor write (its row lock held) until the test lets it go on."""

    def __init__(self, dsn: str, schema: str) -> None:
        super().__init__(dsn, schema)
        self.holding = threading.Event()
        self.go = threading.Event()

    def save_floor(self, sid: str, floor: int) -> None:
        super().save_floor(sid, floor)
        if not self.holding.is_set():
            self.holding.set()
            assert self.go.wait(20)


def make_ingest(tmp_path: Path, store: PostgresStore, name: str) -> Ingest:
    doc = {"centre": {"county": "c1", "console": name}, "store": {"dsn": "unused", "schema": "unused"}}
    config = centre_config.parse(doc, str(tmp_path / f"{name}.toml"))
    return Ingest(config, CountyModel("c1", "C"), store)


def event(sid: str, seq: int) -> tuple[str, bytes, Any, float]:
    now = datetime.now().astimezone()
    payload = Event(sid, seq, "queue", format_ts(now), "synced", Priority.NORMAL, {}).to_bytes()
    return topics.event_topic("c1", sid, "queue"), payload, None, now.timestamp()


def status(sid: str) -> tuple[str, bytes, Any, float]:
    return topics.status_topic("c1", sid), codec.online(1, last_seq=2), None, time.time()


def lock_waits(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0]


def run(fn: Any, errors: list[BaseException]) -> threading.Thread:
    def body() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test, which fails on it
            errors.append(exc)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread


def test_two_consoles_writing_the_same_station_rows_do_not_deadlock(tmp_path: Path, postgres_dsn: str) -> None:
    schema = f"yimen_locks_{uuid.uuid4().hex[:10]}"
    a = make_ingest(tmp_path, PostgresStore(postgres_dsn, schema), "a")
    b_store = PausingStore(postgres_dsn, schema)
    b = make_ingest(tmp_path, b_store, "b")
    b_store.holding.set()  # not yet: setting up
    # The shared subscription gave seq 1 of st-02 and st-05 to a, seq 2 to b...
    a._handle([event("st-02", 1), event("st-05", 1)])
    b._handle([event("st-05", 2), event("st-02", 2)])
    # ...b has seen st-05's gap for longer: its tick fills st-05 from the store, then st-02.
    b.model.stations["st-05"].tracker.gap_since = time.time() - 20
    b.model.stations["st-02"].tracker.gap_since = time.time() - 10
    b_store.holding.clear()
    errors: list[BaseException] = []
    b_tick = run(b._tick, errors)
    assert b_store.holding.wait(10), "b's tick saved no floor"
    # Meanwhile a takes the stations' births (as every console does), st-02's first.
    a_handle = run(lambda: a._handle([status("st-02"), status("st-05")]), errors)
    deadline = time.monotonic() + 10
    while lock_waits(postgres_dsn) == 0 and a_handle.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    b_store.go.set()
    b_tick.join(20)
    a_handle.join(20)
    assert not errors, f"one console's transaction was aborted: {errors}"
    assert dict(a.store.floors()) == {"st-02": 2, "st-05": 2}
    assert {r[0]: r[1] for r in a.store.stations()} == {"st-02": "online", "st-05": "online"}


def test_a_failed_transaction_is_rolled_back_and_ingest_carries_on(tmp_path: Path, postgres_dsn: str) -> None:
    schema = f"yimen_locks_{uuid.uuid4().hex[:10]}"
    store = PostgresStore(postgres_dsn, schema)
    ingest = make_ingest(tmp_path, store, "a")
    failed = []
    real_insert = store.insert_events

    def insert_once_failing(rows: list) -> set[str]:
        if not failed:
            failed.append(True)
            store.conn.execute("SELECT 1 / 0")  # as a deadlock's victim: the transaction is aborted
        return real_insert(rows)

    store.insert_events = insert_once_failing  # type: ignore[method-assign]
    thread = threading.Thread(target=ingest._run, daemon=True)
    ingest._queue.put(event("st-01", 1))
    thread.start()
    deadline = time.monotonic() + 5
    while ingest.counters["errors"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ingest.counters["errors"] == 1
    ingest._queue.put(event("st-01", 2))
    deadline = time.monotonic() + 5
    while ingest.counters["stored"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    ingest._queue.put(None)
    thread.join(10)
    check = PostgresStore(postgres_dsn, schema)
    assert check.seqs("st-01") == [2], "the failed transaction wedged ingest: nothing stored after it"
    assert dict(check.floors()) == {"st-01": 0}  # seq 1 never stored: no floor claims it
