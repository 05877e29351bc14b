"""A station at a steady 20 events a second: CPU, what reaches the disk per event, and latency
with an SD card's fsync.

The gateway is the real command, `yimen run --config FILE`, as a subprocess, with its station
simulator at `--rate` events a second (`[simulate] events_per_second`: citizens taking tickets,
clerks calling and rating, through the station logic and the outbox, its state in the same transaction), against
a private Mosquitto on loopback; `[clock] sync = "assume"`, telemetry every 60 s. Each phase
starts a fresh storage path, waits until connected, lets it settle `--settle` s, then measures
`--seconds` s. Events per second are the growth of the outbox's last seq over the window.

Phases (each optional):
- `plain`: CPU (the threads' schedstat run time, as % of one core) and the kernel's I/O
  counters from /proc/<pid>/io (`write_bytes`: bytes sent to the block layer; `syscw`: write
  calls) per event.
- `strace`: the same under `strace -f -e trace=fsync,fdatasync,...`: fsync/fdatasync and write
  calls per event over the window (strace slows the process; no CPU figure from this phase).
- `sd`: `strace` injecting `--fsync-ms` (default 20 ms, an SD card's fsync) after every
  fsync/fdatasync returns: press-to-PUBACK from the outbox (`created` -> `delivered`, the
  append's commit time to the delivery mark after the PUBACK) for the window's events.
- `quota`: `plain` inside a CPU cgroup limited to a quarter of a core (cgroup v1
  `cpu.cfs_quota_us` = 25,000 per 100,000 us period, or v2 `cpu.max` = "25000 100000", where
  this machine mounts it writable), with the same latency figures.
- `baseline` (with `--baseline DIR`, a source tree of an earlier revision, e.g. from `git
  archive`): `plain`'s CPU per event for this code and for that tree's gateway (run with
  PYTHONPATH=DIR, its config without the `printer` key it may not know), alternating for
  `--rounds` rounds so that both sides see the same machine; per-round ratios and their median.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import _common as c
import memory_cpu as m

from mqtt.broker import Mosquitto

CONFIG_EXTRA = """
[clock]
sync = "assume"

[telemetry]
interval_s = 60

[simulate]
events_per_second = {rate}
seed = 7
{printer}"""
CGROUP_V1 = Path("/sys/fs/cgroup/cpu")
CGROUP_V2 = Path("/sys/fs/cgroup")


def last_seq(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT max(seq) FROM events").fetchone()[0] or 0
    finally:
        conn.close()


def io_counters(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/io") as fh:
        return {k: int(v) for k, v in (line.split(": ") for line in fh)}


def latencies(db: Path, first: int, last: int) -> dict:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT delivered - created FROM events WHERE seq BETWEEN ? AND ? AND delivered IS NOT NULL", (first, last)
        ).fetchall()
    finally:
        conn.close()
    ms = [r[0] * 1000 for r in rows]
    return {
        "n": len(ms),
        "p50_ms": round(c.percentile(ms, 50), 2),
        "p99_ms": round(c.percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
    }


class Cgroup:
    """A CPU cgroup of a quarter core, v1 or v2, whichever this machine lets us write."""

    def __init__(self, name: str) -> None:
        v2 = CGROUP_V2 / "cgroup.controllers"
        if v2.exists() and "cpu" in v2.read_text().split():
            self.path = CGROUP_V2 / name
            self.path.mkdir()
            (self.path / "cpu.max").write_text("25000 100000\n")
            self.kind = "v2 cpu.max = 25000 100000"
        else:
            self.path = CGROUP_V1 / name
            self.path.mkdir()
            (self.path / "cpu.cfs_period_us").write_text("100000\n")
            (self.path / "cpu.cfs_quota_us").write_text("25000\n")
            self.kind = "v1 cpu.cfs_quota_us = 25000 per cpu.cfs_period_us = 100000"

    def enter(self) -> None:
        """In the child before exec: the gateway and all its threads run inside."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def throttled(self) -> dict[str, int]:
        stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        return {k: int(v) for k, v in stat.items() if k in ("nr_periods", "nr_throttled", "throttled_time")}

    def remove(self) -> None:
        self.path.rmdir()


def phase(name: str, work: Path, port: int, args: argparse.Namespace, tree: Path | None = None) -> dict:
    storage = work / name
    # An earlier tree may not know the `printer` key: its gateway runs on its own default.
    printer = "" if tree is not None else f"printer = {str(not args.no_printer).lower()}\n"
    extra = CONFIG_EXTRA.format(rate=args.rate, printer=printer)
    config = c.write_config(work / f"{name}.toml", port=port, storage=storage, extra=extra)
    db = storage / "outbox.db"
    cmd = [*m.yimen_cmd(), "run", "--config", str(config)]
    trace = work / f"{name}.strace"
    if name == "strace":
        cmd = [
            "strace",
            "-f",
            "-qq",
            "-ttt",
            "-o",
            str(trace),
            "-e",
            "trace=fsync,fdatasync,write,pwrite64,writev",
            *cmd,
        ]
    elif name == "sd":
        delay = f"delay_exit={round(args.fsync_ms * 1000)}"
        cmd = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=fsync,fdatasync", "-e",
               f"inject=fsync,fdatasync:{delay}", *cmd]  # fmt: skip
    group = Cgroup(f"yimen-bench-{os.getpid()}") if name == "quota" else None
    log = open(work / f"{name}.log", "ab")  # noqa: SIM115 - the child's stderr
    env = {**os.environ, "PYTHONPATH": str(tree)} if tree is not None else None
    proc = subprocess.Popen(cmd, stderr=log, env=env, preexec_fn=group.enter if group else None)
    try:
        m.wait_connected(proc, db, timeout=60)
        time.sleep(args.settle)
        pid = proc.pid if name not in ("strace", "sd") else _child(proc.pid)
        seq0, ns0, io0, t0 = last_seq(db), m.cpu_ns(pid), io_counters(pid), time.time()
        throttled0 = group.throttled() if group else None
        time.sleep(args.seconds)
        seq1, ns1, io1, t1 = last_seq(db), m.cpu_ns(pid), io_counters(pid), time.time()
        throttled1 = group.throttled() if group else None
        time.sleep(2)  # the window's last events get their PUBACKs and marks
    finally:
        if name in ("strace", "sd") and proc.poll() is None:
            child = _child(proc.pid)
            os.kill(child, signal.SIGTERM)  # strace passes on the gateway's exit code
            try:
                code = proc.wait(120)
            except subprocess.TimeoutExpired:  # never leave a gateway running behind the bench
                os.kill(child, signal.SIGKILL)
                proc.kill()
                raise
        else:
            code = m.stop(proc)
        if group:
            group.remove()
    events = seq1 - seq0
    out: dict = {"events": events, "events_per_s": round(events / (t1 - t0), 2), "exit_code": code}
    if name in ("plain", "quota") or name.startswith("ab-"):
        out["cpu_pct_of_core"] = round(100 * (ns1 - ns0) / 1e9 / (t1 - t0), 2)
        out["write_bytes_per_event"] = round((io1["write_bytes"] - io0["write_bytes"]) / events)
        out["write_calls_per_event"] = round((io1["syscw"] - io0["syscw"]) / events, 2)
    if name == "strace":
        calls = _count(trace, t0, t1)
        out.update({f"{k}_per_event": round(v / events, 3) for k, v in calls.items()})
    if name in ("sd", "quota", "plain"):
        out["press_to_puback"] = latencies(db, seq0 + 1, seq1)
    if group:
        out["cgroup"] = group.kind
        out["throttled"] = {k: throttled1[k] - throttled0[k] for k in throttled1}
    return out


def baseline(work: Path, port: int, args: argparse.Namespace) -> dict:
    """CPU per event of this code and of the tree in --baseline, alternating, --rounds rounds."""
    ours, theirs = [], []
    for n in range(args.rounds):
        for side, tree in (("ours", None), ("baseline", args.baseline)):
            got = phase(f"ab-{side}-{n}", work, port, args, tree)
            cpu_us = got["cpu_pct_of_core"] / 100 * 1e6 / got["events_per_s"]
            (ours if tree is None else theirs).append(round(cpu_us, 1))
    ratios = [round(a / b, 3) for a, b in zip(ours, theirs, strict=True)]
    return {
        "baseline": str(args.baseline),
        "cpu_us_per_event": {"ours": ours, "baseline": theirs},
        "ratios": ratios,
        "median_ratio": round(statistics.median(ratios), 3),
        "ratio_of_sums": round(sum(ours) / sum(theirs), 3),
    }


def _child(strace_pid: int) -> int:
    """The traced gateway's pid (strace's only child)."""
    with open(f"/proc/{strace_pid}/task/{strace_pid}/children") as fh:
        return int(fh.read().split()[0])


def _count(trace: Path, t0: float, t1: float) -> dict[str, int]:
    counts = {"fsync": 0, "fdatasync": 0, "write_calls": 0}
    pattern = re.compile(r"^\d+\s+(\d+\.\d+)\s+(\w+)\(")
    for line in trace.read_text(errors="replace").splitlines():
        match = pattern.match(line)
        if not match or not t0 <= float(match[1]) <= t1:
            continue
        call = match[2]
        if call in ("fsync", "fdatasync"):
            counts[call] += 1
        else:
            counts["write_calls"] += 1
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--fsync-ms", type=float, default=20.0)
    ap.add_argument("--phases", default="plain,strace,sd,quota", help="any of plain,strace,sd,quota,baseline")
    ap.add_argument("--baseline", type=Path, help="a source tree of an earlier revision, for the baseline phase")
    ap.add_argument("--rounds", type=int, default=5, help="baseline phase: alternating rounds")
    ap.add_argument(
        "--no-printer",
        action="store_true",
        help="a station without a ticket printer: a ticket is issued in one commit, not two",
    )
    args = ap.parse_args()
    result: dict = {
        "rate": args.rate,
        "seconds": args.seconds,
        "fsync_ms": args.fsync_ms,
        "printer": not args.no_printer,
    }
    with tempfile.TemporaryDirectory(prefix="yimen-bench-steady-") as tmp:
        work = Path(tmp)
        with Mosquitto(work / "broker") as broker:
            for name in args.phases.split(","):
                if name == "baseline":
                    if args.baseline is None:
                        ap.error("the baseline phase needs --baseline DIR")
                    result[name] = baseline(work, broker.port, args)
                else:
                    result[name] = phase(name, work, broker.port, args)
                print(f"  {name}: {result[name]}", flush=True)
    human = []
    if "plain" in result:
        p = result["plain"]
        human.append(
            f"{p['events_per_s']} ev/s: CPU {p['cpu_pct_of_core']} % of a core, {p['write_bytes_per_event']} B "
            f"written/event, p99 {p['press_to_puback']['p99_ms']} ms"
        )
    if "strace" in result:
        s = result["strace"]
        human.append(f"{s['fsync_per_event'] + s['fdatasync_per_event']:.2f} fsyncs/event")
    if "sd" in result:
        human.append(f"fsync +{args.fsync_ms:.0f} ms: p99 {result['sd']['press_to_puback']['p99_ms']} ms")
    if "baseline" in result:
        b = result["baseline"]
        human.append(f"CPU per event {b['median_ratio']}x the baseline's (median of {len(b['ratios'])} rounds)")
    if "quota" in result:
        q = result["quota"]
        human.append(f"quarter core: CPU {q['cpu_pct_of_core']} %, p99 {q['press_to_puback']['p99_ms']} ms")
    c.report("steady", result, "; ".join(human))


if __name__ == "__main__":
    main()
