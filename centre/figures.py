"""The day's figures from the store, so every console process shows the same numbers and a
restarted console shows the day so far.

Write side (`record`, on the ingest thread, in the same transaction as the events): each newly
stored rating becomes a row of `day_ratings`; queue events open and close rows of `day_waiting`;
a telemetry queue report replaces the station's row in `day_queue`. Whichever console process
stored an event (the store deduplicates) is the one that records it, so the tables are the same
for everyone. Read side (`FiguresReader`, the web's own connection): ratings by window, clerk and
service item, the bad ratings, waiting and the longest wait, for one station or all of them.
The day is the event's own calendar date (its `ts`, the station's local time), as the model's.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from centre.config import StoreConfig
from centre.store import Store, open_store
from edge.events import Event

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS day_ratings (
        id TEXT PRIMARY KEY, station TEXT NOT NULL, day TEXT NOT NULL, ts TEXT NOT NULL, window_no INTEGER,
        clerk TEXT, item TEXT, verdict TEXT NOT NULL, level INTEGER, ticket TEXT, reason TEXT)""",
    "CREATE INDEX IF NOT EXISTS day_ratings_day ON day_ratings (day, station)",
    """CREATE TABLE IF NOT EXISTS day_waiting (
        station TEXT NOT NULL, ticket TEXT NOT NULL, day TEXT NOT NULL, queued_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (station, ticket))""",
    """CREATE TABLE IF NOT EXISTS day_queue (
        station TEXT PRIMARY KEY, day TEXT NOT NULL, waiting BIGINT, longest_wait_s DOUBLE PRECISION,
        at DOUBLE PRECISION)""",
]
QUEUE_OPENS = ("issue", "issued", "put-back")
MAX_BAD = 100
VERDICTS = ("good", "bad")
# Bounds on what a station reports (beyond them the value is not counted): windows, waiting
# citizens, and the longest wait in seconds.
MAX_WINDOW = 999
MAX_WAITING = 100_000
MAX_WAIT_S = 7 * 86_400


def create(store: Store) -> None:
    for statement in SCHEMA:
        store.conn.execute(statement)
    store.commit()


def _unix(ts: Any) -> float | None:
    try:
        return datetime.fromisoformat(ts).timestamp() if isinstance(ts, str) else None
    except ValueError:
        return None


def _bounded(value: Any, low: float, high: float) -> Any:
    """A station's number, or None where it is no number or out of range: a hostile 10**30 must
    neither overflow an INTEGER column (and so fail the whole batch it came in) nor skew a figure."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if low <= value <= high else None


def _short(value: Any, n: int = 64) -> str | None:
    return None if value is None else str(value)[:n]


def record(store: Store, event: Event) -> None:
    """Add a newly stored event to the day's tables (not committed: ingest commits the batch)."""
    data, day = event.data, event.ts[:10]
    if event.kind == "rating":
        if data.get("verdict") not in VERDICTS:
            return  # stored as sent, but not a rating the day's figures can count
        reason, item = data.get("reason"), data.get("item")
        window = _bounded(data.get("window"), 0, MAX_WINDOW) or 0
        level = _bounded(data.get("level"), 1, 5)
        store._exec(
            """INSERT INTO day_ratings (id, station, day, ts, window_no, clerk, item, verdict, level, ticket, reason)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING""",
            (
                event.id, event.station, day, event.ts, window, _short(data.get("clerk") or "—"),
                _short(item.get("name") or item.get("code") if isinstance(item, dict) else item or "—"),
                _short(data.get("verdict"), 16), level, _short(data.get("ticket"), 32),
                _short(reason.get("name") if isinstance(reason, dict) else reason, 120),
            ),
        )  # fmt: skip
    elif event.kind == "queue":
        ticket = _short(data.get("ticket_id") or data.get("ticket"))
        if data.get("action") in QUEUE_OPENS:
            queued = _unix(data.get("queued")) or _unix(event.ts) or 0.0
            store._exec(
                """INSERT INTO day_waiting (station, ticket, day, queued_at) VALUES (?, ?, ?, ?)
                   ON CONFLICT (station, ticket) DO UPDATE SET day = excluded.day, queued_at = excluded.queued_at""",
                (event.station, ticket, day, queued),
            )
        else:
            store._exec("DELETE FROM day_waiting WHERE station = ? AND ticket = ?", (event.station, ticket))
    elif event.kind == "telemetry" and isinstance(data.get("queue"), dict):
        report = data["queue"]
        waiting, longest = report.get("waiting"), report.get("longest_wait_s")
        total = sum(v for v in waiting.values() if isinstance(v, int)) if isinstance(waiting, dict) else waiting
        worst = (
            max((v for v in longest.values() if isinstance(v, int | float)), default=None)
            if isinstance(longest, dict)
            else longest
        )
        total, worst = _bounded(total, 0, MAX_WAITING), _bounded(worst, 0, MAX_WAIT_S)
        store._exec(
            """INSERT INTO day_queue (station, day, waiting, longest_wait_s, at) VALUES (?, ?, ?, ?, ?)
               ON CONFLICT (station) DO UPDATE SET day = excluded.day, waiting = excluded.waiting,
               longest_wait_s = excluded.longest_wait_s, at = excluded.at""",
            (
                event.station,
                day,
                total,
                worst,
                _unix(event.ts),
            ),
        )


def _tally(good: int, bad: int) -> dict[str, Any]:
    total = good + bad
    return {"good": good, "bad": bad, "good_share": round(good / total, 3) if total else None}


class FiguresReader:
    """The page's figures, read from the store on a connection of the web's own."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self._store: Store | None = None
        self._lock = threading.Lock()

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            if self._store is None:
                self._store = open_store(self.config)
                create(self._store)
            rows = list(self._store._exec(sql, params))
            self._store.commit()  # end the read transaction: the next read sees new rows
            return rows

    def _queue(self, day: str, now: float, station: str | None = None) -> dict[str, dict[str, Any]]:
        where, params = ("AND station = ?", (station,)) if station else ("", ())
        out = {
            sid: {"source": "telemetry", "waiting": waiting, "longest_wait_s": longest, "at": at}
            for sid, waiting, longest, at in self._query(
                f"SELECT station, waiting, longest_wait_s, at FROM day_queue WHERE day = ? {where}", (day, *params)
            )
        }
        for sid, count, oldest in self._query(
            f"SELECT station, COUNT(*), MIN(queued_at) FROM day_waiting WHERE day = ? {where} GROUP BY station",
            (day, *params),
        ):
            out.setdefault(
                sid, {"source": "events", "waiting": count, "longest_wait_s": round(now - oldest, 1), "at": now}
            )
        return out

    def apply_summary(self, doc: dict[str, Any], now: float) -> None:
        """Replace the day's figures in the model's summary with the store's."""
        day = doc["day"]
        ratings = {
            sid: (good, bad)
            for sid, good, bad in self._query(
                """SELECT station, SUM(CASE WHEN verdict = 'good' THEN 1 ELSE 0 END),
                          SUM(CASE WHEN verdict = 'bad' THEN 1 ELSE 0 END) FROM day_ratings WHERE day = ?
                   GROUP BY station""",
                (day,),
            )
        }
        queues = self._queue(day, now)
        totals = doc["totals"]
        totals.update(good=0, bad=0, waiting=0)
        for station in doc["stations"]:
            good, bad = ratings.get(station["id"], (0, 0))
            queue = queues.get(station["id"], {"waiting": 0, "longest_wait_s": None})
            station.update(good=good, bad=bad, waiting=queue["waiting"], longest_wait_s=queue["longest_wait_s"])
            totals["good"] += good
            totals["bad"] += bad
            totals["waiting"] += queue["waiting"] or 0

    def apply_detail(self, doc: dict[str, Any], day: str, now: float) -> None:
        """Replace the day's figures in one station's detail with the store's."""
        sid = doc["id"]
        rows = self._query(
            """SELECT window_no, clerk, item, verdict, COUNT(*) FROM day_ratings WHERE day = ? AND station = ?
               GROUP BY window_no, clerk, item, verdict""",
            (day, sid),
        )
        by: dict[str, dict[Any, list[int]]] = {"window": {}, "clerk": {}, "item": {}}
        total = [0, 0]
        for window, clerk, item, verdict, n in rows:
            slot = 0 if verdict == "good" else 1 if verdict == "bad" else None
            if slot is None:
                continue
            total[slot] += n
            for name, key in (("window", str(window)), ("clerk", clerk), ("item", item)):
                by[name].setdefault(key, [0, 0])[slot] += n
        clips = doc.pop("clips", {})  # the model's clip events, by rating id
        bad = self._query(
            """SELECT id, ts, window_no, clerk, ticket, level, reason FROM day_ratings
               WHERE day = ? AND station = ? AND verdict = 'bad' ORDER BY ts DESC LIMIT ?""",
            (day, sid, MAX_BAD),
        )
        doc.update(
            ratings=_tally(*total),
            by_window={k: _tally(*v) for k, v in sorted(by["window"].items(), key=lambda kv: int(kv[0]))},
            by_clerk={k: _tally(*v) for k, v in sorted(by["clerk"].items())},
            by_item={k: _tally(*v) for k, v in sorted(by["item"].items())},
            bad=[
                dict(zip(("id", "ts", "window", "clerk", "ticket", "level", "reason"), r, strict=True))
                | {"clip": clips.get(r[0])}
                for r in bad
            ],
        )
        queue = self._queue(day, now, sid).get(sid)
        doc["queue"] = queue or {"source": "events", "waiting": 0, "longest_wait_s": None, "at": now}
        doc["figures_from"] = "store"
