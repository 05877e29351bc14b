"""The enrolment protocol, the registry's claims and the station's claim search, without a broker."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from edge import config as config_mod
from edge.configfile import ConfigError
from provisioning import enrol, inventory, protocol, qr
from provisioning.config import ProvisioningConfig, needs_enrolment
from provisioning.registry import Registry
from tests.support.tls import make_ca_and_server

CLAIM = protocol.ProvisioningFile(
    county="hengyang",
    station="hy-0001",
    claim="0123456789abcdef",
    token="tok-" + "x" * 20,
    expires=time.time() + 3600,
    host="127.0.0.1",
    port=8883,
    ca="A" * 43 + "=",
)


def test_a_sealed_reply_opens_only_with_the_right_key_and_request() -> None:
    key, thief = protocol.new_key(), protocol.new_key()
    reply = protocol.reply_ok("ab" * 16, protocol.public_b64(key), {"broker": {"password": "s3cret"}})
    assert b"s3cret" not in reply
    assert protocol.open_reply(reply, key)["broker"]["password"] == "s3cret"
    with pytest.raises(protocol.ProtocolError, match="not sealed to this station's key"):
        protocol.open_reply(reply, thief)
    moved = json.loads(reply)
    moved["request"] = "cd" * 16  # a sealed box replayed as the answer to another request
    with pytest.raises(protocol.ProtocolError, match="not sealed"):
        protocol.open_reply(json.dumps(moved).encode(), key)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not UTF-8 JSON"),
        (b'{"v": 2}', "version 2"),
        (json.dumps({**json.loads(CLAIM.to_bytes()), "station": "HY 1"}).encode(), "'station'"),
        (json.dumps({**json.loads(CLAIM.to_bytes()), "port": "1883"}).encode(), "'port' missing or not a int"),
        (json.dumps({**json.loads(CLAIM.to_bytes()), "port": 70000}).encode(), "out of range"),
        (json.dumps({**json.loads(CLAIM.to_bytes()), "host": "h" * 300}).encode(), "out of range"),
        (json.dumps({**json.loads(CLAIM.to_bytes()), "ca": "AAAA"}).encode(), "ca must be base64 of 32 bytes"),
        (json.dumps({**json.loads(CLAIM.to_bytes()), "claim": "../../#"}).encode(), "'claim'"),
        (json.dumps({k: v for k, v in json.loads(CLAIM.to_bytes()).items() if k != "ca"}).encode(), "'ca' missing"),
    ],
)
def test_a_bad_provisioning_file_says_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(protocol.ProtocolError, match=message):
        protocol.ProvisioningFile.from_bytes(data)


def test_a_claim_is_consumed_once(tmp_path: Path) -> None:
    """By one station key, which may ask again until that station is heard from online."""
    reg = Registry(tmp_path / "r.db", create=True)
    reg.add_token("hy-0001", "", "t1", time.time() + 60, "00000000000000a1")
    assert reg.claim("t1", time.time(), "key-a").code == "ok"
    assert reg.claim("t1", time.time(), "key-b").code == "token-used", "another key never"
    assert reg.claim("t1", time.time(), "key-a").code == "ok", "the same key again: its power went"
    assert reg.confirm("hy-0001") == 1  # heard from online under its own login
    assert reg.claim("t1", time.time(), "key-a").code == "token-used", "confirmed: spent for good"
    reg.unclaim("t1")  # the county's side failed: the claim may be tried again
    assert reg.claim("t1", time.time(), "key-a").code == "ok"
    reg.add_token("hy-0002", "", "t2", time.time() + 60, "00000000000000a2")
    assert reg.claim("t2", time.time() + 120, "key-a").code == "token-expired"
    reg.add_token("hy-0002", "", "t3", time.time() + 60, "00000000000000a3")
    assert reg.claim("t2", time.time(), "key-a").code == "token-void"
    assert reg.claim("nope", time.time(), "key-a").code == "token-unknown"
    assert (tmp_path / "r.db").stat().st_mode & 0o077 == 0


def test_a_station_finds_its_claim_on_a_stick_or_as_a_qr_code_and_skips_used_ones(tmp_path: Path) -> None:
    identity = tmp_path / "identity"
    identity.mkdir()
    stick = tmp_path / "usb"
    stick.mkdir()
    prov = ProvisioningConfig(search=(str(stick / "yimen-provision.json"),))
    assert enrol.find_claim(prov, identity) is None
    (stick / "yimen-provision.json").write_bytes(CLAIM.to_bytes())
    assert enrol.find_claim(prov, identity).claim == CLAIM
    enrol._remember(identity, CLAIM.token, "refused token-used")
    assert enrol.find_claim(prov, identity) is None, "a claim refused once is not tried again"

    if qr.decoder_missing():
        pytest.skip(qr.decoder_missing())
    other = protocol.ProvisioningFile(**{**CLAIM.__dict__, "token": "tok-" + "y" * 20})
    png = tmp_path / "claim.png"
    qr.write_png(other.to_bytes(), png)
    frame = io.BytesIO()
    with Image.open(png) as img:  # what a camera sees: grey, scaled, JPEG at the camera's quality
        img.convert("RGB").resize((480, 480)).save(frame, "JPEG", quality=60)
    found = enrol.find_claim(prov, identity, frames=lambda: [frame.getvalue()])
    assert found is not None and found.claim == other and "camera" in found.where


def test_enrolment_rewrites_only_station_and_broker(tmp_path: Path) -> None:
    path = tmp_path / "yimen.toml"
    path.write_text(
        f'[provisioning]\nsearch = ["x.json"]\n\n[storage]\npath = "{tmp_path / "state"}"\n\n[clock]\nsync = "assume"\n'
    )
    cfg = enrol.load(path)
    ca, _cert, _key = make_ca_and_server(tmp_path / "tls")  # what the pinned enrolment connection kept
    enrol.county_ca_path(enrol.identity_dir(cfg)).write_bytes(ca.read_bytes())
    secret = {
        "station": {"id": "hy-0001", "county": "hengyang", "name": "新桥村"},
        "broker": {"host": "127.0.0.1", "port": 1883, "username": "yimen-hengyang-hy-0001", "password": "pw"},
    }
    enrol.write_identity(path, cfg, secret, "tok")
    enrol.write_identity(path, enrol.load(path), {**secret, "station": {**secret["station"], "name": "b"}}, "tok2")
    installer = path.read_text()
    text = (tmp_path / "state" / "local.toml").read_text()
    assert text.count("[station]") == 1 and text.count("[broker]") == 1 and "[provisioning]" not in text
    loaded = config_mod.load(path)
    assert loaded.station.name == "b" and loaded.broker.password == "pw" and "pw" not in text
    assert "[station]" not in installer, "the installer's file is never written"
    assert loaded.broker.tls and loaded.broker.ca_file == enrol.county_ca_path(enrol.identity_dir(cfg))


def test_a_bootstrap_config_is_checked_before_enrolment(tmp_path: Path) -> None:
    path = tmp_path / "yimen.toml"
    path.write_text(f'[provisioning]\nserch = []\n[storage]\npath = "{tmp_path}"\n')
    with pytest.raises(ConfigError, match=r"\[provisioning\] serch: unknown key"):
        enrol.load(path)
    path.write_text(f'[storage]\npath = "{tmp_path}"\n')
    assert not needs_enrolment(path)
    with pytest.raises(ConfigError, match=r"add \[provisioning\]"):
        config_mod.load(path)


def test_inventory_names_devices_by_kind(tmp_path: Path) -> None:
    for name in ("ttyUSB0", "serial/by-id/usb-FTDI_A1-if00-port0", "input/by-id/usb-keypad-event-kbd", "usb/lp0"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    found = inventory.scan(tmp_path)
    assert found["serial_ports"] == ["serial/by-id/usb-FTDI_A1-if00-port0", "ttyUSB0"]
    assert found["input_devices"] == ["input/by-id/usb-keypad-event-kbd"]
    assert found["printers"] == ["usb/lp0"] and found["video_devices"] == [] and found["cameras"] == []


def test_an_oversized_request_is_refused_before_it_is_parsed() -> None:
    huge = b'{"v":1,"inventory":{"x":"' + b"a" * protocol.MAX_REQUEST_BYTES + b'"}}'
    with pytest.raises(protocol.ProtocolError, match="at most"):
        protocol.Request.from_bytes(huge)


def test_a_hostile_stick_cannot_stall_or_swamp_the_claim_search(tmp_path: Path) -> None:
    """What a stick may hold under the claim's name: a FIFO (a read never ends), a link to a
    device or to a file elsewhere on the Pi, a file far larger than any claim. Each is passed
    over, logged, unread; a good claim further on is still found."""
    identity = tmp_path / "identity"
    identity.mkdir()
    sticks = [tmp_path / f"usb{n}" for n in range(5)]
    for stick in sticks:
        stick.mkdir()
    os.mkfifo(sticks[0] / "yimen-provision.json")
    (sticks[1] / "yimen-provision.json").symlink_to("/dev/zero")
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(CLAIM.to_bytes())
    (sticks[2] / "yimen-provision.json").symlink_to(elsewhere)
    (sticks[3] / "yimen-provision.json").write_bytes(b" " * 64 * 1024 + CLAIM.to_bytes())
    other = protocol.ProvisioningFile(**{**CLAIM.__dict__, "token": "tok-" + "z" * 20})
    (sticks[4] / "yimen-provision.json").write_bytes(other.to_bytes())
    prov = ProvisioningConfig(search=(str(tmp_path / "usb*" / "yimen-provision.json"),))
    found: list = []
    search = threading.Thread(target=lambda: found.append(enrol.find_claim(prov, identity)), daemon=True)
    search.start()
    search.join(10)
    if search.is_alive():  # let it go: open the FIFO's other end
        os.close(os.open(sticks[0] / "yimen-provision.json", os.O_WRONLY | os.O_NONBLOCK))
        search.join(10)
        pytest.fail("the claim search hung on a FIFO")
    assert found[0] is not None and found[0].claim == other
