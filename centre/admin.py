"""The administrator's pages: accounts (/users) and the audit trail (/audit), read and exported.

There is no endpoint that changes or deletes an audit entry; the table refuses it anyway
(centre/audit.py). Every account change made here is itself audited, with who made it.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from centre.accounts import AccountError
from centre.auth import Guard, access, client_ip, page, user_of

MAX_BODY = 16_384


def _day(text: str | None, end: bool = False) -> float | None:
    """`2026-11-01` as local midnight in unix seconds (the day after it for an end)."""
    if not text:
        return None
    try:
        day = datetime.strptime(text[:10], "%Y-%m-%d")
    except ValueError:
        raise AccountError(f"{text!r} is not a date: use YYYY-MM-DD") from None
    return day.timestamp() + (86400 if end else 0)


async def _json(request: Request) -> dict[str, Any]:
    body = await request.body()
    try:
        doc = json.loads(body) if len(body) <= MAX_BODY else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        doc = None
    if not isinstance(doc, dict):
        raise AccountError("send a JSON object")
    return doc


class Admin:
    def __init__(self, guard: Guard) -> None:
        self.accounts = guard.accounts
        self.audit = guard.audit

    def _entries(self, request: Request, limit: int) -> list[Any]:
        q = request.query_params
        return self.audit.read(
            since=_day(q.get("from")),
            until=_day(q.get("to"), end=True),
            actor=q.get("actor") or None,
            action=q.get("action") or None,
            limit=limit,
        )

    @access("admin")
    def audit_json(self, request: Request) -> Response:
        try:
            limit = int(request.query_params.get("limit", "500"))
            entries = self._entries(request, limit)
        except (AccountError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"entries": [e.as_dict() for e in entries]})

    @access("admin")
    def audit_csv(self, request: Request) -> Response:
        try:
            entries = self._entries(request, 10_000)
        except AccountError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        actor, query = user_of(request).name, str(request.url.query)
        self.audit.record(actor, "export", "audit", client_ip(request), rows=len(entries), query=query)
        name = f"audit-{time.strftime('%Y%m%d-%H%M%S')}.csv"
        return Response(
            self.audit.csv(entries),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @access("admin")
    def users(self, _request: Request) -> Response:
        return JSONResponse({"users": [u.as_dict() for u in self.accounts.list()]})

    @access("admin")
    async def change(self, request: Request) -> Response:
        """POST /api/users: {"action": add|passwd|disable|enable|role, "name", ...}."""
        actor, ip = user_of(request).name, client_ip(request)
        try:
            doc = await _json(request)
            action, name = doc.get("action"), str(doc.get("name", ""))
            townships = doc.get("townships") or []
            if not isinstance(townships, list):
                raise AccountError("townships: a list of names")
            if action == "add":
                user = self.accounts.add(name, str(doc.get("password", "")), str(doc.get("role", "")), townships)
            elif action == "passwd":
                user = self.accounts.set_password(name, str(doc.get("password", "")))
            elif action in ("disable", "enable"):
                if name == actor and action == "disable":
                    raise AccountError("you cannot disable your own account")
                user = self.accounts.set_disabled(name, action == "disable")
            elif action == "role":
                user = self.accounts.set_role(name, str(doc.get("role", "")), townships)
            else:
                raise AccountError("action: add, passwd, disable, enable or role")
        except AccountError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        self.audit.record(actor, f"account-{action}", name, ip, role=user.role, townships=list(user.townships))
        return JSONResponse(user.as_dict())

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/audit", page("audit.html", "admin", "审计记录")),
            Route("/users", page("users.html", "admin", "账户")),
            Route("/api/audit", self.audit_json),
            Route("/api/audit.csv", self.audit_csv),
            Route("/api/users", self.users),
            Route("/api/users", self.change, methods=["POST"]),
        ]
