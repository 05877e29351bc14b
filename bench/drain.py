"""Backlog drain: N undelivered events delivered by the real Uplink to a private Mosquitto,
against a bare paho loop publishing the same payloads with the same window and threading.

Gateway side: an outbox pre-filled with N ratings (~300-byte JSON envelopes, written by the
outbox's own commit path), opened by the real `edge.app.Gateway` (every part it has: uplink,
downlink, media uploader, telemetry, ...) built from a station TOML file, in this process, with
`Outbox` swapped for a subclass in this file whose `mark_delivered` hook only counts and reads
the clock. Config: defaults, except `[clock] sync = "assume"` (a Pi whose NTP has synced).
The clock starts just before `Gateway.start()` (so the connect is included) and stops at the
last `mark_delivered` call, once `Outbox.stats()` reports 0 undelivered (the gateway's own
`inventory` event, appended at start, included).

Baseline ("bare"): one paho 2.x client, MQTT 5, `loop_start()` (paho's network thread), and a
publisher thread (this one) that takes a slot of a 20-slot semaphore before each QoS 1
`publish` of the same stored payload bytes to the same topic; `on_publish` (network thread)
checks the reason code, counts, and gives the slot back. The gateway marks its backlog as
re-sends, so each of its publishes carries the MQTT 5 user property replay=1: the baseline
sends the same user property (one Properties object built once) so both put the same bytes on
the wire. A second baseline without the property is reported for information.
The clock runs from `connect()` until the N-th PUBACK.

Mosquitto runs with its defaults (Receive Maximum 20, no subscribers, no persistence), a
fresh broker per run; sides alternate, each `--runs` times; medians are compared.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import _common as c
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import edge.app
from edge.config import load
from edge.outbox import Outbox
from mqtt import topics
from mqtt.broker import Mosquitto
from mqtt.uplink import Uplink

WINDOW = 20


class CountingOutbox(Outbox):
    """Counts delivery marks and notes when the last one happened."""

    target = 0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.marked = 0
        self.done = threading.Event()
        self.t_last = 0.0

    def mark_delivered(self, seqs) -> None:
        super().mark_delivered(seqs)
        self.count(seqs)

    def count(self, seqs) -> None:
        self.t_last = time.perf_counter()
        self.marked += len(seqs)
        if self.marked >= self.target:
            self.done.set()


def build_gateway(config_path: Path, outbox_cls: type[Outbox], uplink_cls: type[Uplink]) -> edge.app.Gateway:
    """The real `edge.app.Gateway` for `config_path`, with the outbox (and uplink) class swapped
    for the benchmark's subclass while it is built."""
    saved = edge.app.Outbox, edge.app.Uplink
    edge.app.Outbox, edge.app.Uplink = outbox_cls, uplink_cls
    try:
        return edge.app.Gateway(load(config_path))
    finally:
        edge.app.Outbox, edge.app.Uplink = saved


# Clock: trusted, as on a Pi once NTP has synced (this container's kernel clock never reports
# synced, and unsynced events cost the uplink an extra UPDATE per window refill).
CLOCK = '\n[clock]\nsync = "assume"\n'


def run_gateway(template: Path, work: Path, n: int, timeout: float) -> dict:
    storage = work / "gw-state"
    c.copy_storage(template, storage)
    with Mosquitto(work / "broker-gw") as broker:
        config = c.write_config(work / "station.toml", port=broker.port, storage=storage, extra=CLOCK)
        CountingOutbox.target = n
        # Looked up at call time, so that bench/whatif_drain.py can swap in its variants.
        gateway = build_gateway(config, CountingOutbox, Uplink)
        outbox = gateway.outbox
        window = c.CpuWindow()
        t0 = time.perf_counter()
        gateway.start()
        ok = outbox.done.wait(timeout)
        left = outbox.stats()["undelivered"]
        deadline = time.monotonic() + 5
        while ok and left and time.monotonic() < deadline:  # the gateway's own events (inventory) come last
            time.sleep(0.005)
            left = outbox.stats()["undelivered"]
        elapsed = outbox.t_last - t0
        cpu = window.close((broker.proc.pid,))
        status = gateway.uplink.status()
        gateway.stop()
    if not ok or left != 0:
        raise SystemExit(f"gateway drain did not finish: {left} undelivered after {timeout} s ({status})")
    return {"seconds": elapsed, "rate": n / elapsed, "delivered": outbox.marked, "window": status["window"], **cpu}


def run_bare(msgs: list[tuple[str, bytes]], work: Path, props: Properties | None, timeout: float) -> dict:
    n = len(msgs)
    with Mosquitto(work / "broker-bare") as broker:
        slots = threading.Semaphore(WINDOW)
        done = threading.Event()
        connected = threading.Event()
        state = {"acked": 0, "refused": 0, "t_done": 0.0}

        def on_publish(_c, _u, _mid, rc, _p) -> None:
            if rc.value >= 0x80:
                state["refused"] += 1
            state["acked"] += 1
            slots.release()
            if state["acked"] == n:
                state["t_done"] = time.perf_counter()
                done.set()

        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=paho.MQTTv5)
        client.on_publish = on_publish
        client.on_connect = lambda *_: connected.set()
        window = c.CpuWindow()
        t0 = time.perf_counter()
        client.connect("127.0.0.1", broker.port, keepalive=30, clean_start=True)
        client.loop_start()
        connected.wait(10)
        publish = client.publish
        acquire = slots.acquire
        for topic, payload in msgs:
            acquire()
            publish(topic, payload, qos=1, properties=props)
        ok = done.wait(timeout)
        elapsed = state["t_done"] - t0
        cpu = window.close((broker.proc.pid,))
        client.disconnect()
        client.loop_stop()
    if not ok or state["refused"]:
        raise SystemExit(f"bare loop did not finish: {state}")
    return {"seconds": elapsed, "rate": n / elapsed, **cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", choices=("both", "gateway", "bare"), default="both")
    ap.add_argument("--no-noprops", action="store_true", help="skip the informational no-property baseline")
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()
    n = args.events

    with tempfile.TemporaryDirectory(prefix="yimen-bench-drain-") as tmp:
        work = Path(tmp)
        template = work / "template"
        fill_s = c.prefill(template, n)
        stored = c.stored_messages(template)
        msgs = [(topics.event_topic(c.COUNTY, c.STATION, kind), payload) for kind, payload in stored]
        sizes = [len(p) for _, p in msgs]
        replay = Properties(PacketTypes.PUBLISH)
        replay.UserProperty = ("replay", "1")

        gw, bare, noprops = [], [], []

        def show(side: str, r: dict) -> None:
            print(
                f"  run {i + 1}: {side:<24} {r['seconds']:6.2f} s ({n / r['seconds']:5.0f}/s), "
                f"{r['cpu_s'] / n * 1e6:4.0f} us CPU/event here + {r['broker_cpu_s'] / n * 1e6:3.0f} in the broker; "
                f"others used {r['others_cores']} cores",
                flush=True,
            )

        for i in range(args.runs):
            if args.only in ("both", "gateway"):
                gw.append(run_gateway(template, work / f"g{i}", n, args.timeout))
                show("gateway", gw[-1])
            if args.only in ("both", "bare"):
                bare.append(run_bare(msgs, work / f"b{i}", replay, args.timeout))
                show("bare", bare[-1])
                if not args.no_noprops:
                    noprops.append(run_bare(msgs, work / f"n{i}", None, args.timeout))
                    show("bare, no user property", noprops[-1])

    result: dict = {
        "events": n,
        "payload_bytes": {"min": min(sizes), "mean": round(sum(sizes) / n, 1), "max": max(sizes)},
        "window": WINDOW,
        "prefill_s": round(fill_s, 2),
        "runs": args.runs,
    }
    human = []

    def side(name: str, runs: list[dict]) -> float:
        med = c.median([r["seconds"] for r in runs])
        result[name] = {
            "seconds": [round(r["seconds"], 3) for r in runs],
            "median_s": round(med, 3),
            "rate": round(n / med),
            "cpu_us_per_event": round(c.median([r["cpu_s"] for r in runs]) / n * 1e6, 1),
            "broker_cpu_us_per_event": round(c.median([r["broker_cpu_s"] for r in runs]) / n * 1e6, 1),
            "others_cores": [r["others_cores"] for r in runs],
        }
        return med

    if gw:
        g = side("gateway", gw)
        human.append(f"gateway {g:.2f} s ({n / g:.0f} ev/s, {result['gateway']['cpu_us_per_event']:.0f} us CPU/event)")
    if bare:
        b = side("bare", bare)
        human.append(f"bare paho {b:.2f} s ({n / b:.0f} ev/s, {result['bare']['cpu_us_per_event']:.0f} us CPU/event)")
    if noprops:
        side("bare_noprops", noprops)
    if gw and bare:
        ratio = b / g  # throughput ratio gateway / bare
        result["ratio"] = round(ratio, 3)
        cpu_g, cpu_b = result["gateway"]["cpu_us_per_event"], result["bare"]["cpu_us_per_event"]
        result["cpu_per_event_gateway_over_bare"] = round(cpu_g / cpu_b, 2)
        result["goal"] = ">= 0.8"
        result["goal_met"] = ratio >= 0.8
        human.append(f"ratio {ratio:.2f} of the bare loop (goal >= 0.8: {'met' if ratio >= 0.8 else 'NOT met'})")
    c.report("drain", result, f"{n} events, median of {args.runs}: " + "; ".join(human))


if __name__ == "__main__":
    main()
