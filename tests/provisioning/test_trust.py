"""Issue 14, trust: what a claim holder, a man in the middle and the console can do, at the broker.

Against a real Mosquitto with the dynamic-security plugin: every verdict is a CONNACK, SUBACK
or PUBACK reason code from the broker, or a station that refuses to talk."""

from __future__ import annotations

import dataclasses
import socket
import ssl
import stat
import threading
import time
from pathlib import Path

import pytest

from mqtt import topics
from mqtt.broker import Mosquitto, free_port
from provisioning import enrol, protocol, registrar
from tests.centre.conftest import ConsoleProcess
from tests.conftest import COUNTY, STATION, GatewayProcess, station_config, wait_until
from tests.provisioning.conftest import County, tls_listener
from tests.provisioning.test_enrolment import OTHER, Probe, ask, claim, refused
from tests.support.tls import make_ca_and_server


def test_a_claim_holder_cannot_take_over_a_station_or_the_registrar(tmp_path: Path, county: County) -> None:
    """The installer of one station (or whoever photographed its QR code) holds a claim: with
    it they can neither knock an enrolled station off nor stop the registrar."""
    login = ask(claim(county, STATION, tmp_path), tmp_path / "pi")[0]["broker"]
    station = Probe(county.port, login["username"], login["password"], client_id=login["username"])
    assert station.connack.value == 0
    holder = claim(county, OTHER, tmp_path)
    try:
        for victim in (login["username"], registrar.registrar_client_id(COUNTY)):
            attempt = Probe(county.port, holder.username, holder.token, client_id=victim)
            attempt.close()
            assert attempt.connack.is_failure, f"the claim's login connected as {victim}"
        # Nor can an enrolled station's own login take the registrar's place.
        attempt = Probe(
            county.port, login["username"], login["password"], client_id=registrar.registrar_client_id(COUNTY)
        )
        attempt.close()
        assert attempt.connack.is_failure
        time.sleep(0.3)
        assert station.client.is_connected(), "the station kept its connection"
        assert station.publish(f"{topics.station_root(COUNTY, STATION)}/events/queue") < 0x80
    finally:
        station.close()
    # The registrar kept its connection too: the holder's own claim still enrols.
    assert ask(holder, tmp_path / "pi")[0]["broker"]["username"] == registrar.station_username(COUNTY, OTHER)


def test_claims_share_no_secret(tmp_path: Path, county: County) -> None:
    first, second = claim(county, STATION, tmp_path), claim(county, OTHER, tmp_path)
    assert first.username != second.username and first.token != second.token
    probe = Probe(county.port, first.username, first.token, client_id=first.username)
    try:
        assert probe.publish(topics.enrol_topic(COUNTY, second.claim, "request")) == 0x87, "not another's request"
        assert probe.subscribe(topics.enrol_topic(COUNTY, second.claim, "reply")) == 0x87, "nor its reply"
        assert probe.subscribe(topics.county_status_filter(COUNTY)) == 0x87
    finally:
        probe.close()
    wrong = Probe(county.port, first.username, second.token, client_id=first.username)
    wrong.close()
    assert wrong.connack.is_failure, "one claim's token is not another's password"


def test_a_claim_holder_flooding_the_registrar_with_a_huge_request_is_refused_unparsed(
    tmp_path: Path, county: County
) -> None:
    holder = claim(county, STATION, tmp_path)
    probe = Probe(county.port, holder.username, holder.token, client_id=holder.username)
    try:
        huge = b'{"v":1,"request":"' + b"ab" * 8 + b'","inventory":"' + b"x" * 4_000_000 + b'"}'
        assert probe.publish(topics.enrol_topic(COUNTY, holder.claim, "request"), huge) < 0x80
    finally:
        probe.close()
    wait_until(lambda: county.service.refused == 1, 10, "the registrar to refuse it")
    assert ask(holder, tmp_path / "pi")[0]["broker"]["username"] == registrar.station_username(COUNTY, STATION)


def test_the_registrars_own_logins_are_bound_or_powerless(tmp_path: Path, county: County) -> None:
    s = county.registrar.settings
    bound = Probe(county.port, s["registrar_username"], s["registrar_password"], client_id="someone-else")
    bound.close()
    assert bound.connack.is_failure, "the registrar's login connects only as the registrar"
    assert "provision_password" not in s and "password" not in protocol.ProvisioningFile.__dataclass_fields__


def test_a_used_claims_login_no_longer_connects(tmp_path: Path, county: County) -> None:
    found = claim(county, STATION, tmp_path)
    login = ask(found, tmp_path / "pi")[0]["broker"]
    assert not refused(county, found), "until the station is online, it may ask again with the same claim"
    station = Probe(county.port, login["username"], login["password"], client_id=login["username"])
    try:
        assert station.publish(topics.status_topic(COUNTY, STATION), b'{"state":"online"}') == 0
        wait_until(lambda: refused(county, found), 10, "the claim's login to go once the station is online")
    finally:
        station.close()


def test_an_expired_claims_login_no_longer_connects(tmp_path: Path, county: County) -> None:
    found = claim(county, STATION, tmp_path, hours=5 / 3600)
    assert not refused(county, found)
    wait_until(lambda: refused(county, found), 20, "the registrar to delete the expired claim's login")


def test_a_replaced_or_revoked_claims_login_no_longer_connects(tmp_path: Path, county: County) -> None:
    old = claim(county, STATION, tmp_path)
    new = claim(county, STATION, tmp_path)
    assert refused(county, old) and not refused(county, new), "issuing again voids the earlier claim at once"
    county.registrar.revoke(STATION)
    assert refused(county, new)


def test_claim_files_are_as_private_as_each_other(tmp_path: Path, county: County) -> None:
    out = tmp_path / "claims"
    (out / STATION).mkdir(parents=True)
    (out / STATION / "yimen-provision-qr.png").write_bytes(b"an older, world-readable one")
    (out / STATION / "yimen-provision-qr.png").chmod(0o644)
    issued = county.registrar.issue(STATION, out)
    for path in (issued.file, issued.png):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    assert len(issued.file.read_bytes()) < 400, "small enough for a QR code a camera reads"


# ----- enrolment over TLS, pinned to the claim's CA ---------------------------------------------


class Impostor:
    """A TLS server that records whether a client sent it anything after the handshake."""

    def __init__(self, directory: Path, ca_in_chain: Path | None = None) -> None:
        ca, cert, key = make_ca_and_server(directory)
        chain = directory / "chain.pem"
        chain.write_bytes(cert.read_bytes() + (ca_in_chain or ca).read_bytes())
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(chain, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = bytearray()
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            try:
                with self.context.wrap_socket(raw, server_side=True) as tls:
                    tls.settimeout(1.0)
                    while data := tls.recv(4096):
                        self.received += data
            except (OSError, ssl.SSLError):
                continue

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("chain", ["another CA", "the county CA beside its own certificate"])
def test_enrolment_refuses_a_broker_that_is_not_the_countys(tmp_path: Path, county: County, chain: str) -> None:
    """A man in the middle (or a wrong address) gets no credentials: not even the claim's login."""
    found = claim(county, STATION, tmp_path)
    impostor = Impostor(tmp_path / "impostor", ca_in_chain=county.ca if "county" in chain else None)
    try:
        moved = dataclasses.replace(found, port=impostor.port)
        with pytest.raises(enrol.EnrolError, match="county CA" if "another" in chain else "does not verify"):
            ask(moved, tmp_path / "pi")
        assert impostor.accepted >= 1, "it was asked"
        time.sleep(0.3)
        assert bytes(impostor.received) == b"", "and told nothing"
    finally:
        impostor.close()
    assert county.service.enrolled == 0 and not refused(county, found), "the real claim is still good"
    assert ask(found, tmp_path / "pi")[0]["broker"]["username"] == registrar.station_username(COUNTY, STATION)


def test_enrolment_refuses_a_real_mosquitto_with_the_wrong_ca(tmp_path: Path, county: County) -> None:
    port = free_port()
    with Mosquitto(tmp_path / "wrong", extra=tls_listener(tmp_path / "wrong-tls", port)):
        found = claim(county, STATION, tmp_path)
        with pytest.raises(enrol.EnrolError, match="did not present the county CA"):
            ask(dataclasses.replace(found, port=port), tmp_path / "pi")
    with pytest.raises(enrol.EnrolError, match="does not speak TLS"):
        ask(dataclasses.replace(found, port=county.port), tmp_path / "pi")  # the plain listener


# ----- the console's login -----------------------------------------------------------------------


def test_the_console_login_reads_the_county_and_commands_stations_nothing_else(tmp_path: Path, county: County) -> None:
    login = ask(claim(county, STATION, tmp_path), tmp_path / "pi")[0]["broker"]
    password = registrar.console_password_path(county.workdir / "registry.db").read_text()
    assert stat.S_IMODE(registrar.console_password_path(county.workdir / "registry.db").stat().st_mode) == 0o600
    user = county.registrar.settings["console_username"]
    console = Probe(county.port, user, password, client_id=f"yimen-centre-{COUNTY}-host-1-0")
    station = Probe(county.port, login["username"], login["password"], client_id=login["username"])
    root = topics.station_root(COUNTY, STATION)
    try:
        assert console.connack.value == 0
        for allowed in (
            topics.county_filter(COUNTY),
            topics.county_status_filter(COUNTY),
            topics.shared("yimen-centre", topics.county_events_filter(COUNTY)),
            topics.county_reply_filter(COUNTY),
        ):
            assert console.subscribe(allowed) < 0x80, allowed
        assert station.subscribe(topics.command_filter(COUNTY, STATION)) == 1
        assert console.publish(topics.command_topic(COUNTY, STATION, "replay")) < 0x80, "it commands stations"
        assert station.messages.get(timeout=5).topic == topics.command_topic(COUNTY, STATION, "replay")
        assert console.publish(topics.event_topic(COUNTY, STATION, "rating")) == 0x87, "it forges no events"
        assert console.publish(topics.status_topic(COUNTY, STATION)) == 0x87
        assert console.publish(f"{root}/cmd-reply/replay") == 0x87, "nor replies"
        assert console.publish("$CONTROL/dynamic-security/v1") == 0x87, "it administers no logins"
        assert console.subscribe(topics.enrol_filter(COUNTY, "request")) == 0x87, "it reads no claims"
        assert console.subscribe("yimen/v1/another-county/+/#") == 0x87
        assert console.subscribe("#") == 0x87
    finally:
        console.close()
        station.close()


def test_the_console_on_its_own_login_sees_a_station_and_gets_its_answers(
    tmp_path: Path, county: County, gateways: list[GatewayProcess]
) -> None:
    """The real console and a real gateway, each on the login the registrar made for it: the
    station shows up and answers a command (under per-station ACLs the answer must travel
    inside the station's own tree)."""
    login = ask(claim(county, STATION, tmp_path), tmp_path / "pi")[0]["broker"]
    tls = f'username = "{login["username"]}"\npassword = "{login["password"]}"\ntls = true\nca_file = "{county.ca}"'
    gw = GatewayProcess(station_config(tmp_path, county.tls_port, broker_extra=tls)).start()
    gateways.append(gw)
    (tmp_path / "console").mkdir()
    console = ConsoleProcess(tmp_path / "console", county.port)
    password_file = registrar.console_password_path(county.workdir / "registry.db")
    user = county.registrar.settings["console_username"]
    text = console.config.read_text().replace("[broker]\n", f'[broker]\nusername = "{user}"\n', 1)
    console.config.write_text(text.replace("protocol =", f'password_file = "{password_file}"\nprotocol ='))
    try:
        console.start()
        wait_until(lambda: console.station(STATION) is not None, 20, "the station on the console's page")
        reply = console.post(f"/api/station/{STATION}/live/1/start")  # logged in, as the page is
        assert "no reply" not in str(reply.get("error")), reply
    finally:
        assert console.stop() == 0
    assert gw.stop() == 0
