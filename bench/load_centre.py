"""Load test of the county console: thousands of simulated stations on one Mosquitto.

    python bench/load_centre.py [--stations 3000] [--procs 4] [--rate 0.1] [--seconds 120] [--kill 30]
                                [--workers 1] [--dsn postgresql://...] [--clip-share 0.05] [--clip-every 60]
                                [--clip-frames 200] [--upload-kbps 128]

Stations are centre.fleet processes (each one thread driving hundreds of MQTT connections with
real wills and retained statuses); the console is `yimen centre` as a process, as a county runs
it. Measured: connect time, ingest rate (events stored per second), lag from an event's
creation at the station (its `ts`) to its row in the store, console memory, and how soon the
console marks stations offline after their connections are killed (the broker publishes their
wills). A share of the stations (`--clip-share`, 5 %) also upload an evidence clip every
`--clip-every` seconds, paced at `--upload-kbps` as a station's uploader is; every station
uploads its snapshots. The broker runs with its limits raised in its own config; our fd limit is raised too.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from _common import REPO, percentile, report, stop_fleets

from centre.client import ConsoleClient
from mqtt.broker import Mosquitto, free_port

COUNTY = "load"
BROKER_LIMITS = """max_connections -1
max_queued_messages 100000
max_inflight_messages 0
set_tcp_nodelay true
"""


ADMIN = ("bench", "bench-password-1")
CLIENT = ConsoleClient("http://127.0.0.1")  # logged in by _up; its cookie jar holds the session


def get(url: str) -> Any:
    with CLIENT.opener.open(url, timeout=10) as res:
        return json.load(res)


def wait(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return time.monotonic() - t0
        time.sleep(interval)
    raise SystemExit(f"load_centre: timed out after {timeout} s waiting for {what}")


def console_config(root: Path, broker: int, web: int, args: argparse.Namespace) -> Path:
    store = f'dsn = "{args.dsn}"\nschema = "load_{int(time.time())}"' if args.dsn else 'path = "centre.db"'
    path = root / "centre.toml"
    path.write_text(
        f"""[centre]
county = "{COUNTY}"
[broker]
port = {broker}
[ingest]
workers = {args.workers}
[store]
{store}
[web]
port = {web}
""",
        encoding="utf-8",
    )
    return path


def lag_from_store(root: Path, since: float) -> list[float]:
    """Seconds from each event's creation (`ts`) to its stored_at, for events stored after `since`;
    replays (answers to the console's requests, late by design) are counted apart."""
    with sqlite3.connect(root / "centre.db") as db:
        rows = db.execute("SELECT ts, stored_at FROM events WHERE stored_at >= ? AND NOT replayed", (since,)).fetchall()
    return [stored - datetime.fromisoformat(ts).timestamp() for ts, stored in rows]


def media_from_store(root: Path) -> dict[str, Any]:
    """What the county holds of the uploads: files by state, bytes stored, and for clips the time
    from the media event's arrival to the file complete (the station's upload cap dominates)."""
    with sqlite3.connect(root / "centre.db") as db:
        states = dict(db.execute("SELECT state, COUNT(*) FROM media GROUP BY state").fetchall())
        stored = db.execute("SELECT COALESCE(SUM(size), 0) FROM media WHERE state = 'complete'").fetchone()[0]
        clip_s = [
            r[0]
            for r in db.execute(
                "SELECT completed_at - announced_at FROM media WHERE type = 'clip' AND state = 'complete'"
                " AND announced_at IS NOT NULL"
            )
        ]
        refused = db.execute("SELECT COALESCE(SUM(n), 0) FROM media_counts WHERE what LIKE 'refused:%'").fetchone()[0]
    return {
        "media_states": states,
        "media_mb_stored": round(stored / 2**20, 1),
        "clips_complete": len(clip_s),
        "clip_complete_p50_s": round(percentile(clip_s, 50), 1) if clip_s else None,
        "media_refused": refused,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=3000)
    parser.add_argument("--procs", type=int, default=4, help="fleet processes")
    parser.add_argument("--rate", type=float, default=0.1, help="citizen events per second per station")
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--kill", type=int, default=30, help="stations whose connections are killed at the end")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--dsn", default=None, help="PostgreSQL instead of SQLite (lag not computed)")
    parser.add_argument("--clip-share", type=float, default=0.05, help="share of stations uploading evidence clips")
    parser.add_argument("--clip-every", type=float, default=60.0, help="seconds between a clip station's clips")
    parser.add_argument("--clip-frames", type=int, default=200, help="frames per clip (~1.5 KB each)")
    parser.add_argument("--upload-kbps", type=float, default=128.0, help="each station's media upload cap")
    args = parser.parse_args()

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by mosquitto and the fleets
    if hard < args.stations + 1024:
        raise SystemExit(f"load_centre: the hard fd limit {hard} is too low for {args.stations} connections")

    with tempfile.TemporaryDirectory(prefix="yimen-load-") as tmp:
        root = Path(tmp)
        broker = Mosquitto(root / "broker", extra=BROKER_LIMITS).start()
        web = free_port()
        config = console_config(root, broker.port, web, args)
        centre = [sys.executable, "-m", "edge.cli", "centre", "--config", str(config)]
        add = [*centre, "user", "add", ADMIN[0], "--role", "admin", "--password-stdin"]
        subprocess.run(add, input=ADMIN[1], text=True, cwd=REPO, check=True, capture_output=True)
        CLIENT.url = f"http://127.0.0.1:{web}"
        console = subprocess.Popen(
            centre,
            cwd=REPO,
            stderr=open(root / "centre.log", "wb"),  # noqa: SIM115 - for the process's life
        )
        base = f"http://127.0.0.1:{web}"
        fleets: list[subprocess.Popen] = []
        try:
            wait(lambda: _up(base), 20, "the console")
            per = -(-args.stations // args.procs)
            t0 = time.monotonic()
            for i in range(args.procs):
                first, count = 1 + i * per, min(per, args.stations - i * per)
                cmd = [sys.executable, "-m", "centre.fleet", "--port", str(broker.port), "--county", COUNTY]
                cmd += ["--count", str(count), "--first", str(first), "--rate", str(args.rate)]
                cmd += ["--clip-share", str(args.clip_share), "--clip-every", str(args.clip_every)]
                cmd += ["--clip-frames", str(args.clip_frames), "--upload-kbps", str(args.upload_kbps)]
                fleets.append(subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
            ready = [json.loads(f.stdout.readline()) for f in fleets]  # type: ignore[union-attr]
            connect_s = time.monotonic() - t0
            connected = sum(r["ready"] for r in ready)
            wait(lambda: get(base + "/api/summary")["totals"].get("online", 0) >= connected, 60, "all stations online")
            online_s = time.monotonic() - t0
            print(f"{connected} stations connected in {connect_s:.1f} s, all online at the console in {online_s:.1f} s")

            samples = []
            start_wall = time.time()
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                m = get(base + "/api/metrics")
                samples.append(
                    (
                        time.monotonic(),
                        m["ingest"]["stored"],
                        m["ingest"]["messages"],
                        m["rss_bytes"],
                        m["ingest"]["queued"],
                    )
                )
                time.sleep(5)
            (ta, sa, ma, _, _), (tb, sb, mb, _, _) = samples[0], samples[-1]
            rate = (sb - sa) / (tb - ta)
            msg_rate = (mb - ma) / (tb - ta)
            rss = max(s[3] for s in samples)
            backlog = max(s[4] for s in samples)
            lags = lag_from_store(root, start_wall) if not args.dsn else []
            media = media_from_store(root) if not args.dsn else {}

            # Kill connections (no DISCONNECT): the broker publishes each will; how soon is it red?
            victims = random.Random(1).sample(range(1, args.stations + 1), args.kill)
            killed_at: dict[str, float] = {}
            for i, fleet in enumerate(fleets):
                mine = [f"s{n:05d}" for n in victims if (n - 1) // per == i]
                if mine:
                    fleet.stdin.write("kill " + " ".join(mine) + "\n")  # type: ignore[union-attr]
                    fleet.stdin.flush()  # type: ignore[union-attr]
                    reply = json.loads(fleet.stdout.readline())  # type: ignore[union-attr]
                    killed_at.update(dict.fromkeys(reply["killed"], reply["at"]))
            seen: dict[str, float] = {}
            deadline = time.monotonic() + 30
            while len(seen) < len(killed_at) and time.monotonic() < deadline:
                now = time.time()
                for st in get(base + "/api/summary")["stations"]:
                    if st["id"] in killed_at and st["state"] == "offline" and st["id"] not in seen:
                        seen[st["id"]] = now
                time.sleep(0.1)
            marked = [get(f"{base}/api/station/{sid}")["since"] - killed_at[sid] for sid in seen]
            visible = [seen[sid] - killed_at[sid] for sid in seen]
        finally:
            stop_fleets(fleets)
            console.terminate()
            console.wait(30)
            broker.stop()

    result = {
        "stations": connected,
        "procs": args.procs,
        "workers": args.workers,
        "store": "postgresql" if args.dsn else "sqlite",
        "rate_per_station": args.rate,
        "seconds": args.seconds,
        "connect_s": round(connect_s, 1),
        "all_online_at_console_s": round(online_s, 1),
        "ingest_events_per_s": round(rate, 1),
        "ingest_messages_per_s": round(msg_rate, 1),
        "ingest_queue_max": backlog,
        "lag_p50_ms": round(percentile(lags, 50) * 1000, 1) if lags else None,
        "lag_p99_ms": round(percentile(lags, 99) * 1000, 1) if lags else None,
        "lag_max_ms": round(max(lags) * 1000, 1) if lags else None,
        "console_rss_mb": round(rss / 2**20, 1),
        "clip_share": args.clip_share,
        "clip_every_s": args.clip_every,
        "clip_kb": round(args.clip_frames * 1.5),
        **media,
        "killed": len(killed_at),
        "marked_offline": len(seen),
        "offline_marked_max_s": round(max(marked), 2) if marked else None,
        "offline_visible_max_s": round(max(visible), 2) if visible else None,
    }
    report(
        "load_centre",
        result,
        f"{connected} stations; {rate:.0f} events/s stored; lag p50 {result['lag_p50_ms']} ms"
        f" p99 {result['lag_p99_ms']} ms; console {result['console_rss_mb']} MB;"
        f" {len(seen)}/{len(killed_at)} killed stations marked offline,"
        f" at most {result['offline_marked_max_s']} s after the kill ({result['offline_visible_max_s']} s on the page);"
        f" media: {media.get('media_states')} ({media.get('media_mb_stored')} MB stored)",
    )


def _up(base: str) -> bool:
    try:
        if not CLIENT.csrf:
            CLIENT.login(*ADMIN)
        return get(base + "/api/metrics")["ingest"]["subscribed"]
    except OSError:
        return False


if __name__ == "__main__":
    main()
