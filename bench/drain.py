"""Backlog drain: N undelivered events delivered by the real Uplink to a private Mosquitto,
against a bare paho loop publishing the same payloads with the same window and threading.

Gateway side: an outbox pre-filled with N ratings (~300-byte JSON envelopes, written by the
outbox's own commit path), `edge.outbox.Outbox` + `edge.health.Health` + `mqtt.uplink.Uplink`
wired exactly as `edge.app.Gateway` wires them, in this process. The clock starts just before
`Uplink.start()` (so the connect is included) and stops when `Outbox.mark_delivered` (hooked by
a subclass in this file: it only counts) has been called for all N seqs; then `Outbox.stats()`
must report 0 undelivered.

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

from edge.health import Health
from edge.outbox import Outbox
from mqtt import topics
from mqtt.broker import Mosquitto
from mqtt.uplink import Uplink

WINDOW = 20


class CountingOutbox(Outbox):
    """Counts delivery marks; the count of N is the moment the backlog is gone."""

    target = 0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.marked = 0
        self.done = threading.Event()
        self.t_done = 0.0

    def mark_delivered(self, seqs) -> None:
        super().mark_delivered(seqs)
        self.marked += len(seqs)
        if self.marked >= self.target and not self.done.is_set():
            self.t_done = time.perf_counter()
            self.done.set()


def run_gateway(template: Path, work: Path, n: int, timeout: float) -> dict:
    storage = work / "gw-state"
    c.copy_storage(template, storage)
    with Mosquitto(work / "broker-gw") as broker:
        CountingOutbox.target = n
        outbox = c.open_outbox(storage, cls=CountingOutbox)
        health = Health(outbox, storage, 512 * 1024 * 1024, lambda: True)
        uplink = Uplink(c.broker_config(broker.port), c.COUNTY, c.STATION, outbox, status_fields=health.status_fields)
        t0 = time.perf_counter()
        uplink.start()
        ok = outbox.done.wait(timeout)
        elapsed = outbox.t_done - t0 if ok else float("nan")
        left = outbox.stats()["undelivered"]
        status = uplink.status()
        uplink.stop()
        outbox.close()
    if not ok or left != 0:
        raise SystemExit(f"gateway drain did not finish: {left} undelivered after {timeout} s ({status})")
    return {"seconds": elapsed, "rate": n / elapsed, "undelivered_after": left, "window": status["window"]}


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
        client.disconnect()
        client.loop_stop()
    if not ok or state["refused"]:
        raise SystemExit(f"bare loop did not finish: {state}")
    return {"seconds": elapsed, "rate": n / elapsed}


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
        for i in range(args.runs):
            if args.only in ("both", "gateway"):
                gw.append(run_gateway(template, work / f"g{i}", n, args.timeout))
                print(f"  run {i + 1}: gateway {gw[-1]['seconds']:.2f} s ({gw[-1]['rate']:.0f}/s)", flush=True)
            if args.only in ("both", "bare"):
                bare.append(run_bare(msgs, work / f"b{i}", replay, args.timeout))
                print(f"  run {i + 1}: bare    {bare[-1]['seconds']:.2f} s ({bare[-1]['rate']:.0f}/s)", flush=True)
                if not args.no_noprops:
                    noprops.append(run_bare(msgs, work / f"n{i}", None, args.timeout))
                    print(f"  run {i + 1}: bare, no user property {noprops[-1]['seconds']:.2f} s", flush=True)

    result: dict = {
        "events": n,
        "payload_bytes": {"min": min(sizes), "mean": round(sum(sizes) / n, 1), "max": max(sizes)},
        "window": WINDOW,
        "prefill_s": round(fill_s, 2),
        "runs": args.runs,
    }
    human = []
    if gw:
        g = c.median([r["seconds"] for r in gw])
        result["gateway_s"] = [round(r["seconds"], 3) for r in gw]
        result["gateway_median_s"] = round(g, 3)
        result["gateway_rate"] = round(n / g)
        human.append(f"gateway {g:.2f} s ({n / g:.0f} ev/s)")
    if bare:
        b = c.median([r["seconds"] for r in bare])
        result["bare_s"] = [round(r["seconds"], 3) for r in bare]
        result["bare_median_s"] = round(b, 3)
        result["bare_rate"] = round(n / b)
        human.append(f"bare paho {b:.2f} s ({n / b:.0f} ev/s)")
    if noprops:
        nb = c.median([r["seconds"] for r in noprops])
        result["bare_noprops_s"] = [round(r["seconds"], 3) for r in noprops]
        result["bare_noprops_median_s"] = round(nb, 3)
    if gw and bare:
        ratio = b / g  # throughput ratio gateway / bare
        result["ratio"] = round(ratio, 3)
        result["goal"] = ">= 0.8"
        result["goal_met"] = ratio >= 0.8
        human.append(f"ratio {ratio:.2f} of the bare loop (goal >= 0.8: {'met' if ratio >= 0.8 else 'NOT met'})")
    c.report("drain", result, f"{n} events, median of {args.runs}: " + "; ".join(human))


if __name__ == "__main__":
    main()
