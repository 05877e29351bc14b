"""Remote commands: schema checks, and round trips with a running gateway over a real broker."""

from __future__ import annotations

import json
import queue
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mqtt import topics
from mqtt.commands import MAX_REQUEST_BYTES, RUN_ONCE_MAX, Arg, Command, CommandError, RunOnce, parse_request
from tests.conftest import COUNTY, STATION, GatewayProcess, message_doc, station_config, wait_until

ECHO = Command("echo", lambda a: a, args={"n": Arg("int", required=True, min=1, max=10), "s": Arg("str")})


@pytest.mark.parametrize(
    ("command", "payload", "code", "message"),
    [
        (None, b"{}", "unknown-command", "no command 'nope'"),
        (ECHO, b"{not json", "bad-request", "not UTF-8 JSON"),
        (ECHO, b"[1, 2]", "bad-request", "must be a JSON object"),
        (ECHO, b"{}", "bad-request", "'n' is required"),
        (ECHO, b'{"n": "3"}', "bad-request", "'n' must be of type int"),
        (ECHO, b'{"n": true}', "bad-request", "'n' must be of type int"),
        (ECHO, b'{"n": 11}', "bad-request", "above the maximum 10"),
        (ECHO, b'{"n": 1, "x": 2}', "bad-request", "unknown argument 'x'"),
        (ECHO, b'{"n": 1, "expires_at": 1000}', "expired", "expired at"),
        (ECHO, b'{"n": 1, "s": "' + b"x" * MAX_REQUEST_BYTES + b'"}', "too-large", "the limit is"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(command, payload, code, message) -> None:
    with pytest.raises(CommandError, match=message) as info:
        parse_request(command, "nope" if command is None else command.name, payload)
    assert info.value.code == code


def test_a_good_request_passes() -> None:
    assert parse_request(ECHO, "echo", b'{"n": 3, "expires_at": 9999999999}') == {"n": 3, "expires_at": 9999999999}


class Requester:
    """The county's side of a command: MQTT 5 request/response with correlation data."""

    def __init__(self, port: int, protocol: int = paho.MQTTv5) -> None:
        self.replies: queue.Queue = queue.Queue()
        self.reply_topic = f"county/replies/{uuid.uuid4().hex[:8]}"
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
        self.client.on_message = lambda _c, _u, msg: self.replies.put(msg)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        wait_until(self.client.is_connected, 5, "the requester to connect")
        for topic in (self.reply_topic, f"yimen/v1/{COUNTY}/{STATION}/cmd-reply/+"):
            self.client.subscribe(topic, qos=1)
        time.sleep(0.2)

    def request(self, name: str, payload: bytes, *, correlation: bytes | None = b"", v5: bool = True):
        """One request; by default with Correlation Data of its own (a request id is run once)."""
        correlation = uuid.uuid4().hex.encode() if correlation == b"" else correlation
        props = None
        if v5:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = self.reply_topic
            if correlation is not None:
                props.CorrelationData = correlation
        self.client.publish(topics.command_topic(COUNTY, STATION, name), payload, qos=1, properties=props)
        msg = self.replies.get(timeout=10)
        return msg, json.loads(msg.payload)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def running(tmp_path: Path, broker, subscriber, gateways):
    gw = GatewayProcess(station_config(tmp_path, broker.port, rate=50)).start()
    gateways.append(gw)
    wait_until(lambda: gw.status()["broker"]["connection"] == "connected", 15, "the gateway to connect")
    req = Requester(broker.port)
    yield gw, req
    req.close()


def test_ping_round_trip_with_correlation(running) -> None:
    _gw, req = running
    msg, reply = req.request("ping", b"{}", correlation=b"abc-123")
    assert msg.topic == req.reply_topic
    assert msg.properties.CorrelationData == b"abc-123"
    assert reply["ok"] is True and "version" in reply["result"]


def test_unknown_malformed_and_expired_commands_get_errors_not_crashes(running) -> None:
    gw, req = running
    for name, payload, code in [
        ("self-destruct", b"{}", "unknown-command"),
        ("replay", b"\xff\xfe", "bad-request"),
        ("replay", b'{"first": 1}', "bad-request"),
        ("ping", json.dumps({"expires_at": time.time() - 5}).encode(), "expired"),
        ("ping", b"{" + b" " * (MAX_REQUEST_BYTES + 1) + b"}", "too-large"),
    ]:
        _msg, reply = req.request(name, payload)
        assert reply["ok"] is False and reply["error"]["code"] == code, (name, reply)
    _msg, reply = req.request("ping", b"{}")
    assert reply["ok"] is True, "the gateway must still answer after bad requests"
    assert gw.proc.poll() is None


def test_replay_fills_a_gap_made_at_the_county(running, subscriber) -> None:
    _gw, req = running
    wait_until(lambda: len(subscriber.events()) >= 30, 15, "30 events at the county")
    first_copies = subscriber.events()
    lost = set(range(10, 20))  # the county lost these (say, a failed disk at the centre)
    _msg, reply = req.request("replay", json.dumps({"first": 10, "last": 19}).encode())
    assert reply == {"ok": True, "result": {"first": 10, "last": 19, "count": 10}}
    wait_until(lambda: all(len(subscriber.events().get(s, [])) >= 2 for s in lost), 10, "the replay")
    again = {message_doc(m)["seq"] for m in subscriber.messages() if m["replay"]}
    assert lost <= again
    for seq in lost:
        copies = subscriber.events()[seq]
        assert all(c == first_copies[seq][0] for c in copies), "a replay must be byte-identical"


def test_config_get_blanks_passwords(tmp_path: Path, broker, gateways) -> None:
    # A quoted key and an old password in a comment: both missed by a pattern on the text.
    hostile = 'username = "u"\n"password" = "s3cret-1"\n# password = "s3cret-0"'
    config = station_config(tmp_path, broker.port, broker_extra=hostile)
    gw = GatewayProcess(config).start()
    gateways.append(gw)
    wait_until(lambda: gw.status()["broker"]["connection"] == "connected", 15, "connect")
    req = Requester(broker.port)
    try:
        _msg, reply = req.request("config-get", b"{}")
    finally:
        req.close()
    assert reply["ok"] and f'id = "{STATION}"' in reply["result"]["toml"]
    assert "s3cret" not in reply["result"]["toml"] and '"<redacted>"' in reply["result"]["toml"]


def test_mqtt_311_fallback_reply_topic_and_correlation(tmp_path: Path, broker, gateways) -> None:
    gw = GatewayProcess(station_config(tmp_path, broker.port, broker_extra='protocol = "3.1.1"')).start()
    gateways.append(gw)
    wait_until(lambda: gw.status()["broker"]["connection"] == "connected", 15, "connect")
    req = Requester(broker.port, protocol=paho.MQTTv311)
    try:
        msg, reply = req.request("ping", json.dumps({"correlation": "req-77"}).encode(), v5=False)
        assert msg.topic == topics.reply_topic(COUNTY, STATION, "ping")
        assert reply["ok"] and reply["correlation"] == "req-77"
        msg, reply = req.request("replay", json.dumps({"correlation": "req-78", "first": 5}).encode(), v5=False)
        assert not reply["ok"] and reply["correlation"] == "req-78"
    finally:
        req.close()


@pytest.mark.parametrize("saved", [None, "", "not json", "[1,2]", '{"a": 5}', '{"a": [1]}', '{"a": ["x", "y"]}'])
def test_run_once_survives_whatever_was_stored(saved) -> None:
    assert RunOnce(saved).reply_to("a") is None


def test_run_once_remembers_replies_until_expiry_and_bounds_its_size() -> None:
    log = RunOnce(None, now=1000.0)
    saved = log.ran("first", 2000.0, b'{"ok":true}', now=1000.0)
    assert RunOnce(saved, now=1500.0).reply_to("first") == b'{"ok":true}'
    assert RunOnce(saved, now=2500.0).reply_to("first") is None, "kept past its expiry"
    for i in range(RUN_ONCE_MAX + 50):
        saved = log.ran(f"id-{i}", 3000.0 + i, b"{}", now=1000.0)
    assert len(json.loads(saved)) == RUN_ONCE_MAX
    assert log.reply_to("id-0") is None and log.reply_to(f"id-{RUN_ONCE_MAX + 49}") == b"{}"
