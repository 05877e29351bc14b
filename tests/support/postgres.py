"""A private PostgreSQL server for the tests: Debian's package, `initdb` into a temporary
directory, a free loopback port, a Unix socket in that directory. The tests never use the
machine's own server, so they run (and never skip) wherever `./dev` prepared the machine.

PostgreSQL refuses to run as root, so where the tests run as root the cluster is made and run as
the `postgres` system user that Debian's package creates.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from mqtt.broker import free_port


def _bin_dir() -> Path:
    """Debian keeps the server's programs under /usr/lib/postgresql/<major>/bin, off PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if not found:
        raise RuntimeError("PostgreSQL's initdb is not installed: run ./dev test, which installs Debian's postgresql")
    return Path(found[-1]).parent


class PostgresServer:
    """One postgres process owning a fresh cluster; `dsn` reaches its `postgres` database over TCP."""

    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.dir = Path(tempfile.mkdtemp(prefix="yimen-pg-"))
        self.port = free_port()
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self._user = None if os.getuid() != 0 else pwd.getpwnam("postgres")

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        kwargs = {}
        if self._user is not None:
            kwargs = {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}
        return subprocess.run(args, check=True, capture_output=True, text=True, **kwargs)

    def start(self) -> PostgresServer:
        if self._user is not None:
            os.chown(self.dir, self._user.pw_uid, self._user.pw_gid)
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            "start",
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.dsn, connect_timeout=2).close()
                return
            except psycopg.OperationalError as err:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"private PostgreSQL gave no answer on {self.port}; see {self.log}") from err
                time.sleep(0.1)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
