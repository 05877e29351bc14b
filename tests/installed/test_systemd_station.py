"""The station as a county installs it: install.sh in a booted Debian bookworm, the real unit.

systemd is PID 1 in `systemd-nspawn -b`; the container shares the host's network, so the
county (Mosquitto with the dynamic-security plugin and the registrar, started here on the
host's loopback) is reachable from inside. Everything the station does, it does through the
installed unit: it enrols from a claim on its (simulated) boot partition, takes and rolls back
config changes from the county, is killed by systemd's watchdog when it hangs, comes back
after exits 75 and 76, logs to the journal, and keeps its outbox and identity across an
upgrade with install.sh.
"""

from __future__ import annotations

import json
import queue
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from mqtt import topics
from provisioning.dynsec import DynSec, acl
from tests.conftest import COUNTY, STATION, wait_until
from tests.provisioning.conftest import ADMIN, County
from tests.support import debroot

pytestmark = [pytest.mark.installed, pytest.mark.xdist_group("installed-amd64"), pytest.mark.timeout(1500)]

CONFIG = "/etc/yimen/station.toml"
CONSOLE = ("test-console", "console-secret")
# What an SD card image ships: no identity, a claim is looked for on the boot partition.
IMAGE_CONFIG = """# The installer's file: read-only to the gateway (edge/configlayers.py)
[provisioning]
search = ["/boot/firmware/yimen-provision.json"]
retry_s = 1

[storage]
path = "/var/lib/yimen"
max_mb = 64

[telemetry]
interval_s = 3600

[simulate]
events_per_second = 2
seed = 7
"""


class Console:
    """The county's console on the county broker: sends commands, sees every station message."""

    def __init__(self, county: County) -> None:
        with DynSec("127.0.0.1", county.port, *ADMIN) as dynsec:
            tree = f"{topics.ROOT}/{COUNTY}/#"
            role = [acl("publishClientSend", tree), acl("subscribePattern", tree), acl("publishClientReceive", tree)]
            dynsec.create_role("test-console", role)
            dynsec.create_client(*CONSOLE, ["test-console"])
        self.messages: queue.SimpleQueue[paho.MQTTMessage] = queue.SimpleQueue()
        self.seen: list[tuple[str, bytes]] = []
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.username_pw_set(*CONSOLE)
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.connect("127.0.0.1", county.port)
        self.client.loop_start()
        wait_until(self.client.is_connected, 10, "the console to connect")
        self.client.subscribe(f"{topics.ROOT}/{COUNTY}/#", qos=1)
        time.sleep(0.3)

    def drain(self) -> list[tuple[str, bytes]]:
        while not self.messages.empty():
            msg = self.messages.get()
            self.seen.append((msg.topic, msg.payload))
        return self.seen

    def events(self, kind: str) -> list[dict]:
        suffix = f"/events/{kind}"
        return [json.loads(p)["data"] for t, p in self.drain() if t.endswith(suffix)]

    def command(self, name: str, args: dict) -> dict:
        """Without a response topic, so the station answers on its own cmd-reply topic (its ACL)."""
        reply = topics.reply_topic(COUNTY, STATION, name)
        before = len(self.drain())
        self.client.publish(topics.command_topic(COUNTY, STATION, name), json.dumps(args).encode(), qos=1)
        found: list[dict] = []

        def answered() -> bool:
            found.extend(json.loads(p) for t, p in self.drain()[before:] if t == reply)
            return bool(found)

        wait_until(answered, 20, f"the reply to {name}")
        return found[0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def station(tmp_path: Path) -> Iterator[debroot.Booted]:
    lower = debroot.root(debroot.host_arch())
    pip_cache = debroot.CACHE / f"pip-{debroot.host_arch()}"
    pip_cache.mkdir(parents=True, exist_ok=True)
    with debroot.overlay(lower, tmp_path / "container") as merged:
        options = debroot.give_host_settings(merged)
        debroot.copy_checkout(merged / "usr/src/yimen")
        options.append(f"--bind={pip_cache}:/root/.cache/pip")
        booted = debroot.Booted(merged, tmp_path / "nspawn.log", options)
        try:
            booted.wait_booted()
            yield booted
        finally:
            booted.stop()


def on_boot_partition(issued: Path, claim: Path) -> None:
    """As Raspberry Pi OS mounts its FAT boot partition: every file 755 root:root."""
    shutil.copy(issued, claim)
    claim.chmod(0o755)


def files_under(directory: Path) -> dict[str, bytes]:
    """Every file below `directory` (the identity holds a folder of release keys), by its path."""
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def unit(booted: debroot.Booted, prop: str) -> str:
    return booted.run("systemctl", "show", "yimen", "-p", prop, "--value").strip()


def status(booted: debroot.Booted) -> dict:
    out = booted.run("yimen", "status", "--config", CONFIG, "--json", check=False)
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        return {}


def connected(booted: debroot.Booted) -> bool:
    return unit(booted, "ActiveState") == "active" and status(booted).get("broker", {}).get("connection") == "connected"


def restarts(booted: debroot.Booted) -> int:
    return int(unit(booted, "NRestarts") or 0)


def test_installed_station_under_systemd(tmp_path: Path, county: County, station: debroot.Booted) -> None:
    run = station.run
    first = run("bash", "/usr/src/yimen/deploy/install.sh", timeout=900)
    assert "Next:" in first, first
    assert run("readlink", "/opt/yimen/current").strip() == "versions/0.1.0"

    # The image's config and a claim on the boot partition, as an installer leaves an SD card.
    (station.merged / "etc/yimen/station.toml").write_text(IMAGE_CONFIG)
    issued = county.registrar.issue(STATION, tmp_path / "claims", name="测试村")
    (station.merged / "boot/firmware").mkdir(parents=True, exist_ok=True)
    claim = station.merged / "boot/firmware/yimen-provision.json"
    on_boot_partition(issued.file, claim)
    console = Console(county)
    try:
        run("systemctl", "start", "yimen")
        wait_until(lambda: connected(station), 90, "the installed gateway to enrol and connect")

        # Under its hardening, as yimen, with the installer's file untouched.
        pid = unit(station, "MainPID")
        proc = run("cat", f"/proc/{pid}/status")
        uid = run("id", "-u", "yimen").strip()
        assert re.search(rf"^Uid:\s+{uid}\s", proc, re.MULTILINE), "the gateway runs as yimen"
        assert re.search(r"^NoNewPrivs:\s+1$", proc, re.MULTILINE), proc
        mounts = {
            f[4]: f[5].split(",") for f in (line.split() for line in run("cat", f"/proc/{pid}/mountinfo").splitlines())
        }
        assert "ro" in mounts["/"], "ProtectSystem=strict: everything is read-only to the gateway..."
        assert "rw" in mounts["/var/lib/yimen"], "...but its state directory"
        assert (station.merged / "etc/yimen/station.toml").read_text() == IMAGE_CONFIG
        local = station.merged / "var/lib/yimen/local.toml"
        assert f'id = "{STATION}"' in local.read_text()
        shown = run("yimen", "status", "--config", CONFIG)
        assert f"{local.relative_to(station.merged).as_posix()}" in shown and "station.id" in shown, shown
        # Enrolment restarted it the way systemd expects: an exit 75 and Restart=, not an exec.
        assert restarts(station) >= 1
        journal = run("journalctl", "-u", "yimen", "--no-pager", "-o", "cat")
        assert f"enrolled: station {STATION}" in journal, "the gateway's log reaches journald"
        assert "status=75" in run("journalctl", "-u", "yimen", "--no-pager"), "the restart is systemd's"

        # config-set: a good change applies and is confirmed...
        base = run("yimen", "status", "--config", CONFIG)  # the gateway is the one answering, below
        assert base
        effective = console.command("config-get", {})["result"]["toml"]
        good = effective.replace("interval_s = 3600", "interval_s = 1800")
        assert console.command("config-set", {"toml": good})["ok"] is True
        wait_until(lambda: {"result": "applied"} in console.events("config"), 60, "the config change confirmed")
        assert "interval_s = 1800" in local.read_text()
        # ...and one that cannot reach the county is rolled back by the gateway itself.
        bad = good.replace(f"port = {county.tls_port}", "port = 9")
        assert bad != good
        assert console.command("config-set", {"toml": bad, "confirm_s": 5})["ok"] is True
        wait_until(
            lambda: any(e.get("result") == "rolled-back" for e in console.events("config")), 90, "the rollback event"
        )
        wait_until(lambda: connected(station), 60, "the gateway back on the old config")
        assert "interval_s = 1800" in local.read_text() and "port = 9" not in local.read_text()

        # Exit 75 (the `restart` command) and exit 76: systemd starts the gateway again.
        before = restarts(station)
        assert console.command("restart", {})["ok"] is True
        wait_until(lambda: restarts(station) > before and connected(station), 60, "a restart after exit 75")
        # Exit 76: revoked and given a new claim, the gateway stops to enrol again, then exits 76.
        county.registrar.revoke(STATION)
        on_boot_partition(county.registrar.reenrol(STATION, tmp_path / "claims").file, claim)
        wait_until(
            lambda: "status=76/PROTOCOL" in run("journalctl", "-u", "yimen", "--no-pager") and connected(station),
            120,
            "re-enrolment, exit 76 and a restart by systemd",
        )
        dropin = station.merged / "etc/systemd/system/yimen.service.d"
        dropin.mkdir(parents=True, exist_ok=True)

        # A hung gateway: its outbox commit thread wedged, the watchdog feed stops, systemd kills it.
        (dropin / "wedge.conf").write_text(
            "[Service]\nWatchdogSec=6\nExecStart=\n"
            "ExecStart=/opt/yimen/current/bin/python /usr/src/yimen/tests/support/wedgeable_gateway.py "
            f"run --config {CONFIG}\n"
        )
        run("systemctl", "daemon-reload")
        run("systemctl", "restart", "yimen")
        wait_until(lambda: connected(station), 60, "the wedgeable gateway to connect")
        wedged = unit(station, "MainPID")
        before = restarts(station)
        run("systemctl", "kill", "--kill-whom=main", "--signal=SIGUSR1", "yimen")
        wait_until(
            lambda: restarts(station) > before and unit(station, "MainPID") not in ("0", wedged),
            60,
            "the watchdog kill",
        )
        assert "Watchdog timeout" in run("journalctl", "-u", "yimen", "--no-pager")
        (dropin / "wedge.conf").unlink()
        run("systemctl", "daemon-reload")
        run("systemctl", "restart", "yimen")
        wait_until(lambda: connected(station), 60, "the gateway back after the watchdog")

        # The upgrade: a new version with install.sh; identity, station file and outbox stay.
        identity = files_under(station.merged / "var/lib/yimen/identity")
        local_before = local.read_bytes()
        seq_before = status(station)["last_seq"]
        init = station.merged / "usr/src/yimen/edge/__init__.py"
        init.write_text(init.read_text().replace('__version__ = "0.1.0"', '__version__ = "0.1.1"'))
        second = run("bash", "/usr/src/yimen/deploy/install.sh", timeout=900)
        assert "Next:" not in second, second
        assert run("readlink", "/opt/yimen/current").strip() == "versions/0.1.1"
        assert run("ls", "/opt/yimen/versions").split() == ["0.1.0", "0.1.1"], "the previous version is kept"
        wait_until(lambda: connected(station), 60, "the upgraded gateway to reconnect")
        assert "yimen 0.1.1 starting" in run("journalctl", "-u", "yimen", "--no-pager", "-o", "cat")
        assert files_under(station.merged / "var/lib/yimen/identity") == identity
        assert local.read_bytes() == local_before
        wait_until(lambda: status(station)["last_seq"] > seq_before, 30, "the outbox to go on numbering")
    except BaseException:
        print(run("journalctl", "-u", "yimen", "--no-pager", "-n", "80", check=False))
        raise
    finally:
        console.close()
