"""The county's registrar: claim tokens out, enrolment requests in, one broker login per station.

`init` creates three logins on the county broker through the dynamic-security plugin: the
registrar's (bound to its client id: reads enrolment requests and station status, answers on
the reply topics), the registrar's administration login (only `$CONTROL/dynamic-security`; it
creates and deletes logins, so it is as strong as the broker's admin and lives only in the
registry) and the console's (reads the county's tree and its replies, publishes commands).

There is no shared secret. Each claim gets a login of its own, bound to its client id, whose
password is the claim's token and whose role allows only that claim's request and reply
topics; it is deleted once the station is online under its own login, or when the claim
expires or is voided. Each enrolled station gets a login bound to its client id and a role of
its own whose ACL covers only its subtree: Mosquitto 2.0's dynamic security has no per-client
topic patterns, so it is one role per station and per claim.

The service ("yimen-registrar" thread) handles one request at a time: paho's callbacks only
enqueue, the registry is touched on that one thread.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from mqtt import topics
from provisioning import protocol, qr, tlspin
from provisioning.dynsec import DynSec, DynSecError, acl
from provisioning.registry import Registry, RegistryError

log = logging.getLogger("yimen.registrar")

# A status is a few hundred bytes (mqtt/codec.py); a bigger one is not recorded.
MAX_STATUS_BYTES = 16 * 1024

# Claims are sent to a county by courier or carried by the installer: days, not minutes.
DEFAULT_TOKEN_HOURS = 72.0

_REFUSALS = {
    "token-unknown": "this claim token was never issued by this registrar (forged or mistyped)",
    "token-void": "this claim token was replaced by a newer one or its station was revoked; ask for a new one",
    "token-used": "this claim token has already been used; to enrol a station again, `yimen registrar reenrol` it",
    "token-expired": "this claim token has expired; ask the county for a new one (`yimen registrar issue-token`)",
}


def station_username(county: str, station: str) -> str:
    """A station's login and, bound to it by the broker, its MQTT client id (as mqtt/uplink.py uses)."""
    return f"yimen-{county}-{station}"


def station_role(county: str, station: str) -> str:
    return f"yimen-station-{county}-{station}"


def station_acls(county: str, station: str) -> list[dict[str, Any]]:
    """Publish anywhere in its own subtree except its command and release-chunk topics; subscribe to
    its own commands and release chunks."""
    root = topics.station_root(county, station)
    return [
        acl("publishClientSend", f"{root}/cmd/#", allow=False, priority=10),
        acl("publishClientSend", f"{root}/ota/#", allow=False, priority=10),  # only the county sends chunks
        acl("publishClientSend", f"{root}/#"),
        acl("subscribePattern", f"{root}/cmd/#"),
        acl("publishClientReceive", f"{root}/cmd/#"),
        # release chunks from the county, to this station alone (mqtt/TOPICS.md, Over-the-air updates)
        acl("subscribePattern", f"{root}/ota/#"),
        acl("publishClientReceive", f"{root}/ota/#"),
    ]


def registrar_acls(county: str) -> list[dict[str, Any]]:
    """The service's login: every claim's request in, every claim's reply out, station status in."""
    return [
        acl("subscribePattern", topics.enrol_filter(county, "request")),
        acl("publishClientReceive", topics.enrol_filter(county, "request")),
        acl("publishClientSend", topics.enrol_filter(county, "reply")),
        acl("subscribePattern", topics.county_status_filter(county)),
        acl("publishClientReceive", topics.county_status_filter(county)),
    ]


def admin_acls() -> list[dict[str, Any]]:
    return [
        acl("publishClientSend", "$CONTROL/dynamic-security/#"),
        acl("publishClientReceive", "$CONTROL/dynamic-security/#"),
        acl("subscribePattern", "$CONTROL/dynamic-security/#"),
    ]


def console_acls(county: str) -> list[dict[str, Any]]:
    """Read the county's tree (events, statuses, command replies), publish commands and release
    chunks (over-the-air rollouts); nothing else."""
    tree = topics.county_filter(county)
    return [
        acl("subscribePattern", tree),
        acl("subscribePattern", topics.shared("+", tree)),  # workers > 1; the broker checks the $share form
        acl("publishClientReceive", tree),
        acl("publishClientSend", topics.county_command_filter(county)),
        acl("publishClientSend", topics.county_ota_chunk_filter(county)),  # centre/rollout.py serves releases
    ]


def enrol_role(county: str, claim: str) -> str:
    return f"yimen-enrol-{county}-{claim}"


def enrol_acls(county: str, claim: str) -> list[dict[str, Any]]:
    """A claim's login: its own request out and its own reply in."""
    return [
        acl("publishClientSend", topics.enrol_topic(county, claim, "request")),
        acl("subscribeLiteral", topics.enrol_topic(county, claim, "reply")),
        acl("publishClientReceive", topics.enrol_topic(county, claim, "reply")),
    ]


def retire_logins(dyn: DynSec, registry: Registry, county: str) -> int:
    """Delete every claim login that must no longer work (expired, void, or used and confirmed);
    one the broker would not delete stays listed and is tried again by the next sweep."""
    gone = 0
    for claim in registry.stale_logins(time.time()):
        try:
            dyn.delete_client(protocol.enrol_login(county, claim))  # also ends a session it has open
            dyn.delete_role(enrol_role(county, claim))
        except DynSecError as exc:
            log.error("could not delete the login of claim %s (`serve` tries again): %s", claim, exc)
            continue
        registry.login_gone(claim)
        gone += 1
    return gone


def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{text!r}: give HOST:PORT, e.g. 127.0.0.1:1883")
    return host, int(port)


def registrar_client_id(county: str) -> str:
    """The service's login and, bound to it by the broker, its client id."""
    return f"yimen-registrar-{county}"


def console_password_path(db: Path) -> Path:
    """Where `init` leaves the console's broker password (0600), for its `password_file`."""
    return db.with_name("console-broker-password")


def init(
    db: Path,
    county: str,
    broker: str,
    admin_user: str,
    admin_password: str,
    station_broker: str,
    station_ca: Path,
    token_hours: float = DEFAULT_TOKEN_HOURS,
) -> Registry:
    """Create the registry and the registrar's, its administration and the console's logins.

    `station_broker` is the broker's TLS listener as stations reach it and `station_ca` the
    CA certificate (PEM) its chain ends in: claims carry that CA's fingerprint."""
    topics.station_root(county, "x")  # the county name must be a valid topic segment
    if db.exists():
        raise RegistryError(f"{db} already exists: a county has one registry; remove it only to start over")
    host, port = _hostport(broker)
    station_host, station_port = _hostport(station_broker)
    try:
        ca = tlspin.pem_fingerprint(station_ca.read_bytes())
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{station_ca}: not a readable PEM CA certificate ({exc}); give the county CA's") from None
    settings = {
        "county": county,
        "host": host,
        "port": port,
        "station_host": station_host,
        "station_port": station_port,
        "station_ca": ca,
        "token_hours": token_hours,
        "registrar_username": registrar_client_id(county),
        "registrar_password": secrets.token_urlsafe(24),
        "admin_username": f"yimen-registrar-admin-{county}",
        "admin_password": secrets.token_urlsafe(24),
        "console_username": f"yimen-console-{county}",
        "console_password": secrets.token_urlsafe(24),
    }
    with DynSec(host, port, admin_user, admin_password) as dyn:
        # The admin login and the console open several connections at once (a service and
        # operators' commands; console workers): they cannot be bound to one client id.
        for user, acls, clientid in [
            ("registrar", registrar_acls(county), registrar_client_id(county)),
            ("admin", admin_acls(), None),
            ("console", console_acls(county), None),
        ]:
            role = f"yimen-{user}-{county}"
            dyn.create_role(role, acls, textname=f"yimen {user} role, county {county}")
            dyn.create_client(settings[f"{user}_username"], settings[f"{user}_password"], [role], clientid=clientid)
    registry = Registry(db, create=True)
    registry.set_settings(settings)
    _write_private(console_password_path(db), settings["console_password"].encode())
    return registry


def _write_private(path: Path, data: bytes) -> None:
    """0600 from the first byte, also when the file was there before with a wider mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(data)


@dataclass(frozen=True)
class Issued:
    station: str
    expires: float
    file: Path
    png: Path


class Registrar:
    """The operator's verbs (issue, re-enrol, revoke, list) over one registry."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.settings = registry.settings()
        self.county: str = self.settings["county"]
        if "admin_username" not in self.settings:
            raise RegistryError(
                f"{registry.path} was made by an older yimen whose claims share one provisioning login; "
                "delete that login and the registrar's with mosquitto_ctrl and run `yimen registrar init` again"
            )

    def dynsec(self) -> DynSec:
        s = self.settings
        return DynSec(s["host"], s["port"], s["admin_username"], s["admin_password"])

    def issue(self, station: str, out_dir: Path, *, name: str = "", hours: float | None = None) -> Issued:
        """A claim for a new station: the provisioning file and its QR code under out_dir/<station>/."""
        topics.station_root(self.county, station)
        known = self.registry.station(station)
        if known is not None and known["state"] != "pending":
            raise RegistryError(
                f"station {station} is {known['state']}: use `yimen registrar reenrol {station}` for a replacement Pi"
            )
        return self._issue(station, out_dir, name, hours)

    def _issue(self, station: str, out_dir: Path, name: str, hours: float | None) -> Issued:
        s = self.settings
        token, claim_id = secrets.token_urlsafe(18), secrets.token_hex(8)
        expires = time.time() + 3600.0 * (hours if hours is not None else s["token_hours"])
        claim = protocol.ProvisioningFile(
            county=self.county,
            station=station,
            claim=claim_id,
            token=token,
            expires=round(expires, 3),
            host=s["station_host"],
            port=s["station_port"],
            ca=s["station_ca"],
        )
        with self.dynsec() as dyn:
            role = enrol_role(self.county, claim_id)
            dyn.create_role(role, enrol_acls(self.county, claim_id), textname=f"claim for {station}")
            dyn.create_client(claim.username, token, [role], clientid=claim.username, textname=f"claim for {station}")
            self.registry.add_token(station, name, token, expires, claim_id)  # voids the station's earlier claims
            retire_logins(dyn, self.registry, self.county)
        folder = out_dir / station
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "yimen-provision.json"
        _write_private(path, claim.to_bytes())
        png = folder / "yimen-provision-qr.png"
        qr.write_png(claim.to_bytes(), png)
        return Issued(station, expires, path, png)

    def reenrol(self, station: str, out_dir: Path, *, hours: float | None = None) -> Issued:
        """A replacement Pi: the old login is deleted now, a new claim is issued for the new Pi."""
        if self.registry.station(station) is None:
            raise RegistryError(f"no station {station} in {self.registry.path}; use issue-token for a new one")
        self._delete_login(station)
        return self._issue(station, out_dir, "", hours)

    def revoke(self, station: str) -> None:
        """The station's login and role are deleted (the broker drops its connection) and its claims voided."""
        if self.registry.station(station) is None:
            raise RegistryError(f"no station {station} in {self.registry.path}")
        self._delete_login(station)

    def _delete_login(self, station: str) -> None:
        """The station's login, and (its claims voided first) every claim login it still has."""
        with self.dynsec() as dyn:
            dyn.delete_client(station_username(self.county, station))
            dyn.delete_role(station_role(self.county, station))
            self.registry.revoked(station)
            retire_logins(dyn, self.registry, self.county)

    def trust_release_key(self, text: str) -> None:
        """Add a release public key (`yimen release keygen`) to what every enrolment reply carries."""
        from ota.release import parse_public

        parse_public(text)  # ValueError names what is wrong
        keys = self.registry.settings().get("release_keys", [])
        if text.strip() not in keys:
            self.registry.set_settings({"release_keys": [*keys, text.strip()]})

    def list(self) -> list[dict[str, Any]]:
        rows = self.registry.stations()
        for row in rows:
            row["last_status"] = json.loads(row["last_status"]) if row["last_status"] else None
            row["inventory"] = json.loads(row["inventory"]) if row["inventory"] else None
        return rows


def render(rows: list[dict[str, Any]]) -> str:
    """`yimen registrar list` for people: one line per station."""
    if not rows:
        return "no stations yet: issue a claim with `yimen registrar issue-token STATION`"

    def when(ts: float | None) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"

    lines = [f"{'station':<20} {'state':<9} {'enrolled':<16} {'last status':<30} serial"]
    for r in rows:
        status = r["last_status"] or {}
        last = f"{status.get('state', '-')} {when(r['last_status_at'])}" if status else "-"
        lines.append(f"{r['station']:<20} {r['state']:<9} {when(r['enrolled_at']):<16} {last:<30} {r['serial'] or '-'}")
    return "\n".join(lines)


class Service:
    """`yimen registrar serve`: answers enrolment requests and records each station's last status."""

    def __init__(self, registrar: Registrar, *, sweep_s: float = 60.0) -> None:
        self.registrar = registrar
        self.registry = registrar.registry
        self.county = registrar.county
        self.sweep_s = sweep_s  # how often expired claims' logins are looked for and deleted
        self._queue: queue.SimpleQueue[tuple[str, bytes, bool] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="yimen-registrar", daemon=True)
        self._subscribed = threading.Event()
        self._client: paho.Client | None = None
        self._dynsec: DynSec | None = None
        self.enrolled = 0
        self.refused = 0

    def start(self, timeout: float = 10.0) -> Service:
        s = self.registrar.settings
        self._dynsec = self.registrar.dynsec()
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=registrar_client_id(self.county), protocol=paho.MQTTv5
        )
        client.username_pw_set(s["registrar_username"], s["registrar_password"])
        filters = [(topics.enrol_filter(self.county, "request"), 1), (topics.county_status_filter(self.county), 1)]
        client.on_connect = lambda c, _u, _f, rc, _p: None if rc.is_failure else c.subscribe(filters)
        client.on_subscribe = lambda _c, _u, _m, codes, _p: self._subscribed.set()
        client.on_message = lambda _c, _u, msg: self._queue.put((msg.topic, msg.payload, bool(msg.retain)))
        client.reconnect_delay_set(1, 30)
        client.connect(s["host"], s["port"], keepalive=30)
        client.loop_start()
        self._client = client
        self._thread.start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise RegistryError(f"registrar could not subscribe at {s['host']}:{s['port']} within {timeout} s")
        log.info("registrar for county %s serving on %s:%d", self.county, s["host"], s["port"])
        return self

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(10)
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        if self._dynsec is not None:
            self._dynsec.close()

    def _run(self) -> None:
        next_sweep = time.monotonic()
        while True:
            if time.monotonic() >= next_sweep:
                self._sweep()
                next_sweep = time.monotonic() + self.sweep_s
            try:
                item = self._queue.get(timeout=max(0.0, next_sweep - time.monotonic()))
            except queue.Empty:
                continue
            if item is None:
                return
            topic, payload, retained = item
            try:
                if topic.startswith(topics.ENROL_ROOT + "/"):
                    self._enrol(topics.enrol_claim(topic), payload)
                else:
                    self._status(topic, payload, retained)
            except Exception:
                log.exception("registrar: failed to handle a message on %s", topic)

    def _sweep(self) -> None:
        """Delete the logins of claims that expired, were voided or whose station is online."""
        assert self._dynsec is not None
        if gone := retire_logins(self._dynsec, self.registry, self.county):
            log.info("deleted %d claim login(s) that may no longer connect", gone)

    def _status(self, topic: str, payload: bytes, retained: bool) -> None:
        if len(payload) > MAX_STATUS_BYTES:  # a station's own topic, but the registry is no dump for it
            return
        try:
            station = topics.parse(topic).station
            status = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return
        if isinstance(status, dict):
            self.registry.record_status(station, status)
            # Published just now under the station's own login (only it may write there; a
            # retained one may be a replaced Pi's): the station holds its login, its claim's goes.
            if not retained and status.get("state") == "online" and self.registry.confirm(station):
                self._sweep()

    def _refuse(self, claim: str, request: str | None, code: str, message: str) -> None:
        self.refused += 1
        log.warning("enrolment refused (%s): %s", code, message)
        if request is not None:
            self._reply(claim, protocol.reply_error(request, code, message))

    def _reply(self, claim: str, payload: bytes) -> None:
        assert self._client is not None
        self._client.publish(topics.enrol_topic(self.county, claim, "reply"), payload, qos=1)

    def _enrol(self, topic_claim: str, payload: bytes) -> None:
        try:
            req = protocol.Request.from_bytes(payload)
        except protocol.ProtocolError as exc:
            self._refuse(topic_claim, protocol.reply_request_id(payload), exc.code, exc.message)
            return
        claim = self.registry.claim(req.token, time.time(), req.public_key)
        if claim.code != "ok":
            self._refuse(topic_claim, req.request, claim.code, _REFUSALS[claim.code])
            return
        if claim.station != req.station or claim.claim != topic_claim:
            self.registry.unclaim(req.token)
            why = f"this claim is for station {claim.station}, not {req.station}, and is used on its own topic only"
            self._refuse(topic_claim, req.request, "token-mismatch", why)
            return
        station = req.station
        username = station_username(self.county, station)
        password = secrets.token_urlsafe(24)
        assert self._dynsec is not None
        try:
            self._dynsec.delete_client(username)  # a replacement Pi: the old one's session ends here
            self._dynsec.delete_role(station_role(self.county, station))
            self._dynsec.create_role(station_role(self.county, station), station_acls(self.county, station))
            self._dynsec.create_client(username, password, [station_role(self.county, station)], clientid=username)
        except DynSecError as exc:
            self.registry.unclaim(req.token)
            log.error("enrolment of %s failed at the broker: %s", station, exc)
            self._refuse(
                topic_claim, req.request, "failed", f"the county broker refused to create the login: {exc}; try again"
            )
            return
        self.registry.enrolled(station, username, req.serial, req.public_key, req.inventory)
        known = self.registry.station(station) or {}
        secret = {
            "station": {"id": station, "county": self.county, "name": known.get("name", "")},
            "broker": {
                "host": self.registrar.settings["station_host"],
                "port": self.registrar.settings["station_port"],
                "username": username,
                "password": password,
            },
            # what signs its updates; read afresh: `yimen registrar release-key` runs beside `serve`
            "release_keys": self.registrar.registry.settings().get("release_keys", []),
        }
        self._reply(topic_claim, protocol.reply_ok(req.request, req.public_key, secret))
        self.enrolled += 1
        log.info("enrolled station %s (serial %s) as %s", station, req.serial, username)
