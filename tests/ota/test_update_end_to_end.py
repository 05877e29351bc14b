"""An over-the-air update end to end, as processes: version N runs as a real gateway under a
supervisor standing in for systemd (tests/support/supervisor.py: Restart=always, the update path
unit); the county publishes releases over MQTT with the product's rollout service.

N updates to N+1 and reports it, through a power cut while installing and one during the trial
(every process killed at once, then "booted" again); a release that never starts rolls back to N+1 by itself; a bad
signature, an older version, a wrong hash and a truncated chunk are refused and reported; the
outbox keeps every event across it all (the county holds every seq)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from centre.rollout import Rollouts
from edge import config as config_mod
from edge import status as status_mod
from mqtt.broker import Mosquitto
from mqtt.config import BrokerConfig
from ota.paths import read_json
from tests.conftest import COUNTY, ROOT, STATION, Subscriber, station_config, wait_until
from tests.ota.conftest import build_release, copy_release, install_version

# Three venvs built by pip and four releases: about 2 minutes alone, more on a loaded machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

HEALTH_S = 25


def update_events(sub: Subscriber) -> list[dict]:
    return [d["data"] for d in sub.docs("events") if d["kind"] == "update"]


def refusals(sub: Subscriber) -> set[str]:
    return {e.get("code") for e in update_events(sub) if e["state"] == "refused"}


def births(sub: Subscriber) -> list[str]:
    return [d.get("version") for d in sub.docs("status") if d.get("state") == "online"]


@pytest.fixture
def rollouts(tmp_path: Path, broker: Mosquitto) -> Iterator[Rollouts]:
    service = Rollouts(BrokerConfig(port=broker.port), COUNTY, tmp_path / "releases", tmp_path / "rollouts.json")
    service.start()
    wait_until(service.subscribed.is_set, 10, "the rollout service to subscribe")
    yield service
    service.stop()


def wait_state(rollouts: Rollouts, rid: str, states: set[str], timeout: float) -> dict:
    def entry() -> dict | None:
        roll = next(r for r in rollouts.snapshot()["rollouts"] if r["id"] == rid)
        st = roll["per_station"].get(STATION)
        return st if st is not None and st["state"] in states else None

    wait_until(entry, timeout, f"rollout {rid} to reach {states}: {rollouts.snapshot()}")
    return entry() or {}


def test_update_rollback_and_refusals_keep_every_event(
    tmp_path: Path, broker: Mosquitto, subscriber: Subscriber, rollouts: Rollouts, keys: tuple[Path, Path, Path]
) -> None:
    county_key, trusted, attacker_key = keys
    releases = tmp_path / "releases"
    n = build_release(tmp_path, releases, county_key, "5.0.0")
    n1 = build_release(tmp_path, releases, county_key, "5.1.0")
    build_release(tmp_path, releases, county_key, "5.2.0", sabotage=True)
    copy_release(n1, releases, "4.0.0", county_key)  # older
    copy_release(n1, releases, "5.0.9", attacker_key)  # signed by a key the station does not trust
    wrong_hash = copy_release(n1, releases, "5.0.1", county_key)
    truncated = copy_release(n1, releases, "5.0.2", county_key)

    root, state, work = tmp_path / "opt-yimen", tmp_path / "state", tmp_path / "update-work"
    root.mkdir()
    install_version(root, n, "5.0.0")
    config = station_config(
        tmp_path, broker.port, storage=state, rate=2, extra=f'[update]\nkeys = "{trusted}"\nkbps = 20000\n'
    )
    log = tmp_path / "supervisor.log"
    cmd = [sys.executable, "-m", "tests.support.supervisor", str(root), str(config), str(state), str(work), str(log),
           "--", "--state", str(state), "--keys", str(trusted), "--health-s", str(HEALTH_S)]  # fmt: skip

    def boot() -> subprocess.Popen:
        return subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)

    def power_cut(machine: subprocess.Popen) -> None:
        """Gateway, updater and supervisor die at once, mid-write, as in a power cut."""
        os.killpg(machine.pid, signal.SIGKILL)
        machine.wait()

    def phase() -> str | None:
        return (read_json(work / "breadcrumb.json") or {}).get("phase")

    supervisor = boot()
    try:
        wait_until(lambda: "5.0.0" in births(subscriber), 60, "version 5.0.0 to come online")

        # Refused at the offer, before a byte is fetched.
        for version, code in [("4.0.0", "not-newer"), ("5.0.9", "bad-signature")]:
            rid = rollouts.begin(version, [STATION], None, 60)
            got = wait_state(rollouts, rid, {"refused"}, 30)
            assert got["code"] == code, got
            wait_until(lambda c=code: c in refusals(subscriber), 30, f"the station to report {code}")

        # Refused during the download: the county's files are not what the signed manifest says.
        first = sorted((wrong_hash / "files").iterdir())[0]
        for rel, code in [(wrong_hash, "wrong-hash"), (truncated, "truncated-chunk")]:
            rid = rollouts.begin(rel.name.removeprefix("yimen-"), [STATION], None, 60)
            target = rel / "files" / first.name
            data = bytearray(target.read_bytes())
            if code == "wrong-hash":
                data[len(data) // 2] ^= 0xFF
                target.write_bytes(bytes(data))
            else:
                target.write_bytes(bytes(data[: len(data) // 3]))
            got = wait_state(rollouts, rid, {"refused"}, 60)
            assert got["code"] == code, got
        assert not (state / "updates" / "ready.json").exists(), "a refused release was handed to the updater"
        assert os.readlink(root / "current") == "versions/5.0.0"

        # N+1: downloaded, installed side by side, switched, healthy, reported; with a power cut
        # while its venv is being built, and another while it is on trial.
        rid = rollouts.begin("5.1.0", [STATION], None, 60)
        for cut_in in ("installing", "trial"):
            wait_until(lambda p=cut_in: phase() == p, 120, f"the updater to reach {cut_in}")
            power_cut(supervisor)
            supervisor = boot()
        wait_state(rollouts, rid, {"healthy"}, 240)
        wait_until(lambda: births(subscriber)[-1:] == ["5.1.0"], 30, "the station to come back as 5.1.0")
        assert os.readlink(root / "current") == "versions/5.1.0"
        assert (root / "versions" / "5.0.0").is_dir(), "the previous version must stay for a rollback"
        states = [e["state"] for e in update_events(subscriber) if e.get("version") == "5.1.0"]
        assert states[0] == "downloading" and {"downloaded", "installed", "healthy"} <= set(states), states

        # N+2 never starts: the updater switches back to 5.1.0 by itself and says why.
        rid = rollouts.begin("5.2.0", [STATION], None, 60)
        got = wait_state(rollouts, rid, {"rolled-back"}, 240 + HEALTH_S)
        assert "never reported on its health" in got["reason"], got
        assert os.readlink(root / "current") == "versions/5.1.0"
        assert not (root / "versions" / "5.2.0").exists()
        wait_until(lambda: births(subscriber)[-1:] == ["5.1.0"], 30, "5.1.0 back online after the rollback")
        assert "broken on purpose" in log.read_text(errors="replace")

        # Every event the station ever numbered reached the county, byte-identical.
        cfg = config_mod.load(config)

        def drained() -> dict | None:
            st = status_mod.read(cfg)
            return st if st["undelivered"] == 0 else None

        wait_until(drained, 60, "the outbox to drain")
        subscriber.assert_complete((drained() or {"last_seq": 0})["last_seq"])
    finally:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(60)
        print(log.read_text(errors="replace")[-6000:] if log.exists() else "")
    summary = json.dumps(rollouts.snapshot()["rollouts"], indent=1)[:3000]
    print(summary)
