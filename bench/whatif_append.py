"""What-if for the single-producer append: where the gap to the bare sqlite3 loop goes.

Same database setup as bench/append.py (identical schema, indexes and pragmas); one producer,
`--seconds` each, variants interleaved over `--rounds`, medians reported. Nothing in edge/ is
changed: the variants call the outbox's own methods differently or add work to the bare loop.

  append        `Outbox.append` as the product does it (hand-off to the commit thread).
  direct        `Outbox._commit([one request])` called on the producer's own thread: the same
                commit without the hand-off (queue, threading.Event, commit thread wake-ups).
  direct-noroom as direct, with `_make_room` (the per-commit disk-budget check: json.dumps of
                every event + 3 PRAGMAs in `used_bytes`) replaced by "accept all".
  bare          BEGIN IMMEDIATE; INSERT one row; COMMIT (pre-rendered payload).
  bare+meta     as bare, plus the `INSERT OR REPLACE INTO meta ('last_seq', ...)` that every
                outbox commit also writes (one more b-tree page in each WAL commit).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _common as c
from append import INSERT, bare_conn, bare_db, payloads, row

from edge.outbox import _Append

VARIANTS = ("append", "direct", "direct-noroom", "bare", "bare+meta")


def run(variant: str, work: Path, seconds: float, bodies: list[bytes]) -> float:
    n = 0
    if variant.startswith("bare"):
        conn = bare_conn(bare_db(work, "bare"))
        meta = variant == "bare+meta"
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            n += 1
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(INSERT, row(n, bodies[n % len(bodies)]))
            if meta:
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)", (str(n),))
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - t0
        conn.close()
        return n / elapsed
    outbox = c.open_outbox(work / "gw")
    if variant == "direct-noroom":
        outbox._make_room = lambda batch: (batch, None)  # type: ignore[method-assign]
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        if variant == "append":
            outbox.append(c.rating(n))
        else:
            outbox._commit([_Append([c.rating(n)])])
        n += 1
    elapsed = time.perf_counter() - t0
    outbox.close()
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    bodies = payloads()
    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="yimen-bench-whatif-append-") as tmp:
        for r in range(args.rounds):
            for v in VARIANTS:
                rates[v].append(run(v, Path(tmp) / f"{v}-{r}", args.seconds, bodies))
            print("  round", r + 1, " ".join(f"{v} {rates[v][-1]:.0f}/s" for v in VARIANTS), flush=True)
    med = {v: c.median(rs) for v, rs in rates.items()}
    rows = {
        v: {
            "rates": [round(x) for x in rates[v]],
            "median_rate": round(med[v]),
            "ratio_to_bare": round(med[v] / med["bare"], 3),
            "us_per_append": round(1e6 / med[v], 1),
        }
        for v in VARIANTS
    }
    human = "; ".join(f"{v} {rows[v]['median_rate']}/s ({rows[v]['us_per_append']:.0f} us)" for v in VARIANTS)
    c.report("whatif_append", {"seconds_each": args.seconds, "rounds": args.rounds, "variants": rows}, human)


if __name__ == "__main__":
    main()
