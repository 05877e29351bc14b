"""The monthly appraisal over a county's month on PostgreSQL: 3,000 stations x 30 days, about
10 million events in the console's own `events` table, in the envelope stations send.

A private PostgreSQL (the tests' helper: initdb into a temporary directory, a free port) gets
the console's schema from the product (centre.store), then the month, generated inside the
server with generate_series (a station's day: `--per-day` citizens, each an issue, a call, an
end with wait and service times, and a rating). Then, each run `--repeat` times, best kept:

- report: the product's Reports.figures (one aggregate pass, percentiles by percentile_cont,
  plus outages and losses per station, shaped as the page and the XLSX get them);
- bare SQL: the same aggregate statement alone, executed and fetched with psycopg;

for two groupings: per station (the county's ranking) and per month, station and clerk (the
appraisal sheet, one row per clerk per month).

    python bench/report_month.py --stations 3000 --days 30 --per-day 28
"""

from __future__ import annotations

import argparse
import time
from datetime import date, timedelta

from _common import REPO, report

from centre.config import StoreConfig
from centre.reports import Query, Reports, build_sql
from centre.webstore import WebStore
from tests.support.postgres import PostgresServer

GENERATE = """
INSERT INTO events (id, station, seq, kind, ts, payload, replayed, received_at, stored_at)
SELECT station || '-' || seq, station, seq, kind, ts,
       json_build_object('id', station || '-' || seq, 'station', station, 'seq', seq, 'kind', kind, 'ts', ts,
                         'clock', 'synced', 'priority', CASE WHEN k = 3 THEN 'critical' ELSE 'normal' END,
                         'data', data)::text,
       false, 0, 0
FROM (
  SELECT 'b' || lpad(s::text, 5, '0') AS station, k,
         (d * %(per_day)s + c) * 4 + k + 1 AS seq,
         CASE WHEN k = 3 THEN 'rating' ELSE 'queue' END AS kind,
         to_char(%(first)s::timestamp
                 + make_interval(days => d, hours => 9, secs => c * 28800.0 / %(per_day)s + k * 60),
                 'YYYY-MM-DD"T"HH24:MI:SS.MS') || '+08:00' AS ts,
         CASE k
           WHEN 0 THEN json_build_object('action', 'issue', 'ticket', 'A' || c, 'category', 'A')
           WHEN 1 THEN json_build_object('action', 'call', 'ticket', 'A' || c, 'window', w, 'clerk', clerk)
           WHEN 2 THEN json_build_object('action', 'end', 'ticket', 'A' || c, 'category', 'A', 'window', w,
                                         'clerk', clerk, 'wait_s', r %% 1800, 'service_s', 60 + r %% 1200)
           ELSE json_build_object('verdict', CASE WHEN r %% 10 < 8 THEN 'good' ELSE 'bad' END,
                                  'level', CASE WHEN r %% 10 < 8 THEN 3 + r %% 3 ELSE 1 + r %% 2 END,
                                  'window', w, 'clerk', clerk, 'category', 'A', 'ticket_id', 'A' || c,
                                  'reason',
                                  CASE WHEN r %% 10 = 9 THEN json_build_object('key', 'r1', 'name', '等待太久') END,
                                  'wait_s', r %% 1800, 'service_s', 60 + r %% 1200)
         END AS data
  FROM generate_series(1, %(stations)s) s, generate_series(0, %(days)s - 1) d,
       generate_series(0, %(per_day)s - 1) c, generate_series(0, 3) k,
       LATERAL (SELECT abs(hashint4(s * 100003 + d * 1009 + c)) AS r) h,
       LATERAL (SELECT 1 + (h.r / 7) %% 3 AS w) ww,
       LATERAL (SELECT 'clerk-' || lpad((s * 3 + ww.w)::text, 6, '0') AS clerk) cc
) x
"""


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stations", type=int, default=3000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--per-day", type=int, default=28, help="citizens per station per day (4 events each)")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    first = date(2026, 10, 1)
    server = PostgresServer().start()
    try:
        db = WebStore.open(StoreConfig(REPO / "unused.db", dsn=server.dsn, schema="bench"))
        conn = db.store.conn
        t0 = time.perf_counter()
        # As a bulk load does: the month without indexes, then the console's indexes built once.
        conn.execute("ALTER TABLE events DROP CONSTRAINT events_pkey")
        conn.execute("DROP INDEX events_station_seq, events_ts")
        conn.execute(
            GENERATE,
            {"first": first.isoformat(), "stations": args.stations, "days": args.days, "per_day": args.per_day},
        )
        conn.execute("ALTER TABLE events ADD PRIMARY KEY (id)")
        conn.execute("CREATE INDEX events_station_seq ON events (station, seq)")
        conn.execute("CREATE INDEX events_ts ON events (ts)")
        conn.execute("ANALYZE events")
        conn.commit()
        load_s = time.perf_counter() - t0
        (events,) = conn.execute("SELECT count(*) FROM events").fetchone()
        (size,) = conn.execute("SELECT pg_total_relation_size('events')").fetchone()
        last = first + timedelta(days=args.days - 1)
        reports = Reports(db)
        result: dict[str, object] = {
            "stations": args.stations,
            "days": args.days,
            "events": events,
            "table_mb": round(size / 2**20),
            "load_s": round(load_s, 1),
        }
        for by in ("station", "month,station,clerk"):
            query = Query.parse(first.isoformat(), last.isoformat(), by, None)
            sql, params = build_sql("postgresql", query)
            bare_s, bare_rows = best(lambda sql=sql, params=params: conn.execute(sql, params).fetchall(), args.repeat)
            conn.commit()
            report_s, rows = best(lambda query=query: reports.figures(query), args.repeat)
            # The report leaves out groups with nothing to appraise (a station's ticket issues, of no clerk).
            assert len(rows) <= len(bare_rows), (len(rows), len(bare_rows))
            served = sum(r["served"] for r in rows)
            assert served == args.stations * args.days * args.per_day, served
            key = by.replace(",", "_")
            result[f"{key}_rows"] = len(rows)
            result[f"{key}_report_s"] = round(report_s, 2)
            result[f"{key}_bare_sql_s"] = round(bare_s, 2)
            result[f"{key}_ratio"] = round(report_s / bare_s, 2)
        db.close()
    finally:
        server.stop()
    report(
        "report_month",
        result,
        f"{events:,} events ({result['table_mb']} MB, loaded in {result['load_s']} s): per-station report"
        f" {result['station_report_s']} s vs bare SQL {result['station_bare_sql_s']} s; per clerk per month"
        f" {result['month_station_clerk_report_s']} s vs {result['month_station_clerk_bare_sql_s']} s",
    )


if __name__ == "__main__":
    main()
