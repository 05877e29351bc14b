"""Press-to-PUBACK latency with the broker on loopback, beside a bare fsync + publish round trip.

Gateway side: the real `edge.app.Gateway` (every part it has) built from a station TOML file
(defaults, except `[clock] sync = "assume"`, a Pi whose NTP has synced), in this process, on a
private Mosquitto (defaults). A press is `Outbox.append(rating)` called on a fixed schedule
(absolute, default 20/s); t0 is taken just before it. The event counts as delivered when the
uplink thread has returned from `Outbox.mark_delivered` for its seq, which it calls only after
the broker's PUBACK (observed by swapping in a subclass of `Outbox` from this file while the
gateway is built: the hook only reads the clock). Also reported: press -> append returned
(durable on disk), and press -> PUBACK handed to `mark_delivered` (before its relaxed write).

Baseline ("bare"), on a second private Mosquitto: at the same rate, the publisher thread takes
t0, appends the same ~300-byte payload to a plain file and `os.fsync`s it, `publish`es it at
QoS 1 with paho 2.x (MQTT 5, `loop_start()` network thread), and waits on a threading.Event
that `on_publish` sets for that mid; t1 is when the waiting thread wakes. That is one fsync
and one PUBACK round trip, the floor under the gateway's path.

A third side, "today", is the same gateway with `[link] batch = false, topic_aliases = false`
(every event alone, as before issue 16), so that what batching and aliases cost a live press
is measured in the same run.

The sides are set up at once and take turns in blocks of `--block` presses (the others idle
meanwhile), so that whatever else the machine is doing falls on all alike.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import _common as c
import drain
import line
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edge.events import Event
from edge.outbox import Outbox
from mqtt import topics
from mqtt.broker import Mosquitto
from mqtt.uplink import Uplink


class TimedOutbox(Outbox):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.acked: dict[int, float] = {}
        self.marked: dict[int, float] = {}

    def mark_delivered(self, seqs) -> None:
        t = time.perf_counter()
        super().mark_delivered(seqs)
        t2 = time.perf_counter()
        for s in seqs:
            self.acked.setdefault(s, t)
            self.marked.setdefault(s, t2)


def paced(ks: range, rate: float, press) -> None:
    start = time.perf_counter() + 0.05
    for i, k in enumerate(ks):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        press(k)


def summary(values_s: list[float]) -> dict:
    ms = [v * 1e3 for v in values_s]
    return {
        "p50_ms": round(c.percentile(ms, 50), 3),
        "p90_ms": round(c.percentile(ms, 90), 3),
        "p99_ms": round(c.percentile(ms, 99), 3),
        "max_ms": round(max(ms), 3),
        "n": len(ms),
    }


class GatewaySide:
    """The real edge.app.Gateway (every part), with the timing Outbox subclass, on its own broker."""

    def __init__(self, work: Path, extra: str = "") -> None:
        work.mkdir(parents=True, exist_ok=True)
        storage = work / "gw-state"
        self.broker = Mosquitto(work / "broker-gw").start()
        config = c.write_config(
            work / "station.toml", port=self.broker.port, storage=storage, extra=drain.CLOCK + extra
        )
        self.gateway = drain.build_gateway(config, TimedOutbox, Uplink)
        self.outbox = self.gateway.outbox
        self.uplink = self.gateway.uplink
        self.gateway.start()
        deadline = time.monotonic() + 10
        while self.uplink.status()["state"] != "connected" and time.monotonic() < deadline:
            time.sleep(0.01)
        self.pressed: dict[int, float] = {}
        self.stored: dict[int, float] = {}

    def press(self, k: int) -> None:
        t0 = time.perf_counter()
        ev = self.outbox.append(c.rating(k))
        self.stored[ev.seq] = time.perf_counter()
        self.pressed[ev.seq] = t0

    def settle(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while len(self.outbox.marked) < len(self.pressed) and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> dict:
        self.settle()
        self.gateway.stop()
        self.broker.stop()
        marked, pressed = self.outbox.marked, self.pressed
        missing = [s for s in pressed if s not in marked]
        if missing:
            raise SystemExit(f"gateway: {len(missing)} presses never marked delivered (first {missing[:5]})")
        return {
            "press_to_delivered": summary([marked[s] - pressed[s] for s in pressed]),
            "press_to_durable": summary([self.stored[s] - pressed[s] for s in pressed]),
            "press_to_puback_seen": summary([self.outbox.acked[s] - pressed[s] for s in pressed]),
        }


class BareSide:
    """Append + fsync a plain file, then paho publish QoS 1 and wait for its on_publish."""

    def __init__(self, work: Path, n: int) -> None:
        self.topic = topics.event_topic(c.COUNTY, c.STATION, "rating")
        self.bodies = []
        for k in range(n):
            ev = c.rating(k)
            self.bodies.append(
                Event(
                    c.STATION, k + 1, ev.kind, "2026-01-01T08:00:00.000+08:00", "synced", ev.priority, ev.data
                ).to_bytes()
            )
        self.broker = Mosquitto(work / "broker-bare").start()
        self.acks: dict[int, threading.Event] = {}
        self.codes: dict[int, int] = {}
        self.lock = threading.Lock()
        connected = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare-latency", protocol=paho.MQTTv5)
        self.client.on_publish = self._on_publish
        self.client.on_connect = lambda *_: connected.set()
        self.client.connect("127.0.0.1", self.broker.port, keepalive=30, clean_start=True)
        self.client.loop_start()
        connected.wait(10)
        self.fd = os.open(work / "bare.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.lat: list[float] = []
        self.durable: list[float] = []

    def _on_publish(self, _c, _u, mid, rc, _p) -> None:
        self.codes[mid] = rc.value
        with self.lock:
            ev = self.acks.setdefault(mid, threading.Event())
        ev.set()

    def press(self, k: int) -> None:
        t0 = time.perf_counter()
        os.write(self.fd, self.bodies[k] + b"\n")
        os.fsync(self.fd)
        t_d = time.perf_counter()
        info = self.client.publish(self.topic, self.bodies[k], qos=1)
        with self.lock:
            ev = self.acks.setdefault(info.mid, threading.Event())
        if not ev.wait(5):
            raise SystemExit(f"bare: no PUBACK for mid {info.mid}")
        self.lat.append(time.perf_counter() - t0)
        self.durable.append(t_d - t0)
        with self.lock:
            del self.acks[info.mid]

    def close(self) -> dict:
        os.close(self.fd)
        self.client.disconnect()
        self.client.loop_stop()
        self.broker.stop()
        if any(v >= 0x80 for v in self.codes.values()):
            raise SystemExit("bare: broker refused a publish")
        return {"press_to_puback": summary(self.lat), "press_to_durable": summary(self.durable)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presses", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=20.0, help="presses per second")
    ap.add_argument("--block", type=int, default=100, help="presses per block; the sides alternate by block")
    args = ap.parse_args()
    n = args.presses
    with tempfile.TemporaryDirectory(prefix="yimen-bench-latency-") as tmp:
        work = Path(tmp)
        gw_side, bare_side = GatewaySide(work / "gw"), BareSide(work, n)
        today_side = GatewaySide(work / "today", extra=line.TODAY)
        time.sleep(0.5)  # let the birth message settle
        others = {"gateway": [0.0, 0.0], "today": [0.0, 0.0], "bare": [0.0, 0.0]}  # CPU-s of others, s

        def timed(name: str, block: range, side) -> None:
            window = c.CpuWindow()
            paced(block, args.rate, side.press)
            if isinstance(side, GatewaySide):
                side.settle()
            w = window.close()
            others[name][0] += w["others_cores"] * w["elapsed_s"]
            others[name][1] += w["elapsed_s"]

        try:
            for first in range(0, n, args.block):
                block = range(first, min(n, first + args.block))
                timed("gateway", block, gw_side)
                timed("today", block, today_side)
                timed("bare", block, bare_side)
                print(f"  {block.stop} of {n} presses on each side", flush=True)
        finally:
            gw = gw_side.close()
            today = today_side.close()
            bare = bare_side.close()
        g, b = gw["press_to_delivered"], bare["press_to_puback"]
    result = {
        "presses": n,
        "rate_per_s": args.rate,
        "block": args.block,
        "others_cores": {k: round(v[0] / v[1], 2) for k, v in others.items()},
        "gateway": gw,
        "today": today,
        "bare": bare,
        "p99_over_today": round(g["p99_ms"] / today["press_to_delivered"]["p99_ms"], 2),
        "ratio_p50": round(g["p50_ms"] / b["p50_ms"], 2),
        "ratio_p99": round(g["p99_ms"] / b["p99_ms"], 2),
        "goal": "p99 < 10 ms",
        "goal_met": g["p99_ms"] < 10,
    }
    human = (
        f"press -> delivered p50 {g['p50_ms']:.2f} ms, p99 {g['p99_ms']:.2f} ms (max {g['max_ms']:.1f}); "
        f"bare fsync+PUBACK p50 {b['p50_ms']:.2f} ms, p99 {b['p99_ms']:.2f} ms; "
        f"ratio p50 {result['ratio_p50']:.2f}x, p99 {result['ratio_p99']:.2f}x; "
        f"today (no batches, no aliases) p99 {today['press_to_delivered']['p99_ms']:.2f} ms; "
        f"goal p99 < 10 ms {'met' if result['goal_met'] else 'NOT met'}"
    )
    c.report("latency", result, human)


if __name__ == "__main__":
    main()
