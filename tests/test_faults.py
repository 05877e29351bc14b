"""Fault injection against a real Mosquitto: kill -9, broker restarts, a black-holed link,
a full disk budget, a broker that refuses one kind, a corrupted outbox. Each ends with the
county subscriber (a separate process) holding every seq from 1 to N, byte-identical across
duplicates, or, where events were knowingly given up, holding the report that says so."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.clock import ClockSource
from edge.config import ClockConfig
from edge.events import NewEvent, Priority
from edge.outbox import Outbox, OutboxFull
from mqtt.broker import Mosquitto
from tests.conftest import ROOT, STATION, GatewayProcess, Subscriber, message_doc, station_config, wait_until
from tests.support.proxy import Proxy

pytestmark = pytest.mark.slow


def drain_and_check(gw: GatewayProcess, sub: Subscriber, allow_missing: set[int] = frozenset()) -> dict:
    """Stop the gateway, let it deliver its backlog, and check the county has it all."""
    last = gw.stop_and_drain()["last_seq"]
    wait_until(lambda: set(range(1, last + 1)) - allow_missing <= set(sub.events()), 15, f"seqs 1..{last}")
    return sub.assert_complete(last, allow_missing)


def test_kill_minus_nine_loses_no_acknowledged_append(tmp_path: Path) -> None:
    """What `append` returned (and a driver acknowledged) survives SIGKILL; seqs never repeat."""
    storage = tmp_path / "state"
    acknowledged: list[int] = []
    rng = random.Random(3)
    for _ in range(20):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.appender", str(storage)], stdout=subprocess.PIPE, cwd=ROOT
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()  # appending has begun (start-up time varies with load)
        time.sleep(rng.uniform(0.0, 0.7))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        run = [int(line) for line in (first + out).decode().split("\n")[:-1]]  # the last line may be cut
        assert not acknowledged or min(run) > max(acknowledged), "a seq was reused after kill -9"
        acknowledged += run
    box = Outbox(storage / "outbox.db", STATION, clock=ClockSource(ClockConfig(sync="assume")), max_bytes=64 << 20)
    held = {p.seq for p in box.replay(1, 10**9)}
    box.close()
    assert set(acknowledged) <= held, f"lost {len(set(acknowledged) - held)} acknowledged events"


def test_gateway_killed_twenty_times_county_gets_every_seq(tmp_path: Path, broker: Mosquitto, subscriber) -> None:
    config = station_config(tmp_path, broker.port, rate=60)
    rng = random.Random(5)
    for _ in range(20):
        gw = GatewayProcess(config).start()
        # Killed at a random point of its running life, not of its start-up (which a loaded machine
        # can stretch past the whole interval, so that nothing is ever recorded).
        wait_until(lambda gw=gw: gw.status()["gateway"].startswith("running"), 30, "the gateway to be running")
        time.sleep(rng.uniform(0.1, 1.2))
        gw.kill()
    killed_at = GatewayProcess(config).status()["last_seq"]
    assert killed_at > 20, "the gateway was killed before it recorded anything: the test proves nothing"
    gw = GatewayProcess(config).start()
    drain_and_check(gw, subscriber)


@pytest.mark.parametrize("persistence", [False, True])
def test_broker_stopped_and_restarted(tmp_path: Path, subscriber, persistence: bool) -> None:
    with Mosquitto(tmp_path / "b", persistence=persistence) as broker:
        sub = Subscriber(broker.port, tmp_path / "county-b.jsonl").start()
        # The station reaches the broker through a proxy, so the test can let the county's
        # subscriber back in before the station after the restart (an ordering, not a fault).
        link = Proxy(broker.port)
        gw = GatewayProcess(station_config(tmp_path, link.port, rate=50)).start()
        try:
            wait_until(lambda: len(sub.events()) > 50, 20, "traffic before the outage")
            link.set_mode(Proxy.REFUSE)
            broker.stop()
            wait_until(lambda: gw.status()["broker"]["connection"] != "connected", 10, "the station to notice")
            time.sleep(2)  # events pile up meanwhile
            assert gw.status()["undelivered"] > 0
            subs_before = sub.subscriptions()
            broker.start()
            wait_until(lambda: sub.subscriptions() > subs_before, 15, "the county to resubscribe")
            link.set_mode(Proxy.PASS)
            wait_until(lambda: gw.status()["broker"]["connection"] == "connected", 15, "the station to reconnect")
            drain_and_check(gw, sub)
        finally:
            link.close()
            sub.stop()


def test_black_holed_link_is_detected_and_recovered(tmp_path: Path, broker: Mosquitto, subscriber) -> None:
    link = Proxy(broker.port)
    gw = GatewayProcess(station_config(tmp_path, link.port, rate=30, keepalive=4)).start()
    try:
        wait_until(lambda: gw.status()["broker"]["connection"] == "connected", 10, "connect")
        wait_until(lambda: len(subscriber.events()) > 20, 10, "traffic")
        link.set_mode(Proxy.BLACKHOLE)
        # No FIN, no RST: only the keepalive can tell. 1.5 keepalives = 6 s; allow scheduling slack.
        wait_until(lambda: gw.status()["broker"]["connection"] != "connected", 12, "the dead link to be detected")
        assert gw.status()["undelivered"] > 0
        link.set_mode(Proxy.PASS)
        wait_until(lambda: gw.status()["broker"]["connection"] == "connected", 15, "reconnect")
        events = drain_and_check(gw, subscriber)
        resent = [m for m in subscriber.messages() if m["replay"]]
        assert resent, "events re-sent after the outage must carry replay=1"
        assert all(message_doc(m)["seq"] in events for m in resent)
    finally:
        link.close()


def test_disk_budget_exhausted_critical_all_delivered_losses_reported(tmp_path: Path, broker, subscriber) -> None:
    storage = tmp_path / "state"
    box = Outbox(storage / "outbox.db", STATION, clock=ClockSource(ClockConfig(sync="assume")), max_bytes=1 << 20)
    pad = "x" * 1500
    kinds = {}
    rng = random.Random(9)
    for _ in range(1500):  # ~2.5 MB offered to a 1 MB budget while the county is unreachable
        prio = rng.choice([Priority.CRITICAL, Priority.NORMAL, Priority.BULK, Priority.BULK])
        with contextlib.suppress(OutboxFull):  # refused bulk work is part of what is tested
            kinds[box.append(NewEvent(prio.label, prio, {"pad": pad})).seq] = prio
    box.close()
    config = station_config(tmp_path, broker.port, storage=storage)
    config.write_text(config.read_text().replace("max_mb = 64", "max_mb = 1"))
    gw = GatewayProcess(config).start()
    wait_until(lambda: gw.status()["undelivered"] == 0, 60, "the backlog to drain")
    assert gw.stop() == 0
    last = gw.status()["last_seq"]
    wait_until(lambda: len(subscriber.events()) >= 1, 10, "events")
    time.sleep(1)
    received = {seq: json.loads(c[0]) for seq, c in subscriber.events().items()}
    reported: dict[str, set[int]] = {}
    for doc in received.values():
        if doc["kind"] == "eviction":
            for prio, spans in doc["data"]["evicted"].items():
                reported.setdefault(prio, set()).update(s for lo, hi in spans for s in range(lo, hi + 1))
    missing = set(range(1, last + 1)) - set(received)
    lost = set().union(*reported.values()) if reported else set()
    assert missing, "the budget was never exceeded: the test proves nothing"
    assert missing == lost, "every seq the county lacks must be reported as evicted, and only those"
    assert not any(kinds.get(s) == Priority.CRITICAL for s in missing), "a critical event was evicted"
    assert {k for k in reported} <= {"bulk", "normal"}
    if "normal" in reported:  # normal only goes once no undelivered bulk is left to give up
        assert all(kinds[s] != Priority.BULK for s in set(kinds) - set(received) - lost)


def test_corrupted_outbox_at_start(tmp_path: Path, broker: Mosquitto, subscriber) -> None:
    config = station_config(tmp_path, broker.port, rate=40)
    gw = GatewayProcess(config).start()
    wait_until(lambda: gw.status()["last_seq"] > 40, 15, "some events")
    drain_and_check(gw, subscriber)
    before = gw.status()["last_seq"]
    db = tmp_path / "state" / "outbox.db"
    with open(db, "r+b") as fh:
        fh.seek(4096)
        fh.write(b"\xde\xad" * 4096)
    gw = GatewayProcess(config).start()
    wait_until(lambda: gw.status()["last_seq"] > before + 20, 15, "the gateway to run on")
    assert list((tmp_path / "state").glob("outbox.db.corrupt-*")), "the damaged file must be kept"
    last = gw.stop_and_drain()["last_seq"]
    wait_until(lambda: last in subscriber.events(), 15, "the last event")
    events = {seq: json.loads(c[0]) for seq, c in subscriber.assert_complete(0).items()}
    incidents = [e for e in events.values() if e["kind"] == "incident"]
    incident = [e for e in incidents if e["data"]["what"] == "outbox-corrupt"]
    assert len(incident) == 1 and incident[0]["seq"] > before
    # The station's state lived in the same file: the next event says what became of it.
    (state,) = [e for e in incidents if e["data"]["what"].startswith("station-state-")]
    assert state["seq"] == incident[0]["seq"] + 1 and state["data"]["from"].startswith("outbox.db.corrupt-")
    after = [s for s in events if s > before]
    assert min(after) == incident[0]["seq"], "the incident must be the first event of the new outbox"
    # Everything from the incident on arrived; nothing before it was overwritten (assert_complete
    # checked that every seq's copies are byte-identical: a reused seq would differ).
    assert set(range(incident[0]["seq"], last + 1)) <= set(events)


def test_a_sigterm_that_lands_on_another_thread_still_stops_the_gateway(tmp_path: Path, broker: Mosquitto) -> None:
    """The kernel may hand a process's SIGTERM to any of its threads (a traced gateway's do land
    where strace re-injects them); Python runs the handler on the main thread only. Sent here
    to the uplink's thread alone (tgkill), it must still stop the gateway cleanly."""
    gw = GatewayProcess(station_config(tmp_path, broker.port, rate=5)).start()
    try:
        wait_until(lambda: gw.status()["broker"]["connection"] == "connected", 15, "the gateway to connect")
        assert gw.proc is not None
        pid = gw.proc.pid
        others = sorted(int(tid) for tid in os.listdir(f"/proc/{pid}/task") if int(tid) != pid)
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.tgkill(pid, others[-1], signal.SIGTERM) == 0, os.strerror(ctypes.get_errno())
        assert gw.proc.wait(15) == 0
        assert "stopping" in gw.log.read_text()
    finally:
        if gw.proc is not None and gw.proc.poll() is None:
            gw.proc.kill()
