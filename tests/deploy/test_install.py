"""deploy/install.sh, run for real into a throwaway root prefix: layout, modes, owners, upgrades.

The installed station under systemd and on arm64 is tests/installed/.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the installer adds a user and chowns: run as root")

BASE_GROUPS = {"root": 0, "lp": 7, "dialout": 20, "video": 44, "input": 105}
# Offline: the test venv installs yimen alone from the copied tree, with the OS's setuptools.
OFFLINE_PIP = "--no-index --no-deps --no-build-isolation"


def copy_source(dest: Path) -> Path:
    """The checkout as an installer would carry it to the Pi: files only, no venv, no caches."""
    skip = shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.egg-info", "build", ".pytest_cache", ".ruff_cache", ".hypothesis"
    )
    shutil.copytree(ROOT, dest, ignore=skip)
    return dest


def fake_root(root: Path) -> Path:
    """A prefix with just the account files a Debian system starts with."""
    etc = root / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "group").write_text("".join(f"{name}:x:{gid}:\n" for name, gid in BASE_GROUPS.items()))
    (etc / "gshadow").write_text("".join(f"{name}:*::\n" for name in BASE_GROUPS))
    (etc / "os-release").write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\n')
    return root


def install(script: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def account(root: Path, file: str, name: str) -> list[str]:
    for line in (root / "etc" / file).read_text().splitlines():
        if line.split(":")[0] == name:
            return line.split(":")
    raise AssertionError(f"{name} not in {file}")


def test_install_into_a_prefix_then_upgrade_keeps_data_and_config(tmp_path: Path) -> None:
    root = fake_root(tmp_path / "root")
    source = copy_source(tmp_path / "src")
    script = source / "deploy" / "install.sh"
    args = ("--root", str(root), "--source", str(source), "--pip-opts", OFFLINE_PIP)
    first = install(script, *args)
    assert "fill in /etc/yimen/station.toml" in first.stdout or "Next:" in first.stdout

    user = account(root, "passwd", "yimen")
    uid, gid, home, shell = int(user[2]), int(user[3]), user[5], user[6]
    assert uid < 1000 and (home, shell) == ("/var/lib/yimen", "/usr/sbin/nologin"), user
    for group in ("dialout", "input", "lp", "video"):
        assert "yimen" in account(root, "group", group)[3].split(","), f"yimen is not in group {group}"

    def owner_mode(rel: str) -> tuple[int, int, int]:
        st = (root / rel).stat()
        return st.st_uid, st.st_gid, st.st_mode & 0o7777

    assert owner_mode("etc/yimen") == (0, gid, 0o750)
    assert owner_mode("etc/yimen/station.toml") == (0, gid, 0o640), "the config holds the password"
    assert owner_mode("var/lib/yimen") == (uid, gid, 0o750)
    assert (root / "etc/yimen/station.toml").read_text() == (source / "deploy/station.toml.example").read_text()
    assert (root / "etc/systemd/system/yimen.service").read_text() == (source / "deploy/yimen.service").read_text()
    assert (root / "etc/udev/rules.d/70-yimen.rules").is_file()
    wants = root / "etc/systemd/system/multi-user.target.wants/yimen.service"
    assert wants.is_symlink(), "the service must be enabled"
    assert os.readlink(root / "usr/local/bin/yimen") == "/opt/yimen/current/bin/yimen"
    assert os.readlink(root / "opt/yimen/current") == "versions/0.1.0"
    venv = root / "opt/yimen/versions/0.1.0"
    assert owner_mode("etc/yimen/release-keys") == (0, 0, 0o755)
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text(), "picamera2 must be visible"
    version = subprocess.run([venv / "bin/yimen", "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("yimen ")

    # The station runs for a while: data accumulates, the installer edits the config.
    data = root / "var/lib/yimen/outbox.db"
    data.write_bytes(os.urandom(4096))
    os.chown(data, uid, gid)
    config = root / "etc/yimen/station.toml"
    config.write_text(config.read_text().replace("<station id from the county, e.g. hy-0001>", "hy-0001"))
    before = {p: digest(p) for p in (data, config)}
    marker = venv / "created-by-the-first-install"
    marker.touch()

    second = install(script, *args)
    assert "Next:" not in second.stdout, "an upgrade must not treat the station as new"
    assert {p: digest(p) for p in (data, config)} == before, "an upgrade touched data or config"
    assert owner_mode("var/lib/yimen/outbox.db")[:2] == (uid, gid)
    assert marker.exists(), "the venv was rebuilt instead of upgraded in place"
    assert len([line for line in (root / "etc/passwd").read_text().splitlines() if line.startswith("yimen:")]) == 1
    subprocess.run([venv / "bin/yimen", "--version"], check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing: apt-get install systemd")
def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """Verified in place: in a root holding the installed tree (so ExecStart must exist) and
    systemd's own units (so its dependencies resolve); any warning counts as a failure."""
    root = fake_root(tmp_path / "root")
    source = copy_source(tmp_path / "src")
    install(source / "deploy/install.sh", "--root", str(root), "--source", str(source), "--pip-opts", OFFLINE_PIP)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={root}", "/etc/systemd/system/yimen.service"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


# The last installer with the old layout (/opt/yimen/venv), as stations in the field have it.
OLD_LAYOUT = "7dd52af"


def test_an_install_of_the_old_layout_is_upgraded_and_keeps_its_data(tmp_path: Path) -> None:
    old = subprocess.run(["git", "-C", str(ROOT), "show", f"{OLD_LAYOUT}:deploy/install.sh"], capture_output=True)
    if old.returncode != 0:
        pytest.skip(f"this checkout lacks commit {OLD_LAYOUT} (a shallow clone): {old.stderr.decode().strip()}")
    root = fake_root(tmp_path / "root")
    source = copy_source(tmp_path / "src")
    old_script = source / "deploy" / "install-old.sh"
    old_script.write_bytes(old.stdout)
    args = ("--root", str(root), "--source", str(source), "--pip-opts", OFFLINE_PIP)
    install(old_script, *args)
    assert (root / "opt/yimen/venv/bin/yimen").exists() and not (root / "opt/yimen/current").exists()
    data = root / "var/lib/yimen/outbox.db"
    data.write_bytes(os.urandom(4096))
    before = digest(data)

    install(source / "deploy/install.sh", *args)
    assert os.readlink(root / "opt/yimen/current") == "versions/0.1.0"
    assert not (root / "opt/yimen/venv").exists(), "the old venv is gone"
    assert os.readlink(root / "usr/local/bin/yimen") == "/opt/yimen/current/bin/yimen"
    assert "ExecStart=/opt/yimen/current/bin/yimen" in (root / "etc/systemd/system/yimen.service").read_text()
    assert digest(data) == before
    subprocess.run([root / "opt/yimen/current/bin/yimen", "--version"], check=True, capture_output=True)


def test_a_release_key_is_checked_then_trusted(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    pem = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    good, wrong = tmp_path / "county-2026.pem", tmp_path / "not-a-signing-key.pem"
    good.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(*pem))
    wrong.write_bytes(X25519PrivateKey.generate().public_key().public_bytes(*pem))
    root = fake_root(tmp_path / "root")
    source = copy_source(tmp_path / "src")
    args = ["--root", str(root), "--source", str(source), "--pip-opts", OFFLINE_PIP]
    refused = subprocess.run(["bash", source / "deploy/install.sh", *args, "--release-key", wrong], capture_output=True)
    assert refused.returncode == 1 and b"not an Ed25519 public key" in refused.stderr, refused.stderr
    assert not (root / "opt/yimen").exists() and not (root / "etc/yimen").exists(), "refused before any change"
    install(source / "deploy/install.sh", *args, "--release-key", str(good))
    installed = root / "etc/yimen/release-keys/county-2026.pem"
    assert installed.read_bytes() == good.read_bytes()
    st = installed.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, 0o644)
