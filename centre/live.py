"""Live view on the page: a station's live frames (mqtt/live.py, `.../live/<window>`, QoS 0)
pushed to the browser as server-sent events, with the session's deadline on both sides.

    POST /api/station/{sid}/live/{window}/start   join the window's session, or ask the station
                                                  for one (`live-view`); answers its `until`
    GET  /api/station/{sid}/live/{window}/stream  text/event-stream: `frame` events (the JPEG,
                                                  base64) and one `end` event at the deadline
                                                  (at once, with `error`, past MAX_STREAMS)
    POST /api/station/{sid}/live/{window}/stop    this viewer leaves; the last one to leave
                                                  stops the station's session (`stop: true`)

Two operators watching one window share one station session: the second `start` joins the
running session instead of sending another request. Frames are kept only for sessions this
console asked for (the latest frame of each, at most MAX_FRAME_BYTES), so a station sending
frames nobody asked for costs nothing. The frames come on a connection of the hub's own,
whose paho callback only files the frame under its session's lock.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from centre.auth import access
from centre.config import CentreConfig
from centre.ingest import Ingest
from mqtt import topics
from mqtt.client import make_client

log = logging.getLogger("yimen.centre.live")

MAX_FRAME_BYTES = 1024 * 1024
POLL_S = 0.2  # how often a stream looks for a new frame
# Streams open at once in this console process, all windows together: each is a connection and
# a loop on the event loop. Past it, a stream ends at once with `error`.
MAX_STREAMS = 32


@dataclass
class Session:
    station: str
    window: int
    until: float = 0.0  # the station's deadline (unix time); 0 while asking
    viewers: int = 0
    frame: bytes | None = None
    frames: int = 0  # frames received in this session: the stream's cursor
    error: str | None = None
    event: tuple[int, str] | None = None  # the latest frame as an SSE event, made once for every viewer


class LiveHub:
    def __init__(self, config: CentreConfig, ingest: Ingest, client_tag: str) -> None:
        self.config = config
        self.ingest = ingest
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, int], Session] = {}
        self.client = make_client(
            config.broker, f"yimen-centre-{config.county}-{client_tag}-live", reconnect_on_failure=True
        )
        self.client.reconnect_delay_set(config.broker.reconnect_min_s, config.broker.reconnect_max_s)
        self.client.on_connect = lambda c, *_: c.subscribe(topics.county_live_filter(config.county), qos=0)
        self.client.on_message = self._on_message
        self.dropped = 0  # frames nobody asked for, or too large
        self._streams = 0  # open streams (MAX_STREAMS); only the event loop changes it

    def start(self) -> None:
        cfg = self.config.broker
        self.client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        try:
            topic = topics.parse(msg.topic)
            key = (topic.station, int(topic.kind or ""))
        except ValueError:
            self.dropped += 1
            return
        with self._lock:
            session = self._sessions.get(key)
            if session is None or len(msg.payload) > MAX_FRAME_BYTES or time.time() > session.until > 0:
                self.dropped += 1
                return
            session.frame = msg.payload
            session.frames += 1

    # ----- sessions ------------------------------------------------------------------------------

    async def join(self, station: str, window: int, seconds: int) -> dict[str, Any]:
        """A viewer joins the window's running session, or the station is asked for one."""
        key = (station, window)
        with self._lock:
            session = self._sessions.get(key)
            if session is not None and (session.until == 0 or session.until > time.time()):
                session.viewers += 1
                shared = True
            else:
                session = self._sessions[key] = Session(station, window, viewers=1)
                shared = False
        if not shared:
            reply = await self._ask(station, {"window": window, "seconds": seconds, "via": "mqtt"})
            with self._lock:
                if reply.get("ok") and isinstance(reply.get("result", {}).get("until"), int | float):
                    session.until = float(reply["result"]["until"])
                else:
                    session.error = str((reply.get("error") or {}).get("message") or reply)[:200]
                    session.until = time.time()
        while session.until == 0:  # a second viewer who came while the first was asking
            await asyncio.sleep(POLL_S)
        return {"until": session.until, "shared": shared, "error": session.error, "viewers": session.viewers}

    async def leave(self, station: str, window: int) -> dict[str, Any]:
        """A viewer leaves; the last one stops the station's session before its deadline."""
        with self._lock:
            session = self._sessions.get((station, window))
            if session is None:
                return {"viewers": 0}
            session.viewers = max(0, session.viewers - 1)
            last = session.viewers == 0 and session.until > time.time()
            if session.viewers == 0:
                del self._sessions[(station, window)]
        if last:
            await self._ask(station, {"window": window, "stop": True})
        return {"viewers": session.viewers, "stopped": last}

    async def _ask(self, station: str, args: dict[str, Any]) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self.ingest.request(station, "live-view", args)), 10)
        except TimeoutError:
            return {"ok": False, "error": {"code": "timeout", "message": "no reply within 10 s"}}

    async def frames(self, station: str, window: int) -> AsyncIterator[str]:
        """Server-sent events for one viewer: each new frame, then `end` at the deadline."""
        if self._streams >= MAX_STREAMS:
            error = f"too many viewers on this console ({MAX_STREAMS}): close another live view"
            yield f"event: end\ndata: {json.dumps({'until': 0, 'error': error})}\n\n"
            return
        self._streams += 1
        try:
            seen = 0
            while True:
                with self._lock:
                    session = self._sessions.get((station, window))
                    frame, count = (session.frame, session.frames) if session else (None, 0)
                    until = session.until if session else 0.0
                if session is None or time.time() >= until:
                    yield f"event: end\ndata: {json.dumps({'until': until})}\n\n"
                    return
                if frame is not None and count != seen:
                    seen = count
                    yield _frame_event(session, frame, count, until)
                await asyncio.sleep(POLL_S)
        finally:
            self._streams -= 1

    # ----- routes --------------------------------------------------------------------------------

    @staticmethod
    def _key(request: Request) -> tuple[str, int] | None:
        sid, window = request.path_params["sid"], request.path_params["window"]
        try:
            topics.station_root("c", sid)
        except ValueError:
            return None
        return (sid, window) if 1 <= window <= 999 else None

    @access("video", station="sid", audit="live-view-start")
    async def start_route(self, request: Request) -> Response:
        key = self._key(request)
        if key is None:
            return JSONResponse({"error": "give a station id and a window 1..999"}, status_code=404)
        return JSONResponse(await self.join(*key, self.config.live_view_s))

    @access("video", station="sid", audit="live-view-stop")
    async def stop_route(self, request: Request) -> Response:
        key = self._key(request)
        if key is None:
            return JSONResponse({"error": "give a station id and a window 1..999"}, status_code=404)
        return JSONResponse(await self.leave(*key))

    @access("video", station="sid")
    async def stream_route(self, request: Request) -> Response:
        key = self._key(request)
        if key is None:
            return JSONResponse({"error": "give a station id and a window 1..999"}, status_code=404)
        return StreamingResponse(
            self.frames(*key), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    def routes(self) -> list[Route]:
        base = "/api/station/{sid}/live/{window:int}"
        return [
            Route(f"{base}/start", self.start_route, methods=["POST"]),
            Route(f"{base}/stop", self.stop_route, methods=["POST"]),
            Route(f"{base}/stream", self.stream_route),
        ]


def _frame_event(session: Session, frame: bytes, count: int, until: float) -> str:
    """Frame `count` as an SSE event, encoded once however many viewers the session has (a frame
    is up to MAX_FRAME_BYTES, and encoding it is work on the event loop)."""
    cached = session.event
    if cached is None or cached[0] != count:
        doc = {"n": count, "until": until, "jpeg": base64.b64encode(frame).decode()}
        cached = session.event = (count, f"event: frame\ndata: {json.dumps(doc)}\n\n")
    return cached[1]
