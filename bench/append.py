"""Durable append throughput: `Outbox.append` against a bare sqlite3 loop with the same durability.

Gateway side: `edge.outbox.Outbox` (WAL, synchronous=FULL, group commit on its commit thread)
in a fresh temporary directory; P producer threads each call `append(rating(i))` in a loop
for `--seconds`; every call returns only after its group's COMMIT (fsync of the WAL).
We count appends, the outbox's own `commits` counter (so appends/commit = mean group size)
and each call's latency.

Baselines, on a database with the identical schema and indexes (made by `Outbox` itself and
closed again) and the identical pragmas (journal_mode=WAL, synchronous=FULL,
wal_autocheckpoint=256, journal_size_limit=1 MiB), inserting pre-rendered ~300-byte payloads
(no JSON rendering, no seq bookkeeping, no meta row, no disk-budget check):
  - single producer: one thread, `BEGIN IMMEDIATE; INSERT one row; COMMIT` per event;
  - P producers, "same batching": one thread, `BEGIN IMMEDIATE; executemany(k rows); COMMIT`
    with k = the mean group size the gateway achieved in the same round (the fair ceiling);
  - P producers, "no group commit" (for information): P threads, each with its own
    connection, one transaction per event.
Rounds alternate gateway and baselines; figures are medians over `--rounds`.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

import _common as c

from edge.events import Event

INSERT = (
    "INSERT INTO events (seq, kind, priority, payload, size, created, clock, mono_ns, boot) VALUES (?,?,?,?,?,?,?,?,?)"
)


def payloads(n: int = 1000) -> list[bytes]:
    out = []
    for i in range(n):
        ev = c.rating(i)
        out.append(
            Event(
                c.STATION, 10_000 + i, ev.kind, "2026-01-01T08:00:00.000+08:00", "synced", ev.priority, ev.data
            ).to_bytes()
        )
    return out


def gateway(work: Path, producers: int, seconds: float) -> dict:
    outbox = c.open_outbox(work / "gw")
    stop = threading.Event()
    counts = [0] * producers
    lat: list[list[float]] = [[] for _ in range(producers)]

    def producer(k: int) -> None:
        i = k * 10_000_000
        append = outbox.append
        while not stop.is_set():
            t = time.perf_counter()
            append(c.rating(i))
            lat[k].append(time.perf_counter() - t)
            i += 1
            counts[k] += 1

    threads = [threading.Thread(target=producer, args=(k,)) for k in range(producers)]
    commits0 = outbox.commits
    elapsed = c.run_for(threads, stop, seconds)
    commits = outbox.commits - commits0
    outbox.close()
    n = sum(counts)
    flat = [x for lst in lat for x in lst]
    return {
        "appends": n,
        "rate": n / elapsed,
        "commits": commits,
        "group": n / max(1, commits),
        "p50_ms": c.percentile(flat, 50) * 1e3,
        "p99_ms": c.percentile(flat, 99) * 1e3,
    }


def bare_db(work: Path, name: str) -> Path:
    c.open_outbox(work / name).close()  # the outbox's own schema and indexes, then closed
    return work / name / "outbox.db"


def bare_conn(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in c.OUTBOX_PRAGMAS:
        conn.execute(pragma)
    return conn


def row(seq: int, payload: bytes) -> tuple:
    return (seq, "rating", 2, payload, len(payload), time.time(), "synced", time.monotonic_ns(), "bench")


def bare_batched(work: Path, name: str, batch: int, seconds: float, bodies: list[bytes]) -> dict:
    conn = bare_conn(bare_db(work, name))
    seq = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        rows = []
        for _ in range(batch):
            seq += 1
            rows.append(row(seq, bodies[seq % len(bodies)]))
        conn.execute("BEGIN IMMEDIATE")
        if batch == 1:
            conn.execute(INSERT, rows[0])
        else:
            conn.executemany(INSERT, rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return {"appends": seq, "rate": seq / elapsed, "batch": batch}


def bare_threads(work: Path, producers: int, seconds: float, bodies: list[bytes]) -> dict:
    path = bare_db(work, "bare-threads")
    stop = threading.Event()
    counts = [0] * producers
    lock = threading.Lock()
    next_seq = [0]

    def producer(k: int) -> None:
        conn = bare_conn(path)
        conn.execute("PRAGMA busy_timeout = 5000")
        while not stop.is_set():
            with lock:
                next_seq[0] += 1
                seq = next_seq[0]
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(INSERT, row(seq, bodies[seq % len(bodies)]))
            conn.execute("COMMIT")
            counts[k] += 1
        conn.close()

    threads = [threading.Thread(target=producer, args=(k,)) for k in range(producers)]
    elapsed = c.run_for(threads, stop, seconds)
    return {"appends": sum(counts), "rate": sum(counts) / elapsed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--producers", type=int, default=8, help="producer threads for the group-commit case")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each measurement")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    p = args.producers
    bodies = payloads()
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="yimen-bench-append-") as tmp:
        for r in range(args.rounds):
            work = Path(tmp) / f"r{r}"
            g1 = gateway(work, 1, args.seconds)
            b1 = bare_batched(work, "bare-1", 1, args.seconds, bodies)
            gp = gateway(work / "p", p, args.seconds)
            bp = bare_batched(work, "bare-p", max(1, round(gp["group"])), args.seconds, bodies)
            tp = bare_threads(work, p, args.seconds, bodies)
            rounds.append({"g1": g1, "b1": b1, "gp": gp, "bp": bp, "tp": tp})
            print(
                f"  round {r + 1}: single {g1['rate']:.0f}/s vs bare {b1['rate']:.0f}/s; "
                f"{p} producers {gp['rate']:.0f}/s (group {gp['group']:.1f}) vs bare batched "
                f"{bp['rate']:.0f}/s, bare {p} threads {tp['rate']:.0f}/s",
                flush=True,
            )

    def med(key: str, field: str) -> float:
        return c.median([rd[key][field] for rd in rounds])

    single = {
        "gateway_rate": round(med("g1", "rate")),
        "gateway_append_p50_ms": round(med("g1", "p50_ms"), 3),
        "gateway_append_p99_ms": round(med("g1", "p99_ms"), 3),
        "bare_rate": round(med("b1", "rate")),
        "ratio": round(med("g1", "rate") / med("b1", "rate"), 3),
    }
    multi = {
        "producers": p,
        "gateway_rate": round(med("gp", "rate")),
        "gateway_group_size": round(med("gp", "group"), 1),
        "gateway_append_p50_ms": round(med("gp", "p50_ms"), 3),
        "gateway_append_p99_ms": round(med("gp", "p99_ms"), 3),
        "bare_batched_rate": round(med("bp", "rate")),
        "bare_batched_batch": [rd["bp"]["batch"] for rd in rounds],
        "ratio_vs_bare_batched": round(med("gp", "rate") / med("bp", "rate"), 3),
        "bare_threads_rate": round(med("tp", "rate")),
        "ratio_vs_bare_threads": round(med("gp", "rate") / med("tp", "rate"), 3),
    }
    result = {"seconds_each": args.seconds, "rounds": args.rounds, "single": single, "multi": multi}
    human = (
        f"single producer {single['gateway_rate']}/s = {single['ratio']:.2f} x bare commit-per-event "
        f"({single['bare_rate']}/s); {p} producers {multi['gateway_rate']}/s (group {multi['gateway_group_size']}) "
        f"= {multi['ratio_vs_bare_batched']:.2f} x bare same-batching ({multi['bare_batched_rate']}/s), "
        f"{multi['ratio_vs_bare_threads']:.2f} x bare {p} threads without group commit ({multi['bare_threads_rate']}/s)"
    )
    c.report("append", result, human)


if __name__ == "__main__":
    main()
