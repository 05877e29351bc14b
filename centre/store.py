"""Where the county keeps what its stations sent: SQLite by default, PostgreSQL when configured.

Each event is stored once, by its id (`<station>-<seq>`): a re-send or a replay is the same id
and the same bytes, so `INSERT ... ON CONFLICT DO NOTHING` is the whole of deduplication, and it
holds across several console workers writing into one PostgreSQL database. The envelope is kept
as received (its JSON text), with when it arrived and when it was stored. Beside the events:
each station's last status and seq floor (so a restarted console knows where it was), its
outages, and the seq ranges closed as known losses.

Both engines get the same tables and the same SQL but for placeholders and the bulk insert.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from centre.config import StoreConfig

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS events (
        id TEXT PRIMARY KEY, station TEXT NOT NULL, seq BIGINT NOT NULL, kind TEXT NOT NULL,
        ts TEXT NOT NULL, payload TEXT NOT NULL, replayed BOOLEAN NOT NULL,
        received_at DOUBLE PRECISION NOT NULL, stored_at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS events_station_seq ON events (station, seq)",
    "CREATE INDEX IF NOT EXISTS events_ts ON events (ts)",
    """CREATE TABLE IF NOT EXISTS stations (
        station TEXT PRIMARY KEY, state TEXT NOT NULL, session BIGINT NOT NULL,
        since DOUBLE PRECISION, cause TEXT, floor BIGINT NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS outages (
        station TEXT NOT NULL, start_at DOUBLE PRECISION NOT NULL, end_at DOUBLE PRECISION, cause TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS outages_station ON outages (station, start_at)",
    """CREATE TABLE IF NOT EXISTS losses (
        station TEXT NOT NULL, first_seq BIGINT NOT NULL, last_seq BIGINT NOT NULL, reason TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL)""",
]


@dataclass(frozen=True)
class Incoming:
    """One event as ingest hands it to the store."""

    id: str
    station: str
    seq: int
    kind: str
    ts: str
    payload: str
    replayed: bool
    received_at: float


class Store:
    """The shared SQL; subclasses connect and insert in bulk the way their engine does best."""

    mark = "?"
    engine = "sqlite"
    greatest = "MAX"  # the larger of two values (SQLite's scalar MAX; PostgreSQL's GREATEST)

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        for statement in SCHEMA:
            self.conn.execute(statement)
        self.conn.commit()

    def _sql(self, text: str) -> str:
        return text.replace("?", self.mark)

    def _exec(self, text: str, params: tuple = ()) -> Any:
        return self.conn.execute(self._sql(text), params)

    def insert_events(self, rows: list[Incoming]) -> set[str]:
        """Store the events not stored before; returns the ids that were new. Not committed."""
        raise NotImplementedError

    def save_station(self, sid: str, state: str, session: int, since: float | None, cause: str | None) -> None:
        self._exec(
            """INSERT INTO stations (station, state, session, since, cause) VALUES (?, ?, ?, ?, ?)
               ON CONFLICT (station) DO UPDATE SET state = excluded.state, session = excluded.session,
               since = excluded.since, cause = excluded.cause""",
            (sid, state, session, since, cause),
        )

    def save_floor(self, sid: str, floor: int) -> None:
        """Only ever raised: console processes sharing the store each save what they account
        for, and everything below the highest of them is in the store or recorded lost."""
        self._exec(
            f"""INSERT INTO stations (station, state, session, floor) VALUES (?, 'unknown', -1, ?)
               ON CONFLICT (station) DO UPDATE SET floor = {self.greatest}(stations.floor, excluded.floor)""",
            (sid, floor),
        )

    def floors(self) -> list[tuple[str, int]]:
        return list(self._exec("SELECT station, floor FROM stations"))

    def open_outage(self, sid: str, start: float, cause: str) -> None:
        self._exec("INSERT INTO outages (station, start_at, end_at, cause) VALUES (?, ?, NULL, ?)", (sid, start, cause))

    def close_outage(self, sid: str, end: float) -> None:
        self._exec("UPDATE outages SET end_at = ? WHERE station = ? AND end_at IS NULL", (end, sid))

    def record_loss(self, sid: str, first: int, last: int, reason: str, at: float) -> None:
        self._exec(
            "INSERT INTO losses (station, first_seq, last_seq, reason, at) VALUES (?, ?, ?, ?, ?)",
            (sid, first, last, reason, at),
        )

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        """End a failed transaction: PostgreSQL refuses every later statement until then."""
        self.conn.rollback()

    def close(self) -> None:
        self.conn.close()

    # ----- reading back, for a restart and for reports ---------------------------------------

    def stations(self) -> list[tuple[str, str, int, float | None, str | None, int]]:
        return list(self._exec("SELECT station, state, session, since, cause, floor FROM stations"))

    def outages(self) -> list[tuple[str, float, float | None, str]]:
        return list(self._exec("SELECT station, start_at, end_at, cause FROM outages ORDER BY start_at"))

    def losses(self) -> list[tuple[str, int, int, str]]:
        return list(self._exec("SELECT station, first_seq, last_seq, reason FROM losses"))

    def events_to_restore(self, day: str) -> Iterator[tuple[str, bool]]:
        """Payloads a restarted console must see again: today's (for the day's figures) and
        every one above its station's floor (for the seq tracker)."""
        yield from self._exec(
            """SELECT e.payload, e.replayed FROM events e LEFT JOIN stations s ON s.station = e.station
               WHERE e.ts >= ? OR e.seq > COALESCE(s.floor, 0) ORDER BY e.station, e.seq""",
            (day,),
        )

    def count(self, station: str | None = None) -> int:
        if station is None:
            return self._exec("SELECT COUNT(*) FROM events").fetchone()[0]
        return self._exec("SELECT COUNT(*) FROM events WHERE station = ?", (station,)).fetchone()[0]

    def seqs_between(self, station: str, first: int, last: int) -> list[int]:
        return [
            r[0]
            for r in self._exec(
                "SELECT seq FROM events WHERE station = ? AND seq BETWEEN ? AND ? ORDER BY seq", (station, first, last)
            )
        ]

    def seqs(self, station: str) -> list[int]:
        return [r[0] for r in self._exec("SELECT seq FROM events WHERE station = ? ORDER BY seq", (station,))]


class SqliteStore(Store):
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, check_same_thread=False)
        # WAL: the page's readers never wait for ingest's writer. NORMAL: a power cut may lose
        # the last batch, which the stations still hold and a replay brings back.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        super().__init__(conn)

    def insert_events(self, rows: list[Incoming]) -> set[str]:
        new: set[str] = set()
        stored = time.time()
        for r in rows:
            cur = self.conn.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (r.id, r.station, r.seq, r.kind, r.ts, r.payload, r.replayed, r.received_at, stored),
            )
            if cur.rowcount == 1:
                new.add(r.id)
        return new


class PostgresStore(Store):
    mark = "%s"
    engine = "postgresql"
    greatest = "GREATEST"

    def __init__(self, dsn: str, schema: str) -> None:
        import psycopg

        try:
            conn = psycopg.connect(dsn)
        except psycopg.OperationalError as exc:
            raise StoreError(f"[store] dsn: cannot connect to PostgreSQL: {exc}".strip()) from None
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        conn.execute(f'SET search_path TO "{schema}"')
        super().__init__(conn)

    def insert_events(self, rows: list[Incoming]) -> set[str]:
        if not rows:
            return set()
        # In id order: two consoles inserting the same ids (a re-sent event) take their index
        # locks in the same order, so neither waits for the other in a cycle (a deadlock).
        rows = sorted(rows, key=lambda r: r.id)
        # One round trip for the whole batch, whatever its size: arrays in, new ids out.
        cur = self.conn.execute(
            """INSERT INTO events
               SELECT *, %s FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[],
                                        %s::boolean[], %s::double precision[])
               ON CONFLICT (id) DO NOTHING RETURNING id""",
            (
                time.time(),
                [r.id for r in rows],
                [r.station for r in rows],
                [r.seq for r in rows],
                [r.kind for r in rows],
                [r.ts for r in rows],
                [r.payload for r in rows],
                [r.replayed for r in rows],
                [r.received_at for r in rows],
            ),
        )
        return {row[0] for row in cur.fetchall()}


class StoreError(RuntimeError):
    """The store cannot be opened; the message says which setting and why."""


def open_store(config: StoreConfig) -> Store:
    if config.dsn:
        return PostgresStore(config.dsn, config.schema)
    try:
        return SqliteStore(config.path)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"[store] path: cannot open {config.path}: {exc}") from None
