"""A release: its signed manifest, and the keys that may sign one. Pure: no network, no threads.

The manifest is UTF-8 JSON naming the version, the platform it was built for and every file
(name, size, sha256); the signature is Ed25519 over the manifest's exact bytes, so the county
never needs to reproduce a canonical form and the station checks what it received. A station
trusts only public keys it was given (by the installer, or inside its sealed enrolment reply):
a manifest signed by any other key, or altered by one byte, is refused before anything else is
read from it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

# cryptography is imported where a key is used, not here: it costs a gateway about 10 MB of
# memory, and a gateway needs it only while an update is offered.

FORMAT = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
# Bounds on what a manifest may ask of a station (the manifest comes from outside).
MAX_MANIFEST_BYTES = 48 * 1024
MAX_FILES = 200
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_TOTAL_BYTES = 256 * 1024 * 1024
MIN_CHUNK = 1024
MAX_CHUNK = 256 * 1024
_VERSION = re.compile(r"^([0-9]+(?:\.[0-9]+){0,3})(?:([a-z]+)([0-9]*))?$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ReleaseError(ValueError):
    """A release that must not be installed; `code` is machine-readable (reported to the county)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class FileEntry:
    name: str
    size: int
    sha256: str

    def chunks(self, chunk_size: int) -> int:
        return max(1, -(-self.size // chunk_size))


@dataclass(frozen=True)
class Manifest:
    version: str
    platform: str
    python: str
    requires: str  # what pip installs from the files: "yimen==<version>"
    chunk_size: int
    files: tuple[FileEntry, ...]
    raw: bytes  # the signed bytes

    @property
    def release_id(self) -> str:
        """Content address of the manifest: names the release on topics and on disk."""
        return release_id(self.raw)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def release_id(raw: bytes) -> str:
    return "r" + hashlib.sha256(raw).hexdigest()[:16]


def is_version(text: str) -> bool:
    return isinstance(text, str) and _VERSION.match(text) is not None


def version_key(version: str) -> tuple:
    """Order of versions: numeric parts, then a release beats its pre-releases (0.2.0 > 0.2.0rc1)."""
    m = _VERSION.match(version) if isinstance(version, str) else None
    if m is None:
        raise ReleaseError("bad-manifest", f"version {version!r} is not of the form 1.2.3 or 1.2.3rc1")
    nums = tuple(int(p) for p in m.group(1).split("."))
    nums += (0,) * (4 - len(nums))
    pre = m.group(2)
    return (*nums, 0 if pre else 1, pre or "", int(m.group(3) or 0))


def public_text(public: Ed25519PublicKey) -> str:
    """A public key as PEM (SubjectPublicKeyInfo): what install.sh --release-key checks with
    openssl, and what the enrolment reply carries."""
    from cryptography.hazmat.primitives import serialization

    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem.decode().strip()


def parse_public(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key in PEM; ValueError says what else it is."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if len(text) > 4096 or "-----BEGIN PUBLIC KEY-----" not in text:
        raise ValueError("a release key is an Ed25519 public key in PEM (-----BEGIN PUBLIC KEY-----)")
    key = serialization.load_pem_public_key(text.strip().encode())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"a release key must be Ed25519, not {type(key).__name__}")
    return key


def keygen(private_path: Path) -> Path:
    """A new county release key: the private key (PEM, 0600) and `<name>.pem`, its public key, beside it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    private_path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: a second keygen never overwrites the key the stations already trust.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    pub = private_path.with_suffix(".pem")
    pub.write_text(public_text(key.public_key()) + "\n")
    return pub


def load_private(path: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key (make one with `yimen release keygen`)")
    return key


def load_trusted(*dirs: Path) -> list[Ed25519PublicKey]:
    """Every file in the given directories that is an Ed25519 public key in PEM (install.sh keeps the
    name it was given: county-2026.pem, county.pub, ...); anything else there is skipped, with no trust."""
    keys = []
    for directory in dirs:
        for path in sorted(p for p in directory.iterdir() if p.is_file()) if directory.is_dir() else []:
            try:
                keys.append(parse_public(path.read_text()))
            except (ValueError, OSError):
                continue
    return keys


def store_release_keys(directory: Path, keys: object) -> None:
    """The keys a sealed enrolment reply carried, as `county-<n>.pem`; anything else there is
    replaced, so a re-enrolment that drops a key drops the trust in it. A malformed key is refused."""
    if not isinstance(keys, list) or len(keys) > 16:
        raise ValueError("release_keys must be a list of at most 16 keys")
    checked = [public_text(parse_public(str(k))) for k in keys]
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.pem"):
        old.unlink()
    for n, key in enumerate(checked):
        (directory / f"county-{n}.pem").write_text(key + "\n")


def sign(raw: bytes, key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.sign(raw)).decode()


def verify(raw: bytes, signature: str, trusted: list[Ed25519PublicKey]) -> Manifest:
    """The manifest, if `signature` is a trusted key's over exactly `raw`; else ReleaseError."""
    from cryptography.exceptions import InvalidSignature

    if len(raw) > MAX_MANIFEST_BYTES:
        raise ReleaseError("bad-manifest", f"manifest is {len(raw)} bytes; the limit is {MAX_MANIFEST_BYTES}")
    if not trusted:
        raise ReleaseError("no-trusted-key", "this station trusts no release key: give one to the installer")
    try:
        sig = base64.b64decode(signature, validate=True)
    except ValueError:
        raise ReleaseError("bad-signature", "the signature is not base64") from None
    for key in trusted:
        try:
            key.verify(sig, raw)
        except InvalidSignature:
            continue
        return parse_manifest(raw)
    raise ReleaseError("bad-signature", "the manifest's signature is not from a key this station trusts")


def parse_manifest(raw: bytes) -> Manifest:
    """Check a (signed) manifest's shape and bounds: even a trusted key's typo must not size a loop."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReleaseError("bad-manifest", f"manifest is not UTF-8 JSON: {exc}") from None
    try:
        if doc["v"] != FORMAT:
            raise ReleaseError("bad-manifest", f"manifest format {doc['v']!r}; this station reads {FORMAT}")
        version, files, chunk = doc["version"], doc["files"], doc["chunk_size"]
        version_key(version)
        if not (isinstance(chunk, int) and MIN_CHUNK <= chunk <= MAX_CHUNK):
            raise ReleaseError("bad-manifest", f"chunk_size {chunk!r} outside {MIN_CHUNK}..{MAX_CHUNK}")
        if not (isinstance(files, list) and 1 <= len(files) <= MAX_FILES):
            raise ReleaseError("bad-manifest", f"files must be a list of 1..{MAX_FILES}")
        entries = []
        for f in files:
            name, size, digest = f["name"], f["size"], f["sha256"]
            if not (isinstance(name, str) and _FILE.match(name) and ".." not in name):
                raise ReleaseError("bad-manifest", f"file name {name!r} is not a plain file name")
            if not (isinstance(size, int) and 0 < size <= MAX_FILE_BYTES):
                raise ReleaseError("bad-manifest", f"file {name}: size {size!r} outside 1..{MAX_FILE_BYTES}")
            if not (isinstance(digest, str) and _HEX64.match(digest)):
                raise ReleaseError("bad-manifest", f"file {name}: sha256 is not 64 hex digits")
            entries.append(FileEntry(name, size, digest))
        if len({e.name for e in entries}) != len(entries):
            raise ReleaseError("bad-manifest", "a file is listed twice")
        if sum(e.size for e in entries) > MAX_TOTAL_BYTES:
            raise ReleaseError("bad-manifest", f"the release is over {MAX_TOTAL_BYTES} bytes")
        requires = doc["requires"]
        if requires != f"yimen=={version}":
            raise ReleaseError("bad-manifest", f"requires {requires!r}; expected 'yimen=={version}'")
        return Manifest(version, str(doc["platform"]), str(doc["python"]), requires, chunk, tuple(entries), raw)
    except (KeyError, TypeError) as exc:
        raise ReleaseError("bad-manifest", f"manifest lacks or mistypes {exc}") from None


def make_manifest(version: str, platform: str, python: str, files: list[Path], chunk_size: int) -> bytes:
    entries = [
        {"name": p.name, "size": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
        for p in sorted(files)
    ]
    doc = {
        "v": FORMAT,
        "version": version,
        "platform": platform,
        "python": python,
        "requires": f"yimen=={version}",
        "chunk_size": chunk_size,
        "files": entries,
    }
    raw = json.dumps(doc, separators=(",", ":")).encode()
    parse_manifest(raw)
    return raw


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def check_files(manifest: Manifest, directory: Path) -> None:
    """Every file of the manifest is in `directory` with its size and hash; else ReleaseError."""
    for entry in manifest.files:
        path = directory / entry.name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise ReleaseError("missing-file", f"{entry.name} is missing from {directory}") from None
        if size != entry.size:
            raise ReleaseError("wrong-size", f"{entry.name} is {size} bytes; the manifest says {entry.size}")
        digest = file_sha256(path)
        if digest != entry.sha256:
            raise ReleaseError(
                "wrong-hash", f"{entry.name} has sha256 {digest[:16]}…; the manifest says {entry.sha256[:16]}…"
            )
