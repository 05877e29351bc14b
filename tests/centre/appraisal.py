"""The appraisal figures computed by the tests themselves, straight from the events a simulated
station sent: what the console's reports must match (centre/reports.py computes them in SQL)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from edge.events import Event

KEY_OF = {
    "station": lambda e: e.station,
    "clerk": lambda e: e.data.get("clerk"),
    "window": lambda e: str(e.data.get("window")),
    "item": lambda e: e.data.get("category"),
    "day": lambda e: e.ts[:10],
    "month": lambda e: e.ts[:7],
}


def _p(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=10, method="inclusive")[q - 1], 1)


def expected(events: list[Event], by: tuple[str, ...]) -> dict[tuple, dict[str, Any]]:
    groups: dict[tuple, list[Event]] = defaultdict(list)
    for e in events:
        if e.kind in ("rating", "queue", "limit"):
            groups[tuple(KEY_OF[k](e) for k in by)].append(e)
    out = {}
    station_level = set(by) <= {"station", "day", "month"}
    for key, group in groups.items():
        ratings = [e.data for e in group if e.kind == "rating"]
        ends = [e.data for e in group if e.kind == "queue" and e.data["action"] == "end"]
        good = sum(r["verdict"] == "good" for r in ratings)
        bad = sum(r["verdict"] == "bad" for r in ratings)
        if not station_level and not ratings and not ends:
            continue  # only ticket issues: no clerk, no window to appraise
        waits = sorted(d["wait_s"] for d in ends)
        services = sorted(d["service_s"] for d in ends)
        out[key] = {
            "ratings": len(ratings),
            "good": good,
            "bad": bad,
            "good_share": round(good / (good + bad), 4) if good + bad else None,
            **{f"l{n}": sum(r["level"] == n for r in ratings) for n in range(1, 6)},
            "bad_with_reason": sum(r["verdict"] == "bad" and r["reason"] is not None for r in ratings),
            "served": len(ends),
            "unrated": len(ends) - sum(r.get("ticket_id") is not None for r in ratings),
            "overruns": sum(e.kind == "limit" and e.data["action"] == "over" for e in group),
            "wait_p50": round(statistics.median(waits), 1) if waits else None,
            "wait_p90": _p(waits, 9),
            "service_p50": round(statistics.median(services), 1) if services else None,
            "service_p90": _p(services, 9),
        }
    return out


def matches(rows: list[dict[str, Any]], want: dict[tuple, dict[str, Any]], by: tuple[str, ...]) -> None:
    got = {tuple(r[k] for k in by): r for r in rows}
    assert set(got) == set(want), f"groups differ: {sorted(set(got) ^ set(want))[:5]}"
    for key, figures in want.items():
        for name, value in figures.items():
            have = got[key][name]
            if isinstance(value, float) and have is not None:
                assert abs(have - value) <= 0.11, f"{key} {name}: report {have}, events {value}"
            else:
                assert have == value, f"{key} {name}: report {have}, events {value}"
