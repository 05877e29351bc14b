"""`yimen demo`: a whole simulated county end to end on this machine.

A private Mosquitto on a free loopback port, a gateway process with the simulator switched
on, a few lighter simulated stations (centre.fleet), the county console serving its page,
and a county-side watcher printing what the gateway's station sends; at the end, a
reconciliation of what that station assigned against what the county received.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from centre.client import ConsoleClient
from centre.fleet import Fleet
from edge import status
from edge.config import load
from mqtt.broker import Mosquitto, free_port
from mqtt.watch import CountyWatch

STATION, COUNTY = "demo-0001", "demo-county"
FLEET = [f"demo-{n:04d}" for n in range(2, 6)]  # simulated beside the real gateway


def write_config(path: Path, port: int, rate: float) -> None:
    path.write_text(
        f"""[station]
id = "{STATION}"
county = "{COUNTY}"
name = "Demo village service station"

[broker]
host = "127.0.0.1"
port = {port}
keepalive_s = 10

[storage]
path = "{path.parent / "state"}"
max_mb = 64

[clock]
sync = "assume"

[telemetry]
interval_s = 10

[simulate]
events_per_second = {rate}
windows = 3

[[cameras]]
window = 1
backend = "sim"
snapshot_interval_s = 10
""",
        encoding="utf-8",
    )


def write_console_config(root: Path, broker_port: int, web_port: int) -> Path:
    path = root / "centre.toml"
    path.write_text(
        f"""[centre]
county = "{COUNTY}"
name = "演示县 Demo county"

[broker]
port = {broker_port}

[ingest]
gap_grace_s = 5
replay_retry_s = 10

[store]
path = "centre.db"

[web]
port = {web_port}

[media]
dir = "console-media"
""",
        encoding="utf-8",
    )
    return path


DEMO_ADMIN = "demo-admin"


def start_console(root: Path, broker_port: int) -> tuple[subprocess.Popen, str, str]:
    """The console, with a demo admin made by `yimen centre user add`; returns its password."""
    web_port = free_port()
    config = write_console_config(root, broker_port, web_port)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    password = secrets.token_urlsafe(12)
    centre = [sys.executable, "-m", "edge.cli", "centre", "--config", str(config)]
    subprocess.run(
        [*centre, "user", "add", DEMO_ADMIN, "--role", "admin", "--password-stdin"],
        input=password,
        text=True,
        env=env,
        check=True,
        capture_output=True,
    )
    log = open(root / "centre.log", "ab")  # noqa: SIM115 - kept open for the process
    proc = subprocess.Popen(centre, stdout=log, stderr=log, env=env)
    return proc, f"http://127.0.0.1:{web_port}/", password


def wait_for_console(client: ConsoleClient, proc: subprocess.Popen, password: str, timeout: float = 15.0) -> None:
    """Until the console has subscribed: stations started before it would only be a gap to replay."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if not client.csrf:
                client.login(DEMO_ADMIN, password)
            if client.get("/api/metrics")["ingest"]["subscribed"]:
                return
        except OSError:
            pass
        time.sleep(0.1)
    print(f"the console did not come up within {timeout} s; see its log centre.log", file=sys.stderr)


def console_view(client: ConsoleClient) -> dict:
    """What the console holds of the gateway's station, for the reconciliation."""
    try:
        seq = client.get(f"/api/station/{STATION}")["seq"]
        # The gateway's snapshots and clips, as they reached the console over MQTT.
        media = client.get(f"/api/station/{STATION}/media")["states"]
        return {"console_seq_floor": seq["floor"], "console_missing": seq["missing_count"], "console_media": media}
    except OSError as exc:
        return {"console": f"unreachable: {exc}"}


def run_demo(seconds: float, rate: float, workdir: str | None) -> int:
    with tempfile.TemporaryDirectory(prefix="yimen-demo-") as tmp:
        root = Path(workdir or tmp).resolve()
        root.mkdir(parents=True, exist_ok=True)
        broker = Mosquitto(root / "broker").start()
        config_path = root / "station.toml"
        write_config(config_path, broker.port, rate)
        print(f"broker: private mosquitto on 127.0.0.1:{broker.port}; station config {config_path}")
        console, url, password = start_console(root, broker.port)
        client = ConsoleClient(url)
        wait_for_console(client, console, password)
        watch = CountyWatch(
            "127.0.0.1",
            broker.port,
            COUNTY,
            on_line=lambda line: line.startswith((STATION, "CONTRACT")) and print("county <-", line),
        )
        watch.start()
        gateway = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(config_path)])
        fleet = Fleet("127.0.0.1", broker.port, COUNTY, FLEET, rate=0.5, telemetry_s=10, snapshot_s=30).start()
        for station in fleet.stations.values():
            station.clips = True
        print(f"\ncounty console: {url}   (the gateway {STATION} and {len(FLEET)} simulated stations)")
        print(f"console login: {DEMO_ADMIN} / {password}   (made for this demo by `yimen centre user add`)\n")
        try:
            deadline = time.monotonic() + seconds if seconds > 0 else float("inf")
            while time.monotonic() < deadline and gateway.poll() is None:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            fleet.stop()
            gateway.terminate()
            gateway.wait(15)
        time.sleep(0.5)
        seen = console_view(client)
        console.terminate()
        console.wait(15)
        watch.stop()
        broker.stop()
        local = status.read(load(config_path))
        view = watch.view(STATION)
        summary = {
            "station_last_seq": local["last_seq"],
            "station_undelivered": local["undelivered"],
            "county_received": len(view.seqs),
            "county_missing": view.missing()[:20],
            "duplicates": view.duplicates,
            "contract_errors": watch.errors[:5],
            **seen,
        }
        print("\nreconciliation:", json.dumps(summary, ensure_ascii=False))
        # Every seq the station assigned is at the county, or still held in the outbox for next time.
        accounted = len(view.seqs) + local["undelivered"] == local["last_seq"]
        ok = gateway.returncode == 0 and not watch.errors and not view.missing() and accounted
        print("demo OK: every event the station recorded reached the county" if ok else "demo FAILED")
        return 0 if ok else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="yimen demo", description="a whole simulated station and county")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to run (0: until Ctrl-C)")
    parser.add_argument("--rate", type=float, default=5.0, help="simulated events per second")
    parser.add_argument("--dir", default=None, help="keep the demo's state here (default: a temp dir)")
    args = parser.parse_args(argv)
    return run_demo(seconds=args.seconds, rate=args.rate, workdir=args.dir)
