"""The control socket `yimen hall` talks to: hostile requests are answered, never crash it, and
the socket is the gateway user's and group's only."""

from __future__ import annotations

import json
import socket
import stat
import threading
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


def test_a_trickling_client_does_not_hold_the_socket(control, monkeypatch) -> None:
    """One thread serves the socket: a client sending a byte just inside the idle time (a stuck
    script, a slowloris) is dropped READ_S after it connected, and the next request is answered."""
    monkeypatch.setattr("edge.control.READ_S", 1.0, raising=False)
    with socket.socket(socket.AF_UNIX) as slow:
        slow.connect(str(control.path))
        slow.sendall(b'{"command": ')
        stop = threading.Event()

        def trickle() -> None:
            while not stop.wait(0.2):
                try:
                    slow.sendall(b" ")
                except OSError:
                    return

        feeder = threading.Thread(target=trickle, daemon=True)
        feeder.start()
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(8)
                sock.connect(str(control.path))
                sock.sendall(b'{"command": "hall-echo", "args": {"window": 2}}')
                sock.shutdown(socket.SHUT_WR)
                assert json.loads(sock.recv(65536)) == {"ok": True, "result": {"window": 2}}
        finally:
            stop.set()
            feeder.join()
