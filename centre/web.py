"""The console's web page and its JSON: served by Starlette under uvicorn.

The page (static/index.html) is one file with no build step; it asks `/api/summary` every
second, sending the version it has, and gets 204 when nothing changed, so an idle console costs
nearly nothing however long the page stays open. Endpoints are plain functions: Starlette runs
them on its thread pool, where taking the model's lock for a moment is harmless.

Every endpoint declares who may call it (`@access`, centre/auth.py); the gate in front of the
app refuses the rest, and a route that declares nothing is refused to everyone.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from centre.auth import Guard, access, user_of
from centre.figures import FiguresReader
from centre.ingest import Ingest
from centre.model import CountyModel

STATIC = Path(__file__).parent / "static"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SUMMARY_MIN_AGE_S = 0.5  # at most two summaries built per second, however many pages poll


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Console:
    def __init__(
        self, model: CountyModel, ingest: Ingest, media_dir: Path, figures: FiguresReader, guard: Guard
    ) -> None:
        self.model = model
        self.ingest = ingest
        self.media_dir = media_dir
        self.figures = figures  # the day's figures from the store (what every console process sees)
        self.guard = guard
        self._summary: tuple[str, float, bytes] = ("", 0.0, b"")
        self._started = time.time()

    def _media_path(self, station: str, name: str) -> Path | None:
        if not _NAME.match(station) or not _NAME.match(name):
            return None
        path = self.media_dir / station / name
        return path if path.is_file() else None

    @access("figures")
    def index(self, _request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @access("figures")
    def summary(self, request: Request) -> Response:
        version, built, body = self._summary
        have = request.query_params.get("v")
        fresh = time.monotonic() - built < SUMMARY_MIN_AGE_S
        # Figures read from the store change with other consoles' ingest too: rebuilt every 2 s.
        current = f"{self.model.version}.{int(time.monotonic() // 2)}"
        if version != current and not fresh:
            doc = self.model.summary(time.time())
            self.figures.apply_summary(doc, time.time())
            doc["version"] = current
            body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
            version, built = current, time.monotonic()
            self._summary = (version, built, body)
        if have == str(version):
            return Response(status_code=204)
        user = user_of(request)
        if user.scoped:
            body = json.dumps(self.guard.scoped_summary(json.loads(body), user), ensure_ascii=False).encode()
        return Response(body, media_type="application/json")

    @access("figures", station="sid")
    def station(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        doc = self.model.detail(sid, time.time())
        if doc is None:
            return JSONResponse({"error": f"no station {sid!r} has reported to this console"}, status_code=404)
        self.figures.apply_detail(doc, self.model.today.isoformat(), time.time())
        if not user_of(request).may("video"):
            doc = {**doc, "snapshots": {}, "live": None, "bad": [{**b, "clip": None} for b in doc["bad"]]}
        return JSONResponse(doc)

    @access("video", station="sid", audit="media")
    def media(self, request: Request) -> Response:
        path = self._media_path(request.path_params["sid"], request.path_params["name"])
        if path is None:
            return Response("not uploaded (yet)", status_code=404)
        if request.query_params.get("download") == "1":
            return FileResponse(path, filename=path.name)
        return FileResponse(path)

    @access("admin")
    def metrics(self, _request: Request) -> Response:
        doc: dict[str, Any] = {
            "ingest": self.ingest.metrics(),
            "rss_bytes": _rss_bytes(),
            "uptime_s": round(time.time() - self._started, 1),
            "stations": len(self.model.stations),
            "version": self.model.version,
        }
        return JSONResponse(doc)

    def app(self, extra: list[BaseRoute] | None = None) -> ASGIApp:
        """The page's routes, and `extra` ones from their own modules (media, live view, the
        people's pages), all behind the gate (centre/auth.py)."""
        app = Starlette(
            routes=[
                *(extra or []),
                Route("/", self.index),
                Route("/api/summary", self.summary),
                Route("/api/station/{sid}", self.station),
                Route("/api/metrics", self.metrics),
                Route("/media/{sid}/{name}", self.media),
                *self.guard.routes(),
            ]
        )
        return self.guard.gate(app)
