"""The console as a real process (`yimen centre`), and a fleet of simulated stations beside it.

The console lets nobody in without a login: each console here gets an admin made with the
real command (`yimen centre user add`) and the test's HTTP client logs in as it, as a person would.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import urllib.error
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from centre.client import ConsoleClient
from centre.config import StoreConfig
from centre.fleet import Fleet
from centre.webstore import WebStore
from mqtt.broker import free_port
from tests.conftest import COUNTY, ROOT, wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class ConsoleProcess:
    def __init__(self, directory: Path, port: int, *, protocol: str = "5", extra: str = "") -> None:
        self.directory = directory
        self.web_port = free_port()
        self.config = directory / "centre.toml"
        self.config.write_text(
            f"""[centre]
county = "{COUNTY}"
name = "测试县"

[broker]
port = {port}
protocol = "{protocol}"
keepalive_s = 5
reconnect_min_s = 0.1
reconnect_max_s = 1.0

[ingest]
gap_grace_s = 1
replay_retry_s = 2

[web]
port = {self.web_port}

[media]
dir = "media"
{extra}
""",
            encoding="utf-8",
        )
        self.media = directory / "media"
        self.log = directory / "centre.log"
        self.proc: subprocess.Popen | None = None
        self.admin = ("admin", "admin-password-1")
        self.http = ConsoleClient(self.url)
        # The admin the test logs in as (consoles sharing one store share it too). Made here, not
        # in start(), so that start() binds the port soon after free_port() chose it.
        self.user("add", self.admin[0], "--role", "admin", password=self.admin[1], exists_ok=True)

    def user(self, *args: str, password: str | None = None, exists_ok: bool = False) -> subprocess.CompletedProcess:
        """`yimen centre user ...` on this console's store; a password goes in on stdin."""
        command = [sys.executable, "-m", "edge.cli", "centre", "--config", str(self.config), "user", *args]
        if password is not None:
            command.append("--password-stdin")
        done = subprocess.run(command, input=password, capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert done.returncode == 0 or (exists_ok and "exists already" in done.stderr), done.stderr
        return done

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> ConsoleProcess:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "centre", "--config", str(self.config)],
                stdout=log,
                stderr=log,
                cwd=ROOT,
            )
        wait_until(self._logged_in, 15, f"the console to serve; log: {self.log}")
        wait_until(lambda: self.get("/api/metrics")["ingest"]["subscribed"], 15, "the console to subscribe")
        return self

    def _logged_in(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
        try:
            self.http.login(*self.admin)
        except (urllib.error.URLError, ConnectionError):
            return False
        return True

    def get(self, path: str) -> Any:
        return self.http.get(path)

    def post(self, path: str, doc: dict[str, Any] | None = None) -> Any:
        return self.http.post(path, doc)

    def station(self, sid: str) -> dict[str, Any] | None:
        try:
            return self.get(f"/api/station/{sid}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(15)


@pytest.fixture
def console_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[ConsoleProcess] = []

    def make(port: int, name: str = "console", **kwargs: Any) -> ConsoleProcess:
        directory = tmp_path / name
        directory.mkdir(exist_ok=True)
        console = ConsoleProcess(directory, port, **kwargs)
        started.append(console)
        return console

    yield make
    for console in started:
        if console.proc is not None and console.proc.poll() is None:
            console.proc.kill()
            console.proc.wait()


@pytest.fixture
def fleet_factory() -> Iterator[Any]:
    fleets: list[Fleet] = []

    def make(port: int, ids: list[str], **kwargs: Any) -> Fleet:
        fleet = Fleet("127.0.0.1", port, COUNTY, ids, **kwargs).start()
        fleets.append(fleet)
        wait_until(lambda: fleet.connected() == len(ids), 10, "the simulated stations to connect")
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WebStore]:
    """The web side's store connection, on each engine (PostgreSQL: a schema of its own)."""
    if request.param == "sqlite":
        store = WebStore.open(StoreConfig(tmp_path / "centre.db"))
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        store = WebStore.open(StoreConfig(tmp_path / "x.db", dsn=dsn, schema=f"yimen_test_{uuid.uuid4().hex[:12]}"))
    yield store
    store.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's headless Chromium, driven by Playwright (never a downloaded browser build)."""
    if not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed (./dev test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()
