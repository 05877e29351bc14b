"""Call-to-screen latency: from a clerk's `next` key to the calling screen's event stream.

A real Station (station.db and outbox on disk, fsync on every commit) and the real Screen
server; a client reads `/events` as a browser's EventSource does. For each call: t0 before
`Station.press(window, "next")`, t1 when it returns (the call is committed: the baseline, work
the station must do anyway), t2 when the stream delivers a view whose newest call is this one.
The screen's own cost is t2 - t1; the issue asks for the whole t2 - t0 to stay within a second.

    python bench/screen_latency.py [--calls 200]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from _common import ASSUME  # (and puts the repository on sys.path)

from edge.clock import ClockSource
from edge.outbox import Outbox
from edge.screen import Screen, ScreenConfig
from edge.station.service import Station
from peripherals.printer import NoPrinter
from tests.edge.station.station_support import settings

CONFIG = """
[[categories]]
code = "A"
name = "社会保障"
item = "SB-001"
windows = [1]
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        outbox = Outbox(Path(tmp) / "outbox.db", "bench", clock=ClockSource(ASSUME), max_bytes=1 << 30)
        station = Station(settings(CONFIG), "bench", outbox, printer=NoPrinter())
        station.start()
        screen = Screen(ScreenConfig(port=0, bind="127.0.0.1"), "bench", station.hall)
        station.on_view(screen.changed)
        screen.start()
        seen: dict[int, float] = {}
        arrived = threading.Condition()

        def read() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", screen.port)
            conn.request("GET", "/events")
            stream = conn.getresponse()
            while line := stream.readline():
                if line.startswith(b"data: "):
                    calls = json.loads(line[6:])["calls"]
                    if calls:
                        with arrived:
                            seen.setdefault(calls[0]["n"], time.perf_counter())
                            arrived.notify_all()

        threading.Thread(target=read, daemon=True).start()
        for _ in range(args.calls):
            station.press(1, "ticket", source="bench")
        commit, screen_ms, total = [], [], []
        for n in range(1, args.calls + 1):
            t0 = time.perf_counter()
            station.press(1, "next", source="bench")
            t1 = time.perf_counter()
            with arrived:
                arrived.wait_for(lambda n=n: n in seen, 10)
            t2 = seen[n]
            commit.append((t1 - t0) * 1000)
            screen_ms.append((t2 - t1) * 1000)
            total.append((t2 - t0) * 1000)
        screen.stop()
        station.stop()
        outbox.close()

    def q(values: list[float], p: int) -> float:
        return statistics.quantiles(values, n=100, method="inclusive")[p - 1]

    result = {
        "calls": args.calls,
        "commit_p50_ms": round(q(commit, 50), 2),
        "screen_p50_ms": round(q(screen_ms, 50), 2),
        "screen_p99_ms": round(q(screen_ms, 99), 2),
        "total_p50_ms": round(q(total, 50), 2),
        "total_p99_ms": round(q(total, 99), 2),
        "total_max_ms": round(max(total), 2),
        "screen_over_commit_p50": round(q(screen_ms, 50) / q(commit, 50), 3),
    }
    print(json.dumps(result))
    print(
        f"{args.calls} calls: press committed p50 {result['commit_p50_ms']} ms; then on the screen's stream "
        f"p50 {result['screen_p50_ms']} ms, p99 {result['screen_p99_ms']} ms; call to screen p99 "
        f"{result['total_p99_ms']} ms, max {result['total_max_ms']} ms"
    )


if __name__ == "__main__":
    main()
