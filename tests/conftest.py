"""Shared fixtures: a private Mosquitto per test, station configs, the gateway as a real process,
and a county subscriber in a separate process. Nothing here touches the machine's broker on
1883 or anything beyond loopback."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge import config as config_mod
from edge import status as status_mod
from edge.events import Event
from mqtt.broker import Mosquitto

ROOT = Path(__file__).resolve().parent.parent
COUNTY = "test-county"
STATION = "st-0001"


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll until predicate() is truthy; fail naming `what` if it never is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def station_config(
    directory: Path,
    port: int,
    *,
    storage: Path | None = None,
    broker_extra: str = "",
    extra: str = "",
    rate: float | None = None,
    keepalive: int = 4,
) -> Path:
    """Write a station config; `rate` switches the simulator on."""
    storage = storage or directory / "state"
    text = f"""[station]
id = "{STATION}"
county = "{COUNTY}"
name = "测试村便民服务站"

[broker]
host = "127.0.0.1"
port = {port}
keepalive_s = {keepalive}
reconnect_min_s = 0.1
reconnect_max_s = 1.0
{broker_extra}

[storage]
path = "{storage}"
max_mb = 64

[clock]
sync = "assume"

[telemetry]
interval_s = 3600
{extra}
"""
    if rate is not None:
        text += f"\n[simulate]\nevents_per_second = {rate}\nseed = 7\n"
    path = directory / "station.toml"
    path.write_text(text, encoding="utf-8")
    return path


class GatewayProcess:
    """`yimen run` as a real process, as systemd would run it."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.log = config.with_suffix(".log")
        self.proc: subprocess.Popen | None = None

    def start(self) -> GatewayProcess:
        _STARTED.append(self)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "run", "--config", str(self.config)],
                stdout=log,
                stderr=log,
                cwd=ROOT,
            )
        return self

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM once the gateway is up (as systemd would stop it); returns its exit code."""
        assert self.proc is not None
        wait_until(
            lambda: self.proc.poll() is not None or self.status()["gateway"].startswith("running"),
            15,
            "the gateway to be running",
        )
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop_and_drain(self) -> dict:
        """Stop cleanly, then run once more without the simulator until the outbox is empty,
        so that the county can be checked against a final, fixed last_seq. Returns the status."""
        assert self.stop() == 0
        quiet = self.config.with_name("quiet.toml")
        quiet.write_text(self.config.read_text().split("\n[simulate]")[0], encoding="utf-8")
        again = GatewayProcess(quiet).start()
        try:
            wait_until(lambda: again.status()["backlog"] == {"critical": 0, "normal": 0, "bulk": 0}, 60, "a drain")
            assert again.stop() == 0
        finally:
            if again.proc is not None and again.proc.poll() is None:
                again.kill()
        return again.status()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def status(self) -> dict:
        return status_mod.read(config_mod.load(self.config))

    def status_path(self) -> Path:
        return config_mod.load(self.config).storage.outbox_path

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def message_doc(message: dict) -> dict:
    """A line the county subscriber wrote, its JSON payload parsed."""
    return json.loads(base64.b64decode(message["payload"]))


class Subscriber:
    """The county: tests.support.subscriber in its own process, reading back what it wrote."""

    def __init__(self, port: int, out: Path) -> None:
        self.port = port
        self.out = out
        self.proc: subprocess.Popen | None = None

    def start(self) -> Subscriber:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.subscriber", "127.0.0.1", str(self.port), COUNTY, str(self.out)],
            cwd=ROOT,
        )
        wait_until(lambda: self.subscriptions() >= 1, 10, "the county subscriber to subscribe")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def lines(self) -> list[dict]:
        if not self.out.exists():
            return []
        complete = self.out.read_text().split("\n")[:-1]  # the last line may be half written
        return [json.loads(line) for line in complete if line]

    def subscriptions(self) -> int:
        return max((line["subscribed"] for line in self.lines() if "subscribed" in line), default=0)

    def messages(self, channel: str = "events") -> list[dict]:
        return [m for m in self.lines() if "topic" in m and f"/{channel}" in m["topic"]]

    def docs(self, channel: str = "events") -> list[dict]:
        """Every message on `channel`, its JSON payload parsed, in arrival order."""
        return [message_doc(m) for m in self.messages(channel)]

    def events(self) -> dict[int, list[bytes]]:
        """seq -> every copy received, as bytes."""
        out: dict[int, list[bytes]] = {}
        for msg in self.messages():
            payload = base64.b64decode(msg["payload"])
            out.setdefault(Event.from_bytes(payload).seq, []).append(payload)
        return out

    def assert_complete(self, last_seq: int, allow_missing: set[int] = frozenset()) -> dict[int, list[bytes]]:
        """Every seq 1..last_seq arrived; duplicates allowed, each byte-identical to the first."""
        events = self.events()
        missing = sorted(set(range(1, last_seq + 1)) - set(events) - set(allow_missing))
        assert not missing, f"county never received seqs {missing[:20]} (of {len(missing)} missing)"
        for seq, copies in events.items():
            assert all(c == copies[0] for c in copies), f"seq {seq}: re-sent bytes differ from the first send"
        return events


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "broker") as mosq:
        yield mosq


@pytest.fixture
def subscriber(tmp_path: Path, broker: Mosquitto) -> Iterator[Subscriber]:
    sub = Subscriber(broker.port, tmp_path / "county.jsonl").start()
    yield sub
    sub.stop()


@pytest.fixture
def gateways() -> list[GatewayProcess]:
    """A list for a test's gateways (every gateway a test starts is killed after it anyway)."""
    return []


_STARTED: list[GatewayProcess] = []


@pytest.fixture(autouse=True)
def _no_gateway_outlives_its_test() -> Iterator[None]:
    """A failing test must not leave a gateway running (and loading the machine) for the rest."""
    yield
    while _STARTED:
        gw = _STARTED.pop()
        if gw.proc is not None and gw.proc.poll() is None:
            gw.kill()


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("PYTHONPATH", str(ROOT))


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A private PostgreSQL server for this test worker (never the machine's own), and its DSN."""
    from tests.support.postgres import PostgresServer

    server = PostgresServer().start()
    try:
        yield server.dsn
    finally:
        server.stop()
