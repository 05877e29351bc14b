"""The station's platform: install.sh in a Debian bookworm arm64 root, run by qemu-aarch64.

Raspberry Pi OS Lite is Debian bookworm for arm64 with the Pi's own kernel and firmware on
top; what this proves is the userland a station's software meets there: install.sh installs
every extra from aarch64 wheels (evdev, which has none, compiles with the Pi's gcc), and the
installed `yimen doctor` and a short `yimen run` of a simulated station work, delivering to
a broker on the host. Emulated Python is about ten times slower: the test does only that.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mqtt.broker import Mosquitto
from tests.support import debroot

pytestmark = [pytest.mark.installed, pytest.mark.xdist_group("installed-arm64"), pytest.mark.timeout(2400)]

CONFIG = """[station]
id = "st-arm64"
county = "test-county"

[broker]
host = "127.0.0.1"
port = {port}
reconnect_min_s = 0.5

[storage]
path = "/var/lib/yimen"
max_mb = 64

[clock]
sync = "assume"

[telemetry]
interval_s = 3600

[simulate]
events_per_second = 5
seed = 7
"""
# Every extra's compiled part, imported for real on the emulated aarch64 CPU.
IMPORTS = (
    "import platform, evdev, gpiod, zxingcpp, cryptography.hazmat.bindings._rust, PIL._imaging;"
    "print(platform.machine())"
)


def test_install_and_run_on_arm64(tmp_path: Path) -> None:
    lower = debroot.root("arm64")
    pip_cache = debroot.CACHE / "pip-arm64"
    pip_cache.mkdir(parents=True, exist_ok=True)
    with debroot.overlay(lower, tmp_path / "arm64") as merged, Mosquitto(tmp_path / "broker") as broker:
        options = (*debroot.give_host_settings(merged), f"--bind={pip_cache}:/root/.cache/pip")
        debroot.copy_checkout(merged / "usr/src/yimen")

        def run(*cmd: str, timeout: float = 600) -> str:
            result = debroot.run_in(merged, *cmd, options=options, timeout=timeout)
            assert result.returncode == 0, (
                f"{' '.join(cmd)}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
            return result.stdout

        assert run("uname", "-m").strip() == "aarch64"
        out = run("bash", "/usr/src/yimen/deploy/install.sh", timeout=1800)
        assert "installing yimen 0.1.0 with pi,qr" in out, out
        assert run("/opt/yimen/current/bin/python", "-c", IMPORTS).strip() == "aarch64"
        wheels = run("sh", "-c", "cat /opt/yimen/current/lib/python3.11/site-packages/*.dist-info/WHEEL")
        assert "manylinux" in wheels and "aarch64" in wheels, "binary wheels for aarch64, not x86 ones"

        (merged / "etc/yimen/station.toml").write_text(CONFIG.format(port=broker.port))
        doctor = debroot.run_in(merged, "yimen", "doctor", "--config", "/etc/yimen/station.toml", options=options)
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        # As the unit runs it: user yimen, a while, then SIGTERM; a clean stop is exit 0.
        gateway = (
            "setpriv --reuid=yimen --regid=yimen --init-groups "
            "timeout --preserve-status -s TERM 45 yimen run --config /etc/yimen/station.toml"
        )
        ran = debroot.run_in(merged, "sh", "-c", gateway, options=options, timeout=300)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        status = json.loads(run("yimen", "status", "--config", "/etc/yimen/station.toml", "--json"))
        assert status["last_seq"] > 0 and status["last_delivery"], status
