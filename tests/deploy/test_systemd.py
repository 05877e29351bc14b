"""The gateway under systemd's eyes: READY=1, WATCHDOG=1 only while healthy, journal-ready logs.

systemd itself does not run in this container; the test owns the notify socket that systemd
would own and runs the real gateway process with the environment systemd would give it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqtt.broker import Mosquitto
from tests.conftest import ROOT, station_config, wait_until


class NotifySocket:
    """The datagram socket systemd listens on; collects what the gateway says."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        """Every message received so far, oldest first (a message may hold several lines)."""
        while True:
            try:
                self.messages.extend(self.sock.recv(4096).decode().splitlines())
            except TimeoutError:
                return self.messages

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


def _start(config: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.support.wedgeable_gateway", "run", "--config", str(config)],
            env={**os.environ, **env},
            cwd=ROOT,
            stdout=out,
            stderr=out,
        )


def test_ready_then_watchdog_while_healthy_and_silence_once_wedged(
    tmp_path: Path, broker: Mosquitto, notify_socket: NotifySocket
) -> None:
    config = station_config(tmp_path, broker.port)
    # WatchdogSec=2: keep-alives every 0.5 s, the commit thread must answer within 1 s.
    env = {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "2000000"}
    proc = _start(config, env, tmp_path / "gateway.log")
    try:
        wait_until(lambda: "READY=1" in notify_socket.drain(), 20, "READY=1 from the gateway")
        ready_at = notify_socket.messages.index("READY=1")
        wait_until(
            lambda: notify_socket.drain()[ready_at:].count("WATCHDOG=1") >= 3, 20, "periodic WATCHDOG=1 after READY=1"
        )
        assert "WATCHDOG=1" not in notify_socket.messages[:ready_at], "keep-alives must not precede READY=1"

        proc.send_signal(signal.SIGUSR1)  # the commit thread is now stuck inside a commit
        wait_until(
            lambda: any(m.startswith("STATUS=unhealthy: the outbox commit thread") for m in notify_socket.drain()),
            20,
            "the gateway to report itself unhealthy",
        )
        said = len(notify_socket.messages)
        time.sleep(2.0)  # a whole WatchdogSec: systemd would now kill it
        assert "WATCHDOG=1" not in notify_socket.drain()[said:], "a wedged gateway still claimed to be alive"
        assert proc.poll() is None, "the gateway should hang (systemd's watchdog ends it), not exit"
    finally:
        proc.kill()
        proc.wait()
    assert "unhealthy: the outbox commit thread has not answered" in (tmp_path / "gateway.log").read_text()


def test_clean_stop_says_stopping_and_logs_suit_the_journal(
    tmp_path: Path, broker: Mosquitto, notify_socket: NotifySocket
) -> None:
    """Under systemd stderr is the journal's stream: lines are `<N>name: message`, no timestamp
    (journald stamps them), and the priority lets `journalctl -p warning` find the problems."""
    config = station_config(tmp_path, broker.port)
    log = tmp_path / "gateway.log"
    log.touch()
    st = log.stat()
    env = {"NOTIFY_SOCKET": str(notify_socket.path), "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    proc = _start(config, env, log)
    try:
        wait_until(lambda: "READY=1" in notify_socket.drain(), 20, "READY=1 from the gateway")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "STOPPING=1" in notify_socket.drain()
    assert "WATCHDOG=1" not in notify_socket.messages, "no keep-alives unless systemd asked for them"
    lines = log.read_text().splitlines()
    assert any(line.startswith("<6>yimen.app: yimen ") and "starting" in line for line in lines), lines
    assert all(line.startswith("<") for line in lines), lines
