"""Who did what at the console: an append-only trail, kept in the store beside the events.

Recorded: logins and refused logins, refused sessions and requests, live view started and
stopped (station, window, seconds watched), clip and snapshot views and downloads, exports,
account changes (from the page or the command line), and commands sent to stations. Watching
a clerk on video is processing personal data; the county must be able to show who did it.

Append-only is the database's rule, not only the code's: a trigger refuses every UPDATE and
DELETE on the table, on both engines, so no path through the console (or a bug in it) can edit
the record. An administrator with a database shell can still drop the trigger; that is outside
what a web page can do, and PostgreSQL's own logs see it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from centre.sheet import csv_bytes
from centre.webstore import WebStore

log = logging.getLogger("yimen.centre.audit")

MAX_ROWS = 10_000  # one page or export; a wider range is asked for in parts
_TABLE = """CREATE TABLE IF NOT EXISTS audit (
    id {id}, at DOUBLE PRECISION NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    target TEXT, detail TEXT NOT NULL, ip TEXT)"""
SCHEMA = {
    "sqlite": [
        _TABLE.format(id="INTEGER PRIMARY KEY AUTOINCREMENT"),
        "CREATE INDEX IF NOT EXISTS audit_at ON audit (at)",
        """CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
           BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END""",
        """CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
           BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END""",
    ],
    "postgresql": [
        _TABLE.format(id="BIGSERIAL PRIMARY KEY"),
        "CREATE INDEX IF NOT EXISTS audit_at ON audit (at)",
        """CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'the audit trail is append-only'; END $$""",
        """CREATE OR REPLACE TRIGGER audit_no_change BEFORE UPDATE OR DELETE OR TRUNCATE ON audit
           FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()""",
    ],
}
HEADERS = ("id", "时间 (at)", "操作人 (actor)", "操作 (action)", "对象 (target)", "详情 (detail)", "IP")


@dataclass(frozen=True)
class Entry:
    id: int
    at: float
    actor: str
    action: str
    target: str | None
    detail: dict[str, Any]
    ip: str | None

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__}


class Audit:
    def __init__(self, db: WebStore) -> None:
        self.db = db
        db.ensure(SCHEMA[db.engine])

    def record(self, actor: str, action: str, target: str | None = None, ip: str | None = None, **detail: Any) -> None:
        """Append one entry. Never raises into the request that did the thing: a failure to
        record is logged loudly instead (the action happened; the log says so)."""
        try:
            self.db.execute(
                "INSERT INTO audit (at, actor, action, target, detail, ip) VALUES (?, ?, ?, ?, ?, ?)",
                (time.time(), actor, action, target, json.dumps(detail, ensure_ascii=False, default=str), ip),
            )
        except Exception:
            log.exception("AUDIT NOT RECORDED: %s %s %s %s", actor, action, target, detail)

    def read(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        actor: str | None = None,
        action: str | None = None,
        limit: int = 500,
    ) -> list[Entry]:
        """Newest first, at most `limit` (bounded by MAX_ROWS)."""
        where, params = ["1 = 1"], []
        for clause, value in (("at >= ?", since), ("at < ?", until), ("actor = ?", actor), ("action = ?", action)):
            if value is not None:
                where.append(clause)
                params.append(value)
        rows = self.db.rows(
            f"SELECT id, at, actor, action, target, detail, ip FROM audit WHERE {' AND '.join(where)} "
            f"ORDER BY id DESC LIMIT {max(1, min(int(limit), MAX_ROWS))}",
            tuple(params),
        )
        return [Entry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6]) for r in rows]

    @staticmethod
    def csv(entries: list[Entry]) -> bytes:
        return csv_bytes(
            HEADERS,
            (
                (
                    e.id,
                    time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.at)),
                    e.actor,
                    e.action,
                    e.target,
                    json.dumps(e.detail, ensure_ascii=False),
                    e.ip,
                )
                for e in entries
            ),
        )


class Watching:
    """Live views open now, per (account, station, window): when each started, so that its stop
    can be recorded with the seconds watched. At most MAX_OPEN; the oldest is dropped past that."""

    MAX_OPEN = 1000

    def __init__(self) -> None:
        self._open: dict[tuple[str, str, int | None], float] = {}
        self._lock = threading.Lock()

    def start(self, actor: str, sid: str, window: int | None, now: float) -> None:
        with self._lock:
            self._open.setdefault((actor, sid, window), now)
            while len(self._open) > self.MAX_OPEN:
                self._open.pop(next(iter(self._open)))

    def stop(self, actor: str, sid: str, window: int | None, now: float) -> float | None:
        with self._lock:
            started = self._open.pop((actor, sid, window), None)
        return None if started is None else round(now - started, 1)
