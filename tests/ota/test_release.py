"""Release manifests and signatures: what a station accepts, and every way it refuses (pure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ota import release


def signed(tmp_path: Path, doc_changes: dict | None = None) -> tuple[bytes, str, list]:
    key = tmp_path / "k.key"
    pub = release.keygen(key)
    (tmp_path / "a.whl").write_bytes(b"x" * 5000)
    raw = release.make_manifest("1.2.0", "linux_x86_64", "3.11", [tmp_path / "a.whl"], 1024)
    if doc_changes:
        doc = json.loads(raw) | doc_changes
        raw = json.dumps(doc).encode()
    return raw, release.sign(raw, release.load_private(key)), [release.parse_public(pub.read_text())]


def test_a_trusted_signature_over_exact_bytes_is_accepted(tmp_path: Path) -> None:
    raw, sig, trusted = signed(tmp_path)
    manifest = release.verify(raw, sig, trusted)
    assert manifest.version == "1.2.0" and manifest.release_id == release.release_id(raw)
    release.check_files(manifest, tmp_path)


def test_one_changed_byte_or_another_key_is_a_bad_signature(tmp_path: Path) -> None:
    raw, sig, trusted = signed(tmp_path)
    with pytest.raises(release.ReleaseError) as err:
        release.verify(raw.replace(b"1.2.0", b"1.3.0"), sig, trusted)
    assert err.value.code == "bad-signature"
    other = tmp_path / "other"
    other.mkdir()
    _raw2, _sig2, other_trusted = signed(other)
    with pytest.raises(release.ReleaseError) as err:
        release.verify(raw, sig, other_trusted)
    assert err.value.code == "bad-signature"
    with pytest.raises(release.ReleaseError) as err:
        release.verify(raw, "not base64!", trusted)
    assert err.value.code == "bad-signature"
    with pytest.raises(release.ReleaseError) as err:
        release.verify(raw, sig, [])
    assert err.value.code == "no-trusted-key"


@pytest.mark.parametrize(
    "change",
    [
        {"files": [{"name": "../../etc/passwd", "size": 1, "sha256": "0" * 64}]},
        {"files": [{"name": "a.whl", "size": -1, "sha256": "0" * 64}]},
        {"files": [{"name": "a.whl", "size": 10**12, "sha256": "0" * 64}]},
        {"files": [{"name": f"f{i}", "size": 1, "sha256": "0" * 64} for i in range(release.MAX_FILES + 1)]},
        {"files": [{"name": "a", "size": 1, "sha256": "0" * 64}] * 2},
        {"files": [{"name": "a", "size": 1, "sha256": "xyz"}]},
        {"chunk_size": 0},
        {"chunk_size": 10**9},
        {"version": "1.2.0; rm -rf /"},
        {"requires": "evil==1.0"},
        {"v": 2},
    ],
)
def test_a_signed_manifest_out_of_bounds_is_refused(tmp_path: Path, change: dict) -> None:
    """Even a trusted key's manifest never sizes a loop or names a path outside the release."""
    raw, sig, trusted = signed(tmp_path, change)
    with pytest.raises(release.ReleaseError) as err:
        release.verify(raw, sig, trusted)
    assert err.value.code == "bad-manifest"


def test_an_oversized_manifest_is_refused_before_any_crypto(tmp_path: Path) -> None:
    with pytest.raises(release.ReleaseError) as err:
        release.verify(b" " * (release.MAX_MANIFEST_BYTES + 1), "", [])
    assert err.value.code == "bad-manifest"


def test_files_are_checked_for_size_and_hash(tmp_path: Path) -> None:
    raw, sig, trusted = signed(tmp_path)
    manifest = release.verify(raw, sig, trusted)
    (tmp_path / "a.whl").write_bytes(b"x" * 4999 + b"y")
    with pytest.raises(release.ReleaseError) as err:
        release.check_files(manifest, tmp_path)
    assert err.value.code == "wrong-hash"
    (tmp_path / "a.whl").write_bytes(b"x" * 10)
    with pytest.raises(release.ReleaseError) as err:
        release.check_files(manifest, tmp_path)
    assert err.value.code == "wrong-size"


def test_versions_order_numerically_with_prereleases_first() -> None:
    key = release.version_key
    assert key("0.10.0") > key("0.9.9") > key("0.9.9rc2") > key("0.9.9rc1") > key("0.9.8")
    assert key("1.0") == key("1.0.0")


def test_keygen_never_overwrites_a_key(tmp_path: Path) -> None:
    release.keygen(tmp_path / "k.key")
    assert (tmp_path / "k.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        release.keygen(tmp_path / "k.key")
