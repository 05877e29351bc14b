"""Reports over any date range, computed by the store from the events it holds (never from the
page's memory): the monthly appraisal of clerks and stations, rankings, a station's trend.

One pass over the `rating`, `queue` and `limit` events of the range, grouped by what the caller asks
(`station`, `window`, `clerk`, `item`, `day`, `month`, in combinations), gives per group:

- ratings: good, bad, good share, the five-level distribution (5 非常满意 .. 1 非常不满意; a
  two-key unit's rating has no level and is counted as `unleveled`), bad ratings with a reason;
- services served (`queue` events with action `end`), ratings tied to a service (`ticket_id`),
  unrated services (served minus rated, never below zero);
- median and 90th percentile of `wait_s` and `service_s` of the services served (linear
  interpolation, as PostgreSQL's percentile_cont; SQLite has no such aggregate, so there the
  values are sorted by SQL and interpolated here);
- time-limit overruns: the stations' `limit` events with action `over` (the red light of a
  wait or a service: mqtt/TOPICS.md, one per level reached, never repeated; a station with no
  limits configured reports none);
- per station (when grouped by station, or station and day or month): outages begun in the range and the offline seconds
  inside it, and known losses (seqs closed as lost by the county, and seqs a station reported
  evicted) recorded in it.

Days are the stations' local days: an event's `ts` carries the station's own offset, and the
range compares its date part. `item` is the service category (`category`), which the rating
record maps to the national service item.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from centre.webstore import WebStore

KEYS = {
    "station": "station",
    "window": "win",
    "clerk": "clerk",
    "item": "category",
    "day": "day",
    "month": "month",
}
STATION_LEVEL = frozenset({"station", "day", "month"})  # groupings that get outages and losses
MAX_DAYS = 400
MAX_GROUPS = 100_000
MAX_BAD_LISTED = 500
FIELDS = {  # column: JSON path in the envelope
    "action": "data.action",
    "verdict": "data.verdict",
    "level": "data.level",
    "win": "data.window",
    "clerk": "data.clerk",
    "category": "data.category",
    "ticket_id": "data.ticket_id",
    "wait_s": "data.wait_s",
    "service_s": "data.service_s",
    "reason": "data.reason.name",
}
NUMERIC = {"level", "wait_s", "service_s"}


class ReportError(ValueError):
    """A report asked for in a way that cannot be answered; the message says what to change."""


@dataclass(frozen=True)
class Query:
    start: date
    end: date  # inclusive
    by: tuple[str, ...]
    stations: tuple[str, ...] | None = None  # None: every station

    @classmethod
    def parse(cls, start: str | None, end: str | None, by: str | None, stations: Iterable[str] | None) -> Query:
        try:
            first = date.fromisoformat(start or "")
            last = date.fromisoformat(end or "")
        except ValueError:
            raise ReportError("from and to: dates as YYYY-MM-DD") from None
        if last < first or (last - first).days >= MAX_DAYS:
            raise ReportError(f"from must be on or before to, at most {MAX_DAYS} days apart")
        keys = tuple(k for k in (by or "station").split(",") if k)
        if not keys or len(keys) > 4 or any(k not in KEYS for k in keys) or len(set(keys)) != len(keys):
            raise ReportError(f"by: one or more of {', '.join(KEYS)}, comma-separated")
        return cls(first, last, keys, None if stations is None else tuple(sorted(stations)))


def _json(engine: str, path: str, numeric: bool = False) -> str:
    """A field of the envelope (`data.wait_s`) as SQL, over the column `j` (PostgreSQL: the
    payload parsed once per row as jsonb) or `payload` (SQLite)."""
    if engine == "postgresql":
        text = f"(j #>> '{{{path.replace('.', ',')}}}')"
        return f"({text})::double precision" if numeric else text
    return f"json_extract(payload, '$.{path}')"


def _extract(engine: str, column: str) -> str:
    return _json(engine, FIELDS[column], column in NUMERIC)


def _source(engine: str, stations: Sequence[str] | None, mark: str) -> tuple[str, list[Any]]:
    """The range's rating, queue and limit events, one column per figure."""
    cols = ", ".join(f"{_extract(engine, c)} AS {c}" for c in FIELDS)
    payload = "payload::jsonb AS j" if engine == "postgresql" else "payload"
    where = f"kind IN ('rating', 'queue', 'limit') AND ts >= {mark} AND ts < {mark}"
    params: list[Any] = []
    if stations is not None:
        where += f" AND station IN ({', '.join([mark] * len(stations))})" if stations else " AND 1 = 0"
        params.extend(stations)
    inner = f"SELECT station, kind, substr(ts, 1, 10) AS day, substr(ts, 1, 7) AS month, {payload} FROM events"
    # PostgreSQL: OFFSET 0 keeps the subquery from being folded into the outer one, which would
    # parse the payload once per field instead of once per row.
    fence = " OFFSET 0" if engine == "postgresql" else ""
    return f"SELECT station, kind, day, month, {cols} FROM ({inner} WHERE {where}{fence}) e", params


def _percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between the closest ranks, as percentile_cont."""
    if not values:
        return None
    pos = (len(values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def build_sql(engine: str, query: Query) -> tuple[str, list[Any]]:
    """The one aggregate query (exposed so the bench can time it bare)."""
    mark = "%s" if engine == "postgresql" else "?"
    source, params = _source(engine, query.stations, mark)
    keys = [KEYS[k] for k in query.by]
    served = "kind = 'queue' AND action = 'end'"
    rating = "kind = 'rating'"
    levels = ", ".join(f"SUM(CASE WHEN {rating} AND level = {n} THEN 1 ELSE 0 END) AS l{n}" for n in range(1, 6))
    figures = f"""
        SUM(CASE WHEN {rating} THEN 1 ELSE 0 END) AS ratings,
        SUM(CASE WHEN {rating} AND verdict = 'good' THEN 1 ELSE 0 END) AS good,
        SUM(CASE WHEN {rating} AND verdict = 'bad' THEN 1 ELSE 0 END) AS bad,
        {levels},
        SUM(CASE WHEN {rating} AND level IS NULL THEN 1 ELSE 0 END) AS unleveled,
        SUM(CASE WHEN {rating} AND verdict = 'bad' AND reason IS NOT NULL THEN 1 ELSE 0 END) AS bad_with_reason,
        SUM(CASE WHEN {rating} AND ticket_id IS NOT NULL THEN 1 ELSE 0 END) AS rated,
        SUM(CASE WHEN {served} THEN 1 ELSE 0 END) AS served,
        SUM(CASE WHEN kind = 'limit' AND action = 'over' THEN 1 ELSE 0 END) AS overruns"""
    if engine == "postgresql":
        for col in ("wait_s", "service_s"):
            for name, q in (("p50", 0.5), ("p90", 0.9)):
                figures += (
                    f",\n        percentile_cont({q}) WITHIN GROUP (ORDER BY {col}) FILTER (WHERE {served})"
                    f" AS {col[:-2]}_{name}"
                )
    group = ", ".join(keys)
    sql = f"SELECT {group}, {figures} FROM ({source}) r GROUP BY {group} ORDER BY {group}"
    start, stop = query.start.isoformat(), (query.end + timedelta(days=1)).isoformat()
    return sql, [start, stop, *params]


class Reports:
    def __init__(self, db: WebStore) -> None:
        self.db = db
        self.mark = "%s" if db.engine == "postgresql" else "?"

    def figures(self, query: Query) -> list[dict[str, Any]]:
        sql, params = build_sql(self.db.engine, query)
        rows = self.db.rows(sql + f" LIMIT {MAX_GROUPS}", tuple(params))
        names = [*query.by, "ratings", "good", "bad", "l1", "l2", "l3", "l4", "l5", "unleveled", "bad_with_reason"]
        names += ["rated", "served", "overruns"]
        if self.db.engine == "postgresql":
            names += ["wait_p50", "wait_p90", "service_p50", "service_p90"]
        out = []
        people = not STATION_LEVEL.issuperset(query.by)  # by clerk, window or item
        for row in rows:
            doc = dict(zip(names, row, strict=True))
            if people and not doc["ratings"] and not doc["served"]:
                continue  # e.g. the ticket issues of a station: events of no clerk and no window
            for key in query.by:
                doc[key] = None if doc[key] is None else str(doc[key])
            for name in names[len(query.by) :]:
                if doc[name] is not None and name.endswith(("_p50", "_p90")):
                    doc[name] = round(float(doc[name]), 1)
                elif doc[name] is not None:
                    doc[name] = int(doc[name])
            judged = doc["good"] + doc["bad"]
            doc["good_share"] = round(doc["good"] / judged, 4) if judged else None
            doc["unrated"] = max(0, doc["served"] - doc["rated"])
            out.append(doc)
        if self.db.engine != "postgresql":
            self._percentiles(query, out)
        if "station" in query.by and STATION_LEVEL.issuperset(query.by):
            self._station_figures(query, out)
        return out

    def _percentiles(self, query: Query, out: list[dict[str, Any]]) -> None:
        """SQLite: the wait and service times of each group, sorted by SQL, interpolated here."""
        source, params = _source(self.db.engine, query.stations, self.mark)
        keys = [KEYS[k] for k in query.by]
        start, stop = query.start.isoformat(), (query.end + timedelta(days=1)).isoformat()
        index = {tuple(d[k] for k in query.by): d for d in out}
        for col in ("wait_s", "service_s"):
            sql = (
                f"SELECT {', '.join(keys)}, {col} FROM ({source}) r WHERE kind = 'queue' AND action = 'end'"
                f" AND {col} IS NOT NULL ORDER BY {', '.join(keys)}, {col}"
            )
            groups: dict[tuple, list[float]] = {}
            for row in self.db.rows(sql, (start, stop, *params)):
                groups.setdefault(tuple(None if v is None else str(v) for v in row[:-1]), []).append(float(row[-1]))
            for key, doc in index.items():
                values = groups.get(key, [])
                for name, q in (("p50", 0.5), ("p90", 0.9)):
                    found = _percentile(values, q)
                    doc[f"{col[:-2]}_{name}"] = None if found is None else round(found, 1)

    def _station_figures(self, query: Query, out: list[dict[str, Any]]) -> None:
        """Outages and known losses, per station (split by day or month when grouped so)."""
        start = datetime.combine(query.start, datetime.min.time()).timestamp()
        stop = datetime.combine(query.end + timedelta(days=1), datetime.min.time()).timestamp()
        now = time.time()
        period = next((k for k in ("day", "month") if k in query.by), None)

        def slot(station: str, at: float) -> tuple:
            local = datetime.fromtimestamp(at).date().isoformat()
            return (station, local if period == "day" else local[:7]) if period else (station,)

        index: dict[tuple, list[dict[str, Any]]] = {}  # one row per key: grouped by station (and period) only
        for doc in out:
            doc.update(outages=0, offline_s=0.0, lost=0)
            index.setdefault((doc["station"], doc[period]) if period else (doc["station"],), []).append(doc)
        m = self.mark
        for station, begin, end in self.db.rows(
            f"SELECT station, start_at, end_at FROM outages WHERE start_at < {m} AND COALESCE(end_at, {m}) > {m}",
            (stop, now, start),
        ):
            inside = max(0.0, min(end if end is not None else now, stop) - max(begin, start))
            for doc in index.get(slot(station, max(begin, start)), []):
                doc["outages"] += 1 if begin >= start else 0
                doc["offline_s"] = round(doc["offline_s"] + inside, 1)
        for station, at, count in self.db.rows(
            f"SELECT station, at, last_seq - first_seq + 1 FROM losses WHERE at >= {m} AND at < {m}", (start, stop)
        ):
            for doc in index.get(slot(station, at), []):
                doc["lost"] += int(count)
        evicted = _json(self.db.engine, "data.count", numeric=True)
        parsed = ", payload::jsonb AS j" if self.db.engine == "postgresql" else ", payload"
        for station, ts, count in self.db.rows(
            f"SELECT station, ts, {evicted} FROM (SELECT station, ts{parsed} FROM events"
            f" WHERE kind = 'eviction' AND ts >= {m} AND ts < {m}) e",
            (query.start.isoformat(), (query.end + timedelta(days=1)).isoformat()),
        ):
            key = (station, ts[:10] if period == "day" else ts[:7]) if period else (station,)
            for doc in index.get(key, []):
                doc["lost"] += int(count or 0)

    def bad_ratings(self, query: Query) -> list[dict[str, Any]]:
        """The bad ratings of the range, newest first, with their reasons (at most MAX_BAD_LISTED)."""
        source, params = _source(self.db.engine, query.stations, self.mark)
        start, stop = query.start.isoformat(), (query.end + timedelta(days=1)).isoformat()
        rows = self.db.rows(
            f"SELECT station, day, win, clerk, category, level, reason FROM ({source}) r"
            f" WHERE kind = 'rating' AND verdict = 'bad' ORDER BY day DESC LIMIT {MAX_BAD_LISTED}",
            (start, stop, *params),
        )
        names = ("station", "day", "window", "clerk", "item", "level", "reason")
        return [dict(zip(names, r, strict=True)) for r in rows]
