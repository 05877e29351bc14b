"""Backlog drain over an emulated village line: 256 kbit/s each way, 60 ms one-way delay.

The real `edge.app.Gateway` (in this process, as in drain.py) drains an outbox pre-filled with
`--events` events (three queue `issue` events of about 550 bytes to one ~330-byte rating, written
by the outbox's own commit path) to a private Mosquitto through `shaped.ShapedRelay`, which
delays and rate-limits both directions. Two sides, each on a fresh copy of the same outbox and
a fresh broker, in the same run:

- "today": `[link] batch = false, topic_aliases = false`: every event its own PUBLISH, as main
  sends them;
- "batched": the defaults (compressed batches while a backlog waits, topic aliases).

Per side: events/s from the CONNACK to the last delivery mark, how busy the upstream line was
over that interval, bytes per event on the line (MQTT bytes, not TCP/IP headers) up and down.
The reference for bytes: the same events, in send order, zlib-compressed (level 6, no
dictionary) in batches of 50, per event. Goals (issue 16): batched >= 10x today and >= 500
events/s, line >= 90 % busy, upstream bytes per event <= 1.5x the reference.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import zlib
from pathlib import Path

import _common as c
import drain

from edge.events import NewEvent, Priority
from mqtt.broker import Mosquitto
from mqtt.uplink import Uplink
from tests.support.shaped import ShapedRelay

TODAY = "\n[link]\nbatch = false\ntopic_aliases = false\n"


def queue_issue(i: int) -> NewEvent:
    """A ticket issued at the kiosk, shaped as the station logic writes it (about 550 bytes)."""
    ts = f"2026-11-25T{8 + i // 3600 % 9:02d}:{i // 60 % 60:02d}:{i % 60:02d}.{i * 7 % 1000:03d}+08:00"
    ticket = f"{'ABC'[i % 3]}{i % 1000:03d}"
    return NewEvent(
        "queue",
        Priority.NORMAL,
        {
            "at": ts, "source": "kiosk-1", "op": i, "action": "issue", "ticket": ticket,
            "ticket_id": f"20261125-{ticket}-{i:06d}", "category": ["hukou", "shebao", "yibao"][i % 3],
            "green": i % 11 == 0, "window": None, "clerk": None, "issued": ts, "queued": ts, "called": None,
            "started": None, "ended": None, "recalls": 0, "wait_s": None, "walk_s": None, "service_s": None,
            "ahead": i % 9, "print": {"printed": True, "reason": None, "detail": None},
        },
    )  # fmt: skip


def mixed(i: int) -> NewEvent:
    return c.rating(i) if i % 4 == 3 else queue_issue(i)


def run_side(template: Path, work: Path, n: int, extra: str, kbps: float, delay_s: float, timeout: float) -> dict:
    storage = work / "state"
    c.copy_storage(template, storage)
    with Mosquitto(work / "broker") as broker:
        relay = ShapedRelay(broker.port, kbps=kbps, delay_s=delay_s)
        config = c.write_config(work / "station.toml", port=relay.port, storage=storage, extra=drain.CLOCK + extra)
        drain.CountingOutbox.target = n
        gateway = drain.build_gateway(config, drain.CountingOutbox, Uplink)
        outbox = gateway.outbox
        gateway.start()
        ok = outbox.done.wait(timeout)
        status = gateway.uplink.status()
        # The CONNACK, on the perf_counter clock: the uplink stamps its state change by wall time.
        t_conn = time.perf_counter() - (time.time() - status["since"])
        t_last = outbox.t_last
        gateway.stop()
        relay.close()
    if not ok:
        raise SystemExit(f"drain over the line did not finish in {timeout} s: {outbox.marked} of {n} ({status})")
    up, down = relay.lines[0]
    elapsed = t_last - t_conn
    totals = relay.totals()
    return {
        "seconds": round(elapsed, 3),
        "rate": round(n / elapsed, 1),
        "line_busy_up": round(up.busy_fraction(t_conn, t_last), 3),
        "line_busy_down": round(down.busy_fraction(t_conn, t_last), 3),
        "bytes_up_per_event": round(totals["up"] / n, 1),
        "bytes_down_per_event": round(totals["down"] / n, 1),
        "connections": len(relay.lines),
        "batches": status.get("batches"),
    }


def reference(payloads: list[bytes], size: int = 50) -> float:
    """zlib (level 6, no dictionary) over batches of `size` events, bytes per event."""
    total = sum(len(zlib.compress(b"".join(payloads[i : i + size]), 6)) for i in range(0, len(payloads), size))
    return total / len(payloads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=3000, help="events for 'today' (slow side)")
    ap.add_argument("--batched-events", type=int, default=20000, help="events for the batched side")
    ap.add_argument("--kbps", type=float, default=256.0)
    ap.add_argument("--delay-ms", type=float, default=60.0)
    ap.add_argument("--only", choices=("both", "today", "batched"), default="both")
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args()
    delay = args.delay_ms / 1000
    result: dict = {"kbps": args.kbps, "one_way_delay_ms": args.delay_ms}
    with tempfile.TemporaryDirectory(prefix="yimen-bench-line-") as tmp:
        work = Path(tmp)
        sides = {"today": (args.events, TODAY), "batched": (args.batched_events, "")}
        for name, (n, extra) in sides.items():
            if args.only not in ("both", name):
                continue
            template = work / f"template-{name}"
            c.prefill(template, n, make=mixed)
            payloads = [p for _k, p in c.stored_messages(template)]
            result.setdefault("payload_mean_bytes", round(sum(map(len, payloads)) / n, 1))
            result.setdefault("zlib_batches_of_50_bytes_per_event", round(reference(payloads), 1))
            r = run_side(template, work / name, n, extra, args.kbps, delay, args.timeout)
            result[name] = {"events": n, **r}
            print(f"  {name}: {r}", flush=True)
    human = []
    if "today" in result:
        t = result["today"]
        line = f"line {t['line_busy_up']:.0%}"
        human.append(f"today {t['rate']:.0f} ev/s, {t['bytes_up_per_event']:.0f} B/event up, {line}")
    if "batched" in result:
        b = result["batched"]
        ref = result["zlib_batches_of_50_bytes_per_event"]
        goals = {
            "rate_ge_500": b["rate"] >= 500,
            "line_busy_ge_90pct": b["line_busy_up"] >= 0.9,
            "bytes_le_1.5x_zlib50": b["bytes_up_per_event"] <= 1.5 * ref,
        }
        if "today" in result:
            result["speedup"] = round(b["rate"] / result["today"]["rate"], 1)
            goals["speedup_ge_10"] = result["speedup"] >= 10
        result["bytes_over_zlib50"] = round(b["bytes_up_per_event"] / ref, 2)
        result["goals"] = goals
        human.append(
            f"batched {b['rate']:.0f} ev/s ({result.get('speedup', '?')}x), {b['bytes_up_per_event']:.1f} B/event up "
            f"({result['bytes_over_zlib50']}x zlib/50 = {ref} B), line {b['line_busy_up']:.0%}; "
            f"goals {'all met' if all(goals.values()) else 'NOT all met: ' + str(goals)}"
        )
    c.report("line", result, "; ".join(human))


if __name__ == "__main__":
    main()
