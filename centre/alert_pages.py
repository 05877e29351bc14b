"""Alerts on the page: the list (each account sees its stations' alerts) and acknowledging one
(who and when kept with the alert, and in the audit trail)."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from centre.alerts import Alerts
from centre.auth import Guard, access, client_ip, user_of


class AlertPages:
    def __init__(self, alerts: Alerts, guard: Guard) -> None:
        self.alerts = alerts
        self.guard = guard

    @access("figures")
    def list(self, request: Request) -> Response:
        user = user_of(request)
        shown = [a for a in self.alerts.list() if user.sees(a["station"], self.guard.township_of)]
        return JSONResponse({"alerts": shown})

    @access("video")
    def ack(self, request: Request) -> Response:
        user, alert_id = user_of(request), request.path_params["id"]
        station = self.alerts.station_of(alert_id)
        if station is None or not user.sees(station, self.guard.township_of):
            return JSONResponse({"error": "no such alert (acknowledged and cleared already?)"}, status_code=404)
        doc = self.alerts.ack(alert_id, user.name, time.time())
        if doc is None:
            return JSONResponse({"error": "no such alert (acknowledged and cleared already?)"}, status_code=404)
        self.guard.audit.record(user.name, "alert-ack", station, client_ip(request), alert=alert_id, rule=doc["rule"])
        return JSONResponse(doc)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/alerts", self.list),
            Route("/api/alerts/{id}/ack", self.ack, methods=["POST"]),
        ]
