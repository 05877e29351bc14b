"""Enrolment end to end, against a real Mosquitto with the dynamic-security plugin.

What a station may do is checked at the broker (CONNACK, PUBACK and SUBACK reason codes),
never against our own code's idea of it."""

from __future__ import annotations

import json
import queue
import secrets
import shutil
import stat
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from mqtt import topics
from provisioning import enrol, protocol, registrar
from provisioning.registry import RegistryError
from tests.conftest import COUNTY, STATION, GatewayProcess, wait_until
from tests.provisioning.conftest import ADMIN, County

OTHER = "st-0002"


class Probe:
    """A bare MQTT 5 client that reports exactly what the broker answered."""

    def __init__(self, port: int, username: str, password: str, client_id: str = "") -> None:
        self.events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.messages: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        self.client.username_pw_set(username, password)
        self.client.on_connect = lambda _c, _u, _f, rc, _p: self.events.put(("connack", rc))
        self.client.on_publish = lambda _c, _u, mid, rc, _p: self.events.put(("puback", (mid, rc)))
        self.client.on_subscribe = lambda _c, _u, mid, codes, _p: self.events.put(("suback", (mid, codes)))
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.connack = self._next("connack")

    def _next(self, what: str) -> Any:
        while True:
            kind, value = self.events.get(timeout=10)
            if kind == what:
                return value

    def publish(self, topic: str, payload: bytes = b"{}") -> int:
        """The PUBACK's reason code."""
        mid = self.client.publish(topic, payload, qos=1).mid
        while True:
            got_mid, rc = self._next("puback")
            if got_mid == mid:
                return rc.value

    def subscribe(self, topic: str) -> int:
        """The SUBACK's reason code."""
        self.client.subscribe(topic, qos=1)
        _mid, codes = self._next("suback")
        return codes[0].value

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def claim(county: County, station: str, tmp_path: Path, hours: float | None = None) -> protocol.ProvisioningFile:
    issued = county.registrar.issue(station, tmp_path / "claims", hours=hours)
    return protocol.ProvisioningFile.from_bytes(issued.file.read_bytes())


def ask(
    found: protocol.ProvisioningFile, identity: Path, token: str | None = None, key: Any = None
) -> tuple[dict[str, Any], Any]:
    """Enrol as a Pi would (TLS pinned to the claim's CA, the claim's own login), without a
    gateway: returns the opened reply and the key (a new one unless given)."""
    key = key or protocol.new_key()
    req = protocol.Request(
        request=secrets.token_hex(16),
        token=token or found.token,
        station=found.station,
        serial="test-serial",
        public_key=protocol.public_b64(key),
        inventory={},
        version="test",
    )
    identity.mkdir(parents=True, exist_ok=True)
    return protocol.open_reply(enrol.request(found, req, timeout=10, identity=identity), key), key


def bootstrap_config(directory: Path, usb: Path) -> Path:
    """What a Pi's image ships: no [station], no [broker]."""
    path = directory / "station.toml"
    path.write_text(
        f"""[provisioning]
search = ["{usb}/yimen-provision.json"]
retry_s = 0.2
reply_timeout_s = 5

[storage]
path = "{directory / "state"}"
max_mb = 64

[clock]
sync = "assume"

[telemetry]
interval_s = 3600
""",
        encoding="utf-8",
    )
    return path


def refused(county: County, found: protocol.ProvisioningFile) -> bool:
    """Whether the broker now refuses the claim's own login."""
    probe = Probe(county.port, found.username, found.token, client_id=found.username)
    probe.close()
    return probe.connack.is_failure


def connection(gw: GatewayProcess) -> str | None:
    try:
        return gw.status()["broker"]["connection"]
    except Exception:  # noqa: BLE001 - not enrolled yet: the config has no [station]
        return None


def test_a_new_pi_enrols_reconnects_as_itself_and_can_be_revoked_and_replaced(
    tmp_path: Path, county: County, gateways: list[GatewayProcess]
) -> None:
    usb = tmp_path / "usb"
    usb.mkdir()
    issued = county.registrar.issue(STATION, tmp_path / "claims", name="测试村")
    shutil.copy(issued.file, usb / "yimen-provision.json")
    config = bootstrap_config(tmp_path, usb)
    watcher = Probe(county.port, *ADMIN)  # the dynsec admin may read everything
    assert watcher.subscribe(f"{topics.ROOT}/{COUNTY}/#") == 1

    gw = GatewayProcess(config).start()
    gateways.append(gw)
    wait_until(lambda: connection(gw) == "connected", 30, "the new station to enrol and connect")
    pid = gw.proc.pid

    installer = config.read_bytes()
    text = (tmp_path / "state" / "local.toml").read_text()
    assert f'id = "{STATION}"' in text and "password_file" in text and "password =" not in text
    assert config.read_bytes() == installer, "enrolment writes the station's own file, never the installer's"
    assert "tls = true" in text and "county-ca.pem" in text, "it enrolled over TLS and stays on it"
    identity = tmp_path / "state" / "identity"
    for secret in ("key.pem", "broker-password"):
        assert stat.S_IMODE((identity / secret).stat().st_mode) == 0o600, secret
    assert gw.proc.pid == pid and gw.proc.poll() is None, "the gateway restarts itself in place"
    used = protocol.ProvisioningFile.from_bytes((usb / "yimen-provision.json").read_bytes())
    wait_until(lambda: refused(county, used), 10, "the used claim's login to be deleted once the station is online")

    seen: dict[str, bytes] = {}

    def arrived(suffix: str) -> bool:
        while not watcher.messages.empty():
            msg = watcher.messages.get()
            seen[msg.topic] = msg.payload
        return any(t.endswith(suffix) for t in seen)

    wait_until(lambda: arrived("/events/inventory"), 15, "the inventory event at the county")
    root = topics.station_root(COUNTY, STATION)
    assert json.loads(seen[f"{root}/status"])["state"] == "online"
    assert "serial_ports" in json.loads(seen[f"{root}/events/inventory"])["data"]
    wait_until(lambda: (county.registrar.list()[0]["last_status"] or {}).get("state") == "online", 10, "last status")
    row = county.registrar.list()[0]
    assert row["state"] == "enrolled" and row["name"] == "测试村" and row["serial"]

    # Revoked: the broker drops the station and refuses it; it waits for a new claim.
    county.registrar.revoke(STATION)
    wait_until(lambda: connection(gw) == "needs_enrolment", 20, "the revoked station to be refused")
    assert gw.proc.poll() is None, "a refused station keeps running and keeps its events"

    # A replacement claim on the stick: the station enrols again, with a new login.
    issued = county.registrar.reenrol(STATION, tmp_path / "claims")
    shutil.copy(issued.file, usb / "yimen-provision.json")
    wait_until(lambda: connection(gw) == "connected", 30, "re-enrolment with the new claim")
    assert county.registrar.list()[0]["state"] == "enrolled"
    watcher.close()
    assert gw.stop() == 0


def test_a_station_can_neither_act_as_nor_listen_to_another(tmp_path: Path, county: County) -> None:
    mine, _ = ask(claim(county, STATION, tmp_path), tmp_path / "pi")
    other, _ = ask(claim(county, OTHER, tmp_path), tmp_path / "pi")
    login = other["broker"]
    assert login["username"] == registrar.station_username(COUNTY, OTHER)

    probe = Probe(county.port, login["username"], login["password"], client_id=login["username"])
    try:
        assert probe.connack.value == 0
        victim = topics.station_root(COUNTY, STATION)
        own = topics.station_root(COUNTY, OTHER)
        assert probe.publish(f"{own}/events/queue") < 0x80, "a station publishes its own events"
        assert probe.publish(f"{victim}/events/rating") == 0x87, "not into another station's subtree"
        assert probe.publish(f"{victim}/status") == 0x87
        assert probe.publish(f"{own}/cmd/restart") == 0x87, "nor command itself"
        assert probe.subscribe(f"{own}/cmd/+") == 1, "it reads its own commands"
        assert probe.subscribe(f"{victim}/cmd/+") == 0x87, "not another's"
        assert probe.subscribe(f"{topics.ROOT}/{COUNTY}/#") == 0x87
        assert probe.subscribe(topics.enrol_filter(COUNTY, "request")) == 0x87, "nor anyone's claim tokens"
    finally:
        probe.close()

    # Its login is bound to its own client id: it cannot even connect under the first one's.
    wrong = Probe(county.port, login["username"], login["password"], client_id=mine["broker"]["username"])
    assert wrong.connack.value == 0x87
    wrong.close()

    found = claim(county, "st-0003", tmp_path)
    prov = Probe(county.port, found.username, found.token, client_id=found.username)
    try:
        assert prov.publish(f"{topics.station_root(COUNTY, STATION)}/events/rating") == 0x87
        assert prov.subscribe(topics.enrol_filter(COUNTY, "request")) == 0x87
        assert prov.subscribe(topics.enrol_filter(COUNTY, "reply")) == 0x87, "not every claim's replies"
        assert prov.subscribe(topics.enrol_topic(COUNTY, found.claim, "reply")) == 1, "its own"
    finally:
        prov.close()


@pytest.mark.parametrize("case", ["used-twice", "expired", "forged", "superseded"])
def test_bad_claims_are_refused(tmp_path: Path, county: County, case: str) -> None:
    found = claim(county, STATION, tmp_path, hours=-1 if case == "expired" else None)
    token = None
    if case == "used-twice":
        ask(found, tmp_path / "pi")
    elif case == "forged":
        token = secrets.token_urlsafe(18)
    elif case == "superseded":
        claim(county, STATION, tmp_path)
    # An expired or superseded claim's login is gone from the broker: refused at CONNACK.
    code = {"used-twice": "token-used", "forged": "token-unknown"}.get(case, "login-refused")
    with pytest.raises(protocol.ProtocolError) as refused:
        ask(found, tmp_path / "pi", token)
    assert refused.value.code == code
    assert (county.registrar.registry.station(STATION) or {})["state"] != "enrolled" or case == "used-twice"


def test_a_station_that_lost_the_answer_asks_again_until_it_is_heard_from(tmp_path: Path, county: County) -> None:
    """A power cut between the county's answer and the station's write: same key, same claim,
    new credentials (the first ones stop working); once the station is online, never again."""
    found = claim(county, STATION, tmp_path)
    key = protocol.new_key()
    pi = tmp_path / "pi"
    lost = ask(found, pi, key=key)[0]["broker"]
    again = ask(found, pi, key=key)[0]["broker"]
    assert again["username"] == lost["username"] and again["password"] != lost["password"]
    with pytest.raises(protocol.ProtocolError) as other:
        ask(found, tmp_path / "other")  # anyone else with the claim, even now
    assert other.value.code == "token-used"
    stale = Probe(county.port, lost["username"], lost["password"], client_id=lost["username"])
    assert stale.connack.value == 0x87, "the lost answer's password is dead (not authorized)"
    stale.close()
    station = Probe(county.port, again["username"], again["password"], client_id=again["username"])
    try:
        assert station.connack.value == 0
        status = topics.status_topic(COUNTY, STATION)
        station.client.publish(status, json.dumps({"state": "online"}).encode(), qos=1, retain=True)
        wait_until(lambda: (county.registrar.list()[0]["last_status"] or {}).get("state") == "online", 10, "status")
    finally:
        station.close()
    # Confirmed: the claim is spent (its one-time login is deleted too, so the broker refuses it).
    with pytest.raises(protocol.ProtocolError) as spent:
        ask(found, pi, key=key)
    assert spent.value.code in ("token-used", "login-refused"), spent.value


def test_a_revoked_station_cannot_reconnect(tmp_path: Path, county: County) -> None:
    login = ask(claim(county, STATION, tmp_path), tmp_path / "pi")[0]["broker"]
    first = Probe(county.port, login["username"], login["password"], client_id=login["username"])
    assert first.connack.value == 0
    first.close()
    county.registrar.revoke(STATION)
    again = Probe(county.port, login["username"], login["password"], client_id=login["username"])
    assert again.connack.value == 0x87
    again.close()
    with pytest.raises(RegistryError, match="reenrol"):
        claim(county, STATION, tmp_path)  # a revoked station comes back only through `reenrol`
