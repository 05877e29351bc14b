"""The console's one gate: every request passes here before any endpoint sees it.

Deny by default. Each endpoint declares who may call it with `@access(permission, station=...,
audit=...)` (`public`, `figures`, `video` or `admin`; `station` names the path or query
parameter holding a station id, checked against the caller's townships; `audit` names what an
allowed call is recorded as in the audit trail, see `Guard.audited`). The layer finds the route a request
matches by asking the app's own routes, live, so a route added later by anyone is guarded the
same way; a route that declares nothing answers 401 without a session and 403 with one.

Sessions are signed cookies (itsdangerous, the signer Starlette's own SessionMiddleware uses):
the account name, the account's `gen` when the session was made (a password change, a role
change or disabling ends every session of the account), a CSRF token, and the signing time,
checked against `[web] session_s`. HttpOnly, SameSite=Strict, Secure when served over TLS (or
when `[web] cookie_secure` says a TLS proxy is in front). The signing key is made once and kept
in the store, so every worker and every restart accepts the same cookies.

Cross-site requests: every unsafe method (POST, PUT, DELETE...) needs the session's CSRF token
in `X-CSRF-Token`, and is refused if its `Origin` is another site's. The login itself (no
session yet) must be JSON, which a cross-site form cannot send without a preflight nobody
answers, and same-origin. Logins are rate-limited per name and per address.

Refusals say only what the caller may know (log in; not allowed), log the reason for
engineers, and never tell whether a station outside the caller's scope exists.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from centre.accounts import Accounts, User
from centre.audit import Audit, Watching
from centre.webstore import WebStore

log = logging.getLogger("yimen.centre.auth")

COOKIE = "yimen_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
PERMISSIONS = ("public", "figures", "video", "admin")
USER_KEY = "yimen.user"
MAX_LOGIN_BODY = 4096

F = TypeVar("F", bound=Callable[..., Any])


AUDITED = ("live-view-start", "live-view-stop", "media", "clip-view", "rollout")


@dataclass(frozen=True)
class Access:
    permission: str
    station: str | None = None  # the path or query parameter that names a station
    audit: str | None = None  # what an allowed call is in the audit trail (one of AUDITED)


def access(permission: str, *, station: str | None = None, audit: str | None = None) -> Callable[[F], F]:
    """Declare who may call an endpoint (a function, or an ASGI app mounted under a path)."""
    if permission not in PERMISSIONS:
        raise ValueError(f"access({permission!r}): use one of {', '.join(PERMISSIONS)}")
    if audit is not None and audit not in AUDITED:
        raise ValueError(f"access(audit={audit!r}): use one of {', '.join(AUDITED)}")

    def mark(endpoint: F) -> F:
        endpoint.__yimen_access__ = Access(permission, station, audit)  # type: ignore[attr-defined]
        return endpoint

    return mark


def declared(endpoint: Any) -> Access | None:
    return getattr(endpoint, "__yimen_access__", None)


def user_of(request: HTTPConnection) -> User:
    """The caller, as the gate let it in (endpoints other than `public` ones always have one)."""
    return request.scope[USER_KEY]


def client_ip(request: HTTPConnection) -> str:
    return request.client.host if request.client else "-"


SECRET_SCHEMA = ["CREATE TABLE IF NOT EXISTS console_secret (name TEXT PRIMARY KEY, value TEXT NOT NULL)"]


def signing_key(db: WebStore) -> str:
    """The cookie-signing key: made by whichever console starts first, then shared by all."""
    db.ensure(SECRET_SCHEMA)
    db.execute(
        "INSERT INTO console_secret (name, value) VALUES ('session', ?) ON CONFLICT (name) DO NOTHING",
        (secrets.token_urlsafe(48),),
    )
    row = db.one("SELECT value FROM console_secret WHERE name = 'session'")
    assert row is not None
    return row[0]


class LoginLimiter:
    """At most `per_name` failed logins for one account name and `per_ip` from one address in
    `window_s`; past that, refused (429) until the oldest failure ages out. Memory is bounded:
    at most `max_keys` names and addresses are followed, the stalest dropped first."""

    def __init__(self, per_name: int = 5, per_ip: int = 20, window_s: float = 300.0, max_keys: int = 10_000) -> None:
        self.limits = {"name": per_name, "ip": per_ip}
        self.window_s = window_s
        self.max_keys = max_keys
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        found = self._failures.get(key, deque())
        while found and now - found[0] > self.window_s:
            found.popleft()
        return found

    def retry_after(self, name: str, ip: str, now: float) -> float:
        """Seconds until a login may be tried again; 0 when it may now."""
        wait = 0.0
        for kind, value in (("name", name), ("ip", ip)):
            found = self._recent((kind, value), now)
            if len(found) >= self.limits[kind]:
                wait = max(wait, found[0] + self.window_s - now)
        return wait

    def failed(self, name: str, ip: str, now: float) -> None:
        for kind, value in (("name", name), ("ip", ip)):
            key = (kind, value)
            found = self._recent(key, now)
            found.append(now)
            self._failures.pop(key, None)
            self._failures[key] = found  # re-inserted: dict order is staleness order
        while len(self._failures) > self.max_keys:
            self._failures.pop(next(iter(self._failures)))


class Sessions:
    def __init__(self, key: str, lifetime_s: float, secure: bool) -> None:
        self.serializer = URLSafeTimedSerializer(key, salt="yimen-console-session")
        self.lifetime_s = lifetime_s
        self.secure = secure

    def make(self, user: User) -> tuple[str, str]:
        """A new session's cookie value and its CSRF token."""
        csrf = secrets.token_urlsafe(24)
        return self.serializer.dumps({"u": user.name, "g": user.gen, "c": csrf}), csrf

    def read(self, cookie: str) -> tuple[dict[str, Any] | None, str]:
        """(the session, "") or (None, why: `expired` or `forged`)."""
        try:
            doc = self.serializer.loads(cookie, max_age=self.lifetime_s)
        except SignatureExpired:
            return None, "expired"
        except BadSignature:
            return None, "forged"
        if not isinstance(doc, dict) or not {"u", "g", "c"} <= doc.keys():
            return None, "forged"
        return doc, ""

    def set_cookie(self, response: Response, value: str) -> None:
        response.set_cookie(
            COOKIE,
            value,
            max_age=int(self.lifetime_s),
            httponly=True,
            samesite="strict",
            secure=self.secure,
            path="/",
        )

    def clear_cookie(self, response: Response) -> None:
        response.delete_cookie(COOKIE, httponly=True, samesite="strict", secure=self.secure, path="/")


class Gate:
    """The ASGI layer in front of the whole app (see the module docstring)."""

    def __init__(
        self,
        app: Any,
        accounts: Accounts,
        sessions: Sessions,
        audit: Audit,
        township_of: Callable[[], dict[str, str]],
        audited: Callable[[str, User, dict[str, Any], HTTPConnection], None],
    ) -> None:
        self.app = app  # a Starlette app: its `routes` are read on every request
        self.accounts = accounts
        self.sessions = sessions
        self.audit = audit
        self.township_of = township_of
        self.audited = audited

    def route(self, scope: Scope) -> tuple[Access | None, dict[str, Any], bool]:
        """The matched route's declaration (None: it declares nothing), its path parameters, and
        whether any route matched at all."""
        partial: tuple[Access | None, dict[str, Any], bool] | None = None
        for route in self.app.routes:
            match, child = route.matches(scope)
            if match == Match.NONE:
                continue
            endpoint = child.get("endpoint") or child.get("app")
            found = (declared(endpoint), child.get("path_params", {}), True)
            if match == Match.FULL:
                return found
            partial = partial or found
        return partial or (None, {}, False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        refusal = self.check(conn)
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await refusal(scope, receive, send)

    def check(self, conn: HTTPConnection) -> Response | None:
        """None to let the request through (with the caller in its scope), else the refusal."""
        scope = conn.scope
        method = scope.get("method", "GET")
        declaration, params, matched = self.route(scope)
        unsafe = scope["type"] == "websocket" or method not in SAFE_METHODS
        if unsafe and not self._same_origin(conn):
            return self._refuse(conn, 403, "cross-site request refused", "Origin is another site's")
        if declaration is not None and declaration.permission == "public":
            return None
        user, why = self._session_user(conn)
        if user is None:
            return self._refuse(conn, 401, "log in first", why)
        scope[USER_KEY] = user
        if not matched:
            return None  # the app answers 404, to a logged-in caller only
        if declaration is None:
            return self._refuse(conn, 403, "not allowed", "route declares no access (denied by default)", user)
        if unsafe and scope["type"] == "http":
            sent = conn.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), scope["yimen.csrf"].encode()):
                return self._refuse(conn, 403, "missing or wrong CSRF token: reload the page", "CSRF", user)
        if not user.may(declaration.permission):
            return self._refuse(conn, 403, "not allowed for your role", f"needs {declaration.permission}", user)
        if declaration.station:
            sid = params.get(declaration.station) or conn.query_params.get(declaration.station)
            if sid is not None and not user.sees(str(sid), self.township_of()):
                self.audit.record(user.name, "denied", str(sid), client_ip(conn), path=conn.url.path)
                return self._refuse(conn, 403, "not allowed: this station is outside your townships", "scope", user)
        if declaration.audit:
            self.audited(declaration.audit, user, params, conn)
        return None

    def _same_origin(self, conn: HTTPConnection) -> bool:
        origin = conn.headers.get("origin")
        if origin is None:
            return True  # not a browser's cross-site request (browsers send Origin on those)
        host = conn.headers.get("host", "")
        return origin in (f"http://{host}", f"https://{host}")

    def _session_user(self, conn: HTTPConnection) -> tuple[User | None, str]:
        cookie = conn.cookies.get(COOKIE)
        if not cookie:
            return None, "no session"
        doc, why = self.sessions.read(cookie)
        if doc is None:
            return None, f"{why} session cookie"
        user = self.accounts.get(str(doc["u"]))
        if user is None or user.disabled or user.gen != doc["g"]:
            return None, "session of a changed, disabled or deleted account"
        conn.scope["yimen.csrf"] = str(doc["c"])
        return user, ""

    def _refuse(self, conn: HTTPConnection, status: int, say: str, why: str, user: User | None = None) -> Response:
        path = conn.url.path
        # A role's page asking for what the role lacks (a viewer's page and video) is routine.
        log.log(
            logging.INFO if why.startswith("needs ") else logging.WARNING,
            "refused %s %s from %s (%s): %d %s",
            conn.scope.get("method", "WS"),
            path,
            client_ip(conn),
            user.name if user else "no session",
            status,
            why,
        )
        wants_page = conn.scope.get("method") == "GET" and "text/html" in conn.headers.get("accept", "")
        if status == 401 and wants_page:
            return RedirectResponse("/login", status_code=303)
        response = JSONResponse({"error": say}, status_code=status)
        if status == 401 and conn.cookies.get(COOKIE):
            self.sessions.clear_cookie(response)
        return response


class Login:
    """The endpoints of logging in and out, and of asking who one is."""

    def __init__(self, accounts: Accounts, sessions: Sessions, audit: Audit, limiter: LoginLimiter) -> None:
        self.accounts = accounts
        self.sessions = sessions
        self.audit = audit
        self.limiter = limiter

    @access("public")
    async def login(self, request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "send the login as JSON"}, status_code=415)
        body = await request.body()
        try:
            doc = json.loads(body) if len(body) <= MAX_LOGIN_BODY else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            doc = None
        if (
            not isinstance(doc, dict)
            or not isinstance(doc.get("user"), str)
            or not isinstance(doc.get("password"), str)
        ):
            return JSONResponse({"error": 'send {"user": ..., "password": ...}'}, status_code=400)
        name, ip, now = doc["user"][:64], client_ip(request), time.time()
        wait = self.limiter.retry_after(name, ip, now)
        if wait > 0:
            log.warning("login for %r from %s refused: too many failures", name, ip)
            self.audit.record(name, "login-throttled", None, ip)
            return JSONResponse(
                {"error": "too many failed logins: wait and try again"},
                status_code=429,
                headers={"Retry-After": str(int(wait) + 1)},
            )
        user = await _in_thread(self.accounts.verify, name, doc["password"])
        if user is None:
            self.limiter.failed(name, ip, now)
            log.warning("failed login for %r from %s", name, ip)
            self.audit.record(name, "login-failed", None, ip)
            return JSONResponse({"error": "wrong user name or password"}, status_code=401)
        cookie, csrf = self.sessions.make(user)
        log.info("%s (%s) logged in from %s", user.name, user.role, ip)
        self.audit.record(user.name, "login", None, ip, role=user.role)
        response = JSONResponse({**user.as_dict(), "csrf": csrf})
        self.sessions.set_cookie(response, cookie)
        return response

    @access("figures")
    def logout(self, request: Request) -> Response:
        self.audit.record(user_of(request).name, "logout", None, client_ip(request))
        response = JSONResponse({"ok": True})
        self.sessions.clear_cookie(response)
        return response

    @access("figures")
    def me(self, request: Request) -> Response:
        user = user_of(request)
        return JSONResponse({**user.as_dict(), "csrf": request.scope["yimen.csrf"], "may": sorted(_may(user))})


def _may(user: User) -> set[str]:
    return {p for p in PERMISSIONS[1:] if user.may(p)}


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Argon2 takes tens of milliseconds of CPU: off the event loop."""
    return await run_in_threadpool(fn, *args)


ASSETS = Path(__file__).parent / "static" / "assets"
PAGES = Path(__file__).parent / "static"
MEDIA_SEEN_QUIET_S = 600.0  # a picture shown again within this long is not audited again


class Guard:
    """Everything the web side needs from the people side: the gate, the login endpoints, the
    audit trail and each station's township. Built once by centre/app.py."""

    def __init__(self, db: WebStore, township_of: dict[str, str], session_s: float, secure: bool) -> None:
        self.accounts = Accounts(db)
        self.audit = Audit(db)
        self.sessions = Sessions(signing_key(db), session_s, secure)
        self.township_of = township_of
        self.login = Login(self.accounts, self.sessions, self.audit, LoginLimiter())
        self.watching = Watching()
        self._media_seen: dict[tuple[str, str, str], float] = {}

    def gate(self, app: Any) -> Gate:
        return Gate(app, self.accounts, self.sessions, self.audit, lambda: self.township_of, self.audited)

    def audited(self, action: str, user: User, params: dict[str, Any], conn: HTTPConnection) -> None:
        """Record an allowed call that its route declares audited: a live view's start, its stop
        with the seconds watched, a media file shown or downloaded (the page's refreshes of one
        picture within MEDIA_SEEN_QUIET_S are one view; a download is always recorded)."""
        sid, ip = str(params.get("sid")), client_ip(conn)
        if action == "rollout":  # a command to a share of the fleet: what and which, by its path
            self.audit.record(user.name, "command", "*", ip, command="rollout", path=conn.url.path)
            return
        if action.startswith("live-view"):
            window = params.get("window")
            if action == "live-view-start":
                self.watching.start(user.name, sid, window, time.monotonic())
                self.audit.record(user.name, "command", sid, ip, command="live-view", window=window)
                self.audit.record(user.name, action, sid, ip, window=window)
            else:
                seconds = self.watching.stop(user.name, sid, window, time.monotonic())
                self.audit.record(user.name, action, sid, ip, window=window, seconds=seconds)
            return
        name = str(params.get("name") or params.get("media_id"))
        download = conn.query_params.get("download") == "1"
        if action == "media":
            kind = "snapshot" if name.endswith((".jpg", ".jpeg", ".png")) else "clip"
            action = f"{kind}-{'download' if download else 'view'}"
        now = time.monotonic()
        key = (user.name, sid, name)
        if not download and now - self._media_seen.get(key, -MEDIA_SEEN_QUIET_S) < MEDIA_SEEN_QUIET_S:
            return
        if len(self._media_seen) > 10_000:
            self._media_seen.clear()
        self._media_seen[key] = now
        self.audit.record(user.name, action, sid, ip, file=name)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/login", page("login.html", "public", "登录", scripts=())),
            Route("/api/login", self.login.login, methods=["POST"]),
            Route("/api/logout", self.login.logout, methods=["POST"]),
            Route("/api/me", self.login.me),
            Mount("/assets", access("public")(StaticFiles(directory=ASSETS))),
        ]

    def scoped_summary(self, doc: dict[str, Any], user: User) -> dict[str, Any]:
        """The county's summary cut down to the stations `user` may see, totals counted again."""
        rows = [s for s in doc["stations"] if user.sees(s["id"], self.township_of)]
        totals = {"stations": len(rows), "online": 0, "offline": 0, "good": 0, "bad": 0, "waiting": 0, "gaps": 0}
        for row in rows:
            totals[row["state"]] = totals.get(row["state"], 0) + 1
            for key in ("good", "bad", "gaps"):
                totals[key] += row[key]
            totals["waiting"] += row["waiting"] or 0
        return {**doc, "stations": rows, "totals": totals}


HEAD = """<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · yimen</title>
<link rel="stylesheet" href="/assets/console.css">
{scripts}</head>
"""


def page(name: str, permission: str, title: str, scripts: tuple[str, ...] = ("session.js",)) -> Callable:
    """An HTML page of the console: the shared head, then the page's body (static/<name>). The
    page is the same for everyone; what it shows comes from the JSON endpoints, each guarded
    on its own. `session.js` (the login, the CSRF token, the navigation) on all but the login."""
    tags = "".join(f'<script src="/assets/{s}"></script>\n' for s in scripts)
    head = HEAD.format(title=title, scripts=tags)

    @access(permission)
    def serve(_request: Request) -> Response:
        body = (PAGES / name).read_text(encoding="utf-8")
        return HTMLResponse(head + body + "</html>\n", headers={"Cache-Control": "no-cache"})

    return serve
