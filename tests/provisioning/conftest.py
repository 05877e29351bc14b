"""A county broker with Mosquitto's dynamic-security plugin, and a registrar serving it.

Started per test on free loopback ports: a plain listener for the registrar and the console
(the county's own machine) and a TLS listener with a private CA for stations, whose chain
holds the CA as a county's must. Skipped, saying why, where the plugin or `mosquitto_ctrl`
(Debian's mosquitto-clients) is missing."""

from __future__ import annotations

import glob
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mqtt.broker import Mosquitto, free_port
from provisioning import registrar
from tests.conftest import COUNTY
from tests.support.tls import make_ca_and_server

ADMIN = ("admin", "admin-secret")


def plugin_path() -> str | None:
    found = sorted(
        glob.glob("/usr/lib/*/mosquitto_dynamic_security.so") + glob.glob("/usr/lib/mosquitto_dynamic_security.so")
    )
    return found[0] if found else None


def tls_listener(directory: Path, port: int, ca_in_chain: Path | None = None) -> str:
    """Mosquitto config lines for a TLS listener with a new private CA under `directory`; its
    certfile is the server certificate followed by `ca_in_chain` (default: its own CA)."""
    ca, cert, key = make_ca_and_server(directory)
    chain = directory / "chain.pem"
    chain.write_bytes(cert.read_bytes() + (ca_in_chain or ca).read_bytes())
    return f"listener {port} 127.0.0.1\ncertfile {chain}\nkeyfile {key}\n"


@dataclass
class County:
    broker: Mosquitto
    registrar: registrar.Registrar
    service: registrar.Service
    workdir: Path
    tls_port: int
    ca: Path

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
    tls_port = free_port()
    extra = f"plugin {plugin}\nplugin_opt_config_file {work / 'dynsec.json'}\n" + tls_listener(work / "tls", tls_port)
    broker = Mosquitto(work / "broker", allow_anonymous=False, extra=extra).start()
    try:
        registry = registrar.init(
            work / "registry.db",
            COUNTY,
            f"127.0.0.1:{broker.port}",
            *ADMIN,
            station_broker=f"127.0.0.1:{tls_port}",
            station_ca=work / "tls" / "ca.pem",
        )
        reg = registrar.Registrar(registry)
        service = registrar.Service(reg, sweep_s=0.5).start()
        try:
            yield County(broker, reg, service, work, tls_port, work / "tls" / "ca.pem")
        finally:
            service.stop()
            registry.close()
    finally:
        broker.stop()
