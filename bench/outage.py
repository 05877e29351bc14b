"""Delivering again after a broker outage: the broker stopped for 60 s while the gateway keeps
appending, then restarted; how long until the first new PUBACK, and until the backlog is gone.

The gateway is the real command, `yimen run --config FILE`, as a subprocess, with the
simulator on at 1 event/s (`[simulate] events_per_second = 1`: Poisson arrivals, mean 1/s)
and every other setting at its default (reconnect_min_s 0.5, reconnect_max_s 5, keepalive
60 s), against a private Mosquitto (defaults, no persistence) on a fixed port.

Each outage: SIGTERM the broker, wait `--outage` s, start it again on the same port; t_restart
is the moment the new broker accepts TCP connections. Measured from the outbox (read-only,
polled every 50 ms from this process; the figures come from the gateway's own timestamps, so
the poll interval adds no error):
  - reconnect: the gateway's `outages` row closes (written on CONNACK);
  - first new PUBACK: the earliest `delivered` stamp after t_restart (written when the uplink
    marks an event delivered, right after its PUBACK);
  - backlog drained: the latest `delivered` stamp among the events with seq <= the highest seq
    assigned at t_restart (everything appended before and during the outage).
Goal: first new PUBACK within 5 s (the backoff cap) plus jitter.
"""

from __future__ import annotations

import argparse
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import _common as c
from memory_cpu import wait_connected, yimen_cmd

from mqtt.broker import Mosquitto


def query(db: Path, sql: str, params: tuple = ()) -> tuple:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchone()
    finally:
        conn.close()


def one_outage(broker: Mosquitto, db: Path, outage_s: float, timeout: float) -> dict:
    broker.stop()
    t_stop = time.time()
    time.sleep(outage_s)
    seq_at_restart, backlog = query(db, "SELECT max(seq), sum(delivered IS NULL AND parked IS NULL) FROM events")
    t_spawn = time.time()
    broker.start()
    t_restart = time.time()
    reconnect = first = drained = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (reconnect is None or first is None or drained is None):
        time.sleep(0.05)
        if reconnect is None:
            row = query(db, 'SELECT min("end") FROM outages WHERE "end" >= ?', (t_restart,))
            reconnect = row[0]
        if first is None:
            first = query(db, "SELECT min(delivered) FROM events WHERE delivered >= ?", (t_restart,))[0]
        if drained is None:
            left, last = query(
                db,
                "SELECT sum(delivered IS NULL AND parked IS NULL), max(delivered) FROM events WHERE seq <= ?",
                (seq_at_restart,),
            )
            if left == 0:
                drained = last
    if first is None or drained is None:
        raise SystemExit(f"no delivery within {timeout} s of the broker's restart")
    return {
        "outage_s": round(t_spawn - t_stop, 2),
        "broker_start_s": round(t_restart - t_spawn, 3),
        "backlog_at_restart": backlog,
        "reconnect_s": None if reconnect is None else round(reconnect - t_restart, 3),
        "first_puback_s": round(first - t_restart, 3),
        "backlog_drained_s": round(drained - t_restart, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--outage", type=float, default=60.0, help="seconds the broker is down")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=30.0, help="give up this long after a restart")
    args = ap.parse_args()
    outages = []
    with tempfile.TemporaryDirectory(prefix="yimen-bench-outage-") as tmp:
        work = Path(tmp)
        storage = work / "state"
        broker = Mosquitto(work / "broker").start()
        config = c.write_config(
            work / "station.toml",
            port=broker.port,
            storage=storage,
            extra="\n[simulate]\nevents_per_second = 1\nseed = 7\n",
        )
        log = work / "gateway.log"
        proc = subprocess.Popen([*yimen_cmd(), "run", "--config", str(config)], stderr=open(log, "ab"))  # noqa: SIM115
        try:
            wait_connected(proc, storage / "outbox.db")
            time.sleep(5)
            for i in range(args.repeats):
                if i:
                    time.sleep(5)
                outages.append(one_outage(broker, storage / "outbox.db", args.outage, args.timeout))
                o = outages[-1]
                print(
                    f"  outage {i + 1}: {o['backlog_at_restart']} events waiting; reconnect {o['reconnect_s']} s, "
                    f"first PUBACK {o['first_puback_s']} s, backlog drained {o['backlog_drained_s']} s",
                    flush=True,
                )
            time.sleep(2)
            left = query(storage / "outbox.db", "SELECT sum(delivered IS NULL AND parked IS NULL) FROM events")[0]
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(20)
            broker.stop()
    worst_first = max(o["first_puback_s"] for o in outages)
    worst_drained = max(o["backlog_drained_s"] for o in outages)
    goal_s = 5.0
    result = {
        "outage_s": args.outage,
        "outages": outages,
        "first_puback_max_s": worst_first,
        "backlog_drained_max_s": worst_drained,
        "undelivered_at_end": left,
        "gateway_exit_code": code,
        "goal": "first new PUBACK within 5 s (reconnect_max_s) plus jitter",
        "goal_met": worst_first <= goal_s + 0.5,
        "ratio_to_goal": round(worst_first / goal_s, 2),
    }
    human = (
        f"{len(outages)} x {args.outage:.0f} s broker outage at 1 event/s: first new PUBACK after "
        + ", ".join(f"{o['first_puback_s']:.2f}" for o in outages)
        + " s, backlog drained after "
        + ", ".join(f"{o['backlog_drained_s']:.2f}" for o in outages)
        + f" s; goal 5 s + jitter {'met' if result['goal_met'] else 'NOT met'}"
    )
    c.report("outage", result, human)


if __name__ == "__main__":
    main()
