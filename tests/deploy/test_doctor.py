"""`yimen doctor`: one line per check, OK or PROBLEM with what, where and what to do; exit 1 on any
PROBLEM. Against a real private Mosquitto with a password file, real SQLite files, real dirs."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge import doctor
from edge.clock import ClockSource
from edge.config import ClockConfig
from edge.events import NewEvent, Priority
from edge.outbox import Outbox
from mqtt.broker import Mosquitto
from tests.conftest import ROOT, station_config

USER, PASSWORD = "st-0001", "村里的密码-42"


@pytest.fixture
def locked_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker that wants a user name and password, as the county's does."""
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), USER, PASSWORD], check=True, capture_output=True)
    passwd.chmod(0o600)
    with Mosquitto(tmp_path / "broker", extra=f"allow_anonymous false\npassword_file {passwd}") as mosq:
        yield mosq


def config_for(tmp_path: Path, port: int, password: str = PASSWORD, broker_extra: str = "", **kw: object) -> Path:
    extra = f'username = "{USER}"\npassword = "{password}"\n{broker_extra}'
    path = station_config(tmp_path, port, broker_extra=extra, **kw)  # type: ignore[arg-type]
    path.chmod(0o640)
    return path


def doctor_lines(config: Path, user: str | None = None) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = doctor.run(config, user=user, out=lines.append)
    return code, lines


def line_of(lines: list[str], check: str) -> str:
    found = [line for line in lines if line.split(None, 1)[1].startswith(f"{check}:")]
    assert len(found) == 1, lines
    return found[0]


def test_a_good_station_is_all_ok(tmp_path: Path, locked_broker: Mosquitto) -> None:
    config = config_for(tmp_path, locked_broker.port)
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "doctor", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert all(line.startswith("OK ") for line in lines[:-1]), lines
    assert lines[-1] == "all checks passed"
    for check in ("config", "storage", "disk space", "outbox", "clock", "broker"):
        line_of(lines, check)
    assert f"accepted us as user '{USER}'" in line_of(lines, "broker")


def test_wrong_password_names_the_credentials(tmp_path: Path, locked_broker: Mosquitto) -> None:
    code, lines = doctor_lines(config_for(tmp_path, locked_broker.port, password="wrong"))
    assert code == 1
    broker = line_of(lines, "broker")
    assert broker.startswith("PROBLEM")
    assert "[broker] username and password" in broker and USER in broker, broker
    assert lines[-1] == "1 problem found"


def test_wrong_password_over_mqtt_3_1_1(tmp_path: Path, locked_broker: Mosquitto) -> None:
    config = config_for(tmp_path, locked_broker.port, password="wrong", broker_extra='protocol = "3.1.1"')
    code, lines = doctor_lines(config)
    assert code == 1
    assert "[broker] username and password" in line_of(lines, "broker")


def test_unreachable_broker_names_host_and_port(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        code, lines = doctor_lines(config_for(tmp_path, port))
    assert code == 1
    broker = line_of(lines, "broker")
    assert broker.startswith("PROBLEM") and f"nothing accepts connections at 127.0.0.1:{port}" in broker
    assert "[broker] host and port" in broker


def test_a_broker_that_never_answers(tmp_path: Path) -> None:
    """A black-holed link: TCP connects (the kernel's backlog), no CONNACK ever comes."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        config = config_for(tmp_path, sock.getsockname()[1], broker_extra="connect_timeout_s = 0.5")
        code, lines = doctor_lines(config)
    assert code == 1
    assert "no answer from 127.0.0.1" in line_of(lines, "broker")


def test_unwritable_storage_names_path_and_user(tmp_path: Path, locked_broker: Mosquitto) -> None:
    storage = tmp_path / "state"
    storage.mkdir(mode=0o555)
    storage.chmod(0o555)
    user = "nobody" if os.geteuid() == 0 else None  # root writes anywhere: ask for the service's user
    code, lines = doctor_lines(config_for(tmp_path, locked_broker.port), user=user)
    assert code == 1
    line = line_of(lines, "storage")
    assert line.startswith("PROBLEM") and f"{storage} is not writable by user" in line
    assert "[storage] path" in line and "chown" in line


def test_corrupt_outbox_is_a_problem_and_left_alone(tmp_path: Path, locked_broker: Mosquitto) -> None:
    config = config_for(tmp_path, locked_broker.port)
    db = tmp_path / "state" / "outbox.db"
    box = Outbox(db, "st-0001", clock=ClockSource(ClockConfig(sync="assume")), max_bytes=64 << 20)
    for n in range(200):
        box.append(NewEvent("key", Priority.NORMAL, {"n": n, "pad": "x" * 200}))
    box.close()
    code, lines = doctor_lines(config)
    assert code == 0 and "intact (200 events held)" in line_of(lines, "outbox"), lines

    with open(db, "r+b") as fh:  # damage the middle, keep the header
        fh.seek(8192)
        fh.write(b"\xde\xad" * 4096)
    damaged = db.read_bytes()
    code, lines = doctor_lines(config)
    assert code == 1
    line = line_of(lines, "outbox")
    assert line.startswith("PROBLEM") and "is damaged" in line and "corrupt-" in line
    assert db.read_bytes() == damaged, "the doctor only looks; the gateway decides what to do with it"
    assert not list(db.parent.glob("outbox.db.corrupt-*"))


def test_the_installed_template_is_refused_until_filled_in(tmp_path: Path) -> None:
    config = tmp_path / "station.toml"
    config.write_text((ROOT / "deploy" / "station.toml.example").read_text())
    code, lines = doctor_lines(config)
    assert code == 1
    assert lines[0].startswith("PROBLEM  config:") and "[station] id" in lines[0]
    assert lines[-2:] == ["(the other checks need a config that loads)", "1 problem found"]


def test_placeholders_and_a_readable_password_are_problems(tmp_path: Path, locked_broker: Mosquitto) -> None:
    config = config_for(tmp_path, locked_broker.port, broker_extra='# host = "<the county broker>"')
    text = config.read_text().replace(f'username = "{USER}"', 'username = "<user name from the county>"')
    config.write_text(text)
    config.chmod(0o644)
    _, lines = doctor_lines(config)
    problems = [line for line in lines if line.startswith("PROBLEM  config:")]
    assert len(problems) == 2, lines
    assert "placeholders for username" in problems[0] and "host" not in problems[0].split("for ")[1]
    assert "every user of this machine can read it" in problems[1] and "chmod 640" in problems[1]


def test_unsynced_clock_says_what_to_do(tmp_path: Path, locked_broker: Mosquitto) -> None:
    config = config_for(tmp_path, locked_broker.port)
    text = config.read_text().replace('sync = "assume"', f'sync = "file"\nsync_file = "{tmp_path / "synced"}"')
    config.write_text(text)
    code, lines = doctor_lines(config)
    assert code == 1
    line = line_of(lines, "clock")
    assert line.startswith("PROBLEM") and "not synchronised" in line and "NTP" in line


@pytest.mark.skipif(importlib.util.find_spec("picamera2") is not None, reason="picamera2 is installed here")
def test_cameras_each_get_a_line(tmp_path: Path, locked_broker: Mosquitto) -> None:
    extra = '[[cameras]]\nwindow = 1\nbackend = "sim"\n\n[[cameras]]\nwindow = 2\nbackend = "picamera2"\n'
    code, lines = doctor_lines(config_for(tmp_path, locked_broker.port, extra=extra))
    assert code == 1
    assert line_of(lines, "camera 1").startswith("OK ")
    camera2 = line_of(lines, "camera 2")
    assert camera2.startswith("PROBLEM")
    assert "picamera2 cannot be imported" in camera2 and "apt install" in camera2, camera2


# ----- TLS, as the template configures it ------------------------------------------------------


def make_ca(directory: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key)."""
    directory.mkdir()
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = directory / "san.ext"
    ext.write_text("subjectAltName = IP:127.0.0.1\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr))
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-days", "2", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    return ca, cert, key


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[Mosquitto, Path]]:
    ca, cert, key = make_ca(tmp_path / "county-ca", "county CA")
    with Mosquitto(tmp_path / "tls-broker", extra=f"certfile {cert}\nkeyfile {key}") as mosq:
        yield mosq, ca


def test_tls_with_the_county_ca_is_ok(tmp_path: Path, tls_broker: tuple[Mosquitto, Path]) -> None:
    broker, ca = tls_broker
    code, lines = doctor_lines(station_config(tmp_path, broker.port, broker_extra=f'tls = true\nca_file = "{ca}"'))
    assert code == 0, lines
    assert "(MQTT 5, TLS)" in line_of(lines, "broker")


def test_tls_with_the_wrong_ca_names_ca_file_and_the_clock(tmp_path: Path, tls_broker: tuple[Mosquitto, Path]) -> None:
    broker, _ = tls_broker
    other, _, _ = make_ca(tmp_path / "other-ca", "someone else")
    config = station_config(tmp_path, broker.port, broker_extra=f'tls = true\nca_file = "{other}"')
    code, lines = doctor_lines(config)
    assert code == 1
    line = line_of(lines, "broker")
    assert "certificate was not accepted" in line and "ca_file" in line and "clock" in line, line


def test_tls_against_a_plain_port(tmp_path: Path, broker: Mosquitto) -> None:
    code, lines = doctor_lines(station_config(tmp_path, broker.port, broker_extra="tls = true"))
    assert code == 1
    line = line_of(lines, "broker")
    assert line.startswith("PROBLEM") and "8883" in line, line
