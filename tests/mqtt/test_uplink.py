"""The uplink against a real Mosquitto: what the county sees, and what `yimen status` says."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

from edge.clock import ClockSource
from edge.config import ClockConfig
from edge.events import NewEvent, Priority
from edge.outbox import Outbox
from mqtt.broker import Mosquitto
from mqtt.config import BrokerConfig
from mqtt.uplink import Backoff, Uplink
from tests.conftest import COUNTY, STATION, GatewayProcess, Subscriber, message_doc, station_config, wait_until
from tests.support.mqtt_meter import MeteringProxy
from tests.support.proxy import Proxy


def prefill(storage: Path, spec: list[tuple[str, Priority]]) -> None:
    box = Outbox(storage / "outbox.db", STATION, clock=ClockSource(ClockConfig(sync="assume")), max_bytes=64 << 20)
    for kind, prio in spec:
        box.append(NewEvent(kind, prio, {"note": "written before the gateway started"}))
    box.close()


def arrival_seqs(sub: Subscriber) -> list[int]:
    seen: list[int] = []
    for msg in sub.messages():
        seq = message_doc(msg)["seq"]
        if seq not in seen:
            seen.append(seq)
    return seen


def test_backlog_drains_critical_first_then_in_seq_order(tmp_path, broker, subscriber, gateways) -> None:
    storage = tmp_path / "state"
    spec = [("telemetry", Priority.BULK), ("queue", Priority.NORMAL), ("rating", Priority.CRITICAL)] * 30
    prefill(storage, spec)
    gw = GatewayProcess(station_config(tmp_path, broker.port, storage=storage)).start()
    gateways.append(gw)
    wait_until(lambda: len(subscriber.events()) >= 90, 20, "all 90 events at the county")
    order = [seq for seq in arrival_seqs(subscriber) if seq <= 90]  # 91 on: the gateway's own (inventory)
    prio = {seq: spec[seq - 1][1] for seq in range(1, 91)}
    ranks = [prio[s] for s in order]
    assert ranks == sorted(ranks, reverse=True), "a lower-priority event overtook a higher one"
    for p in Priority:
        same = [s for s in order if prio[s] == p]
        assert same == sorted(same), f"{p.label} events arrived out of seq order"
    # Events from before this gateway process started are late, and marked so (MQTT 5 user property).
    prefilled = [m for m in subscriber.messages() if message_doc(m)["seq"] <= 90]
    assert all(m["replay"] for m in prefilled)
    assert gw.stop() == 0


def test_status_birth_will_and_session_counter(tmp_path, broker, subscriber, gateways) -> None:
    config = station_config(tmp_path, broker.port, keepalive=2)

    def statuses() -> list[dict]:
        return subscriber.docs("status")

    gw = GatewayProcess(config).start()
    gateways.append(gw)
    wait_until(lambda: any(s["state"] == "online" for s in statuses()), 15, "the birth message")
    birth = statuses()[-1]
    assert birth["session"] == 1 and birth["clock"] == "synced" and "version" in birth and "backlog" in birth
    gw.kill()  # power cut: the broker must publish the will
    wait_until(lambda: statuses()[-1]["state"] == "offline", 15, "the last will")
    assert statuses()[-1] == {"state": "offline", "session": 1, "cause": "lost"}
    gw2 = GatewayProcess(config).start()
    gateways.append(gw2)
    wait_until(lambda: statuses()[-1]["state"] == "online", 15, "the second birth")
    assert statuses()[-1]["session"] == 2, "the session counter must survive a restart and grow"
    assert gw2.stop() == 0
    wait_until(lambda: statuses()[-1]["state"] == "offline", 10, "the clean shutdown status")
    assert statuses()[-1] == {"state": "offline", "session": 2, "cause": "shutdown"}


def test_refused_kind_is_parked_and_reported_the_rest_flows(tmp_path, gateways) -> None:
    acl = tmp_path / "acl"
    acl.write_text(f"topic readwrite yimen/#\ntopic deny yimen/v1/{COUNTY}/{STATION}/events/queue\n")
    with Mosquitto(tmp_path / "broker", extra=f"acl_file {acl}") as broker:
        sub = Subscriber(broker.port, tmp_path / "county.jsonl").start()
        try:
            gw = GatewayProcess(station_config(tmp_path, broker.port, rate=40)).start()
            gateways.append(gw)
            wait_until(lambda: gw.status()["parked"]["count"] >= 5, 20, "queue events to be parked")

            def kinds_seen() -> set[str]:
                return {json.loads(copies[0])["kind"] for copies in sub.events().values()}

            wait_until(lambda: "rating" in kinds_seen(), 20, "a rating while queue events are refused")
            status = gw.stop_and_drain()
            time.sleep(0.5)  # the last PUBACKed events are on their way to the county
            events = sub.events()
            kinds = kinds_seen()
            assert "queue" not in kinds
            assert "rating" in kinds, "ratings must keep flowing while queue events are refused"
            parked = {p["seq"] for p in status["parked"]["events"]}
            reports = [json.loads(c[0])["data"] for c in events.values() if json.loads(c[0])["kind"] == "parked"]
            assert {r["seq"] for r in reports} >= set(list(parked)[:5])
            assert all(r["reason"].startswith("0x87") and r["kind"] == "queue" for r in reports)
            # Everything not parked was delivered: nothing is stuck, nothing silently dropped.
            assert status["backlog"] == {"critical": 0, "normal": 0, "bulk": 0}
            assert status["undelivered"] == status["parked"]["count"]
            missing = set(range(1, status["last_seq"] + 1)) - set(events)
            assert missing == {p["seq"] for p in _all_parked(gw)}
        finally:
            sub.stop()


def _all_parked(gw: GatewayProcess) -> list[dict]:
    import sqlite3

    conn = sqlite3.connect(gw.status_path())
    try:
        return [{"seq": r[0]} for r in conn.execute("SELECT seq FROM events WHERE parked IS NOT NULL")]
    finally:
        conn.close()


def test_unreachable_broker_at_start_buffers_then_delivers(tmp_path, broker, subscriber, gateways) -> None:
    link = Proxy(broker.port, mode=Proxy.REFUSE)  # the county's broker is down when the station boots
    try:
        gw = GatewayProcess(station_config(tmp_path, link.port, rate=30)).start()
        gateways.append(gw)
        wait_until(lambda: gw.status()["undelivered"] >= 20, 20, "events to buffer while the broker is away")
        status = gw.status()
        assert status["broker"]["connection"] in ("disconnected", "connecting")
        assert "cannot reach" in status["broker"]["cause"] and "refused" in status["broker"]["cause"]
        link.set_mode(Proxy.PASS)
        wait_until(lambda: gw.status()["broker"]["connection"] == "connected", 15, "the gateway to connect")
        last = gw.stop_and_drain()["last_seq"]
        wait_until(lambda: len(subscriber.events()) >= last, 10, "the buffered events")
        subscriber.assert_complete(last)
    finally:
        link.close()


def test_bad_credentials_slow_reconnecting_down_and_say_so(tmp_path, gateways) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("")
    import subprocess

    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "county", "right"], check=True)
    with Mosquitto(tmp_path / "broker", extra=f"allow_anonymous false\npassword_file {passwd}") as broker:
        broker_extra = 'username = "county"\npassword = "wrong"'
        gw = GatewayProcess(station_config(tmp_path, broker.port, broker_extra=broker_extra)).start()
        gateways.append(gw)
        wait_until(lambda: gw.status()["broker"]["connection"] == "needs_enrolment", 15, "needs_enrolment")
        assert "credentials" in gw.status()["broker"]["cause"]
        time.sleep(2)  # the next try of the same login is 30 to 60 s away by default
        assert gw.logs().count("or enrol this station again") == 1
        assert gw.stop() == 0


def test_a_refused_login_is_tried_again_until_the_broker_takes_it(tmp_path, gateways) -> None:
    """A password file rewritten (or a dynamic-security reload) refuses a station for a while;
    once the broker takes the same login again the station comes back by itself."""
    passwd = tmp_path / "passwd"
    passwd.write_text("")
    import subprocess

    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "county", "not-yet"], check=True)
    with Mosquitto(tmp_path / "broker", extra=f"allow_anonymous false\npassword_file {passwd}") as broker:
        broker_extra = 'username = "county"\npassword = "right"\nrefused_retry_s = 0.5\nrefused_retry_max_s = 1.0'
        gw = GatewayProcess(station_config(tmp_path, broker.port, broker_extra=broker_extra, rate=5)).start()
        gateways.append(gw)
        wait_until(lambda: gw.status()["broker"]["connection"] == "needs_enrolment", 15, "needs_enrolment")
        assert "trying the same login again at" in gw.status()["broker"]["cause"]
        wait_until(lambda: gw.logs().count("or enrol this station again") >= 3, 15, "the same login tried again")
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), "county", "right"], check=True)
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGHUP)  # mosquitto reloads its password file
        wait_until(lambda: gw.status()["broker"]["connection"] == "connected", 15, "the station back online")
        last = gw.stop_and_drain()["last_seq"]
        assert last > 0 and gw.status()["undelivered"] == 0


def test_window_never_exceeds_the_brokers_receive_maximum(tmp_path) -> None:
    with Mosquitto(tmp_path / "broker", extra="max_inflight_messages 3") as broker:
        box = Outbox(tmp_path / "outbox.db", STATION, clock=ClockSource(ClockConfig(sync="assume")), max_bytes=64 << 20)
        uplink = Uplink(BrokerConfig(port=broker.port, inflight=20), COUNTY, STATION, box)
        uplink.start()
        try:
            wait_until(lambda: uplink.status()["state"] == "connected", 10, "connect")
            assert uplink.status()["window"] == 3
            for i in range(50):
                box.append(NewEvent("rating", Priority.CRITICAL, {"n": i}))
            wait_until(lambda: box.stats()["undelivered"] == 0, 10, "the 50 events to drain")
        finally:
            uplink.stop()
            box.close()


def test_replays_and_replies_stay_within_the_brokers_receive_maximum(tmp_path) -> None:
    """A replay of 200 events, a burst of replies and a birth on a broker that takes 3 at a time:
    counted on the wire, never more than 3 QoS 1 publishes await their PUBACK."""
    with Mosquitto(tmp_path / "broker", extra="max_inflight_messages 3") as broker:
        sub = Subscriber(broker.port, tmp_path / "county.jsonl").start()
        meter = MeteringProxy(broker.port)
        box = Outbox(tmp_path / "outbox.db", STATION, clock=ClockSource(ClockConfig(sync="assume")), max_bytes=64 << 20)
        uplink = Uplink(BrokerConfig(port=meter.port, inflight=20), COUNTY, STATION, box)
        uplink.start()
        try:
            for i in range(200):
                box.append(NewEvent("rating", Priority.CRITICAL, {"n": i}))
            wait_until(lambda: box.stats()["undelivered"] == 0, 20, "the 200 events to drain")
            session = uplink.status()["session"]
            assert uplink.replay(1, 200) == 200
            for i in range(50):
                uplink.publish_control(f"yimen/v1/{COUNTY}/{STATION}/reply/r{i}", b"{}")
            uplink.rebirth()
            wait_until(lambda: sum(1 for m in sub.messages() if m["replay"]) >= 200, 20, "the 200 replayed events")
            assert uplink.status()["session"] == session and uplink.status()["state"] == "connected"
            assert meter.most_outstanding <= 3, f"{meter.most_outstanding} publishes awaited a PUBACK at once"
        finally:
            uplink.stop()
            box.close()
            sub.stop()
            meter.close()


def test_mqtt_311_is_selectable(tmp_path, broker, subscriber, gateways) -> None:
    config = station_config(tmp_path, broker.port, rate=30, broker_extra='protocol = "3.1.1"')
    gw = GatewayProcess(config).start()
    gateways.append(gw)
    wait_until(lambda: len(subscriber.events()) >= 10, 15, "events over MQTT 3.1.1")
    last = gw.stop_and_drain()["last_seq"]
    wait_until(lambda: len(subscriber.events()) >= last, 10, "the rest")
    subscriber.assert_complete(last)


def test_backoff_is_jittered_and_capped() -> None:
    import random

    rng = random.Random(1)
    delays = [Backoff(0.5, 5.0, rng.random).next_delay() for _ in range(200)]
    assert len({round(d, 6) for d in delays}) > 150, "stations would reconnect in lock-step"
    backoff = Backoff(0.5, 5.0, rng.random)
    series = [backoff.next_delay() for _ in range(12)]
    assert all(d <= 5.0 for d in series) and series[-1] >= 2.5
    assert series[0] <= 0.5


class HoldConnack(Proxy):
    """Passes the station's bytes to the broker but none back: its CONNECT arrives, its CONNACK never does."""

    def __init__(self, target_port: int) -> None:
        self.upstreams: set = set()
        self.connect_seen = threading.Event()
        super().__init__(target_port)

    def _opened(self, client, upstream) -> None:
        self.upstreams.add(upstream)

    def _forward(self, sock) -> None:
        if sock in self.upstreams:
            self._read(sock)  # the broker's answer vanishes
            return
        self.connect_seen.set()
        super()._forward(sock)


def test_a_gateway_stopped_before_its_connack_leaves_no_will(tmp_path, broker, subscriber, gateways) -> None:
    """A clean stop while the CONNACK is still on its way is a clean stop: the broker, which took
    the CONNECT and its will, must not tell the county the link was lost."""
    link = HoldConnack(broker.port)
    gw = GatewayProcess(station_config(tmp_path, link.port)).start()
    gateways.append(gw)
    wait_until(link.connect_seen.is_set, 20, "the station's CONNECT on its way to the broker")
    time.sleep(0.5)  # the broker has taken it, will and all
    assert gw.stop() == 0
    time.sleep(2.0)  # a will would be out by now (the connection is gone)
    assert not [s for s in subscriber.docs("status") if s.get("cause") == "lost"], subscriber.docs("status")
    link.close()


def _counting_reads(box: Outbox) -> list[int]:
    """Count the uplink's reads of pending events (the real method, only counted)."""
    reads: list[int] = []
    real = box.read_pending

    def counted(limit, exclude=()):
        reads.append(limit)
        return real(limit, exclude)

    box.read_pending = counted  # type: ignore[method-assign]
    return reads


def test_a_trickle_is_sent_from_the_commit_and_priority_still_goes_first(tmp_path) -> None:
    """At a steady trickle the uplink takes each commit's events as the commit hands them over,
    rather than reading them back; while the window is full, what waits is still sent by priority."""
    with Mosquitto(tmp_path / "narrow", extra="max_inflight_messages 1") as narrow:
        box = Outbox(tmp_path / "outbox.db", STATION, clock=ClockSource(ClockConfig(sync="assume")), max_bytes=64 << 20)
        watch = Subscriber(narrow.port, tmp_path / "county.jsonl").start()
        uplink = Uplink(BrokerConfig(port=narrow.port, inflight=20), COUNTY, STATION, box)
        reads = _counting_reads(box)
        uplink.start()
        try:
            wait_until(
                lambda: uplink.status()["state"] == "connected" and box.stats()["undelivered"] == 0, 10, "connect"
            )
            before = len(reads)
            for i in range(20):
                box.append(NewEvent("queue", Priority.NORMAL, {"n": i}))
                wait_until(lambda: box.stats()["undelivered"] == 0, 10, "the event's PUBACK")
            assert len(reads) - before <= 2, f"{len(reads) - before} reads for 20 events one by one"
            # The broker stalls (its process stopped, the connection open) with one event in flight:
            # the rest of a burst waits in the read-ahead, and a critical event overtakes it.
            assert narrow.proc is not None
            narrow.proc.send_signal(signal.SIGSTOP)
            try:
                burst = [box.append(NewEvent("queue", Priority.NORMAL, {"burst": i})).seq for i in range(10)]
                critical = box.append(NewEvent("rating", Priority.CRITICAL, {"burst": "critical"})).seq
            finally:
                narrow.proc.send_signal(signal.SIGCONT)
            wait_until(lambda: box.stats()["undelivered"] == 0, 20, "the burst to drain")
            wait_until(lambda: critical in arrival_seqs(watch), 10, "the critical event at the county")
            order = [s for s in arrival_seqs(watch) if s in burst or s == critical]
            assert order.index(critical) <= 1, f"the critical event waited behind the burst: {order}"
            assert [s for s in order if s != critical] == burst, "normal events out of seq order"
        finally:
            uplink.stop()
            watch.stop()
            box.close()


def test_an_unsynced_stamp_sent_from_the_commit_is_still_frozen(tmp_path, broker) -> None:
    """An event stamped on an unsynced clock is read before it is sent, never handed over: the
    read freezes its stamp, so a clock synced later never re-stamps what the county already has."""
    marker = tmp_path / "synced"
    clock = ClockSource(ClockConfig(sync="file", sync_file=marker))
    box = Outbox(tmp_path / "outbox.db", STATION, clock=clock, max_bytes=64 << 20)
    uplink = Uplink(BrokerConfig(port=broker.port), COUNTY, STATION, box)
    uplink.start()
    try:
        wait_until(lambda: uplink.status()["state"] == "connected", 10, "connect")
        sent = [box.append(NewEvent("rating", Priority.CRITICAL, {"n": i})) for i in range(3)]
        wait_until(lambda: box.stats()["undelivered"] == 0, 10, "the three events delivered")
        marker.touch()
        time.sleep(0.01)
        assert box.correct_unsynced(time.time() + 3600, time.monotonic_ns()) == 0, "a sent stamp was re-stamped"
        stored = {p.seq: json.loads(p.payload) for p in box.replay(1, sent[-1].seq)}
        assert all(stored[e.seq]["ts"] == e.ts and stored[e.seq]["clock"] == "unsynced" for e in sent)
    finally:
        uplink.stop()
        box.close()


def test_a_stop_waits_the_whole_drain_for_a_slow_puback(tmp_path) -> None:
    """A clean stop waits up to SHUTDOWN_DRAIN_S for what is in flight: an event whose PUBACK
    comes late (the broker stalled 1.5 s, past the loop's 1 s network tick) is marked delivered,
    not left for a re-send of what the county already has."""
    with Mosquitto(tmp_path / "stalled") as stalled:
        box = Outbox(tmp_path / "outbox.db", STATION, clock=ClockSource(ClockConfig(sync="assume")), max_bytes=64 << 20)
        uplink = Uplink(BrokerConfig(port=stalled.port), COUNTY, STATION, box)
        uplink.start()
        try:
            wait_until(lambda: uplink.status()["state"] == "connected", 10, "connect")
            wait_until(lambda: box.stats()["undelivered"] == 0, 10, "the birth's events delivered")
            assert stalled.proc is not None
            stalled.proc.send_signal(signal.SIGSTOP)
            try:
                box.append(NewEvent("rating", Priority.CRITICAL, {"late": True}))
                wait_until(lambda: uplink.status()["inflight"] == 1, 5, "the event in flight")
                stopping = threading.Thread(target=uplink.stop, kwargs={"timeout": 10})
                stopping.start()
                time.sleep(1.5)
            finally:
                stalled.proc.send_signal(signal.SIGCONT)
            stopping.join(10)
            assert uplink.status()["delivered"] >= 1 and uplink.status()["inflight"] == 0
        finally:
            box.close()
        reopened = Outbox(
            tmp_path / "outbox.db", STATION, clock=ClockSource(ClockConfig(sync="assume")), max_bytes=1 << 20
        )
        try:
            assert reopened.stats()["undelivered"] == 0, "the late PUBACK's mark was not written"
        finally:
            reopened.close()
