"""Every press a window unit saw acknowledged reaches the county: the real firmware under
MicroPython on a pty, pressing in a loop while the gateway process is stopped with SIGTERM 20
times and its disk fills up (a small tmpfs, filled to ENOSPC and freed again)."""

from __future__ import annotations

import contextlib
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, GatewayProcess, message_doc, station_config, wait_until
from tests.firmware import FIRMWARE
from tests.peripherals.window_unit.rig import Line, one_unit_station

RUNNER = ROOT / "tests" / "support" / "mpy_window_unit.py"
UID = "e6614103e7"
RESTARTS = 20
FULL_AT = 10  # the restart during which the disk is full


@contextlib.contextmanager
def small_disk(where: Path, size_mb: int = 8):
    """A tmpfs of its own, so filling it affects nothing else; skipped where mounting is not allowed."""
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Write until the file system says ENOSPC."""
    filler = disk / "filler"
    # Unbuffered, and the suppress outside the file: its close has nothing left to flush into a
    # full disk (a buffered close raised ENOSPC past the suppress).
    with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as fh:
        while True:
            fh.write(b"\0" * 65536)
    return filler


class MicroPythonUnit:
    """The firmware's Unit under the MicroPython unix port, on the line's pty."""

    def __init__(self, line: Line, directory: Path) -> None:
        self.report = directory / "unit.log"
        self.stop_file = directory / "stop-pressing"
        with open(self.report, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "micropython_unix", str(RUNNER), str(FIRMWARE), UID, "ticket:A", "150",
                 str(self.stop_file)],
                stdin=line.unit_fd, stdout=line.unit_fd, stderr=err,
            )  # fmt: skip

    def lines(self) -> list[list[str]]:
        return [line.split() for line in self.report.read_text().splitlines() if line]

    def acked(self) -> list[int]:
        return [int(w[1]) for w in self.lines() if w[0] == "ack"]

    def stop_pressing_and_drain(self, gw: GatewayProcess) -> None:
        self.stop_file.touch()

        def drained() -> bool:
            last = [w for w in self.lines() if w[0] == "queue"][-1]
            return last == ["queue", "0", "stopped"]

        wait_until(drained, 60, "the unit to have every press acknowledged")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.mark.timeout(900)
def test_every_acknowledged_press_reaches_the_county(tmp_path: Path, broker, subscriber) -> None:
    rng = random.Random(14)
    with small_disk(tmp_path / "disk") as disk:
        line = Line(tmp_path, "unit-w1")
        unit = MicroPythonUnit(line, tmp_path)
        config = station_config(tmp_path, broker.port, storage=disk / "state", extra=one_unit_station(line.path))
        gw = None
        try:
            for restart in range(RESTARTS):
                gw = GatewayProcess(config).start()
                wait_until(lambda gw=gw: gw.status()["gateway"].startswith("running"), 30, "the gateway running")
                if restart == FULL_AT:
                    sessions = gw.logs().count("online for window")
                    wait_until(lambda g=gw, n=sessions: g.logs().count("online for window") > n, 15, "a unit session")
                    filler = fill(disk)
                    # Presses meet the full disk once SQLite needs a new page: a WAL reuses its own file
                    # first, and the checkpoint that cannot grow the database fails quietly until the WAL
                    # outgrows its file (about a thousand pages of presses, some 200 presses at one WAL
                    # commit each: a minute here, several on a loaded machine).
                    wait_until(lambda g=gw: "nothing was recorded" in g.logs(), 420, "a press the full disk refused")
                    time.sleep(2)
                    assert gw.proc.poll() is None, "the gateway died of a full disk:\n" + gw.logs()[-3000:]
                    filler.unlink()
                time.sleep(rng.uniform(0.3, 2.0))  # SIGTERM at any moment of the press loop
                assert gw.stop() == 0, gw.logs()[-3000:]
            gw = GatewayProcess(config).start()
            unit.stop_pressing_and_drain(gw)
            status = gw.stop_and_drain()
        finally:
            if gw is not None and gw.proc is not None and gw.proc.poll() is None:
                gw.kill()
            unit.kill()
            line.close()
        subscriber.assert_complete(status["last_seq"])
        issued = [
            d["data"]
            for d in (message_doc(m) for m in subscriber.messages())
            if d["kind"] == "queue" and d["data"]["action"] == "issue" and d["data"]["source"] == UID
        ]
        acked = unit.acked()
        assert len(acked) > 2 * RESTARTS, "the unit pressed throughout"
        # A press is identified on the wire by (uid, n) but a ticket does not carry n: so count.
        # At least once: a press acknowledged is a ticket at the county; a gateway stopped between
        # commit and ACK may add a second ticket for the same press, never fewer.
        assert len({d["op"] for d in issued}) >= len(set(acked)), (
            f"{len(set(acked))} presses acknowledged, {len(issued)} tickets at the county"
        )
        logs = Path(config.with_suffix(".log")).read_text()
        assert "database or disk is full" in logs and "nothing was recorded" in logs, "presses met the full disk"
