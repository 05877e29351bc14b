"""Shared helpers for the benchmarks: config files, realistic payloads, pre-filled outboxes,
a private broker, and the one-JSON-line-plus-one-human-line result format.

Nothing here is product code; the benchmarks drive the product (edge/, mqtt/) through its
own classes and commands and compare it with bare loops written in the benchmark itself.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from edge.clock import ClockSource  # noqa: E402
from edge.config import ClockConfig  # noqa: E402
from edge.events import NewEvent, Priority  # noqa: E402
from edge.outbox import Outbox  # noqa: E402

STATION = "bench-0001"
COUNTY = "bench-county"
ASSUME = ClockConfig(sync="assume")

# Same pragmas as edge/outbox.py sets on its connection, for the bare sqlite3 baselines.
OUTBOX_PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA wal_autocheckpoint = 256",
    "PRAGMA journal_size_limit = 1048576",
)


def rating(i: int) -> NewEvent:
    """A realistic citizen rating: its envelope is about 300 bytes of JSON."""
    return NewEvent(
        "rating",
        Priority.CRITICAL,
        {
            "verdict": "good" if i % 7 else "bad",
            "level": 5 - (i % 5),
            "window": 1 + i % 3,
            "ticket": f"A{i % 1000:03d}",
            "category": "hukou",
            "clerk": f"clerk-{i % 17:03d}",
            "wait_s": 120 + i % 900,
            "served_s": 60 + i % 400,
            "channel": "keypad",
            "linked": True,
        },
    )


def open_outbox(storage: Path, *, cls: type[Outbox] = Outbox, max_mb: int = 512) -> Outbox:
    return cls(storage / "outbox.db", STATION, clock=ClockSource(ASSUME), max_bytes=max_mb * 1024 * 1024)


def prefill(storage: Path, n: int, batch: int = 500, make: Any = rating) -> float:
    """Write `n` undelivered events (`make(i)`, ratings by default) into a new outbox under
    `storage`; returns seconds taken.

    Uses the outbox's own commit path (`Outbox.append_all`: `batch` events a commit), so the rows
    and payload bytes are exactly what `append` stores, without 100,000 producer hand-offs."""
    t0 = time.perf_counter()
    outbox = open_outbox(storage)
    try:
        done = 0
        while done < n:
            k = min(batch, n - done)
            outbox.append_all([make(done + j) for j in range(k)])
            done += k
    finally:
        outbox.close()
    return time.perf_counter() - t0


def copy_storage(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)


def stored_messages(storage: Path) -> list[tuple[str, bytes]]:
    """(kind, payload) of every undelivered event, in the uplink's send order."""
    conn = sqlite3.connect(storage / "outbox.db")
    try:
        return conn.execute(
            "SELECT kind, payload FROM events WHERE delivered IS NULL AND parked IS NULL ORDER BY priority DESC, seq"
        ).fetchall()
    finally:
        conn.close()


def undelivered(storage: Path) -> int:
    conn = sqlite3.connect(f"file:{storage / 'outbox.db'}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM events WHERE delivered IS NULL AND parked IS NULL").fetchone()[0]
    finally:
        conn.close()


def write_config(path: Path, *, port: int, storage: Path, extra: str = "") -> Path:
    path.write_text(
        f"""[station]
id = "{STATION}"
county = "{COUNTY}"
name = "Benchmark station"

[broker]
host = "127.0.0.1"
port = {port}

[storage]
path = "{storage}"
max_mb = 512
{extra}""",
        encoding="utf-8",
    )
    return path


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values)


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "edge", "mqtt"], cwd=REPO, capture_output=True, text=True
        ).stdout
        return rev.strip() + ("+dirty(edge/mqtt)" if dirty.strip() else "")
    except OSError:
        return "unknown"


def machine() -> dict[str, Any]:
    try:
        mosq = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        mosq = "unknown"
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "mosquitto": mosq.replace("mosquitto version ", ""),
        "rev": git_rev(),
    }


def _busy_jiffies() -> int:
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    return sum(f) - f[3] - f[4]  # all but idle and iowait


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


_T0 = (time.monotonic(), _busy_jiffies(), _own_cpu_s())


def background_load() -> dict[str, float]:
    """CPU used on this machine since the script started by processes that are neither this
    script nor its (waited-for) children, in cores: other people's work skews a benchmark."""
    t0, busy0, own0 = _T0
    elapsed = time.monotonic() - t0
    busy = (_busy_jiffies() - busy0) / os.sysconf("SC_CLK_TCK")
    own = _own_cpu_s() - own0
    return {
        "elapsed_s": round(elapsed, 1),
        "machine_busy_cores": round(busy / elapsed, 2),
        "others_busy_cores": round(max(0.0, busy - own) / elapsed, 2),
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
    }


class CpuWindow:
    """CPU used during one measurement: by this process (all threads), by given child
    processes (e.g. the broker, read just before they stop), and by everything else."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.busy0 = _busy_jiffies()
        self.own0 = time.process_time()

    def close(self, pids: tuple[int, ...] = ()) -> dict[str, float]:
        import psutil

        elapsed = time.monotonic() - self.t0
        busy = (_busy_jiffies() - self.busy0) / os.sysconf("SC_CLK_TCK")
        own = time.process_time() - self.own0
        kids = 0.0
        for pid in pids:
            try:
                t = psutil.Process(pid).cpu_times()
                kids += t.user + t.system
            except psutil.Error:
                pass
        return {
            "elapsed_s": round(elapsed, 3),
            "cpu_s": round(own, 3),
            "broker_cpu_s": round(kids, 3),
            "others_cores": round(max(0.0, busy - own - kids) / elapsed, 2),
        }


def report(name: str, result: dict[str, Any], human: str) -> None:
    """One JSON line (machine-readable), then one line for people."""
    load = background_load()
    doc = {"bench": name, **result, "load": load, "machine": machine()}
    human += f" [other processes used {load['others_busy_cores']} of {os.cpu_count()} cores meanwhile]"
    print(json.dumps(doc, sort_keys=False), flush=True)
    print(f"{name}: {human}", flush=True)


def run_for(threads: list[threading.Thread], stop: threading.Event, seconds: float) -> float:
    """Start the producer threads, let them run `seconds`, stop and join them; the elapsed time."""
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def stop_fleets(fleets: list[subprocess.Popen], timeout: float = 30) -> None:
    """Ask each centre.fleet process to stop (its stations say goodbye), then wait; kill the slow."""
    for fleet in fleets:
        if fleet.poll() is None:
            fleet.stdin.write("stop\n")  # type: ignore[union-attr]
            fleet.stdin.flush()  # type: ignore[union-attr]
    for fleet in fleets:
        try:
            fleet.wait(timeout)
        except subprocess.TimeoutExpired:
            fleet.kill()
