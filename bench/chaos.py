"""The chaos run: real gateways, window units and a simulated fleet under a seeded fault script.

    python bench/chaos.py [--seconds 1800] [--seed 14] [--gateways 10] [--fleet 300]

Parts, all real: Mosquitto; the county console (`yimen centre`, SQLite store); `--gateways`
gateway processes (`yimen run`) with simulated citizens, each with a window unit running the
firmware's Unit under the MicroPython unix port on a pty (tests/support/mpy_window_unit.py),
pressing `ticket:A` every few seconds, and each reaching the broker through its own proxy
(tests/support/proxy.py); `--fleet` simulated stations (centre.fleet, which reconnect as
gateways do). One gateway has a 1 MB disk budget and a busier simulator: its `disk-budget`
fault black-holes its link until its backlog outgrows the budget, so the outbox must evict and
report the loss.

Faults, drawn from random.Random(seed) every 4..20 s: `kill-gateway` (SIGKILL, restarted
1..6 s later), `broker-restart` (down 1..8 s, back with persistence on or off at random),
`blackhole` (a gateway's link passes nothing for 5..40 s), `disk-budget` (above, 120..240 s),
`console-restart` (down 1..10 s).

At the end every fault is undone, the units stop pressing and drain, each gateway is restarted
without its simulator until its outbox is empty, and the console is given time to ask for
replays. Then, from the console's store: every seq 1..last_seq of every real station is stored
or inside a loss the station reported (`eviction`, `incident`; a seq of an `eviction`'s
`delivered` ranges only if the console recorded it lost); no event id is stored twice;
every press a unit saw acknowledged is there (as in tests/test_press_durability.py: tickets
from that unit, counted; plus the seqs its station reported evicted, since a ticket's `queue`
event is normal priority and a spent disk budget evicts those). Printed: faults injected,
events produced, held (stored 5 s or more after they were made; undelivered when the faults
stopped), lost-and-reported, and the longest time the console showed a station offline while
its gateway was running (and, stricter, while its process, link and the broker were all up).
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from _common import REPO, report

from centre.ingest import DELIVERED_EVICTED
from edge import config as config_mod
from edge import status as status_mod
from mqtt.broker import Mosquitto, free_port
from tests.firmware import FIRMWARE
from tests.peripherals.window_unit.rig import Line, one_unit_station
from tests.support.proxy import Proxy

COUNTY = "chaos"
RUNNER = REPO / "tests" / "support" / "mpy_window_unit.py"
BUDGET_GATEWAY = 0  # the gateway with the small disk budget


def gateway_config(root: Path, i: int, port: int, unit_path: str, *, simulate: bool) -> Path:
    budget = i == BUDGET_GATEWAY
    text = f"""[station]
id = "ch-{i:02d}"
county = "{COUNTY}"
name = "chaos station {i}"

[broker]
host = "127.0.0.1"
port = {port}
keepalive_s = 6
reconnect_min_s = 0.5
reconnect_max_s = 5.0

[storage]
path = "{root / "state"}"
max_mb = {1 if budget else 64}

[clock]
sync = "assume"

[telemetry]
interval_s = 30

{one_unit_station(unit_path)}
[[categories]]   # the simulator issues tickets in A and B
code = "B"
windows = [1]
item = "HJ-001"
name = "户籍"

[[clerks]]
id = "c01"
name = "张丽"
code = "1111"

[[clerks]]
id = "c02"
name = "王强"
code = "2222"
"""
    if simulate:
        text += f"\n[simulate]\nevents_per_second = {10 if budget else 1}\nseed = {i + 1}\n"
    path = root / ("station.toml" if simulate else "quiet.toml")
    path.write_text(text, encoding="utf-8")
    return path


class Gateway:
    """One real station: its gateway process, its link's proxy, its window unit on a pty."""

    def __init__(self, root: Path, i: int, broker_port: int) -> None:
        self.i = i
        self.id = f"ch-{i:02d}"
        self.root = root
        root.mkdir(parents=True)
        self.proxy = Proxy(broker_port)
        self.line = Line(root, "unit")
        self.uid = f"c0ffee{i:04x}"
        self.unit_log = root / "unit.log"
        self.stop_file = root / "stop-pressing"
        with open(self.unit_log, "wb") as err:
            self.unit = subprocess.Popen(
                [sys.executable, "-m", "micropython_unix", str(RUNNER), str(FIRMWARE), self.uid, "ticket:A",
                 "3000", str(self.stop_file)],
                stdin=self.line.unit_fd, stdout=self.line.unit_fd, stderr=err,
            )  # fmt: skip
        self.config = gateway_config(root, i, self.proxy.port, self.line.path, simulate=True)
        self.proc: subprocess.Popen | None = None
        self.link_up = True

    def start(self, config: Path | None = None) -> None:
        with open(self.root / "gateway.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "run", "--config", str(config or self.config)],
                cwd=REPO, stdout=log, stderr=log,
            )  # fmt: skip

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.running():
            self.proc.kill()  # type: ignore[union-attr]
            self.proc.wait()  # type: ignore[union-attr]

    def stop(self) -> int:
        if not self.running():
            return 0
        self.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        return self.proc.wait(60)  # type: ignore[union-attr]

    def status(self, config: Path | None = None) -> dict[str, Any]:
        return status_mod.read(config_mod.load(config or self.config))

    def set_link(self, up: bool) -> None:
        self.link_up = up
        self.proxy.set_mode(Proxy.PASS if up else Proxy.BLACKHOLE)

    def acked(self) -> list[int]:
        words = [line.split() for line in self.unit_log.read_text().splitlines() if line]
        return [int(w[1]) for w in words if w and w[0] == "ack"]

    def unit_drained(self) -> bool:
        queues = [line.split() for line in self.unit_log.read_text().splitlines() if line.startswith("queue")]
        return bool(queues) and queues[-1] == ["queue", "0", "stopped"]

    def close(self) -> None:
        self.kill()
        self.unit.kill()
        self.unit.wait()
        self.line.close()
        self.proxy.close()


class Console:
    def __init__(self, root: Path, broker_port: int) -> None:
        self.root = root
        self.broker_port = broker_port
        self.config = root / "centre.toml"
        self.proc: subprocess.Popen | None = None
        self.web = 0

    def _write_config(self) -> None:
        self.web = free_port()  # anew each start: on a shared machine another process may take a port
        broker_port = self.broker_port
        self.config.write_text(
            f"""[centre]
county = "{COUNTY}"

[broker]
port = {broker_port}

[ingest]
gap_grace_s = 5
replay_retry_s = 10
replay_tries = 20

[store]
path = "centre.db"

[web]
port = {self.web}
""",
            encoding="utf-8",
        )

    def start(self) -> None:
        for _attempt in range(5):
            self._write_config()
            with open(self.root / "centre.log", "ab") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "edge.cli", "centre", "--config", str(self.config)],
                    cwd=REPO, stdout=log, stderr=log,
                )  # fmt: skip
            deadline = time.monotonic() + 30
            while self.running() and self.states() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            if self.running():
                return
        raise SystemExit("chaos: the console would not start; see centre.log")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.running():
            self.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            self.proc.wait(60)  # type: ignore[union-attr]

    def states(self) -> dict[str, str] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web}/api/summary", timeout=2) as res:
                return {s["id"]: s["state"] for s in json.load(res)["stations"]}
        except (OSError, ValueError, KeyError):
            return None


class OfflineWatch(threading.Thread):
    """Samples the console's page every second: how long was a running station shown offline?"""

    def __init__(self, chaos: Chaos) -> None:
        super().__init__(name="chaos-offline-watch", daemon=True)
        self.chaos = chaos
        self.stop = threading.Event()
        self.since: dict[tuple[str, str], float] = {}  # (station, "up"|"strict") -> offline since
        self.longest: dict[str, tuple[float, str]] = {"up": (0.0, ""), "strict": (0.0, "")}

    def run(self) -> None:
        while not self.stop.wait(1.0):
            states = self.chaos.console.states() if self.chaos.console.running() else None
            if states is None:
                continue
            now = time.monotonic()
            for gw in self.chaos.gateways:
                up = gw.running()
                conditions = {"up": up, "strict": up and gw.link_up and self.chaos.broker_up}
                for what, holds in conditions.items():
                    key = (gw.id, what)
                    if holds and states.get(gw.id) == "offline":
                        start = self.since.setdefault(key, now)
                        if now - start > self.longest[what][0]:
                            self.longest[what] = (round(now - start, 1), gw.id)
                    else:
                        self.since.pop(key, None)


class Chaos:
    def __init__(self, root: Path, args: argparse.Namespace) -> None:
        self.root = root
        self.args = args
        self.rng = random.Random(args.seed)
        self.broker = Mosquitto(root / "broker", persistence=True)
        self.broker_up = False
        self.console = Console(root, self.broker.port)
        self.gateways: list[Gateway] = []
        self.fleet: subprocess.Popen | None = None
        self.faults: Counter[str] = Counter()
        self.undo: list[tuple[float, int, str, Any]] = []  # (when, order, what, arg)
        self._order = 0

    # ----- set-up and tear-down ------------------------------------------------------------------

    def start(self) -> None:
        self.broker.start()
        self.broker_up = True
        self.console.start()
        self.gateways = [Gateway(self.root / f"gw{i:02d}", i, self.broker.port) for i in range(self.args.gateways)]
        for gw in self.gateways:
            gw.start()
        if self.args.fleet:
            cmd = [sys.executable, "-m", "centre.fleet", "--port", str(self.broker.port), "--county", COUNTY]
            cmd += ["--count", str(self.args.fleet), "--rate", "0.05", "--telemetry", "120", "--snapshot", "3600"]
            self.fleet = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            print("fleet", self.fleet.stdout.readline().strip(), flush=True)  # type: ignore[union-attr]

    def close(self) -> None:
        if self.fleet is not None and self.fleet.poll() is None:
            with contextlib.suppress(OSError):
                self.fleet.stdin.write("stop\n")  # type: ignore[union-attr]
                self.fleet.stdin.flush()  # type: ignore[union-attr]
            try:
                self.fleet.wait(30)
            except subprocess.TimeoutExpired:
                self.fleet.kill()
        for gw in self.gateways:
            gw.close()
        self.console.stop()
        self.broker.stop()

    # ----- faults --------------------------------------------------------------------------------

    def later(self, delay: float, what: str, arg: Any = None) -> None:
        self._order += 1
        heapq.heappush(self.undo, (time.monotonic() + delay, self._order, what, arg))

    def inject(self) -> None:
        rng = self.rng
        fault = rng.choices(
            ["kill-gateway", "broker-restart", "blackhole", "disk-budget", "console-restart"],
            weights=[5, 2, 4, 1, 2],
        )[0]
        if fault == "kill-gateway":
            gw = rng.choice(self.gateways)
            if not gw.running():
                return
            gw.kill()
            self.later(rng.uniform(1, 6), "start-gateway", gw)
        elif fault == "broker-restart":
            if not self.broker_up:
                return
            self.broker.stop()
            self.broker_up = False
            self.later(rng.uniform(1, 8), "start-broker", rng.random() < 0.5)
        elif fault == "blackhole":
            gw = rng.choice(self.gateways[1:] or self.gateways)
            if not gw.link_up:
                return
            gw.set_link(False)
            self.later(rng.uniform(5, 40), "link-up", gw)
        elif fault == "disk-budget":
            gw = self.gateways[BUDGET_GATEWAY]
            if not gw.link_up:
                return
            gw.set_link(False)
            self.later(rng.uniform(120, 240), "link-up", gw)
        elif fault == "console-restart":
            if not self.console.running():
                return
            self.console.stop()
            self.later(rng.uniform(1, 10), "start-console")
        self.faults[fault] += 1
        print(f"{time.strftime('%H:%M:%S')} fault {fault}", flush=True)

    def restore(self, what: str, arg: Any) -> None:
        if what == "start-gateway" and not arg.running():
            arg.start()
        elif what == "start-broker" and not self.broker_up:
            self.broker.persistence = arg
            self.broker.start()
            self.broker_up = True
        elif what == "link-up":
            arg.set_link(True)
        elif what == "start-console" and not self.console.running():
            self.console.start()

    def run_faults(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        next_fault = time.monotonic() + self.rng.uniform(4, 20)
        while time.monotonic() < end:
            now = time.monotonic()
            while self.undo and self.undo[0][0] <= now:
                _, _, what, arg = heapq.heappop(self.undo)
                self.restore(what, arg)
            if now >= next_fault:
                self.inject()
                next_fault = now + self.rng.uniform(4, 20)
            time.sleep(0.1)
        while self.undo:  # undo whatever is still in force, now
            _, _, what, arg = heapq.heappop(self.undo)
            self.restore(what, arg)

    # ----- the end ---------------------------------------------------------------------------------

    def settle(self) -> dict[str, Any]:
        """Stop pressing, drain every unit and outbox, give the console its replays."""
        held = sum(gw.status()["undelivered"] for gw in self.gateways)
        for gw in self.gateways:
            gw.stop_file.touch()
        deadline = time.monotonic() + 180
        while not all(gw.unit_drained() for gw in self.gateways) and time.monotonic() < deadline:
            time.sleep(1)
        last: dict[str, int] = {}
        for gw in self.gateways:
            code = gw.stop()
            quiet = gateway_config(gw.root, gw.i, gw.proxy.port, gw.line.path, simulate=False)
            gw.start(quiet)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                status = gw.status(quiet)
                if status["gateway"].startswith("running") and status["undelivered"] == 0:
                    break
                time.sleep(0.5)
            if gw.stop() != 0 or code != 0:
                print(f"{gw.id}: exit codes {code}, then {gw.proc.returncode}", flush=True)  # type: ignore[union-attr]
            last[gw.id] = gw.status(quiet)["last_seq"]
        deadline = time.monotonic() + self.args.settle
        while time.monotonic() < deadline and self.missing(last):
            time.sleep(2)
        return {"held_at_end_of_faults": held, "last_seq": last}

    def store(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.root / 'centre.db'}?mode=ro", uri=True)

    def reported_losses(self, db: sqlite3.Connection, station: str) -> set[int]:
        lost: set[int] = set()
        for kind, payload in db.execute(
            "SELECT kind, payload FROM events WHERE station = ? AND kind IN ('eviction', 'incident')", (station,)
        ):
            data = json.loads(payload)["data"]
            ranges = list(data.get("evicted", {}).values()) if kind == "eviction" else [[data.get("possibly_lost")]]
            for group in ranges:
                for span in group:
                    if span:
                        lost.update(range(span[0], span[1] + 1))
        # Delivered (PUBACKed) seqs an `eviction` listed under `delivered` that the console lacked:
        # recorded by the console as losses, and only those (centre/ingest.py).
        for first, end in db.execute(
            "SELECT first_seq, last_seq FROM losses WHERE station = ? AND reason = ?", (station, DELIVERED_EVICTED)
        ):
            lost.update(range(first, end + 1))
        return lost

    def missing(self, last: dict[str, int]) -> dict[str, list[int]]:
        with contextlib.closing(self.store()) as db:
            out = {}
            for station, top in last.items():
                stored = {r[0] for r in db.execute("SELECT seq FROM events WHERE station = ?", (station,))}
                gap = sorted(set(range(1, top + 1)) - stored - self.reported_losses(db, station))
                if gap:
                    out[station] = gap
            return out

    def verdict(self, settled: dict[str, Any]) -> dict[str, Any]:
        last = settled["last_seq"]
        missing = self.missing(last)
        with contextlib.closing(self.store()) as db:
            total, distinct = db.execute("SELECT count(*), count(DISTINCT id) FROM events").fetchone()
            dup_seqs = db.execute(
                "SELECT count(*) FROM (SELECT station, seq FROM events GROUP BY station, seq HAVING count(*) > 1)"
            ).fetchone()[0]
            lost = sum(len(self.reported_losses(db, gw.id)) for gw in self.gateways)
            presses = {}
            for gw in self.gateways:
                ops = {
                    json.loads(p)["data"]["op"]
                    for (p,) in db.execute("SELECT payload FROM events WHERE station = ? AND kind = 'queue'", (gw.id,))
                    if json.loads(p)["data"].get("action") == "issue" and json.loads(p)["data"].get("source") == gw.uid
                }
                presses[gw.id] = {
                    "acked": len(set(gw.acked())),
                    "tickets_at_county": len(ops),
                    # A ticket's `queue` event is normal priority: a full disk budget may evict it,
                    # and the station reports that. Counted, since which seq was whose press is not.
                    "station_reported_lost": len(self.reported_losses(db, gw.id)),
                }
            # Held: waited (in an outbox, or for the console's replay) at least 5 s before it was stored.
            held = sum(
                stored - datetime.fromisoformat(ts).timestamp() > 5
                for ts, stored in db.execute("SELECT ts, stored_at FROM events WHERE station LIKE 'ch-%'")
            )
        fleet_sent = 0
        if self.fleet is not None and self.fleet.poll() is None:
            self.fleet.stdin.write("stats\n")  # type: ignore[union-attr]
            self.fleet.stdin.flush()  # type: ignore[union-attr]
            fleet_sent = json.loads(self.fleet.stdout.readline())["sent"]  # type: ignore[union-attr]
        presses_ok = all(p["tickets_at_county"] + p["station_reported_lost"] >= p["acked"] for p in presses.values())
        return {
            "events_produced": {"real_stations": sum(last.values()), "fleet": fleet_sent},
            "stored_rows": total,
            "held_5s_or_more": held,
            "stored_twice": (total - distinct) + dup_seqs,
            "lost_and_reported": lost,
            "missing_unreported": {k: (len(v), v[:10]) for k, v in missing.items()},
            "presses": presses,
            "ok": not missing and total == distinct and dup_seqs == 0 and presses_ok,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1800.0, help="length of the fault phase")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--gateways", type=int, default=10)
    parser.add_argument("--fleet", type=int, default=300)
    parser.add_argument("--settle", type=float, default=180.0, help="at most this long for the console's replays")
    parser.add_argument("--keep", default=None, help="run in this directory and keep it (for post-mortems)")
    args = parser.parse_args()
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        root = Path(args.keep) if args.keep else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chaos-")))
        root.mkdir(parents=True, exist_ok=True)
        chaos = Chaos(root, args)
        stack.callback(chaos.close)
        chaos.start()
        time.sleep(10)
        watch = OfflineWatch(chaos)
        watch.start()
        chaos.run_faults(args.seconds)
        time.sleep(10)  # the last restored parts reconnect before the watch stops
        watch.stop.set()
        settled = chaos.settle()
        result = chaos.verdict(settled)
    result = {
        "seconds": args.seconds,
        "seed": args.seed,
        "gateways": args.gateways,
        "fleet": args.fleet,
        "faults": dict(chaos.faults),
        "held_at_end_of_faults": settled["held_at_end_of_faults"],
        **result,
        "longest_offline_while_up_s": watch.longest["up"],
        "longest_offline_while_up_linked_broker_up_s": watch.longest["strict"],
        "wall_s": round(time.monotonic() - t0, 1),
    }
    human = (
        f"{'OK' if result['ok'] else 'FAILED'}: {sum(chaos.faults.values())} faults {dict(chaos.faults)}; "
        f"events {result['events_produced']}, held >= 5 s {result['held_5s_or_more']} "
        f"(undelivered when the faults stopped: {result['held_at_end_of_faults']}), "
        f"lost-and-reported {result['lost_and_reported']}, missing {len(result['missing_unreported'])} stations, "
        f"stored twice {result['stored_twice']}; longest offline while up {watch.longest['up']} "
        f"(link and broker up too: {watch.longest['strict']})"
    )
    report("chaos", result, human)
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
