"""A private NATS server with JetStream and its MQTT listener, for proving that a station and
the console need nothing Mosquitto-specific. Free loopback ports, its own store directory."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from mqtt.broker import BrokerError, free_port


class NatsServer:
    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("nats-server")
        if binary is None:
            raise BrokerError("nats-server is not installed: `apt-get install nats-server`")
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.mqtt_port = free_port()
        self.proc: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = 10.0) -> NatsServer:
        conf = self.workdir / "nats.conf"
        # MQTT needs JetStream (sessions, retained messages, QoS 1), and JetStream a server name.
        conf.write_text(
            f"""server_name: "yimen-test"
listen: "127.0.0.1:{self.port}"
jetstream {{ store_dir: "{self.workdir / "store"}" }}
mqtt {{ listen: "127.0.0.1:{self.mqtt_port}" }}
"""
        )
        log = open(self.workdir / "nats.log", "ab")  # noqa: SIM115 - kept open for the process
        self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"nats-server exited with {self.proc.returncode}; see {self.workdir}/nats.log")
            try:
                with socket.create_connection(("127.0.0.1", self.mqtt_port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"nats-server's MQTT listener did not open on 127.0.0.1:{self.mqtt_port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
