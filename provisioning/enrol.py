"""First boot: a station with no identity finds its claim, enrols, and writes its own config.

The claim is `yimen-provision.json` on the boot partition or a USB stick (`[provisioning]
search`), or the same bytes as a QR code held up to the camera. The Pi makes its own X25519
key pair (the private key is written 0600 under `<storage>/identity/` and never sent), asks
the registrar over TLS with the claim's own one-time login, having checked that the broker's
chain holds the county CA named in the claim (`tlspin`), and opens the sealed reply with its
key. It then stores the broker password 0600 and the county CA, writes `[station]` and
`[broker]` (TLS against that CA) into the station's own config file (`<storage>/local.toml`,
laid over the installer's read-only file: edge/configlayers.py) atomically, and the caller
restarts the gateway under that identity.

A claim this station already used or that the registrar refused is remembered (by hash) and
not tried again, so a station whose login was revoked waits for a new claim instead of
knocking with the old one.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import queue
import re
import secrets
import socket
import ssl
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from edge import __version__, configlayers
from edge import config as config_mod
from edge.configfile import ConfigError
from mqtt import topics
from ota.release import store_release_keys
from provisioning import inventory, protocol, qr, tlspin
from provisioning.config import ProvisioningConfig

log = logging.getLogger("yimen.enrol")

MAX_CLAIM_BYTES = 16 * 1024  # a claim file: a claim is a few hundred bytes (a QR code holds under 3 KB)

# Stand-ins that let a config without [station] be checked by the one config parser.
_UNENROLLED = {"id": "unenrolled", "county": "unenrolled"}


class EnrolError(RuntimeError):
    pass


# CONNACK reasons for a login the broker does not know (any more): bad user name or password,
# not authorised. The claim is then remembered as refused, like a refusal by the registrar.
_CLAIM_GONE = (0x86, 0x87)


def load(path: Path) -> config_mod.Config:
    """The config, checked as a whole; before enrolment its identity is a stand-in."""
    doc = configlayers.read(path).doc
    if "station" not in doc:
        if "broker" in doc:
            raise ConfigError(f"{path}: [broker] before enrolment: remove it; the claim names the county's broker")
        doc = {**doc, "station": dict(_UNENROLLED)}
    cfg = config_mod.parse(doc, str(path))
    if cfg.provisioning is None:
        raise ConfigError(f"{path}: [provisioning] missing: this station cannot enrol itself")
    return cfg


# ----- the station's key and hardware serial --------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret: 0600 from its first byte, replaced atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def station_key(identity: Path) -> X25519PrivateKey:
    """This Pi's key pair, made once; the private half never leaves `identity/key.pem`."""
    path = identity / "key.pem"
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, X25519PrivateKey):
            raise EnrolError(f"{path} is not an X25519 key; delete it and a new one is made")
        return key
    key = protocol.new_key()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write_private(path, pem)
    return key


def hardware_serial(cpuinfo: Path = Path("/proc/cpuinfo"), machine_id: Path = Path("/etc/machine-id")) -> str:
    """The Pi's SoC serial, else the OS's machine id: what the county records against the station."""
    try:
        match = re.search(r"^Serial\s*:\s*(\S+)", cpuinfo.read_text(), re.MULTILINE)
        if match and match.group(1).strip("0"):
            return f"cpu-{match.group(1)}"
    except OSError:
        pass
    try:
        return f"machine-{machine_id.read_text().strip()}"
    except OSError:
        return f"host-{socket.gethostname()}"


# ----- finding a claim ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    claim: protocol.ProvisioningFile
    where: str


def _seen_path(identity: Path) -> Path:
    return identity / "claims-seen.json"


def _seen(identity: Path) -> dict[str, str]:
    """Hashes of claims used or refused here, with what became of them."""
    try:
        return json.loads(_seen_path(identity).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _remember(identity: Path, token: str, outcome: str) -> None:
    seen = _seen(identity)
    seen[hashlib.sha256(token.encode()).hexdigest()] = outcome
    _write_private(_seen_path(identity), json.dumps(seen).encode())


def _files(prov: ProvisioningConfig) -> Iterator[tuple[bytes, str]]:
    for pattern in prov.search:
        for name in sorted(glob.glob(pattern)):
            try:
                yield _read_claim(name), name
            except OSError as exc:
                log.warning("ignoring %s: %s", name, exc)


def _read_claim(name: str) -> bytes:
    """A claim file as a stick or a boot partition holds it, read only if it is one: a regular
    file, not a link (to /dev/zero, or to a file elsewhere on the Pi), not a FIFO (a read that
    never ends), at most MAX_CLAIM_BYTES. Raises OSError saying which it is not."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"not a regular file (mode {stat.filemode(info.st_mode)})")
        data = fh.read(MAX_CLAIM_BYTES + 1)
    if len(data) > MAX_CLAIM_BYTES:
        raise OSError(f"over {MAX_CLAIM_BYTES} bytes: no claim is this large")
    return data


Frames = Callable[[], list[bytes]]
"""Returns the JPEG frames to look for a QR code in (empty when there is no camera)."""


def find_claim(prov: ProvisioningConfig, identity: Path, frames: Frames | None = None) -> Found | None:
    """The first claim not yet used or refused here: files first, then the camera."""
    seen = _seen(identity)
    sources = list(_files(prov))
    if frames is not None:
        sources += [(code, "the camera (QR code)") for frame in frames() for code in qr.decode(frame)]
    for data, where in sources:
        try:
            claim = protocol.ProvisioningFile.from_bytes(data, where)
        except protocol.ProtocolError as exc:
            log.warning("ignoring %s: %s", where, exc.message)
            continue
        if hashlib.sha256(claim.token.encode()).hexdigest() not in seen:
            return Found(claim, where)
    return None


def camera_frames(cfg: config_mod.Config) -> Frames | None:
    """One frame from the first camera, for QR codes; None (and why, logged) when that cannot be."""
    prov = cfg.provisioning
    if prov is None or not prov.camera or not cfg.cameras:
        return None
    missing = qr.decoder_missing()
    if missing:
        log.info("not looking for a QR code with the camera: %s", missing)
        return None
    from peripherals.camera import make_camera

    def grab() -> list[bytes]:
        # Before enrolment there is no outbox and so no media store: borrow the backend's frame
        # source only, on this thread, and let go of the sensor before the gateway wants it.
        camera: Any = make_camera(cfg.cameras[0], media=None)  # type: ignore[arg-type]
        stopping = threading.Event()
        try:
            camera._open()
            frame = camera._next_frame(stopping)
            return [frame.jpeg] if frame is not None else []
        except Exception as exc:  # noqa: BLE001 - any camera failure just means "no QR code this time"
            log.warning("could not read a frame from camera for window %d: %s", cfg.cameras[0].window, exc)
            return []
        finally:
            camera._close()

    return grab


# ----- asking the registrar -------------------------------------------------------------------------


def county_ca_path(identity: Path) -> Path:
    return identity / "county-ca.pem"


def request(claim: protocol.ProvisioningFile, req: protocol.Request, timeout: float, identity: Path) -> bytes:
    """Publish the request with the claim's login, over TLS pinned to the claim's CA, and wait
    for the reply that answers it. The CA is kept under `identity` for the station's own login."""
    replies: queue.SimpleQueue[Any] = queue.SimpleQueue()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=claim.username, protocol=paho.MQTTv5)
    client.username_pw_set(claim.username, claim.token)
    reply_topic = topics.enrol_topic(claim.county, claim.claim, "reply")
    client.on_connect = lambda c, _u, _f, rc, _p: replies.put(("connack", rc))
    client.on_subscribe = lambda _c, _u, _m, codes, _p: replies.put(("suback", codes))
    client.on_message = lambda _c, _u, msg: replies.put(("message", msg.payload))
    where = f"the county broker at {claim.host}:{claim.port}"
    try:
        context, ca_pem = tlspin.pinned_context(claim.host, claim.port, claim.ca, timeout)
        client.tls_set_context(context)
        client.connect(claim.host, claim.port, keepalive=30)
    except tlspin.PinError as exc:
        raise EnrolError(str(exc)) from None
    except ssl.SSLCertVerificationError as exc:
        why = f"{where} shows the county CA but its own certificate does not verify against it ({exc.verify_message})"
        raise EnrolError(f"{why}: refusing it, nothing was sent") from None
    except OSError as exc:
        raise EnrolError(f"cannot reach {where}: {exc}") from None
    _write_private(county_ca_path(identity), ca_pem)
    client.loop_start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                what, value = replies.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                why = f"no reply from the registrar within {timeout:g} s (is `yimen registrar serve` running?)"
                raise EnrolError(why) from None
            if what == "connack":
                if value.value in _CLAIM_GONE:  # the registrar deletes a claim's login when it is done
                    why = f"the county broker refused the claim's login {claim.username!r}: used, expired or replaced"
                    raise protocol.ProtocolError("login-refused", why)
                if value.is_failure:
                    raise EnrolError(f"the county broker refused the claim's login {claim.username!r}: {value}")
                client.subscribe(reply_topic, qos=1)
            elif what == "suback":
                if any(code.is_failure for code in value):
                    raise EnrolError(f"the claim's login may not read {reply_topic}: {value[0]}")
                client.publish(topics.enrol_topic(claim.county, claim.claim, "request"), req.to_bytes(), qos=1)
            elif protocol.reply_request_id(value) == req.request:
                return value
    finally:
        client.disconnect()
        client.loop_stop()


def enrol_once(cfg: config_mod.Config, found: Found) -> dict[str, Any]:
    """One attempt with one claim; returns the opened reply, raises ProtocolError if refused."""
    assert cfg.provisioning is not None
    identity = identity_dir(cfg)
    key = station_key(identity)
    req = protocol.Request(
        request=secrets.token_hex(16),
        token=found.claim.token,
        station=found.claim.station,
        serial=hardware_serial(),
        public_key=protocol.public_b64(key),
        inventory=inventory.scan(cameras=cfg.cameras),
        version=__version__,
    )
    log.info("enrolling as station %s with the claim from %s", found.claim.station, found.where)
    return protocol.open_reply(request(found.claim, req, cfg.provisioning.reply_timeout_s, identity), key)


def identity_dir(cfg: config_mod.Config) -> Path:
    path = cfg.storage.path / "identity"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


# ----- writing the identity ---------------------------------------------------------------------------

_TABLE = re.compile(r"^\s*\[+\s*([A-Za-z0-9_.\-\"]+)\s*\]+")


def _without_tables(text: str, names: set[str]) -> str:
    """The config text without the given top-level tables (header to the next header)."""
    out: list[str] = []
    skipping = False
    for line in text.splitlines(keepends=True):
        header = _TABLE.match(line)
        if header:
            skipping = header.group(1).strip('"') in names
        if not skipping:
            out.append(line)
    return "".join(out)


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def write_identity(path: Path, cfg: config_mod.Config, secret: dict[str, Any], token: str) -> None:
    """Store the password 0600 and write this station's `[station]` and `[broker]` into its own file."""
    identity = identity_dir(cfg)
    station, broker = secret["station"], secret["broker"]
    password_file = identity / "broker-password"
    _write_private(password_file, broker["password"].encode())
    store_release_keys(identity / "release-keys", secret.get("release_keys", []))  # ota/: what the county signs
    local = cfg.storage.path / configlayers.LOCAL_NAME
    before = local.read_text(encoding="utf-8") if local.exists() else ""
    base = _without_tables(before, {"station", "broker"}).rstrip()
    text = (
        f"{base}\n\n# Written by enrolment, {time.strftime('%Y-%m-%d %H:%M:%S %z')}: see README, Enrolling a station\n"
        f"[station]\nid = {_toml_str(station['id'])}\ncounty = {_toml_str(station['county'])}\n"
        f"name = {_toml_str(station.get('name', ''))}\n\n"
        f"[broker]\nhost = {_toml_str(broker['host'])}\nport = {int(broker['port'])}\n"
        f"username = {_toml_str(broker['username'])}\npassword_file = {_toml_str(str(password_file))}\n"
        f"tls = true\nca_file = {_toml_str(str(county_ca_path(identity)))}\n"
    ).lstrip()
    # Never write a config the gateway cannot start with.
    config_mod.parse(configlayers.read(path, local_text=text).doc, str(path))
    configlayers.atomic_write(local, text.encode())
    _remember(identity, token, f"enrolled {station['id']} {time.time():.0f}")
    log.info("enrolled: station %s of county %s; config written to %s", station["id"], station["county"], local)


def run(path: Path, stop: threading.Event) -> bool:
    """Enrol, retrying until a claim works; False if `stop` was set first."""
    cfg = load(path)
    assert cfg.provisioning is not None
    prov = cfg.provisioning
    identity = identity_dir(cfg)
    frames = camera_frames(cfg)
    waiting_logged = False
    while not stop.is_set():
        found = find_claim(prov, identity, frames)
        if found is None:
            if not waiting_logged:
                log.warning(
                    "no identity and no claim: put yimen-provision.json on the boot partition or a USB stick "
                    "(looked in %s) or hold its QR code up to the camera",
                    ", ".join(prov.search),
                )
                waiting_logged = True
            stop.wait(prov.retry_s)
            continue
        try:
            secret = enrol_once(cfg, found)
        except protocol.ProtocolError as exc:
            log.error("the county refused the claim from %s: %s (%s)", found.where, exc.message, exc.code)
            if exc.code != "failed":  # "failed": the county's side broke and gave the claim back
                _remember(identity, found.claim.token, f"refused {exc.code}")
        except EnrolError as exc:
            log.error("enrolment failed, will retry in %g s: %s", prov.retry_s, exc)
        else:
            write_identity(path, cfg, secret, found.claim.token)
            return True
        stop.wait(prov.retry_s)
    return False
