"""A private Mosquitto for the demo, the tests and the benchmarks.

Never the machine's own broker on 1883: each instance gets a free loopback port, its own
config and data directory, so a test can stop, restart or misconfigure it at will.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path


class BrokerError(RuntimeError):
    pass


_handed_out: set[int] = set()  # ports free_port has given this process: never given twice


def free_port() -> int:
    """A loopback port nothing listens on now, and not one this process was given before (two
    asked for in a row, a broker's and its TLS listener's, could otherwise be the same)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


class Mosquitto:
    """One mosquitto process on 127.0.0.1:<port>; `extra` lines are appended to its config."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        persistence: bool = False,
        extra: str = "",
        allow_anonymous: bool = True,
    ) -> None:
        self.binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(self.binary).exists():
            raise BrokerError("mosquitto is not installed: run `apt-get install mosquitto` (see README)")
        self.workdir = workdir
        self._port_chosen = port is None  # ours to change if another process takes it first
        self.port = port or free_port()
        self.persistence = persistence
        self.extra = extra
        # False for a broker whose logins come from a plugin (dynamic security), as a county's does.
        self.allow_anonymous = allow_anonymous
        self.proc: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def conf_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    def write_config(self) -> None:
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "log_dest stderr",
            # Started as root, mosquitto would drop to the `mosquitto` user and lose access to
            # this private directory; it stays whoever started it.
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            "log_type error",
            "log_type warning",
            self.extra,
        ]
        self.conf_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0, tries: int = 3) -> Mosquitto:
        """Start and wait until it listens. A port we chose that another process bound between
        the choice and the start ("Address already in use") is chosen again, `tries` times."""
        self.write_config()
        log_path = self.workdir / "mosquitto.log"
        logged = log_path.stat().st_size if log_path.exists() else 0
        log = open(log_path, "ab")  # noqa: SIM115 - kept open for the process
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf_path)], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                taken = "Address already in use" in log_path.read_text(errors="replace")[logged:]
                if taken and self._port_chosen and tries > 1:
                    log.close()
                    self.port = free_port()
                    return self.start(timeout, tries - 1)
                raise BrokerError(f"mosquitto exited with {self.proc.returncode}; see {self.workdir}/mosquitto.log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on 127.0.0.1:{self.port} within {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
