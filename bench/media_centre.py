"""Media ingest at the county: how fast the console stores uploaded files, against a bare write.

    python bench/media_centre.py [--files 40] [--mb 1] [--chunk-kb 16] [--stations 4]

`yimen centre` runs as a process (SQLite store) against a private Mosquitto. One publisher per
simulated station sends manifests and chunks exactly as mqtt/media_upload.py does (QoS 1,
at most 4 in flight each, no pacing: the stations' `upload_kbps` is what limits a real county,
this measures the console's ceiling). Measured: from the first message to the last file
complete at the county (every chunk written, recorded, joined, sha256 checked, renamed into
place, metadata committed), in MB/s of files stored. Baseline in the same run: the same chunks
written by a bare loop to one file per media item, fsync'd and renamed, with no broker and no
database (what any county-side store must at least do).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from _common import REPO, report
from paho.mqtt.enums import CallbackAPIVersion

from mqtt import topics
from mqtt.broker import Mosquitto, free_port

COUNTY = "bench-media"
INFLIGHT = 4  # as mqtt/media_upload.py MAX_INFLIGHT


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as res:
        return json.load(res)


def files_for(n: int, size: int, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    return [(f"clip-w1-20261129-000000-{i:03d}-{seed:08x}", rng.randbytes(size)) for i in range(n)]


def bare_write(root: Path, files: list[tuple[str, bytes]], chunk: int) -> float:
    """The baseline: each file's chunks written in order, fsync'd, renamed into place."""
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for media_id, data in files:
        tmp = root / f".{media_id}.part"
        with open(tmp, "wb") as fh:
            for i in range(0, len(data), chunk):
                fh.write(data[i : i + chunk])
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, root / f"{media_id}.mjpeg")
    return time.perf_counter() - t0


def publish_station(port: int, station: str, files: list[tuple[str, bytes]], chunk: int) -> None:
    """One station's uploads, QoS 1 with at most INFLIGHT unacknowledged, as the station's uplink."""
    slots = threading.Semaphore(INFLIGHT)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{station}", protocol=paho.MQTTv5)
    client.on_publish = lambda *_: slots.release()
    client.connect("127.0.0.1", port)
    client.loop_start()
    for media_id, data in files:
        chunks = -(-len(data) // chunk)
        manifest = {
            "media_id": media_id, "event": f"{station}-1", "type": "clip", "window": 1, "caused_by": None,
            "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "chunk_size": chunk, "chunks": chunks,
        }  # fmt: skip
        messages = [(topics.MANIFEST, json.dumps(manifest).encode())]
        messages += [(n, data[n * chunk : (n + 1) * chunk]) for n in range(chunks)]
        for part, payload in messages:
            slots.acquire()
            client.publish(topics.media_topic(COUNTY, station, media_id, part), payload, qos=1)
    for _ in range(INFLIGHT):
        slots.acquire()
    client.loop_stop()
    client.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40, help="files in all")
    parser.add_argument("--mb", type=float, default=1.0, help="size of each file")
    parser.add_argument("--chunk-kb", type=int, default=16)
    parser.add_argument("--stations", type=int, default=4, help="publishers in parallel")
    args = parser.parse_args()
    size, chunk = int(args.mb * 2**20), args.chunk_kb * 1024
    per = args.files // args.stations
    work = {f"st-{s:02d}": files_for(per, size, s + 1) for s in range(args.stations)}
    total = sum(len(d) for files in work.values() for _m, d in files)

    with tempfile.TemporaryDirectory(prefix="yimen-media-bench-") as tmp:
        root = Path(tmp)
        bare_s = bare_write(root / "bare", [f for files in work.values() for f in files], chunk)
        broker = Mosquitto(root / "broker", extra="max_queued_messages 100000\n").start()
        web = free_port()
        config = root / "centre.toml"
        config.write_text(
            f'[centre]\ncounty = "{COUNTY}"\n[broker]\nport = {broker.port}\n[store]\npath = "centre.db"\n'
            f'[web]\nport = {web}\n[media]\ndir = "media"\n[ingest]\nstation_rate = 100000\nstation_burst = 100000\n',
            encoding="utf-8",
        )
        log = open(root / "centre.log", "wb")  # noqa: SIM115 - for the process's life
        console = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "centre", "--config", str(config)], cwd=REPO, stderr=log
        )
        base = f"http://127.0.0.1:{web}"
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    if get(base + "/api/metrics")["ingest"]["subscribed"]:
                        break
                except OSError:
                    pass
                time.sleep(0.1)
            time.sleep(1)  # the media connection subscribes beside the event connections
            t0 = time.perf_counter()
            threads = [
                threading.Thread(target=publish_station, args=(broker.port, sid, files, chunk))
                for sid, files in work.items()
            ]
            for t in threads:
                t.start()
            done = 0
            while done < per * args.stations and time.perf_counter() - t0 < 600:
                done = sum(get(f"{base}/api/station/{sid}/media")["states"].get("complete", 0) for sid in work)
                time.sleep(0.05)
            county_s = time.perf_counter() - t0
            for t in threads:
                t.join()
            held = sum(1 for _ in (root / "media").rglob("*.mjpeg"))
        finally:
            console.terminate()
            console.wait(30)
            broker.stop()

    mb = total / 2**20
    result = {
        "files": per * args.stations,
        "file_mb": args.mb,
        "chunk_kb": args.chunk_kb,
        "stations": args.stations,
        "complete_at_county": held,
        "county_s": round(county_s, 2),
        "county_mb_per_s": round(mb / county_s, 1),
        "bare_s": round(bare_s, 3),
        "bare_mb_per_s": round(mb / bare_s, 1),
        "ratio_bare_over_county": round(county_s / bare_s, 1),
    }
    report(
        "media_centre",
        result,
        f"{held} files, {mb:.0f} MB in {args.chunk_kb} KiB chunks: county {mb / county_s:.1f} MB/s stored"
        f" (MQTT, reassembly, sha256, metadata) vs bare write {mb / bare_s:.1f} MB/s",
    )


if __name__ == "__main__":
    main()
