"""The console's gate, attacked through its real HTTP port: no session, a forged or expired
cookie, a wrong password again and again, a cross-site POST, a township account reaching for
another township's station. Each refused with its status code, logged, and saying nothing more.
"""

from __future__ import annotations

import json
import re
import sqlite3
import ssl
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from centre.accounts import Accounts
from centre.alerts import Alerts
from centre.app import web_app
from centre.audit import Audit
from centre.auth import COOKIE, Guard, declared
from centre.client import ConsoleClient
from centre.config import parse
from centre.live import LiveHub
from centre.model import CountyModel
from centre.webstore import WebStore
from tests.conftest import wait_until

TOWNSHIPS = """
[townships]
east = ["st-a", "st-b"]
west = ["st-c"]
"""


def status_of(client: ConsoleClient, path: str, data: bytes | None = None, headers: dict | None = None) -> int:
    try:
        with client.open(path, data, {"Accept": "application/json", **(headers or {})}) as res:
            return res.status
    except urllib.error.HTTPError as exc:
        body = exc.read()
        if exc.code in (401, 403):
            assert set(json.loads(body)) == {"error"}, body  # a refusal says why, and nothing else
        return exc.code


def built(tmp_path: Path) -> tuple[Any, Guard]:
    """The console's web side as `yimen centre` builds it (centre.app.web_app), in process."""
    config = parse({"centre": {"county": "c"}}, str(tmp_path / "centre.toml"))
    db = WebStore.open(config.store)
    guard, model = Guard(db, {}, 60, False), CountyModel("c", "c")
    live = LiveHub(config, None, "test")  # type: ignore[arg-type]
    return web_app(config, model, None, live, guard, Alerts(config.alerts, "c", model), db), guard  # type: ignore[arg-type]


def all_routes(tmp_path: Path) -> list[tuple[str, list[str], Any]]:
    """Every route the console serves, read from the app itself, so a route added later is here."""
    app, _guard = built(tmp_path)
    out = []
    for route in app.app.routes:  # the gate wraps the Starlette app
        endpoint = getattr(route, "endpoint", None) or getattr(route, "app", None)
        methods = sorted(getattr(route, "methods", None) or ["GET"])
        out.append((route.path, [m for m in methods if m != "HEAD"], declared(endpoint)))
    return out


def _example(param: re.Match) -> str:
    """A value for a route's path parameter: a station id, a number, or a word."""
    return "st-a" if param.group(1) == "sid" else "1" if param.group(2) == ":int" else "x"


@pytest.fixture
def county(broker, console_factory, fleet_factory) -> Iterator[Any]:
    console = console_factory(broker.port, extra=TOWNSHIPS).start()
    fleet_factory(broker.port, ["st-a", "st-b", "st-c"], rate=0.5, telemetry_s=5.0, snapshot_s=2.0)
    wait_until(lambda: console.get("/api/summary")["totals"].get("online") == 3, 30, "three stations online")
    yield console


def test_no_route_answers_without_a_session(county, tmp_path: Path) -> None:
    routes = all_routes(tmp_path)
    assert len(routes) >= 10
    public = {path for path, _m, access in routes if access is not None and access.permission == "public"}
    assert public == {"/login", "/api/login", "/assets"}, "a new public route must be added here on purpose"
    stranger = ConsoleClient(county.url)
    for path, methods, _access in routes:
        if path in public:
            continue
        concrete = re.sub(r"\{(\w+)(:\w+)?\}", _example, path)
        for method in methods:
            data = b"{}" if method != "GET" else None
            assert status_of(stranger, concrete, data) == 401, f"{method} {concrete} answered without a session"
    # A page asked for by a browser is sent to the login page instead.
    with stranger.open("/", headers={"Accept": "text/html"}) as res:
        assert res.url.endswith("/login")


def test_passwords_hashed_wrong_ones_throttled_and_logged(county) -> None:
    client = ConsoleClient(county.url)
    for _ in range(5):
        body = json.dumps({"user": "admin", "password": "wrong-password"}).encode()
        assert status_of(client, "/api/login", body, {"Content-Type": "application/json"}) == 401
    body = json.dumps({"user": "admin", "password": county.admin[1]}).encode()
    assert status_of(client, "/api/login", body, {"Content-Type": "application/json"}) == 429  # even the right one
    failures = [e for e in county.get("/api/audit?action=login-failed")["entries"] if e["actor"] == "admin"]
    assert len(failures) == 5
    wait_until(lambda: county.log.read_text().count("failed login for 'admin'") == 5, 5, "the failures logged")
    # Stored hashed (Argon2id), the password itself nowhere in the database file.
    db = county.directory / "centre.db"
    (digest,) = sqlite3.connect(db).execute("SELECT hash FROM accounts WHERE name = 'admin'").fetchone()
    assert digest.startswith("$argon2id$")
    assert county.admin[1].encode() not in db.read_bytes() + Path(f"{db}-wal").read_bytes()


def test_forged_cookie_csrf_and_cross_site_refused(county) -> None:
    client = ConsoleClient(county.url)
    client.login(*county.admin)
    assert status_of(client, "/api/summary") == 200
    (cookie,) = [c for c in client.cookies if c.name == COOKIE]
    forged = json.dumps({"u": "admin", "g": 0, "c": "x"})
    for value in (cookie.value[:-2] + "AA", forged, "garbage"):
        evil = ConsoleClient(county.url)
        assert status_of(evil, "/api/summary", headers={"Cookie": f"{COOKIE}={value}"}) == 401
    wait_until(lambda: "forged session cookie" in county.log.read_text(), 5, "the refusal logged")
    # A POST without the CSRF token, with a wrong one, or from another site's page: refused.
    url = "/api/station/st-a/live/1/start"
    assert status_of(client, url, b"{}", {"X-CSRF-Token": ""}) == 403
    assert status_of(client, url, b"{}", {"X-CSRF-Token": "wrong"}) == 403
    evil_origin = {"X-CSRF-Token": client.csrf, "Origin": "http://evil.example"}
    assert status_of(client, url, b"{}", evil_origin) == 403
    assert status_of(client, url, b"{}", {"X-CSRF-Token": client.csrf}) == 200


def test_township_account_sees_its_own_stations_only(county) -> None:
    county.user("add", "east-clerk", "--role", "township", "--township", "east", password="east-password")
    east = ConsoleClient(county.url)
    east.login("east-clerk", "east-password")
    assert sorted(s["id"] for s in east.get("/api/summary")["stations"]) == ["st-a", "st-b"]
    assert east.get("/api/summary")["totals"]["stations"] == 2
    assert status_of(east, "/api/station/st-a") == 200
    for path in ("/api/station/st-c", "/media/st-c/snapshot.jpg", "/api/station/no-such"):
        assert status_of(east, path) == 403  # another township's, or unknown: the same answer
    post = {"X-CSRF-Token": east.csrf}
    assert status_of(east, "/api/station/st-c/live/1/start", b"{}", post) == 403
    assert status_of(east, "/api/metrics") == 403  # admin only
    denied = county.get("/api/audit?action=denied")["entries"]
    assert {e["target"] for e in denied if e["actor"] == "east-clerk"} >= {"st-c", "no-such"}
    # A viewer: figures, never video.
    county.user("add", "reader", "--role", "viewer", password="reader-password")
    reader = ConsoleClient(county.url)
    reader.login("reader", "reader-password")
    assert status_of(reader, "/api/station/st-c") == 200
    assert reader.get("/api/station/st-c")["snapshots"] == {}
    assert status_of(reader, "/api/station/st-c/live/1/start", b"{}", {"X-CSRF-Token": reader.csrf}) == 403
    # Disabling an account ends its session at once; a new password ends the old sessions.
    county.user("disable", "reader")
    assert status_of(reader, "/api/summary") == 401
    county.user("passwd", "east-clerk", password="east-password-2")
    assert status_of(east, "/api/summary") == 401


def test_a_session_expires(broker, console_factory) -> None:
    console = console_factory(broker.port, extra="").start()
    short = console.config.read_text().replace("[web]\n", "[web]\nsession_s = 1\n")
    console.stop()
    console.config.write_text(short)
    console.start()
    assert status_of(console.http, "/api/summary") == 200
    (cookie,) = [c.value for c in console.http.cookies if c.name == COOKIE]
    time.sleep(2.2)
    assert status_of(console.http, "/api/summary") == 401  # the browser dropped it (Max-Age)...
    replayed = ConsoleClient(console.url)  # ... and the server refuses it when it is sent anyway
    assert status_of(replayed, "/api/summary", headers={"Cookie": f"{COOKIE}={cookie}"}) == 401
    wait_until(lambda: "expired session cookie" in console.log.read_text(), 5, "the refusal logged")


def test_accounts_and_an_append_only_audit_on_both_engines(db: WebStore) -> None:
    accounts, audit = Accounts(db), Audit(db)
    accounts.add("ann", "first-password", "township", ["east"])
    assert accounts.verify("ann", "first-password").townships == ("east",)
    assert accounts.verify("ann", "wrong-password") is None
    assert accounts.verify("nobody", "first-password") is None
    gen = accounts.get("ann").gen
    accounts.set_password("ann", "second-password")
    assert accounts.get("ann").gen == gen + 1 and accounts.verify("ann", "second-password")
    accounts.set_disabled("ann", True)
    assert accounts.verify("ann", "second-password") is None
    audit.record("ann", "login", None, "127.0.0.1", role="township")
    for sql in ("UPDATE audit SET actor = 'someone else'", "DELETE FROM audit"):
        with pytest.raises(Exception, match="append-only"):
            db.execute(sql)
    assert [e.actor for e in audit.read()] == ["ann"]


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as a county's own CA would issue."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "console")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "console.crt", directory / "console.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_https_when_given_a_certificate(broker, console_factory, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    console = console_factory(broker.port)
    console.config.write_text(
        console.config.read_text().replace("[web]\n", f'[web]\ntls_cert = "{cert}"\ntls_key = "{key}"\n')
    )
    tls = ssl.create_default_context(cafile=str(cert))
    console.http = ConsoleClient(f"https://127.0.0.1:{console.web_port}", tls=tls)
    console.start()
    assert console.get("/api/summary")["totals"]["stations"] == 0
    (cookie,) = [c for c in console.http.cookies if c.name == COOKIE]
    assert cookie.secure and cookie.has_nonstandard_attr("HttpOnly")
    with pytest.raises(OSError):  # URLError, or the connection closed without an answer
        ConsoleClient(console.url).get("/api/summary")  # plain HTTP on the TLS port: no answer


def call(app: Any, path: str, cookie: str = "") -> int:
    """One GET through an ASGI app, in process; its status code."""
    import asyncio

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"test"), (b"cookie", f"{COOKIE}={cookie}".encode())],
        "scheme": "http",
        "server": ("test", 80),
        "client": ("127.0.0.1", 1),
        "root_path": "",
        "http_version": "1.1",
    }
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"]


def test_a_route_added_later_without_a_declaration_is_refused(tmp_path: Path) -> None:
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    gate, guard = built(tmp_path)
    # As another module would add its page after the app was built, forgetting @access:
    gate.app.routes.append(Route("/api/new-thing", lambda _r: PlainTextResponse("secret")))
    cookie, _csrf = guard.sessions.make(guard.accounts.add("root", "root-password", "admin"))
    assert call(gate, "/api/new-thing") == 401
    assert call(gate, "/api/new-thing", cookie) == 403  # even for an admin: denied by default
    assert call(gate, "/api/summary", cookie) == 200
    assert call(gate, "/no/such/page", cookie) == 404
