"""Over-the-air update: bytes on the wire for a release, and time from rollout to healthy for one
station over an emulated 256 kbit/s line.

The station is the real thing as processes: version N installed in its own venv, `yimen run`
under the supervisor that stands in for systemd (tests/support/supervisor.py), the root updater
(deploy/yimen-update). Its broker connection goes through a TCP relay shaped to 256 kbit/s each
way (token bucket, counting bytes); the county's rollout service (centre/rollout.py) talks to the
broker directly, as a county's LAN would. Releases are built by `yimen release build` for this
machine from .venv/wheelhouse (./dev fetches it), and once for the stations' platform
(manylinux2014_aarch64, CPython 3.11, from the package index) to report its size.

Two updates in a row: N -> N+1 is the first over the air (every file travels), N+1 -> N+2 has
the same dependencies (only the yimen wheel travels, the rest comes from the last release's
cache). Baseline in the same run: the release's bytes at the line rate (the least any transfer
can take), and for install time, the phases the station itself reports.

    .venv/bin/python bench/ota_update.py [--kbit 256] [--no-arm64]
"""

from __future__ import annotations

import argparse
import json
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from _common import REPO, report

from centre.rollout import Rollouts
from mqtt.broker import Mosquitto
from mqtt.config import BrokerConfig
from ota import build, release
from tests.conftest import COUNTY, STATION, station_config
from tests.ota.conftest import WHEELHOUSE, build_release, install_version


class ShapedRelay:
    """A TCP relay to `target` that passes at most `rate` bytes/s each way and counts them."""

    def __init__(self, target: int, rate: float) -> None:
        self.target, self.rate = target, rate
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = self.down = 0  # station -> broker, broker -> station
        threading.Thread(target=self._accept, daemon=True, name="bench-relay").start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            server = socket.create_connection(("127.0.0.1", self.target))
            for src, dst, up in ((client, server, True), (server, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, up), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        sel = selectors.DefaultSelector()
        sel.register(src, selectors.EVENT_READ)
        debt_until = time.monotonic()
        try:
            while True:
                data = src.recv(4096)
                if not data:
                    break
                # Token bucket: the line is busy until debt_until; this block extends it.
                now = time.monotonic()
                debt_until = max(debt_until, now) + len(data) / self.rate
                if debt_until - now > 0.05:
                    time.sleep(debt_until - now - 0.05)
                dst.sendall(data)
                if up:
                    self.up += len(data)
                else:
                    self.down += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                s.close()


def arm64_release(tmp: Path, key: Path) -> dict:
    """The release as the stations' platform needs it: its files and bytes (needs the index)."""
    out = build.build(REPO, tmp / "arm64", key)
    manifest, _sig = build.open_release(out)
    return {"files": len(manifest.files), "bytes": manifest.total_bytes,
            "yimen_wheel_bytes": next(f.size for f in manifest.files if f.name.startswith("yimen-"))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kbit", type=float, default=256.0, help="the emulated line, kbit/s each way")
    parser.add_argument("--cap-kbit", type=float, default=240.0, help="the station's [update] kbps")
    parser.add_argument("--no-arm64", action="store_true", help="skip the aarch64 release (needs the index)")
    args = parser.parse_args()
    if not (WHEELHOUSE / ".complete").exists():
        sys.exit("no .venv/wheelhouse: run ./dev once")
    tmp = Path(tempfile.mkdtemp(prefix="yimen-bench-ota-"))
    key = tmp / "county.key"
    pub = release.keygen(key)
    trusted = tmp / "keys"
    trusted.mkdir()
    (trusted / "county.pem").write_text(pub.read_text())
    releases = tmp / "releases"
    rels = {v: build_release(tmp, releases, key, v) for v in ("5.0.0", "5.1.0", "5.2.0")}
    sizes = {v: build.open_release(r)[0].total_bytes for v, r in rels.items()}
    arm = None if args.no_arm64 else arm64_release(tmp, key)

    root, state, work = tmp / "opt-yimen", tmp / "state", tmp / "work"
    root.mkdir()
    install_version(root, rels["5.0.0"], "5.0.0")
    with Mosquitto(tmp / "broker") as broker:
        relay = ShapedRelay(broker.port, args.kbit * 1000 / 8)
        config = station_config(tmp, relay.port, storage=state, keepalive=30,
                                extra=f'[update]\nkeys = "{trusted}"\nkbps = {args.cap_kbit}\n')  # fmt: skip
        rollouts = Rollouts(BrokerConfig(port=broker.port), COUNTY, releases, tmp / "rollouts.json").start()
        log = tmp / "supervisor.log"
        sup = subprocess.Popen([sys.executable, "-m", "tests.support.supervisor", str(root), str(config), str(state),
                                str(work), str(log), "--", "--state", str(state), "--keys", str(trusted),
                                "--health-s", "300"], cwd=REPO)  # fmt: skip
        try:
            wait(lambda: rollouts.snapshot()["stations"].get(STATION) == "5.0.0", 120, "5.0.0 online")
            runs = {}
            for version in ("5.1.0", "5.2.0"):
                up0, down0, t0 = relay.up, relay.down, time.monotonic()
                rid = rollouts.begin(version, [STATION], None, 60)
                seen: dict[str, float] = {}
                wire: dict[str, int] = {}

                def progressed(rid: str = rid, t0: float = t0, seen: dict = seen, wire: dict = wire,
                               down0: int = down0, version: str = version) -> bool:  # fmt: skip
                    roll = next(r for r in rollouts.snapshot()["rollouts"] if r["id"] == rid)
                    st = roll["per_station"].get(STATION, {}).get("state")
                    if st and st not in seen:
                        seen[st] = round(time.monotonic() - t0, 1)
                        wire[st] = relay.down - down0
                    if st in ("refused", "rolled-back"):
                        raise SystemExit(f"{version}: {roll['per_station'][STATION]}")
                    return st == "healthy"

                wait(progressed, 3600, f"{version} healthy")
                down = wire.get("downloaded", relay.down - down0)
                runs[version] = {
                    "release_bytes": sizes[version],
                    "to_healthy_s": seen["healthy"],
                    "phases_s": seen,
                    "down_wire_bytes_until_downloaded": down,
                    "up_wire_bytes": relay.up - up0,
                    "line_rate_floor_s": round(sizes[version] / (args.kbit * 1000 / 8), 1),
                }
        finally:
            sup.send_signal(signal.SIGTERM)
            sup.wait(60)
            rollouts.stop()
    full, incr = runs["5.1.0"], runs["5.2.0"]
    result = {"kbit": args.kbit, "cap_kbit": args.cap_kbit, "first_update": full, "incremental_update": incr,
              "arm64_release": arm, "host_release_bytes": sizes["5.1.0"]}  # fmt: skip
    ratio = full["down_wire_bytes_until_downloaded"] / full["release_bytes"]
    human = (
        f"first update {full['release_bytes'] / 1e6:.1f} MB: healthy after {full['to_healthy_s']} s at "
        f"{args.kbit:g} kbit/s (line-rate floor {full['line_rate_floor_s']} s; {ratio:.3f} wire bytes per "
        f"release byte); incremental: healthy after {incr['to_healthy_s']} s, "
        f"{incr['down_wire_bytes_until_downloaded'] / 1e3:.0f} kB down"
        + (f"; aarch64 release {arm['bytes'] / 1e6:.1f} MB in {arm['files']} files" if arm else "")
    )
    report("ota_update", result, human)
    print(json.dumps(result, indent=1))


def wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


if __name__ == "__main__":
    main()
