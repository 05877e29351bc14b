"""The reconnect herd: thousands of stations return together after the county broker restarts.

    python bench/herd.py [--stations 3000] [--procs 4] [--outage 10] [--variants 0.5:5,0.5:15]

Stations are centre.fleet processes; each connection reconnects as a gateway does, with
mqtt.uplink.Backoff (capped exponential backoff, equal jitter: a delay in [d/2, d]) and the
variant's reconnect_min_s:reconnect_max_s. Per variant: all connect, the broker is stopped for
`--outage` seconds and started again, and we measure, from the moment it listens again, how
long until each station is back (CONNACK) and has delivered again (its first PUBACK), the
connections per second at the peak, the broker's CPU until all delivered, and whether any
station was refused or gave up (not back within `--timeout`). The figure that matters:
how much longer than the broker each station stayed away (`excess`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _common import REPO, percentile, report, stop_fleets

from mqtt.broker import Mosquitto

COUNTY = "herd"
BROKER_LIMITS = """max_connections -1
max_queued_messages 100000
max_inflight_messages 0
set_tcp_nodelay true
"""
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def ask(fleets: list[subprocess.Popen], line: str) -> list[dict[str, Any]]:
    for fleet in fleets:
        fleet.stdin.write(line + "\n")  # type: ignore[union-attr]
        fleet.stdin.flush()  # type: ignore[union-attr]
    return [json.loads(fleet.stdout.readline()) for fleet in fleets]  # type: ignore[union-attr]


def herd(fleets: list[subprocess.Popen]) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for reply in ask(fleets, "herd"):
        merged.update(reply["herd"])
    return merged


def run_variant(root: Path, args: argparse.Namespace, rmin: float, rmax: float) -> dict[str, Any]:
    broker = Mosquitto(root / f"broker-{rmin}-{rmax}", extra=BROKER_LIMITS).start()
    fleets: list[subprocess.Popen] = []
    try:
        per = -(-args.stations // args.procs)
        for i in range(args.procs):
            first, count = 1 + i * per, min(per, args.stations - i * per)
            cmd = [sys.executable, "-m", "centre.fleet", "--port", str(broker.port), "--county", COUNTY]
            cmd += ["--count", str(count), "--first", str(first), "--rate", str(args.rate)]
            cmd += ["--telemetry", "3600", "--snapshot", "3600", "--reconnect-min", str(rmin)]
            cmd += ["--reconnect-max", str(rmax)]
            fleets.append(subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        ready = sum(json.loads(f.stdout.readline())["ready"] for f in fleets)  # type: ignore[union-attr]
        time.sleep(3)
        down_at = time.time()
        broker.stop()
        time.sleep(args.outage)
        broker.start()
        assert broker.proc is not None
        up_at = time.time()
        cpu0 = cpu_s(broker.proc.pid)
        peak_cpu, last_cpu, last_t = 0.0, cpu0, time.monotonic()
        deadline = time.monotonic() + args.timeout
        while True:
            time.sleep(1.0)
            now_cpu, now_t = cpu_s(broker.proc.pid), time.monotonic()
            peak_cpu = max(peak_cpu, (now_cpu - last_cpu) / (now_t - last_t))
            last_cpu, last_t = now_cpu, now_t
            state = herd(fleets)
            done = [s for s in state.values() if s["delivered_at"] is not None and s["delivered_at"] >= up_at]
            if len(done) == len(state) or time.monotonic() > deadline:
                break
        all_done_s = time.time() - up_at
        broker_cpu = cpu_s(broker.proc.pid) - cpu0
    finally:
        stop_fleets(fleets, 60)
        broker.stop()
    back = [s["back_at"] - up_at for s in state.values() if s["back_at"] is not None and s["back_at"] >= up_at]
    delivered = [s["delivered_at"] - up_at for s in done]
    away = [s["delivered_at"] - s["down_at"] for s in done]
    per_second = Counter(int(b) for b in back)
    outage = up_at - down_at
    return {
        "reconnect_min_s": rmin,
        "reconnect_max_s": rmax,
        "stations": ready,
        "outage_s": round(outage, 2),
        "delivered_again": len(done),
        "gave_up_or_late": len(state) - len(done),
        "refused": sum(s["refused"] for s in state.values()),
        "attempts_per_station": round(sum(s["attempts"] for s in state.values()) / max(1, len(state)), 1),
        "back_p50_s": round(percentile(back, 50), 2),
        "back_p95_s": round(percentile(back, 95), 2),
        "delivered_p50_s": round(percentile(delivered, 50), 2),
        "delivered_p95_s": round(percentile(delivered, 95), 2),
        "delivered_max_s": round(max(delivered, default=float("nan")), 2),
        "all_delivered_s": round(all_done_s, 2),
        "excess_max_s": round(max(away, default=float("nan")) - outage, 2),
        "peak_connects_per_s": max(per_second.values(), default=0),
        "broker_cpu_s": round(broker_cpu, 2),
        "broker_peak_cpu_cores": round(peak_cpu, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=3000)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--rate", type=float, default=0.02, help="events per second per station")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds the broker is down")
    parser.add_argument("--timeout", type=float, default=120.0, help="a station not back by then gave up")
    parser.add_argument("--variants", default="0.5:5,0.5:15", help="reconnect_min_s:reconnect_max_s,...")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by mosquitto and the fleets
    results = []
    with tempfile.TemporaryDirectory(prefix="yimen-herd-") as tmp:
        for variant in args.variants.split(","):
            rmin, rmax = (float(x) for x in variant.split(":"))
            results.append(run_variant(Path(tmp), args, rmin, rmax))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    human = "; ".join(
        f"cap {r['reconnect_max_s']} s: all {r['stations']} delivered again {r['all_delivered_s']} s after the broker "
        f"(p95 {r['delivered_p95_s']} s), excess {r['excess_max_s']} s, peak {r['peak_connects_per_s']} connects/s, "
        f"broker {r['broker_cpu_s']} CPU s, refused {r['refused']}, gave up {r['gave_up_or_late']}"
        for r in results
    )
    report("herd", {"stations": args.stations, "outage_s": args.outage, "variants": results}, human)


if __name__ == "__main__":
    main()
