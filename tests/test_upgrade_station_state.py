"""An update from the last build that kept the station's state in `station.db` (its own file,
with a journal) to this one, which keeps it in outbox.db: the real previous build runs a
simulated station, then this build starts on the same storage. The day goes on: the state is
taken in once, ticket numbers continue, every station event's `op` follows on by one, and the
county holds every seq."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, GatewayProcess, message_doc, station_config, wait_until

PREVIOUS = "9d578cb"  # main before the state moved into outbox.db
STATION_KINDS = ("queue", "rating", "clerk", "limit")


def previous_build(into: Path) -> Path:
    """The previous build's tree, from this clone's history."""
    known = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{PREVIOUS}^{{commit}}"], capture_output=True)
    if known.returncode != 0:
        pytest.skip(f"revision {PREVIOUS} is not in this clone (a shallow clone?): cannot run the previous build")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", PREVIOUS], capture_output=True, check=True).stdout
    into.mkdir()
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)  # our own history: trusted
    return into


def test_the_previous_builds_station_state_is_taken_in(tmp_path: Path, broker, subscriber) -> None:
    old = previous_build(tmp_path / "previous")
    config = station_config(tmp_path, broker.port, rate=20)
    storage = tmp_path / "state"
    with open(tmp_path / "previous.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
            stdout=log,
            stderr=log,
            cwd=old,
            env={**os.environ, "PYTHONPATH": str(old)},
        )
    try:
        wait_until(lambda: (storage / "station.db").exists() and GatewayProcess(config).status()["last_seq"] > 60, 60,
                   "the previous build to record some actions")  # fmt: skip
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, (tmp_path / "previous.log").read_text()[-3000:]
    before = GatewayProcess(config).status()["last_seq"]

    gw = GatewayProcess(config).start()
    wait_until(lambda: gw.status()["last_seq"] > before + 60, 60, "this build to go on")
    assert "taking in" in gw.logs()
    assert not (storage / "station.db").exists() and (storage / "station.db.taken-in").exists()
    last = gw.stop_and_drain()["last_seq"]
    wait_until(lambda: last in subscriber.events(), 30, "the last event at the county")
    subscriber.assert_complete(last)

    docs = sorted((message_doc(m) for m in subscriber.messages()), key=lambda d: d["seq"])
    station = {d["seq"]: d for d in docs if d["kind"] in STATION_KINDS}
    ops = [d["data"]["op"] for _, d in sorted(station.items())]
    assert ops == list(range(1, len(ops) + 1)), "op follows on by one across the update"
    assert any(seq > before for seq in station), "this build recorded station actions"
    tickets = [
        d["data"]["ticket_id"] for d in station.values() if d["kind"] == "queue" and d["data"]["action"] == "issue"
    ]
    assert len(tickets) == len(set(tickets)), "no ticket number issued twice in the day"
    assert not [d for d in docs if d["kind"] == "incident"], json.dumps([d for d in docs if d["kind"] == "incident"])
