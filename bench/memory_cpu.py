"""Resident memory and CPU of the gateway process: idle for 60 s, and while draining a backlog.

The gateway is the real command, `yimen run --config FILE`, as a subprocess (simulator off;
every other setting at its default: telemetry every 60 s, clock source `kernel`,
reconnect 0.5..5 s), against a private Mosquitto (defaults).

1. Idle: start the gateway on an empty outbox, wait until `yimen status` would say
   "connected", let it settle 2 s, then for `--idle` seconds sample VmRSS from
   /proc/<pid>/status every 100 ms; idle CPU is the growth of utime+stime (/proc/<pid>/stat)
   over the window, as a share of one core (and, finer than its 10 ms ticks, the growth of
   the threads' /proc/<pid>/task/*/schedstat run times). Then SIGTERM; it must exit 0.
2. Drain: the same storage path replaced by an outbox pre-filled with `--events` ratings
   (~300-byte envelopes); start the gateway again and sample VmRSS every 100 ms until the
   outbox reports 0 undelivered (read-only count from this process every 0.5 s). Reports the
   maximum RSS, the CPU used, and the drain time (process start to the last event's
   `delivered` stamp).
Goals: RSS < 40 MB in both phases, idle CPU < 0.5% of a core.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as c

from mqtt.broker import Mosquitto

TICK = os.sysconf("SC_CLK_TCK")
MB = 1024 * 1024


def yimen_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "yimen"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "edge.cli"]


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def cpu_ns(pid: int) -> int:
    """On-CPU time of all the process's threads in ns (/proc/<pid>/task/*/schedstat): finer than ticks."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as fh:
                total += int(fh.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def connection_state(db: Path) -> str:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key='connection'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return "unknown"
    return (row[0] if row else "unknown").split("|", 1)[0]


def start(config: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([*yimen_cmd(), "run", "--config", str(config)], stderr=open(log, "ab"))


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(20)


def wait_connected(proc: subprocess.Popen, db: Path, timeout: float = 20) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"gateway exited with {proc.returncode}")
        if db.exists() and connection_state(db) == "connected":
            return time.monotonic() - t0
        time.sleep(0.05)
    raise SystemExit("gateway did not connect")


def idle_phase(config: Path, storage: Path, log: Path, seconds: float) -> dict:
    proc = start(config, log)
    try:
        connect_s = wait_connected(proc, storage / "outbox.db")
        time.sleep(2)
        samples = []
        cpu0, ns0, t0 = cpu_ticks(proc.pid), cpu_ns(proc.pid), time.monotonic()
        next_t = t0
        while time.monotonic() - t0 < seconds:
            samples.append(rss_bytes(proc.pid))
            next_t += 0.1
            time.sleep(max(0.0, next_t - time.monotonic()))
        cpu1, ns1, t1 = cpu_ticks(proc.pid), cpu_ns(proc.pid), time.monotonic()
    finally:
        code = stop(proc)
    cpu_s = (cpu1 - cpu0) / TICK
    return {
        "seconds": round(t1 - t0, 2),
        "connect_s": round(connect_s, 3),
        "rss_max_mb": round(max(samples) / MB, 2),
        "rss_mean_mb": round(sum(samples) / len(samples) / MB, 2),
        "samples": len(samples),
        "cpu_s": round(cpu_s, 3),
        "cpu_pct_of_core": round(100 * cpu_s / (t1 - t0), 3),
        "cpu_pct_of_core_schedstat": round(100 * (ns1 - ns0) / 1e9 / (t1 - t0), 4),
        "exit_code": code,
    }


def drain_phase(config: Path, storage: Path, template: Path, log: Path, n: int, timeout: float) -> dict:
    c.copy_storage(template, storage)
    db = storage / "outbox.db"
    wall0 = time.time()
    proc = start(config, log)
    samples = []
    left = n
    try:
        cpu_start = time.monotonic()
        t0 = time.monotonic()
        next_t = t0
        next_count = t0 + 0.5
        while time.monotonic() - t0 < timeout:
            if proc.poll() is not None:
                raise SystemExit(f"gateway exited with {proc.returncode} while draining")
            samples.append(rss_bytes(proc.pid))
            now = time.monotonic()
            if now >= next_count:
                next_count = now + 0.5
                left = c.undelivered(storage)
                if left == 0:
                    break
            next_t += 0.1
            time.sleep(max(0.0, next_t - time.monotonic()))
        cpu = cpu_ticks(proc.pid) / TICK
        elapsed = time.monotonic() - cpu_start
    finally:
        code = stop(proc)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    last = conn.execute("SELECT max(delivered) FROM events").fetchone()[0]
    conn.close()
    if left != 0:
        raise SystemExit(f"drain did not finish in {timeout} s: {left} undelivered")
    return {
        "events": n,
        "drain_s": round(last - wall0, 2),
        "rss_max_mb": round(max(samples) / MB, 2),
        "samples": len(samples),
        "cpu_s_total": round(cpu, 2),
        "cpu_pct_of_core": round(100 * cpu / elapsed, 1),
        "exit_code": code,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--idle", type=float, default=60.0, help="idle window, seconds")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--timeout", type=float, default=100.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="yimen-bench-memcpu-") as tmp:
        work = Path(tmp)
        template = work / "template"
        c.prefill(template, args.events)
        storage = work / "state"
        log = work / "gateway.log"
        with Mosquitto(work / "broker") as broker:
            config = c.write_config(work / "station.toml", port=broker.port, storage=storage)
            try:
                idle = idle_phase(config, storage, log, args.idle)
                print(
                    f"  idle: RSS max {idle['rss_max_mb']} MB, CPU {idle['cpu_pct_of_core']}% of a core",
                    flush=True,
                )
                drain = drain_phase(config, storage, template, log, args.events, args.timeout)
                print(f"  drain: RSS max {drain['rss_max_mb']} MB, {drain['drain_s']} s", flush=True)
            except SystemExit:
                print("gateway log (last lines):", *log.read_text(errors="replace").splitlines()[-15:], sep="\n  ")
                raise
        errors = [ln for ln in log.read_text(errors="replace").splitlines() if " ERROR " in ln]
    rss_ok = idle["rss_max_mb"] < 40 and drain["rss_max_mb"] < 40
    cpu_ok = idle["cpu_pct_of_core"] < 0.5
    result = {
        "command": " ".join([*yimen_cmd(), "run", "--config", "station.toml"]),
        "idle": idle,
        "drain": drain,
        "gateway_errors_logged": errors[:5],
        "goals": {"rss_lt_40mb": rss_ok, "idle_cpu_lt_0.5pct": cpu_ok},
        "ratio_rss_to_goal": round(max(idle["rss_max_mb"], drain["rss_max_mb"]) / 40, 2),
        "ratio_idle_cpu_to_goal": round(idle["cpu_pct_of_core"] / 0.5, 3),
    }
    human = (
        f"idle {idle['seconds']:.0f} s: RSS max {idle['rss_max_mb']} MB, CPU {idle['cpu_pct_of_core']:.3f}% of a core; "
        f"draining {args.events}: RSS max {drain['rss_max_mb']} MB ({drain['drain_s']} s); "
        f"goals RSS < 40 MB {'met' if rss_ok else 'NOT met'}, idle CPU < 0.5% {'met' if cpu_ok else 'NOT met'}"
    )
    c.report("memory_cpu", result, human)


if __name__ == "__main__":
    main()
