"""A county broker with Mosquitto's dynamic-security plugin, and a registrar serving it.

Started per test on a free loopback port; skipped, saying why, where the plugin or
`mosquitto_ctrl` (Debian's mosquitto-clients) is missing."""

from __future__ import annotations

import glob
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mqtt.broker import Mosquitto
from provisioning import registrar
from tests.conftest import COUNTY

ADMIN = ("admin", "admin-secret")


def plugin_path() -> str | None:
    found = sorted(
        glob.glob("/usr/lib/*/mosquitto_dynamic_security.so") + glob.glob("/usr/lib/mosquitto_dynamic_security.so")
    )
    return found[0] if found else None


@dataclass
class County:
    broker: Mosquitto
    registrar: registrar.Registrar
    service: registrar.Service
    workdir: Path

    @property
    def port(self) -> int:
        return self.broker.port


@pytest.fixture
def county(tmp_path: Path) -> Iterator[County]:
    plugin, ctrl = plugin_path(), shutil.which("mosquitto_ctrl")
    if plugin is None:
        pytest.skip("mosquitto_dynamic_security.so not found under /usr/lib: install Debian's mosquitto >= 2.0")
    if ctrl is None:
        pytest.skip("mosquitto_ctrl not found: Debian 12 ships it in mosquitto (./dev also tries mosquitto-clients)")
    work = tmp_path / "county"
    work.mkdir()
    subprocess.run([ctrl, "dynsec", "init", str(work / "dynsec.json"), *ADMIN], check=True, capture_output=True)
    extra = f"plugin {plugin}\nplugin_opt_config_file {work / 'dynsec.json'}"
    broker = Mosquitto(work / "broker", allow_anonymous=False, extra=extra).start()
    try:
        registry = registrar.init(work / "registry.db", COUNTY, f"127.0.0.1:{broker.port}", *ADMIN)
        reg = registrar.Registrar(registry)
        service = registrar.Service(reg).start()
        try:
            yield County(broker, reg, service, work)
        finally:
            service.stop()
            registry.close()
    finally:
        broker.stop()
