"""The durable outbox: every event is on disk before anyone is told it exists.

One SQLite database in WAL mode, committed with `synchronous=FULL`: `append` returns only after
the fsync, so an acknowledged button press survives `kill -9` or a power cut. A producer that
finds no commit under way commits on its own thread; one that arrives during a commit hands its
request to the commit thread ("yimen-outbox-commit"), which commits all that gathered meanwhile
as one group with one fsync. The lone producer's own commit spares two thread hand-offs per
event (to the commit thread and back), a tenth of a station's CPU at 20 events a second; the
group keeps a burst from costing an fsync per producer.
A producer with state of its own (the station's queue) keeps it in tables of this database and
hands its rows in with its events (`append_all`): state and events commit in one transaction,
so one fsync covers both and neither can be ahead of the other after a crash.
Delivery marks are held in memory for `MARK_DELAY_S` and then written inside the next commit
(or, when no append comes to take them, by a commit of their own with `synchronous=NORMAL`): a
lost mark costs one byte-identical re-send, while an fsync per PUBACK would cost milliseconds on an
SD card, and a transaction of their own per PUBACK rewrote the very pages (the newest events'
leaf and index pages) the next append writes again. `MARK_ROWS` held marks (a backlog draining,
with no append to carry them) are written at once, so what is held stays small.

Seqs are never reused. Besides the rows, a high-water mark file outside the database
reserves seqs in blocks (one extra fsync per block), and the database holds the mark each
commit ran under (written by the commit that moved it). A database found corrupt, unreadable or holding another
station's events is renamed aside; one that is missing, empty or behind the file's mark
(deleted, truncated, restored from an older copy) is kept. Either way the outbox continues
above both the last readable seq and the mark, and its next event is an `incident` saying so.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from edge import eviction
from edge.clock import ClockSource, boot_id
from edge.events import Clock, Event, NewEvent, Priority, format_ts
from edge.syncdir import sync_dir

log = logging.getLogger("yimen.outbox")

SEQ_BLOCK = 1000
_BATCH_MAX = 512
# The database file and the high-water mark file sit side by side in the storage path.
HWM_NAME = "seq.hwm"
PAGE_SIZE = 1024
WAL_BYTES = 4 << 20
_EVENT_BOUND = 16 << 10  # more than an event's row takes: the budget check's quick answer
# The database's live pages are counted again at least every this many commits; between counts
# each commit is charged _EVENT_BOUND an event (at least one) instead of being counted.
_COUNT_EVERY = 64
# Delivery marks are held back this long, and then ride with the next commit: a second's marks
# (20 at 20 events a second) in one commit touch the `delivered_at` index's newest leaf once,
# where a mark a commit wrote a page of it each time. Marks no commit took within twice this
# are written by a commit of their own. MARK_ROWS held marks go at once: with the commit under
# way, else the commit thread writes them. A backlog's drain (no appends) is acknowledged at
# 15,000 events a second: held 2-3 s, its 45,000 marks (their dict, the seqs every `pending`
# leaves out as JSON, SQLite's json_each of it) took 7 MB, and each read re-parsed them all.
MARK_DELAY_S = 1.0
MARK_ROWS = 200


class OutboxError(RuntimeError):
    """The outbox cannot do what was asked; the message says why and what to do."""


class OutboxFull(OutboxError):
    """Refused: the disk budget is spent on undelivered events that may not be evicted."""


@dataclass(frozen=True)
class Pending:
    """An undelivered event as the uplink needs it: the stored bytes, never re-rendered."""

    seq: int
    kind: str
    priority: Priority
    payload: bytes


def send_order(item: Pending) -> tuple[int, int]:
    """The order the uplink sends in: priority first, then seq (as `pending` reads them)."""
    return -item.priority, item.seq


@dataclass(frozen=True)
class Committed:
    """What one commit made sendable, handed to the uplink so it need not read it back.

    `commit` is the outbox's commit count after it. `whole` says that `sendable` is everything the
    commit changed among undelivered events: false when it evicted some to make room, or when an
    event's clock is untrusted (its first read freezes its stamp, so it is read, not handed over).
    """

    commit: int
    events: list[Event]
    sendable: list[Pending]
    whole: bool


@dataclass(frozen=True)
class PendingRead:
    """Undelivered events as of a commit count: what `Committed` hands over after it continues it."""

    commit: int
    items: list[Pending]


@dataclass(frozen=True)
class Incident:
    """What went wrong with the database found at start, for the first event to report."""

    reason: str
    renamed_to: str | None  # None: the database was kept (it is only behind the mark)
    last_readable_seq: int
    high_water_mark: int
    resumed_at: int
    what: str = "outbox-corrupt"  # outbox-corrupt | outbox-foreign | outbox-missing | outbox-behind


StateWrite = Callable[[sqlite3.Connection], None]
"""A producer's own rows, written on the outbox's connection inside the commit's transaction."""

T = TypeVar("T")


@dataclass
class _Append:
    news: Sequence[NewEvent] | None  # None: a probe that only asks the commit thread to answer
    write: StateWrite | None = None
    done: threading.Event = field(default_factory=threading.Event)
    events: list[Event] | None = None
    error: Exception | None = None


class _Undone(Exception):
    """A lone request's own writes raised with nothing else in its transaction: all of it was
    rolled back, so the request failed alone, as it would in a savepoint."""


# Asks the commit thread to write the held marks (MARK_ROWS of them gathered with no commit).
_WRITE_MARKS = _Append(None)


_SCHEMA = {
    "seq": int,
    "kind": str,
    "priority": int,
    "payload": bytes,
    "size": int,
    "created": float,  # unix time of the append, by the local clock
    "clock": str,  # synced | unsynced | behind | unsynced-sent | corrected (unsynced-sent: never correct)
    "mono_ns": int,
    "boot": str,
    "delivered": float,  # unix time of the PUBACK; NULL while undelivered
    "parked": str,  # why the broker refused it; NULL unless refused
}


def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def _probe(path: Path) -> str | None:
    """Return why the database at `path` cannot be used, or None if it can."""
    try:
        conn = _connect(path)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return f"SQLite cannot open it: {exc}"
    if rows != [("ok",)]:
        return "PRAGMA quick_check failed: " + "; ".join(str(r[0]) for r in rows[:5])
    if tables and "events" not in tables:
        return "it is not a yimen outbox (no events table)"
    return None


def _owner(path: Path) -> str | None:
    """The station whose events a sound database holds (its meta, else its newest event); None
    when it holds none."""
    conn = _connect(path, readonly=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" in tables:
            row = conn.execute("SELECT value FROM meta WHERE key='station'").fetchone()
            if row is not None:
                return str(row[0])
        if "events" in tables:
            row = conn.execute("SELECT payload FROM events ORDER BY seq DESC LIMIT 1").fetchone()
            if row is not None:
                try:
                    return Event.from_bytes(row[0]).station
                except ValueError:
                    return "(unreadable envelope)"
        return None
    finally:
        conn.close()


def _salvage_max_seq(path: Path) -> int:
    """The highest seq still readable in a damaged database, 0 if none can be read."""
    best = 0
    try:
        conn = _connect(path, readonly=True)
        try:
            for sql in ("SELECT max(seq) FROM events", "SELECT value FROM meta WHERE key='last_seq'"):
                try:
                    value = conn.execute(sql).fetchone()
                except sqlite3.DatabaseError:
                    continue
                if value and value[0] is not None:
                    best = max(best, int(value[0]))
        finally:
            conn.close()
    except (sqlite3.DatabaseError, ValueError):
        pass
    return best


class Outbox:
    """The durable, prioritised queue between station logic and the uplink.

    Thread model: any thread may call `append` (it commits itself, or hands over to the commit
    thread and waits); the uplink thread calls `pending`, `mark_delivered` and `park`; a short
    lock serialises use of the one connection, and another one commits.
    """

    def __init__(
        self,
        path: Path,
        station: str,
        *,
        clock: ClockSource,
        max_bytes: int,
        extra_usage: Callable[[], int] = lambda: 0,
        reclaim: eviction.Reclaim = eviction.nothing_to_reclaim,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.station = station
        self._clock = clock
        self._max_bytes = max_bytes
        # Live page bytes as last counted plus the commits charged since; None: count afresh.
        self._live_bound: int | None = None
        self._charges = 0  # commits charged since that count
        self._extra_usage = extra_usage
        # Frees space counted by extra_usage (media files) under pressure, before undelivered events.
        self._reclaim = reclaim
        self._now = now
        self._boot = boot_id()
        self._lock = threading.Lock()
        self._committer = threading.Lock()  # held by whichever thread is committing a group
        self._requests: queue.SimpleQueue[_Append | None] = queue.SimpleQueue()
        self._listeners: list[Callable[[Committed], None]] = []
        self._marks: dict[int, float] = {}  # delivered seq -> PUBACK time, not yet written (under _lock)
        self._marks_since = 0.0  # monotonic time the oldest of them was held
        self._event_listeners: list[Callable[[list[Event]], None]] = []
        self.commits = 0  # group commits made: fewer than appends when producers arrive together
        self.incident: Incident | None = None
        self._prepare_storage()
        self._conn = _connect(path)
        # A new database gets 1 KiB pages: every commit writes each page it touches whole to the
        # WAL (and a checkpoint writes it again), and an event's commit touches three or four,
        # so smaller pages are most of what an SD card is spared (an existing file keeps its own).
        self._conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")
        # Checkpoint each WAL_BYTES and truncate what is left over: a checkpoint costs two fsyncs
        # and writes each page the WAL changed once, however often it changed (the day's record,
        # the newest leaves): rarer checkpoints are fewer of both, and 4 MiB is still small.
        self._conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_BYTES // PAGE_SIZE}")
        self._conn.execute(f"PRAGMA journal_size_limit = {WAL_BYTES}")
        self._page_size = int(self._conn.execute("PRAGMA page_size").fetchone()[0])  # the file's own
        self._create_schema()
        self._check_mark()
        self._last_seq = self._read_last_seq()
        self._reserved = max(self._read_hwm(), self._last_seq)
        self._mark_held = int(self.get_meta("hwm") or 0)  # the seq mark as the database holds it
        if self.incident is not None:
            self._last_seq = max(self._last_seq, self.incident.resumed_at - 1)
        self._thread = threading.Thread(target=self._commit_loop, name="yimen-outbox-commit", daemon=True)
        self._thread.start()
        if self.incident is not None:
            self._report_incident(self.incident)

    # ----- opening -------------------------------------------------------------------------

    def _prepare_storage(self) -> None:
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutboxError(f"storage path {directory}: cannot create it: {exc.strerror}") from None
        if not os.access(directory, os.W_OK | os.X_OK):
            raise OutboxError(
                f"storage path {directory}: not writable by this user; fix its owner or mode, "
                "or point [storage] path elsewhere"
            )
        if not self.path.exists() and not self.path.is_symlink():
            return
        what, reason = "outbox-corrupt", _probe(self.path)
        if reason is None:
            owner = _owner(self.path)
            if owner is None or owner == self.station:
                return
            what, reason = "outbox-foreign", f"it holds the events of station {owner!r}, not {self.station!r}"
        stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.{what.removeprefix('outbox-')}-{stamp}")
        last_readable = _salvage_max_seq(self.path) if what == "outbox-corrupt" else 0
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists() or src.is_symlink():
                src.rename(str(aside) + suffix)
        self._resume_above(what, reason, aside.name, last_readable)

    def _resume_above(self, what: str, reason: str, renamed_to: str | None, last_readable: int) -> None:
        """Seqs up to the mark may have been used by the outbox we lost: continue above it, and say so."""
        hwm = self._read_hwm()
        resumed = max(last_readable, hwm) + 1
        self.incident = Incident(reason, renamed_to, last_readable, hwm, resumed, what)
        log.error(
            "outbox %s: %s%s; resuming at seq %d",
            self.path,
            reason,
            f", renamed aside to {renamed_to}" if renamed_to else "",
            resumed,
        )

    def _check_mark(self) -> None:
        """A database behind the seq mark (deleted, emptied, restored from an older copy) must not
        hand out seqs it cannot know were used. The commit that moves the mark writes it into the
        database too, so a database that is the latest one holds the file's mark."""
        if self.incident is not None:
            return
        hwm = self._read_hwm()
        held = self.get_meta("hwm")
        if held is None and self.get_meta("last_seq") is not None:
            return  # written before the mark was kept in the database: nothing to compare
        if hwm > int(held or 0):
            reason = (
                "it is missing or empty (deleted or truncated)"
                if held is None
                else f"it is behind the seq mark {hwm} (it holds mark {held}: restored from an older copy?)"
            )
            self._resume_above(
                "outbox-missing" if held is None else "outbox-behind", reason, None, self._read_last_seq()
            )

    def _create_schema(self) -> None:
        tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if {"meta", "outages", "events"} <= tables:
            return
        # Imported only here, on a new database: it weighs 5-6 MB of memory that an ordinary
        # restart of a Pi with a 40 MB budget need not carry.
        import sqlite_utils

        db = sqlite_utils.Database(self._conn)
        # The events table comes last: a reader (`yimen status`) that sees it sees the rest.
        if not db.table("meta").exists():
            db.table("meta").create({"key": str, "value": str}, pk="key")
            # Whose events these are: a database copied in from another station is refused.
            self._conn.execute("INSERT INTO meta VALUES ('station', ?)", (self.station,))
        if not db.table("outages").exists():
            db.table("outages").create({"id": int, "start": float, "end": float, "cause": str}, pk="id")
        events = db.table("events")
        if not events.exists():
            events.create(_SCHEMA, pk="seq", not_null={"kind", "priority", "payload", "size", "created", "clock"})
            self._conn.execute(
                "CREATE INDEX pending ON events(priority DESC, seq) WHERE delivered IS NULL AND parked IS NULL"
            )
            self._conn.execute("CREATE INDEX delivered_at ON events(delivered) WHERE delivered IS NOT NULL")

    def _read_last_seq(self) -> int:
        row = self._conn.execute("SELECT max(seq) FROM events").fetchone()
        stored = self.get_meta("last_seq")
        return max(row[0] or 0, int(stored or 0))

    def _hwm_path(self) -> Path:
        return self.path.with_name(HWM_NAME)

    def _read_hwm(self) -> int:
        try:
            return int(self._hwm_path().read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            log.warning("seq high-water mark %s unreadable (%s); relying on the database", self._hwm_path(), exc)
            return 0

    def _reserve(self, upto: int) -> None:
        """Durably reserve seqs up to at least `upto` before any of them is committed."""
        if upto <= self._reserved:
            return
        target = upto + SEQ_BLOCK
        tmp = self._hwm_path().with_suffix(".tmp")
        with open(tmp, "w") as fh:
            fh.write(f"{target}\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._hwm_path())
        sync_dir(self.path.parent)
        self._reserved = target

    # ----- appending -----------------------------------------------------------------------

    def subscribe(self, listener: Callable[[Committed], None]) -> None:
        """`listener` gets what each commit made sendable (on the committing thread, after the
        commit); it must only hand over, and never append."""
        self._listeners.append(listener)

    def subscribe_events(self, listener: Callable[[list[Event]], None]) -> None:
        """`listener` gets each commit's new events (on the committing thread); it must only hand
        over, and never append."""
        self._event_listeners.append(listener)

    def append(self, new: NewEvent) -> Event:
        """Commit one event durably and return it with its seq; raises OutboxFull or OutboxError."""
        return self.append_all([new])[0]

    def append_all(self, news: Sequence[NewEvent], write: StateWrite | None = None) -> list[Event]:
        """Commit these events, in order, and the caller's own rows (`write`, run inside the
        transaction) all or nothing, durably; returns the events with their seqs. Producers that
        arrive together share the transaction and its one fsync, each in a savepoint of its own:
        a `write` that raises fails its own request only. Raises OutboxFull, OutboxError, or
        what `write` raised."""
        request = _Append(news, write)
        if self._requests.empty() and self._committer.acquire(blocking=False):
            try:  # nothing else under way: commit on this thread, sparing two thread hand-offs
                self._run_batch([request])
            finally:
                self._committer.release()
        else:  # a commit is under way: join the next group on the commit thread
            self._requests.put(request)
            request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.events is not None
        return request.events

    def use(self, run: Callable[[sqlite3.Connection], T]) -> T:
        """Run `run` on the outbox's connection outside any commit, under its lock: for a
        producer's own tables (creating them, reading them at start)."""
        with self._lock:
            return run(self._conn)

    def responsive(self) -> threading.Event:
        """Hand the commit thread a no-op; the returned Event is set once it has answered.
        The systemd watchdog uses it: a commit thread stuck on a dead SD card never answers."""
        probe = _Append(None)
        self._requests.put(probe)
        return probe.done

    def committing(self) -> bool:
        """Whether the commit thread is running (it ends only at close or on a crash)."""
        return self._thread.is_alive()

    def _commit_loop(self) -> None:
        while True:
            try:
                first = self._requests.get(timeout=MARK_DELAY_S)  # idle: wakes to write held marks
            except queue.Empty:
                with self._lock:
                    if self._marks_held(2 * MARK_DELAY_S):
                        self._write_marks()  # no commit came to take them
                continue
            if first is None:
                return
            if first is _WRITE_MARKS:
                with self._lock:
                    if len(self._marks) >= MARK_ROWS:  # else a commit took them meanwhile
                        self._write_marks()
                continue
            batch = [first]
            stop = False
            with self._committer:  # taken before the rest: what arrives meanwhile joins this group
                while len(batch) < _BATCH_MAX:
                    try:
                        nxt = self._requests.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    if nxt is not _WRITE_MARKS:  # else this commit takes them (MARK_ROWS held)
                        batch.append(nxt)
                self._run_batch(batch)
            if stop:
                return

    def _run_batch(self, batch: list[_Append]) -> None:
        """Commit a group of requests, tell the listeners, and release the producers."""
        work = [r for r in batch if r.news is not None]
        committed: Committed | None = None
        try:
            if work:
                committed = self._commit(work)
        except Exception as exc:
            log.exception("outbox commit failed")
            error = exc if isinstance(exc, OutboxError) else OutboxError(f"outbox {self.path}: commit failed: {exc}")
            for request in work:
                if request.events is None and request.error is None:
                    request.error = error
        # Before the producers return: once append returns, what its event sets off is under way.
        for event_listener in self._event_listeners:
            try:
                event_listener(committed.events if committed is not None else [])
            except Exception:  # a listener's bug must not stop the commit
                log.exception("outbox event listener failed")
        for request in batch:
            request.done.set()
        if committed is not None:
            for listener in self._listeners:
                listener(committed)

    def _commit(self, batch: list[_Append]) -> Committed | None:
        """Commit the batch; None when a lone request's failing writes undid it all."""
        now = self._now()
        stamp, clock = self._clock.reading()
        if clock == Clock.BEHIND:
            now = max(now, stamp)  # never before a moment this station has already seen
        mono = time.monotonic_ns()
        ts = format_ts(datetime.fromtimestamp(now).astimezone())
        with self._lock:
            try:
                with self._transaction():
                    begun = self._conn.total_changes
                    if len(self._marks) >= MARK_ROWS or self._marks_held(MARK_DELAY_S):
                        self._take_marks()
                    accepted, report = self._make_room(batch)
                    # A savepoint only where the transaction holds more than this request's writes.
                    alone = len(accepted) == 1 and self._conn.total_changes == begun
                    accepted = [r for r in accepted if self._write_state(r, alone)]
                    groups = ([[report]] if report is not None else []) + [list(r.news or ()) for r in accepted]
                    self._reserve(self._last_seq + sum(map(len, groups)))
                    if self._reserved != self._mark_held:  # the mark this commit ran under: see _check_mark
                        self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('hwm', ?)", (str(self._reserved),))
                    rows, made, sendable = [], [], []
                    seq = self._last_seq
                    for group in groups:
                        made.append([])
                        for new in group:
                            seq += 1
                            event = Event(self.station, seq, new.kind, ts, clock, new.priority, new.data)
                            payload = event.to_bytes()
                            rows.append(
                                (seq, new.kind, int(new.priority), payload, len(payload), now, clock, mono, self._boot)
                            )
                            made[-1].append(event)
                            sendable.append(Pending(seq, new.kind, new.priority, payload))
                            if len(payload) > _EVENT_BOUND // 2:
                                self._live_bound = None  # an event near its bound: count at the next commit
                    self._conn.executemany(
                        "INSERT INTO events (seq, kind, priority, payload, size, created, clock, mono_ns, boot)"
                        " VALUES (?,?,?,?,?,?,?,?,?)",
                        rows,
                    )
                    # No last_seq row per commit: max(seq) says it, and what deletes events writes the row.
            except _Undone:  # nothing was committed: nothing to hand over, as when a commit fails
                return None
            self._last_seq = seq
            self._mark_held = self._reserved
            self.commits += 1
            commit = self.commits
        for request, events in zip(accepted, made[len(made) - len(accepted) :], strict=True):
            request.events = events
        whole = report is None and clock not in Clock.UNTRUSTED
        return Committed(commit, [event for events in made for event in events], sendable, whole)

    def _write_state(self, request: _Append, alone: bool) -> bool:
        """Run a request's own writes in a savepoint: one that raises is undone and fails alone.
        Alone in its transaction, it needs none: one that raises undoes the transaction."""
        if request.write is None:
            return True
        if not alone:
            self._conn.execute("SAVEPOINT state")
        try:
            request.write(self._conn)
        except Exception as exc:
            log.exception("outbox: a producer's own writes failed; its events are not committed")
            request.error = exc
            if alone:
                raise _Undone from exc
            self._conn.execute("ROLLBACK TO state")
            self._conn.execute("RELEASE state")
            return False
        if not alone:
            self._conn.execute("RELEASE state")
        return True

    def _make_room(self, batch: list[_Append]) -> tuple[list[_Append], NewEvent | None]:
        """Evict to fit the batch in the budget; refuse bulk work that still does not fit."""
        news = [n for r in batch for n in r.news or ()]
        # Most commits are far under the budget: a bound per event tells so without serialising
        # every event a second time (it is serialised once, for its row, below), and without
        # counting pages at every commit. The decision is the one a fresh count would make: a
        # bound that does not fit is counted afresh first.
        charge = _EVENT_BOUND * max(1, len(news))
        live = self._live_bound
        fits = live is not None and self._charges < _COUNT_EVERY and self._fits(live + charge)
        if not fits:
            live, self._charges = self._live_bytes(), 0
            fits = self._fits(live + charge)
        if fits:
            self._live_bound = live + charge
            self._charges += 1
            return batch, None
        self._live_bound = None  # what follows evicts
        self._take_marks()  # delivered events go first: eviction must see every held mark
        incoming = sum(len(json.dumps(n.data)) + 300 for n in news)
        result = eviction.make_room(self._conn, self.used_bytes, incoming, self._max_bytes, self._reclaim)
        accepted = []
        for request in batch:
            bulk = [n.kind for n in request.news or () if n.priority == Priority.BULK]
            if result.still_over and bulk:
                request.error = OutboxFull(
                    f"outbox {self.path}: disk budget [storage] max_mb is spent on undelivered critical and "
                    f"normal events; refusing {', '.join(map(repr, bulk))} (bulk) until the county link drains them"
                )
                log.error("%s", request.error)
            else:
                accepted.append(request)
        if result.still_over and accepted:
            log.error(
                "outbox %s is over its disk budget with only undelivered critical/normal events left; "
                "keeping %d new events anyway (critical events are never dropped)",
                self.path,
                len(accepted),
            )
        return accepted, result.report()

    def _fits(self, live_bytes: int) -> bool:
        return live_bytes + self._extra_usage() <= self._max_bytes

    def used_bytes(self) -> int:
        """Bytes counted against [storage] max_mb: live database pages plus media."""
        return self._live_bytes() + self._extra_usage()

    def _live_bytes(self) -> int:
        live = self._conn.execute("SELECT page_count - freelist_count FROM pragma_page_count, pragma_freelist_count")
        return live.fetchone()[0] * self._page_size

    def _report_incident(self, incident: Incident) -> None:
        self.append(
            NewEvent(
                "incident",
                Priority.CRITICAL,
                {
                    "what": incident.what,
                    "reason": incident.reason,
                    "renamed_to": incident.renamed_to,
                    "last_readable_seq": incident.last_readable_seq,
                    "high_water_mark": incident.high_water_mark,
                    "resumed_at": incident.resumed_at,
                    "possibly_lost": [incident.last_readable_seq + 1, incident.resumed_at - 1]
                    if incident.resumed_at - 1 > incident.last_readable_seq
                    else None,
                },
            )
        )

    # ----- delivering ----------------------------------------------------------------------

    def pending(self, limit: int, exclude: Collection[int] = ()) -> list[Pending]:
        """Undelivered, unparked events in send order: priority first, then seq."""
        return self.read_pending(limit, exclude).items

    def read_pending(self, limit: int, exclude: Collection[int] = ()) -> PendingRead:
        """As `pending`, with the commit count it holds as of: each `Committed` after it adds to it."""
        with self._lock:
            commit = self.commits
            exclude = [*exclude, *self._marks]
            if exclude:
                cur = self._conn.execute(
                    "SELECT seq, kind, priority, payload, clock FROM events INDEXED BY pending "
                    f"WHERE delivered IS NULL AND parked IS NULL AND seq NOT IN {eviction.SEQS} "
                    "ORDER BY priority DESC, seq LIMIT ?",
                    (json.dumps(exclude), limit),
                )
            else:
                cur = self._conn.execute(
                    "SELECT seq, kind, priority, payload, clock FROM events INDEXED BY pending "
                    "WHERE delivered IS NULL AND parked IS NULL ORDER BY priority DESC, seq LIMIT ?",
                    (limit,),
                )
            rows = cur.fetchall()
            unsynced = [r[0] for r in rows if r[4] in Clock.UNTRUSTED]
            if unsynced:
                # Once sent, a stamp is frozen: a re-send must be byte-identical to the first.
                self._write_relaxed(
                    (f"UPDATE events SET clock='unsynced-sent' WHERE seq IN {eviction.SEQS}", [json.dumps(unsynced)])
                )
        return PendingRead(commit, [Pending(r[0], r[1], Priority(r[2]), r[3]) for r in rows])

    @contextlib.contextmanager
    def _transaction(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[None]:
        """One transaction on the outbox's connection (under _lock): committed when the block
        ends, rolled back when it raises. A COMMIT that failed (a full disk) has rolled back
        already, so ROLLBACK only runs while a transaction is still open, and the first error is
        the one raised."""
        self._conn.execute(begin)
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def _write_relaxed(self, *statements: tuple[str, Iterable]) -> None:
        """Writes whose loss only causes a re-send: one transaction, committed without waiting
        for fsync (the next durable commit's fsync takes them along)."""
        self._conn.execute("PRAGMA synchronous = NORMAL")
        try:
            with self._transaction("BEGIN"):
                for sql, params in statements:
                    self._conn.execute(sql, tuple(params))
        finally:
            self._conn.execute("PRAGMA synchronous = FULL")

    def mark_delivered(self, seqs: Collection[int]) -> None:
        """Held for a commit to write (see MARK_DELAY_S and the module's docstring); `pending`
        leaves the seqs out meanwhile, and whatever reads the table writes the marks first."""
        if not seqs:
            return
        now = self._now()
        with self._lock:
            if not self._marks:
                self._marks_since = time.monotonic()
            held = len(self._marks)
            self._marks.update(dict.fromkeys(seqs, now))
            if held < MARK_ROWS <= len(self._marks):
                self._requests.put(_WRITE_MARKS)  # once: the write empties them

    def _marks_held(self, seconds: float) -> bool:
        """Whether marks have been held at least `seconds` (under _lock)."""
        return bool(self._marks) and time.monotonic() - self._marks_since >= seconds

    def _take_marks(self) -> None:
        """Write the held marks in the transaction under way (under _lock)."""
        for statement in self._mark_statements():
            self._conn.execute(*statement)

    def _write_marks(self) -> None:
        """Write the held marks now, in a relaxed commit of their own (under _lock). A failure
        (a full disk) is logged, not raised: it must not stop the commit thread or a reader, and
        a lost mark only costs a re-send."""
        if not self._marks:
            return
        try:
            self._write_relaxed(*self._mark_statements())
        except sqlite3.Error as exc:
            log.warning("outbox %s: delivery marks not written (%s); those events will be sent again", self.path, exc)

    def _mark_statements(self) -> list[tuple[str, tuple]]:
        by_time: dict[float, list[int]] = {}
        for seq, moment in self._marks.items():
            by_time.setdefault(moment, []).append(seq)
        self._marks = {}
        # The last delivery is max(delivered), read through its index: no meta row to rewrite.
        return [
            (f"UPDATE events SET delivered = ? WHERE seq IN {eviction.SEQS}", (moment, json.dumps(seqs)))
            for moment, seqs in by_time.items()
        ]

    def park(self, seq: int, reason: str) -> None:
        """The broker refused this event: keep it, stop sending it, remember why."""
        with self._lock:
            self._write_relaxed(("UPDATE events SET parked = ? WHERE seq = ?", (reason, seq)))

    def replay(self, first: int, last: int) -> list[Pending]:
        """Events still held with first <= seq <= last, delivered or not, in seq order."""
        with self._lock:
            self._write_marks()
            rows = self._conn.execute(
                "SELECT seq, kind, priority, payload FROM events WHERE seq BETWEEN ? AND ? ORDER BY seq",
                (first, last),
            ).fetchall()
        return [Pending(r[0], r[1], Priority(r[2]), r[3]) for r in rows]

    def correct_unsynced(self, wall_now: float, mono_now_ns: int) -> int:
        """The clock is synced now: re-stamp this boot's never-sent unsynced events from the
        monotonic clock, marking them `corrected`. Returns how many were corrected."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, payload, mono_ns FROM events WHERE clock IN ('unsynced', 'behind') AND boot = ?",
                (self._boot,),
            ).fetchall()
            updates = []
            for seq, payload, mono_ns in rows:
                event = Event.from_bytes(payload)
                moment = datetime.fromtimestamp(wall_now - (mono_now_ns - mono_ns) / 1e9).astimezone()
                fixed = Event(
                    event.station, event.seq, event.kind, format_ts(moment), Clock.CORRECTED, event.priority, event.data
                )
                body = fixed.to_bytes()
                updates.append((body, len(body), seq))
            if updates:
                with self._transaction():
                    self._conn.executemany(
                        "UPDATE events SET payload = ?, size = ?, clock = 'corrected' WHERE seq = ?", updates
                    )
        return len(updates)

    # ----- session and outage log -----------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._write_relaxed(("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value)))

    def next_session(self) -> int:
        """The connection counter (Sparkplug's bdSeq): +1 per connection, never repeated."""
        with self._lock, self._transaction():
            row = self._conn.execute("SELECT value FROM meta WHERE key='session'").fetchone()
            session = int(row[0]) + 1 if row else 1
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('session', ?)", (str(session),))
        return session

    def outage_started(self, cause: str) -> None:
        with self._lock:
            open_row = self._conn.execute("SELECT id FROM outages WHERE end IS NULL").fetchone()
            if open_row is None:
                self._write_relaxed(("INSERT INTO outages (start, cause) VALUES (?, ?)", (self._now(), cause)))

    def outage_ended(self) -> None:
        with self._lock:
            self._write_relaxed(("UPDATE outages SET end = ? WHERE end IS NULL", (self._now(),)))

    def outages_since(self, after_id: int) -> list[dict]:
        """Closed outages with id > after_id, for the telemetry event to report once each."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, start, end, cause FROM outages WHERE id > ? AND end IS NOT NULL ORDER BY id",
                (after_id,),
            ).fetchall()
        return [{"id": r[0], "start": r[1], "end": r[2], "cause": r[3]} for r in rows]

    # ----- retention -----------------------------------------------------------------------

    def delete_delivered_before(self, cutoff: float) -> int:
        """Forget events delivered before `cutoff` (unix time); returns how many. The last seq is
        written first, in the same transaction: it may be among those forgotten."""
        with self._lock:
            self._write_marks()
            with self._transaction():
                self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)", (str(self._last_seq),))
                cur = self._conn.execute("DELETE FROM events WHERE delivered IS NOT NULL AND delivered < ?", (cutoff,))
        return cur.rowcount

    # ----- status --------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def stats(self) -> dict:
        with self._lock:
            self._write_marks()
            return read_stats(self._conn, self._now())

    def close(self) -> None:
        if self._thread.is_alive():
            self._requests.put(None)
            self._thread.join()
        with self._lock:
            self._write_marks()
            self._conn.close()


def read_stats(conn: sqlite3.Connection, now: float) -> dict:
    """Backlog by priority, oldest undelivered, parked, last seq and delivery: for status,
    telemetry and `yimen status` (which runs it on a read-only connection of its own)."""
    backlog = {p.label: 0 for p in sorted(Priority, reverse=True)}
    for prio, count in conn.execute(
        "SELECT priority, count(*) FROM events WHERE delivered IS NULL AND parked IS NULL GROUP BY priority"
    ):
        backlog[Priority(prio).label] = count
    oldest = conn.execute(
        "SELECT seq, created FROM events WHERE delivered IS NULL AND parked IS NULL ORDER BY seq LIMIT 1"
    ).fetchone()
    parked = conn.execute("SELECT seq, kind, parked FROM events WHERE parked IS NOT NULL ORDER BY seq").fetchall()
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    max_seq = conn.execute("SELECT max(seq) FROM events").fetchone()[0] or 0
    return {
        "last_seq": max(max_seq, int(meta.get("last_seq", 0))),
        # Parked events were refused by the broker: not delivered, but no longer being sent.
        "undelivered": sum(backlog.values()) + len(parked),
        "backlog": backlog,
        "oldest_undelivered": None if oldest is None else {"seq": oldest[0], "age_s": round(now - oldest[1], 3)},
        "parked": {"count": len(parked), "events": [{"seq": s, "kind": k, "reason": r} for s, k, r in parked[:20]]},
        "last_delivery": conn.execute("SELECT max(delivered) FROM events").fetchone()[0],
        "session": int(meta.get("session", 0)),
    }
