"""An update over the air inside a booted Debian bookworm, under the real units.

Version N is installed by install.sh (with the county's release key) and enrols from a claim;
the county rolls out N+1, built by `yimen release build --platform host` (this machine's CPython
3.11 wheels, which Debian bookworm's Python 3.11 runs), with the product's rollout service. The
gateway fetches it over MQTT, yimen-update.path starts yimen-update.service, which installs it
beside N (extras and all: evdev is compiled in the container from the sdist the release
carries), switches, and has systemd restart the gateway on N+1, which reports healthy. N+2's
gateway raises at start: the updater switches back to N+1 by itself. Every seq the station
numbered is at the county.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from centre.rollout import Rollouts
from mqtt.config import BrokerConfig
from ota import release
from tests.conftest import COUNTY, STATION, wait_until
from tests.installed.test_systemd_station import (
    CONFIG,
    CONSOLE,
    IMAGE_CONFIG,
    Console,
    connected,
    on_boot_partition,
    status,
)
from tests.ota.conftest import build_release
from tests.ota.test_update_end_to_end import wait_state
from tests.provisioning.conftest import County
from tests.support import debroot

pytestmark = [pytest.mark.installed, pytest.mark.xdist_group("installed-amd64"), pytest.mark.timeout(1500)]

HEALTH_S = 40  # the unit's 180 s, shortened by a drop-in as an operator would


def journal(booted: debroot.Booted, unit: str) -> str:
    return booted.run("journalctl", "-u", unit, "--no-pager", "-o", "cat", check=False)


def test_an_update_and_a_rollback_under_systemd(
    tmp_path: Path, county: County, station: debroot.Booted, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = time.monotonic()
    monkeypatch.delenv("PYTHONPATH", raising=False)
    run = station.run
    key = tmp_path / "release-key" / "county-release.key"
    public = release.keygen(key)
    releases = tmp_path / "releases"
    build_release(tmp_path, releases, key, "0.2.0")
    build_release(tmp_path, releases, key, "0.3.0", sabotage=True)
    built = time.monotonic()

    shutil.copy(public, station.merged / "root/county-release.pem")
    run("bash", "/usr/src/yimen/deploy/install.sh", "--release-key", "/root/county-release.pem", timeout=900)
    assert run("readlink", "/opt/yimen/current").strip() == "versions/0.1.0"
    assert run("systemctl", "is-active", "yimen-update.path", check=False).strip() == "active"
    dropin = station.merged / "etc/systemd/system/yimen-update.service.d"
    dropin.mkdir(parents=True)
    (dropin / "health.conf").write_text(
        "[Service]\nExecStart=\nExecStart=/opt/yimen/yimen-update --state /var/lib/yimen "
        f"--keys /etc/yimen/release-keys --health-s {HEALTH_S}\n"
    )
    run("systemctl", "daemon-reload")
    (station.merged / CONFIG.lstrip("/")).write_text(IMAGE_CONFIG + "\n[update]\nkbps = 100000\n")
    issued = county.registrar.issue(STATION, tmp_path / "claims", name="测试村")
    (station.merged / "boot/firmware").mkdir(parents=True, exist_ok=True)
    on_boot_partition(issued.file, station.merged / "boot/firmware/yimen-provision.json")
    console = Console(county)
    rollouts = Rollouts(
        BrokerConfig(port=county.port, username=CONSOLE[0], password=CONSOLE[1]),
        COUNTY,
        releases,
        tmp_path / "rollouts.json",
    )
    rollouts.start()
    try:
        run("systemctl", "start", "yimen")
        wait_until(lambda: connected(station), 90, "version 0.1.0 to enrol and connect")
        wait_until(rollouts.subscribed.is_set, 10, "the rollout service to subscribe")
        installed = time.monotonic()

        # N+1: over MQTT, installed by the path-started root unit, restarted by systemd, healthy.
        rid = rollouts.begin("0.2.0", [STATION], None, 60)
        wait_state(rollouts, rid, {"healthy"}, 600)
        assert run("readlink", "/opt/yimen/current").strip() == "versions/0.2.0"
        assert run("ls", "/opt/yimen/versions").split() == ["0.1.0", "0.2.0"], "the previous version is kept"
        assert "yimen 0.2.0 starting" in journal(station, "yimen")
        assert "update to 0.2.0 healthy" in journal(station, "yimen-update")
        run("/opt/yimen/versions/0.2.0/bin/python", "-c", "import evdev, gpiod, zxingcpp")
        wait_until(lambda: connected(station), 60, "0.2.0 connected")
        updated = time.monotonic()

        # N+2 raises at start: systemd restarts it in vain, the updater switches back by itself.
        rid = rollouts.begin("0.3.0", [STATION], None, 60)
        got = wait_state(rollouts, rid, {"rolled-back"}, 600 + HEALTH_S)
        assert "never reported on its health" in got["reason"], got
        assert run("readlink", "/opt/yimen/current").strip() == "versions/0.2.0"
        assert run("ls", "/opt/yimen/versions").split() == ["0.1.0", "0.2.0"]
        assert "broken on purpose" in journal(station, "yimen")
        wait_until(lambda: connected(station), 90, "0.2.0 back after the rollback")
        rolled_back = time.monotonic()

        # Every seq the station numbered, across both versions and all the restarts, is at the county.
        wait_until(lambda: status(station).get("undelivered") == 0, 60, "the outbox to drain")
        last = status(station)["last_seq"]
        time.sleep(1)
        seqs = {json.loads(p)["seq"] for t, p in console.drain() if "/events/" in t}
        missing = sorted(set(range(1, last + 1)) - seqs)
        assert not missing, f"the county never received seqs {missing[:20]} of 1..{last}"
        print(
            f"timing: releases built {built - started:.0f} s, install+enrol {installed - built:.0f} s, "
            f"update to N+1 {updated - installed:.0f} s, rollback of N+2 {rolled_back - updated:.0f} s, "
            f"total {time.monotonic() - started:.0f} s; {last} events"
        )
    except BaseException:
        print(journal(station, "yimen-update")[-4000:])
        print(run("journalctl", "-u", "yimen", "--no-pager", "-n", "60", check=False))
        raise
    finally:
        rollouts.stop()
        console.close()
