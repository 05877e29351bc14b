"""Release keys travel inside the sealed enrolment reply, and a station's login may receive its own
release chunks and no other station's (checked at the broker with dynamic security)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mqtt import topics
from ota import release
from tests.conftest import COUNTY, STATION, GatewayProcess, wait_until
from tests.provisioning.conftest import County
from tests.provisioning.test_enrolment import OTHER, Probe, ask, bootstrap_config, claim, connection


def test_an_enrolled_station_trusts_the_countys_release_key(
    tmp_path: Path, county: County, gateways: list[GatewayProcess]
) -> None:
    pub = release.keygen(tmp_path / "release.key")
    with pytest.raises(ValueError):
        county.registrar.trust_release_key("ed25519:not-a-key")
    county.registrar.trust_release_key(pub.read_text())
    county.registrar.trust_release_key(pub.read_text())  # twice: kept once

    usb = tmp_path / "usb"
    usb.mkdir()
    shutil.copy(county.registrar.issue(STATION, tmp_path / "claims").file, usb / "yimen-provision.json")
    gw = GatewayProcess(bootstrap_config(tmp_path, usb)).start()
    gateways.append(gw)
    wait_until(lambda: connection(gw) == "connected", 30, "the new station to enrol and connect")
    stored = sorted((tmp_path / "state" / "identity" / "release-keys").glob("*.pem"))
    assert [p.read_text() for p in stored] == [pub.read_text()]
    assert gw.stop() == 0


def test_a_station_receives_only_its_own_release_chunks(tmp_path: Path, county: County) -> None:
    secret, _key = ask(claim(county, STATION, tmp_path), tmp_path / "pi")
    assert secret["release_keys"] == []
    login = secret["broker"]
    me = Probe(county.port, login["username"], login["password"], client_id=login["username"])
    assert me.subscribe(topics.ota_chunk_filter(COUNTY, STATION)) == 1
    assert me.subscribe(topics.ota_chunk_filter(COUNTY, OTHER)) == 0x87
    assert me.publish(topics.ota_want_topic(COUNTY, STATION)) < 0x80
    assert me.publish(topics.ota_chunk_topic(COUNTY, STATION, "r0123456789abcdef", 0, 0)) == 0x87, (
        "a station must not be able to feed itself chunks as if from the county"
    )
    me.close()
