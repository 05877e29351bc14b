"""The control socket `yimen hall` talks to: hostile requests are answered, never crash it, and
the socket is the gateway user's and group's only."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path

import pytest

from edge.control import ControlSocket, request
from mqtt.commands import MAX_REQUEST_BYTES, Arg, Command

ECHO = Command("hall-echo", lambda args: {"window": args["window"]}, {"window": Arg("int", required=True, min=1)})


@pytest.fixture
def control(tmp_path: Path):
    served = ControlSocket(tmp_path / "control.sock", [ECHO])
    served.start()
    yield served
    served.stop()


def raw(path: Path, data: bytes) -> dict:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return json.loads(b"".join(iter(lambda: sock.recv(65536), b"")))


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\xff\xfe", "bad-request"),
        (b"[]", "bad-request"),
        (b'{"args": {}}', "bad-request"),
        (b'{"command": "restart"}', "unknown-command"),
        (b'{"command": "hall-echo", "args": {"window": 0}}', "bad-request"),
        (b'{"command": "hall-echo", "args": {"window": 1, "x": 2}}', "bad-request"),
        (b'{"command": "hall-echo"}' + b" " * MAX_REQUEST_BYTES, "too-large"),
    ],
)
def test_bad_requests_get_errors(control, data: bytes, code: str) -> None:
    assert raw(control.path, data)["error"]["code"] == code


def test_a_good_request_and_the_sockets_mode(control) -> None:
    assert request(control.path, "hall-echo", {"window": 3}) == {"ok": True, "result": {"window": 3}}
    assert stat.S_IMODE(control.path.stat().st_mode) == 0o660
    assert control.handled == 1
