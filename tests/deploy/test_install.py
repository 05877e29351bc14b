"""deploy/install.sh, run for real: into a throwaway root prefix on every test run, and (opt-in,
it needs the Debian mirror and PyPI) into a debootstrapped Debian bookworm chroot where it
installs its packages with apt, its venv from PyPI, and runs doctor and the gateway as user yimen.

Neither is a Raspberry Pi: see the README's "What is not tested here".
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqtt.broker import Mosquitto
from tests.conftest import ROOT, wait_until

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
    assert os.readlink(root / "usr/local/bin/yimen") == "/opt/yimen/venv/bin/yimen"
    venv = root / "opt/yimen/venv"
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


# ----- the opt-in chroot test ----------------------------------------------------------------

CHROOT_ENV = "YIMEN_CHROOT_TEST"
MIRROR = os.environ.get("YIMEN_DEBIAN_MIRROR", "http://deb.debian.org/debian")


@contextlib.contextmanager
def mounted_proc(root: Path) -> Iterator[None]:
    """/proc inside the chroot (apt and the venv need it); only proc: nothing of the host's /dev
    is bound in, so removing the chroot can never remove a host device."""
    target = root / "proc"
    subprocess.run(["mount", "-t", "proc", "proc", str(target)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "--lazy", str(target)], check=True)


def in_chroot(root: Path, *cmd: str, user: str | None = None, **kw: object) -> subprocess.CompletedProcess:
    spec = [f"--userspec={user}:{user}"] if user else []
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    return subprocess.run(["chroot", *spec, str(root), *cmd], env=env, capture_output=True, text=True, **kw)  # type: ignore[call-overload]


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get(CHROOT_ENV), reason=f"opt-in (needs the Debian mirror and PyPI): {CHROOT_ENV}=1")
@pytest.mark.skipif(shutil.which("debootstrap") is None, reason="debootstrap missing: apt-get install debootstrap")
@pytest.mark.timeout(1200)
def test_install_in_a_debootstrapped_bookworm_chroot(tmp_path: Path) -> None:
    root = tmp_path / "bookworm"
    subprocess.run(
        ["debootstrap", "--variant=minbase", "--include=systemd,udev,ca-certificates", "bookworm", str(root), MIRROR],
        check=True,
        capture_output=True,
        timeout=900,
    )
    source = copy_source(root / "usr/src/yimen")
    # yimen and its dependencies as wheels, fetched by this machine's pip: the installer's offline
    # path (a USB stick of wheels). This machine reaches PyPI through a proxy whose certificate
    # the chroot does not trust, so pip inside the chroot cannot fetch them itself.
    wheels = root / "usr/src/wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "-w", str(wheels), str(source)], check=True, timeout=600
    )
    wheel = "/" + str(next(wheels.glob("yimen-*.whl")).relative_to(root))
    install = ["bash", "/usr/src/yimen/deploy/install.sh", "--source", wheel]
    install += ["--pip-opts", "--no-index --find-links /usr/src/wheels"]
    with mounted_proc(root), Mosquitto(tmp_path / "broker") as broker:
        # As an installer would: apt brings python3-venv from the mirror, pip the rest.
        first = in_chroot(root, *install, timeout=900)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "Next:" in first.stdout

        verify = in_chroot(root, "systemd-analyze", "verify", "--man=no", "/etc/systemd/system/yimen.service")
        assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
        groups = in_chroot(root, "id", "-nG", "yimen").stdout.split()
        assert {"yimen", "dialout", "input", "lp", "video"} <= set(groups), groups
        assert (root / "etc/systemd/system/multi-user.target.wants/yimen.service").is_symlink()

        # The template is refused as it stands; filled in, doctor run as the service user passes.
        template = in_chroot(root, "yimen", "doctor", "--config", "/etc/yimen/station.toml")
        assert template.returncode == 1 and "[station] id" in template.stdout, template.stdout
        config = root / "etc/yimen/station.toml"
        config.write_text(
            '[station]\nid = "hy-0001"\ncounty = "hengyang"\n\n'
            f'[broker]\nhost = "127.0.0.1"\nport = {broker.port}\n\n'
            '[storage]\npath = "/var/lib/yimen"\nmax_mb = 64\n\n[clock]\nsync = "assume"\n'
        )
        doctor = in_chroot(
            root, "/opt/yimen/venv/bin/yimen", "doctor", "--config", "/etc/yimen/station.toml", user="yimen"
        )
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr

        # The gateway as the unit runs it: user yimen, READY=1 on a notify socket, data written.
        sock_path = root / "run/notify.sock"
        sock_path.parent.mkdir(exist_ok=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(str(sock_path))
            os.chmod(sock_path, 0o666)
            notify.settimeout(30)
            run = ["/opt/yimen/venv/bin/yimen", "run", "--config", "/etc/yimen/station.toml"]
            gateway = subprocess.Popen(
                ["chroot", "--userspec=yimen:yimen", str(root), "env", "NOTIFY_SOCKET=/run/notify.sock", *run],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            try:
                assert b"READY=1" in notify.recv(4096)
                outbox = root / "var/lib/yimen/outbox.db"
                wait_until(outbox.exists, 10, "the outbox in /var/lib/yimen")
                time.sleep(1)
            finally:
                gateway.send_signal(signal.SIGTERM)
                out, _ = gateway.communicate(timeout=20)
            assert gateway.returncode == 0, out.decode()
        uid = int(in_chroot(root, "id", "-u", "yimen").stdout)
        assert outbox.stat().st_uid == uid
        before = {p: digest(p) for p in (outbox, config)}

        # The upgrade: same script again; the data and the config are exactly as they were.
        second = in_chroot(root, *install, timeout=900)
        assert second.returncode == 0, second.stdout + second.stderr
        assert {p: digest(p) for p in (outbox, config)} == before
        again = in_chroot(
            root, "/opt/yimen/venv/bin/yimen", "doctor", "--config", "/etc/yimen/station.toml", user="yimen"
        )
        assert again.returncode == 0, again.stdout
