"""The enrolment protocol, pure: provisioning file, request, reply, and the sealed box.

No sockets and no files here, so every malformed input can be tested directly. Each claim
has its own reply topic, readable only by that claim's login; still, whoever holds the claim
(the installer, a photo of its QR code) could read it, so the part of a reply that matters
(the station's login) is sealed to the requesting Pi's X25519 public key: an
ephemeral X25519 key agreement, HKDF-SHA256, ChaCha20-Poly1305, with the request id bound in
as associated data. Only the Pi holding the private key can open it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = 1
ID_RE = re.compile(r"^[a-z0-9-]{1,32}$")
REQUEST_RE = re.compile(r"^[0-9a-f]{16,64}$")
CLAIM_RE = re.compile(r"^[0-9a-f]{16}$")
# A request is a few hundred bytes plus the inventory (device names): 64 KiB is ample.
MAX_REQUEST_BYTES = 64 * 1024
_HKDF_INFO = b"yimen-enrol-v1"


class ProtocolError(ValueError):
    """A provisioning file or message that does not follow the protocol; `code` is for machines."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any, what: str, length: int | None = None) -> bytes:
    try:
        data = base64.b64decode(text, validate=True) if isinstance(text, str) else None
    except binascii.Error:
        data = None
    if data is None or (length is not None and len(data) != length):
        want = f"{length} bytes" if length else "bytes"
        raise ProtocolError("bad-request", f"{what} must be base64 of {want}")
    return data


def dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def _object(payload: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError("bad-request", f"{what} is not UTF-8 JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ProtocolError("bad-request", f"{what} must be a JSON object")
    if doc.get("v") != VERSION:
        raise ProtocolError("bad-request", f"{what} has version {doc.get('v')!r}; this yimen speaks {VERSION}")
    return doc


def _field(doc: dict[str, Any], key: str, kind: type, what: str, pattern: re.Pattern[str] | None = None) -> Any:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ProtocolError("bad-request", f"{what}: {key!r} missing or not a {kind.__name__}")
    if pattern is not None and not pattern.match(value):
        raise ProtocolError("bad-request", f"{what}: {key!r} = {value!r} does not match {pattern.pattern}")
    return value


# ----- the provisioning file (and the QR code, which holds the same bytes) ---------------------


def enrol_login(county: str, claim: str) -> str:
    """A claim's own broker login and, bound to it by the broker, its client id."""
    return f"yimen-enrol-{county}-{claim}"


@dataclass(frozen=True)
class ProvisioningFile:
    """What an installer carries to a station: a one-time claim and where to use it.

    Nothing in it is shared with any other claim: the login is `enrol_login(county, claim)`
    with the token as its password, valid for this claim's two topics only, until the
    station has connected under its own login or the claim expires."""

    county: str
    station: str
    claim: str  # 16 hex: names the claim's login and topics
    token: str  # the claim's secret: its login's password, and proof in the request
    expires: float  # unix seconds; the registrar refuses the token after this
    host: str  # the county broker's TLS listener as the station reaches it
    port: int
    ca: str  # base64 SHA-256 of the county CA certificate (DER) the broker's chain must hold

    @property
    def username(self) -> str:
        return enrol_login(self.county, self.claim)

    def to_bytes(self) -> bytes:
        return dumps({"v": VERSION, **asdict(self)})

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "provisioning file") -> ProvisioningFile:
        doc = _object(data, where)
        claim = cls(
            county=_field(doc, "county", str, where, ID_RE),
            station=_field(doc, "station", str, where, ID_RE),
            claim=_field(doc, "claim", str, where, CLAIM_RE),
            token=_field(doc, "token", str, where),
            expires=float(_field(doc, "expires", (int, float), where)),  # type: ignore[arg-type]
            host=_field(doc, "host", str, where),
            port=_field(doc, "port", int, where),
            ca=_field(doc, "ca", str, where),
        )
        _unb64(claim.ca, f"{where}: ca", 32)
        if not 0 < claim.port < 65536 or not 0 < len(claim.token) <= 128 or not 0 < len(claim.host) <= 253:
            raise ProtocolError("bad-request", f"{where}: port, token or host out of range")
        return claim


# ----- request and reply -------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    request: str  # random hex, chosen by the station: matches the reply and binds the sealed box
    token: str
    station: str
    serial: str
    public_key: str  # base64 of the raw 32-byte X25519 public key
    inventory: dict[str, Any]
    version: str

    def to_bytes(self) -> bytes:
        return dumps({"v": VERSION, **asdict(self)})

    @classmethod
    def from_bytes(cls, payload: bytes) -> Request:
        if len(payload) > MAX_REQUEST_BYTES:  # before parsing: whoever holds a claim may send it
            raise ProtocolError(
                "bad-request", f"enrolment request of {len(payload)} bytes; at most {MAX_REQUEST_BYTES}"
            )
        doc = _object(payload, "enrolment request")
        req = cls(
            request=_field(doc, "request", str, "enrolment request", REQUEST_RE),
            token=_field(doc, "token", str, "enrolment request"),
            station=_field(doc, "station", str, "enrolment request", ID_RE),
            serial=_field(doc, "serial", str, "enrolment request"),
            public_key=_field(doc, "public_key", str, "enrolment request"),
            inventory=_field(doc, "inventory", dict, "enrolment request"),
            version=_field(doc, "version", str, "enrolment request"),
        )
        _unb64(req.public_key, "public_key", 32)
        if not 0 < len(req.serial) <= 128 or len(req.token) > 128:
            raise ProtocolError("bad-request", "enrolment request: serial or token of an impossible length")
        return req


def reply_ok(request: str, public_key: str, secret: dict[str, Any]) -> bytes:
    sealed = seal(public_key, dumps({"v": VERSION, **secret}), request)
    return dumps({"v": VERSION, "request": request, "ok": True, "sealed": sealed})


def reply_error(request: str, code: str, message: str) -> bytes:
    return dumps({"v": VERSION, "request": request, "ok": False, "error": {"code": code, "message": message}})


def reply_request_id(payload: bytes) -> str | None:
    """Which request a reply answers, or None for anything unreadable (not ours to judge)."""
    if len(payload) > MAX_REQUEST_BYTES:
        return None
    try:
        doc = _object(payload, "reply")
    except ProtocolError:
        return None
    value = doc.get("request")
    return value if isinstance(value, str) else None


def open_reply(payload: bytes, key: X25519PrivateKey) -> dict[str, Any]:
    """The secret part of a successful reply; a refusal raises ProtocolError with its code."""
    doc = _object(payload, "enrolment reply")
    if doc.get("ok") is not True:
        error = doc.get("error") if isinstance(doc.get("error"), dict) else {}
        raise ProtocolError(str(error.get("code", "refused")), str(error.get("message", "refused, no reason given")))
    sealed = _field(doc, "sealed", dict, "enrolment reply")
    return _object(open_sealed(key, sealed, _field(doc, "request", str, "enrolment reply")), "sealed reply")


# ----- the sealed box -----------------------------------------------------------------------------


def new_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def public_b64(key: X25519PrivateKey) -> str:
    return _b64(key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def _box_key(shared: bytes, context: str) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=None, info=_HKDF_INFO + context.encode()).derive(shared)


def seal(public_key: str, plaintext: bytes, context: str) -> dict[str, str]:
    """Encrypt to a station's public key; `context` (the request id) must match when opening."""
    ephemeral = X25519PrivateKey.generate()
    peer = X25519PublicKey.from_public_bytes(_unb64(public_key, "public_key", 32))
    nonce = os.urandom(12)
    box = ChaCha20Poly1305(_box_key(ephemeral.exchange(peer), context))
    sealed = box.encrypt(nonce, plaintext, context.encode())
    return {"epk": public_b64(ephemeral), "nonce": _b64(nonce), "ct": _b64(sealed)}


def open_sealed(key: X25519PrivateKey, sealed: dict[str, Any], context: str) -> bytes:
    peer = X25519PublicKey.from_public_bytes(_unb64(sealed.get("epk"), "sealed.epk", 32))
    box = ChaCha20Poly1305(_box_key(key.exchange(peer), context))
    try:
        nonce = _unb64(sealed.get("nonce"), "sealed.nonce", 12)
        return box.decrypt(nonce, _unb64(sealed.get("ct"), "sealed.ct"), context.encode())
    except InvalidTag:
        raise ProtocolError("sealed", "the reply was not sealed to this station's key (or was altered)") from None
