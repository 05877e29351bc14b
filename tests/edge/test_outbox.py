"""The outbox as a station's events see it: durable, ordered, never reusing a seq."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge import retention
from edge.clock import ClockSource
from edge.config import ClockConfig
from edge.events import Event, NewEvent, Priority
from edge.outbox import MARK_DELAY_S, MARK_ROWS, SEQ_BLOCK, Outbox, OutboxError, OutboxFull

DAY = 86400.0


def make(path: Path, *, max_bytes: int = 64 << 20, sync_file: Path | None = None, now=time.time) -> Outbox:
    clock = ClockSource(ClockConfig(sync="file", sync_file=sync_file) if sync_file else ClockConfig(sync="assume"))
    return Outbox(path / "outbox.db", "st-0001", clock=clock, max_bytes=max_bytes, now=now)


def ev(kind: str = "rating", priority: Priority = Priority.CRITICAL, **data: object) -> NewEvent:
    return NewEvent(kind, priority, dict(data))


def test_seqs_start_at_one_increase_and_survive_reopen(tmp_path: Path) -> None:
    box = make(tmp_path)
    first = [box.append(ev(n=i)) for i in range(3)]
    box.close()
    box = make(tmp_path)
    later = box.append(ev(n=3))
    assert [e.seq for e in first] == [1, 2, 3]
    assert later.seq == 4
    assert later.id == "st-0001-4"
    box.close()


def test_envelope_fields(tmp_path: Path) -> None:
    box = make(tmp_path)
    event = box.append(ev(window=2, verdict="good"))
    stored = box.pending(10)[0]
    parsed = Event.from_bytes(stored.payload)
    assert parsed == event
    doc = json.loads(stored.payload)
    assert doc["id"] == "st-0001-1" and doc["station"] == "st-0001" and doc["priority"] == "critical"
    assert doc["clock"] == "synced"
    # ISO 8601, millisecond precision, with a UTC offset
    assert len(doc["ts"].split("T")[1].split(".")[1]) == 3 + 6
    box.close()


def test_pending_is_priority_first_then_seq(tmp_path: Path) -> None:
    box = make(tmp_path)
    for prio in (Priority.BULK, Priority.NORMAL, Priority.CRITICAL, Priority.BULK, Priority.CRITICAL):
        box.append(ev("x", prio))
    assert [p.seq for p in box.pending(10)] == [3, 5, 2, 1, 4]
    assert [p.seq for p in box.pending(2, exclude=[3])] == [5, 2]
    box.close()


def test_delivered_leave_the_backlog_and_status_counts(tmp_path: Path) -> None:
    box = make(tmp_path)
    for prio in (Priority.CRITICAL, Priority.NORMAL, Priority.BULK):
        box.append(ev("x", prio))
    box.mark_delivered([1, 3])
    stats = box.stats()
    assert stats["last_seq"] == 3 and stats["undelivered"] == 1
    assert stats["backlog"] == {"critical": 0, "normal": 1, "bulk": 0}
    assert stats["oldest_undelivered"]["seq"] == 2
    assert stats["last_delivery"] is not None
    box.close()


def test_appends_arriving_together_share_commits(tmp_path: Path) -> None:
    box = make(tmp_path)
    barrier = threading.Barrier(40)
    seqs: list[int] = []

    def producer() -> None:
        barrier.wait()
        for _ in range(10):
            seqs.append(box.append(ev()).seq)

    threads = [threading.Thread(target=producer) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seqs) == list(range(1, 401))
    assert box.commits < 400, "every append paid its own fsync: no group commit"
    box.close()


def test_retention_forgets_only_old_delivered(tmp_path: Path) -> None:
    now = time.time()
    clock = [now - 10 * DAY]
    box = make(tmp_path, now=lambda: clock[0])
    box.append(ev())  # appended and delivered 10 days ago
    box.mark_delivered([1])
    clock[0] = now - 6 * DAY
    box.append(ev())  # delivered 6 days ago
    box.mark_delivered([2])
    clock[0] = now - 30 * DAY
    box.append(ev())  # 30 days old but never delivered
    clock[0] = now
    assert retention.expire(box, 7, now=lambda: now) == 1
    assert [p.seq for p in box.replay(1, 10)] == [2, 3]
    box.close()


def test_replay_returns_the_stored_bytes(tmp_path: Path) -> None:
    box = make(tmp_path)
    for i in range(5):
        box.append(ev(n=i))
    first = {p.seq: p.payload for p in box.pending(10)}
    box.mark_delivered([1, 2, 3, 4, 5])
    assert {p.seq: p.payload for p in box.replay(2, 4)} == {s: first[s] for s in (2, 3, 4)}
    box.close()


def test_parked_events_are_not_resent_but_counted(tmp_path: Path) -> None:
    box = make(tmp_path)
    box.append(ev("queue", Priority.NORMAL))
    box.append(ev())
    box.park(1, "0x87 Not authorized")
    assert [p.seq for p in box.pending(10)] == [2]
    stats = box.stats()
    assert stats["parked"]["count"] == 1 and stats["parked"]["events"][0]["reason"] == "0x87 Not authorized"
    assert stats["undelivered"] == 2
    box.close()


def test_eviction_order_and_report(tmp_path: Path) -> None:
    budget = 250 * 1024  # 170 events of 2 KB offered
    box = make(tmp_path, max_bytes=budget)
    pad = "x" * 2000
    delivered = [box.append(ev("old", Priority.NORMAL, pad=pad)).seq for _ in range(30)]
    box.mark_delivered(delivered)
    bulk = [box.append(ev("tele", Priority.BULK, pad=pad)).seq for _ in range(40)]
    [box.append(ev("queue", Priority.NORMAL, pad=pad)).seq for _ in range(40)]
    critical = [box.append(ev("rating", Priority.CRITICAL, pad=pad)).seq for _ in range(60)]
    held = {p.seq for p in box.replay(1, 10_000)}
    # Delivered go first, then bulk; critical are all still there.
    assert not held & set(delivered)
    assert set(critical) <= held
    assert not held & set(bulk[: len(bulk) // 2]), "bulk should have been evicted before normal"
    reports = [json.loads(p.payload) for p in box.replay(1, 10_000) if p.kind == "eviction"]
    assert reports, "evicting undelivered events must be reported"
    assert all(r["priority"] == "critical" for r in reports)
    reported = {s for r in reports for lo, hi in r["data"]["evicted"].get("bulk", []) for s in range(lo, hi + 1)}
    lost_bulk = set(bulk) - held
    assert lost_bulk <= reported
    gone = {s for r in reports for lo, hi in r["data"].get("delivered", []) for s in range(lo, hi + 1)}
    assert gone == set(delivered), "delivered events evicted are reported apart, all of them, only them"
    assert box.used_bytes() <= budget * 1.05
    box.close()


def test_only_critical_left_refuses_bulk_keeps_critical(tmp_path: Path) -> None:
    box = make(tmp_path, max_bytes=200 * 1024)
    pad = "x" * 2000
    critical = [box.append(ev("rating", Priority.CRITICAL, pad=pad)).seq for _ in range(150)]
    with pytest.raises(OutboxFull, match="max_mb"):
        box.append(ev("tele", Priority.BULK, pad=pad))
    late = box.append(ev("rating", Priority.CRITICAL, pad=pad))
    held = {p.seq for p in box.replay(1, 10_000)}
    assert set(critical) | {late.seq} <= held
    box.close()


def test_corrupt_database_is_renamed_aside_and_seqs_continue(tmp_path: Path) -> None:
    box = make(tmp_path)
    for _ in range(5):
        box.append(ev())
    box.close()
    db = tmp_path / "outbox.db"
    with open(db, "r+b") as fh:  # damage the middle of the file, keep the header
        fh.seek(4096)
        fh.write(os.urandom(8192))
    box = make(tmp_path)
    aside = [p for p in tmp_path.glob("outbox.db.corrupt-*") if not p.name.endswith(("-wal", "-shm"))]
    assert aside, "the damaged database must be kept, renamed aside"
    pending = box.pending(10)
    incident = json.loads(pending[0].payload)
    assert incident["kind"] == "incident" and incident["priority"] == "critical"
    assert incident["seq"] > 5, "a seq was reused after corruption"
    assert incident["data"]["renamed_to"] == aside[0].name
    nxt = box.append(ev())
    assert nxt.seq == incident["seq"] + 1
    box.close()


def test_garbage_file_is_renamed_aside(tmp_path: Path) -> None:
    (tmp_path / "outbox.db").write_bytes(b"this is not a database" * 100)
    box = make(tmp_path)
    assert box.incident is not None and "SQLite cannot open it" in box.incident.reason
    assert box.pending(10)[0].kind == "incident"
    box.close()


def test_corruption_with_unreadable_rows_resumes_above_high_water_mark(tmp_path: Path) -> None:
    box = make(tmp_path)
    for _ in range(3):
        box.append(ev())
    box.close()
    (tmp_path / "outbox.db").write_bytes(b"\0" * 10000)  # nothing readable at all
    box = make(tmp_path)
    assert box.pending(10)[0].seq > 3
    box.close()


def test_storage_path_blocked_by_a_file_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the storage directory should be")
    with pytest.raises(OutboxError, match="cannot create it"):
        make(blocker / "sub")


def test_unsynced_stamps_are_corrected_unless_already_sent(tmp_path: Path) -> None:
    marker = tmp_path / "synced"
    box = make(tmp_path, sync_file=marker)
    sent = box.append(ev())
    unsent = box.append(ev())
    assert sent.clock == "unsynced"
    first_send = box.pending(1)[0]  # the uplink takes seq 1 and publishes it
    marker.touch()
    time.sleep(0.01)
    assert box.correct_unsynced(time.time() + 3600, time.monotonic_ns()) == 1
    by_seq = {p.seq: p.payload for p in box.pending(10)}
    assert by_seq[sent.seq] == first_send.payload, "a sent event changed: re-send would not be byte-identical"
    fixed = json.loads(by_seq[unsent.seq])
    assert fixed["clock"] == "corrected"
    assert fixed["ts"] != unsent.ts
    assert box.append(ev()).clock == "synced"
    box.close()


def test_status_reads_beside_a_writer(tmp_path: Path) -> None:
    box = make(tmp_path)
    box.append(ev())
    conn = sqlite3.connect(f"file:{tmp_path / 'outbox.db'}?mode=ro", uri=True)
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 1
    box.append(ev())  # a reader does not block the writer
    conn.close()
    box.close()


def _used_past_a_block(path: Path) -> int:
    """An outbox that has handed out seqs beyond its first reserved block; returns its last seq."""
    box = make(path)
    for _ in range(3):
        box.append(ev())
    box.close()
    return box.last_seq


def _resumes_above_the_mark(box: Outbox, used: int, what: str) -> dict:
    incident = json.loads(next(p.payload for p in box.pending(10) if p.kind == "incident"))
    assert incident["data"]["what"] == what
    assert incident["seq"] > used and incident["seq"] == incident["data"]["resumed_at"]
    assert incident["data"]["possibly_lost"] is not None and incident["data"]["possibly_lost"][0] <= used + 1
    assert box.append(ev()).seq == incident["seq"] + 1
    return incident


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_lost_or_emptied_database_continues_above_the_mark(tmp_path: Path, damage: str) -> None:
    used = _used_past_a_block(tmp_path)
    db = tmp_path / "outbox.db"
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    if damage == "deleted":
        db.unlink()
    else:
        db.write_bytes(b"")  # SQLite opens an empty file as an empty database
    box = make(tmp_path)
    _resumes_above_the_mark(box, used, "outbox-missing")
    box.close()
    again = make(tmp_path)  # the next start is an ordinary one: no second incident
    assert again.incident is None and again.append(ev()).seq == box.last_seq + 1
    again.close()


def test_an_older_copy_of_the_database_continues_above_the_mark(tmp_path: Path) -> None:
    box = make(tmp_path)
    box.append(ev())
    box.close()
    old = (tmp_path / "outbox.db").read_bytes()
    box = make(tmp_path)
    for _ in range(SEQ_BLOCK + 5):  # past the first block: the mark moves on
        box.append(ev())
    box.close()
    (tmp_path / "outbox.db").write_bytes(old)
    box = make(tmp_path)
    _resumes_above_the_mark(box, SEQ_BLOCK + 6, "outbox-behind")
    box.close()


def test_an_unreadable_database_is_renamed_aside_and_continues_above_the_mark(tmp_path: Path) -> None:
    used = _used_past_a_block(tmp_path)
    db = tmp_path / "outbox.db"
    db.unlink()
    db.mkdir()  # nothing SQLite can open, whoever runs the test (root reads any mode)
    box = make(tmp_path)
    _resumes_above_the_mark(box, used, "outbox-corrupt")
    assert list(tmp_path.glob("outbox.db.corrupt-*"))
    box.close()


def test_another_stations_database_is_renamed_aside(tmp_path: Path) -> None:
    used = _used_past_a_block(tmp_path)
    other = Outbox(tmp_path / "other" / "outbox.db", "st-0002", clock=ClockSource(ClockConfig(sync="assume")),
                   max_bytes=64 << 20)  # fmt: skip
    other.append(ev())
    other.close()
    (tmp_path / "outbox.db").unlink()
    (tmp_path / "other" / "outbox.db").rename(tmp_path / "outbox.db")
    box = make(tmp_path)
    incident = _resumes_above_the_mark(box, used, "outbox-foreign")
    assert "st-0002" in incident["data"]["reason"]
    assert all(json.loads(p.payload)["station"] == "st-0001" for p in box.pending(10))
    assert list(tmp_path.glob("outbox.db.foreign-*"))
    box.close()


def test_seqs_continue_after_retention_forgot_every_event(tmp_path: Path) -> None:
    """No last_seq row is written per commit: what deletes events writes it, so a database whose
    events are all forgotten (and whose seq mark file is gone too) still never reuses a seq."""
    now = time.time()
    box = make(tmp_path, now=lambda: now - 10 * DAY)
    for _ in range(3):
        box.append(ev())
    box.mark_delivered([1, 2, 3])
    assert retention.expire(box, 7, now=lambda: now) == 3
    box.close()
    (tmp_path / "seq.hwm").unlink()
    box = make(tmp_path)
    assert box.append(ev()).seq == 4
    box.close()


def test_a_drains_marks_are_written_without_waiting_for_an_append(tmp_path: Path) -> None:
    """A backlog draining has no appends for its marks to ride with: once MARK_ROWS are held, the
    commit thread writes them at once instead of holding a drain's 2-3 s of marks (45,000 seqs at
    15,000 events a second, megabytes of memory) and leaving them out of every `pending` read."""
    box = make(tmp_path)
    n = MARK_ROWS + 50
    box.append_all([ev(n=i) for i in range(n)])
    box.mark_delivered(range(1, MARK_ROWS))  # fewer than MARK_ROWS: held for a commit to take
    time.sleep(0.2)
    reader = sqlite3.connect(tmp_path / "outbox.db")
    written = "SELECT count(*) FROM events WHERE delivered IS NOT NULL"
    assert reader.execute(written).fetchone()[0] == 0
    box.mark_delivered(range(MARK_ROWS, n + 1))
    deadline = time.monotonic() + MARK_DELAY_S  # the idle write would wait 2 * MARK_DELAY_S
    while reader.execute(written).fetchone()[0] < n and time.monotonic() < deadline:
        time.sleep(0.01)
    assert reader.execute(written).fetchone()[0] == n
    reader.close()
    assert box.pending(10) == [] and box.stats()["undelivered"] == 0
    box.close()


def test_delivery_marks_that_cannot_be_written_stop_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk when the idle commit thread writes held marks: the marks are lost (the events
    are sent again), and the commit thread goes on committing appends."""
    box = make(tmp_path)
    box.append(ev())
    box.mark_delivered([1])

    def disk_full(*_statements: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(box, "_write_relaxed", disk_full)
    time.sleep(3 * MARK_DELAY_S + 0.5)  # the idle commit thread has tried to write the mark
    assert box.append(ev()).seq == 2
    assert box.stats()["undelivered"] == 2, "the lost mark: event 1 is sent again"
    box.close()


def test_a_producers_rows_commit_with_its_events_or_not_at_all(tmp_path: Path) -> None:
    box = make(tmp_path)
    box.use(lambda conn: conn.execute("CREATE TABLE mine (n INTEGER)"))

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO mine VALUES (1)")
        raise sqlite3.IntegrityError("the producer's own bug")

    with pytest.raises(sqlite3.IntegrityError):
        box.append_all([ev(), ev()], broken)
    events = box.append_all([ev(n=1), ev(n=2)], lambda conn: conn.execute("INSERT INTO mine VALUES (2)"))
    assert [e.seq for e in events] == [1, 2] and [e.data["n"] for e in events] == [1, 2]
    assert box.use(lambda conn: conn.execute("SELECT n FROM mine").fetchall()) == [(2,)]
    box.close()


def test_a_failing_producer_fails_alone_in_a_shared_commit(tmp_path: Path) -> None:
    """Producers arriving together share one transaction; each one's rows are in a savepoint."""
    box = make(tmp_path)
    box.use(lambda conn: conn.execute("CREATE TABLE mine (n INTEGER)"))
    release = threading.Event()
    holder = threading.Thread(target=box.append_all, args=([], lambda _conn: release.wait(5)))
    holder.start()  # holds the commit thread while the others queue up behind it
    time.sleep(0.2)

    results: dict[int, object] = {}

    def produce(n: int) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO mine VALUES (?)", (n,))
            if n == 2:
                raise ValueError("two is refused")

        try:
            results[n] = box.append_all([ev(n=n)], write)[0].seq
        except ValueError as exc:
            results[n] = exc

    threads = [threading.Thread(target=produce, args=(n,)) for n in (1, 2, 3)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    commits = box.commits
    release.set()
    for thread in [holder, *threads]:
        thread.join()
    assert box.commits == commits + 2, "the three producers shared one commit"
    assert isinstance(results[2], ValueError)
    assert sorted(r for r in results.values() if isinstance(r, int)) == [1, 2]
    assert sorted(box.use(lambda conn: conn.execute("SELECT n FROM mine").fetchall())) == [(1,), (3,)]
    box.close()


def test_a_lone_producer_commits_itself_and_latecomers_group_on_the_commit_thread(tmp_path: Path) -> None:
    """A producer that finds no commit under way commits on its own thread; those arriving
    during that commit wait for it and then share one commit on the commit thread, and so does
    the watchdog's probe (a commit stuck on a dead disk leaves it unanswered)."""
    box = make(tmp_path)
    ran_on: dict[str, str] = {}

    def note(name: str) -> Callable[[sqlite3.Connection], None]:
        """A producer's write that records which thread ran it."""
        return lambda _conn: ran_on.__setitem__(name, threading.current_thread().name)

    box.append_all([ev()], note("lone"))
    assert ran_on["lone"] == threading.current_thread().name
    release = threading.Event()
    holder = threading.Thread(target=box.append_all, args=([ev()], lambda _conn: release.wait(5)), name="holder")
    holder.start()
    time.sleep(0.2)
    probe = box.responsive()
    late = [threading.Thread(target=box.append_all, args=([ev()], note(f"late-{n}"))) for n in range(3)]
    for thread in late:
        thread.start()
    time.sleep(0.3)
    assert not probe.is_set(), "the probe was answered while a commit was stuck"
    commits = box.commits
    release.set()
    for thread in [holder, *late]:
        thread.join(5)
    assert probe.wait(5)
    assert {ran_on[f"late-{n}"] for n in range(3)} == {"yimen-outbox-commit"}
    assert box.commits == commits + 2, "the holder's commit, then one for the three that came during it"
    assert box.last_seq == 5
    box.close()


def test_the_budget_counts_afresh_after_an_event_larger_than_its_quick_bound(tmp_path: Path) -> None:
    """Between page counts each commit is charged a bound per event; an event beyond half that
    bound makes the next commit count again, so big events cannot slip past the budget."""
    box = make(tmp_path, max_bytes=1 << 20)
    for i in range(30):
        box.append(ev("telemetry", Priority.BULK, n=i, blob="x" * (60 << 10)))
        assert box.used_bytes() <= (1 << 20) + (64 << 10), f"over the budget after event {i + 1}"
    evicted = [e for e in box.pending(100) if e.kind == "eviction"]
    assert evicted, "nothing was evicted"
    box.close()


def test_a_lone_failing_producer_keeps_the_delivery_marks_its_commit_took(tmp_path: Path) -> None:
    """A lone producer's rows go without a savepoint only when nothing else is in the
    transaction: held delivery marks taken by the same commit are kept when its rows fail."""
    box = make(tmp_path)
    seqs = [box.append(ev()).seq for _ in range(3)]
    box.mark_delivered(seqs)
    time.sleep(MARK_DELAY_S + 0.1)  # held long enough: the next commit takes them

    def broken(_conn: sqlite3.Connection) -> None:
        raise ValueError("the producer's own bug")

    with pytest.raises(ValueError):
        box.append_all([ev()], broken)
    conn = sqlite3.connect(f"file:{tmp_path / 'outbox.db'}?mode=ro", uri=True)
    try:
        assert conn.execute("SELECT count(*) FROM events WHERE delivered IS NOT NULL").fetchone()[0] == 3
    finally:
        conn.close()
    box.close()


def test_a_commit_undone_whole_is_never_handed_over(tmp_path: Path) -> None:
    """What a listener is handed continues the last whole read only when it is a real commit:
    a lone producer's failing rows undo everything, and that is not a commit to build on."""
    box = make(tmp_path)
    handed: list = []
    box.subscribe(handed.append)

    def broken(_conn: sqlite3.Connection) -> None:
        raise ValueError("the producer's own bug")

    box.append(ev())
    with pytest.raises(ValueError):
        box.append_all([ev()], broken)
    assert [(c.commit, c.whole, len(c.sendable)) for c in handed] == [(1, True, 1)]
    box.close()
