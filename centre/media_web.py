"""The page's view of the county's media, read from the store (so every console process sharing
one store and media directory shows the same), and a clip's frames for the browser's player.

    GET /api/station/{sid}/media           clips by the rating that caused them, the latest
                                           snapshot per window, uploads not complete, counts
    GET /media/{sid}/{media_id}/frames     an MJPEG clip: how many frames (the player shows
    GET /media/{sid}/{media_id}/frame/{n}  them as an image sequence), and frame n as a JPEG
The files themselves are served by web.py's /media/{sid}/{name}: a file exists there only once
it is complete and its sha256 checked (centre/media.py). A complete clip is still the station's
word: one that is no MJPEG, or has more than MAX_FRAMES frames, is 404 on the frame routes, and
a clip is indexed through a memory map, never read whole.
"""

from __future__ import annotations

import logging
import mmap
import threading
from collections import OrderedDict
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from centre.auth import access
from centre.config import CentreConfig
from centre.media import MEDIA_ID, OPEN_STATES
from centre.store import open_store
from mqtt import topics
from peripherals.camera.frames import split_mjpeg

log = logging.getLogger("yimen.centre.media")

MAX_LISTED = 200  # incomplete uploads listed per station; the count is exact
_FRAME_CACHE = 8  # clips whose frame offsets are kept
# Frames indexed per clip: a station's longest clip is 120 s at 15 fps (peripherals/camera). A
# hostile one of 6-byte JPEGs would otherwise make a list of 40 million offsets.
MAX_FRAMES = 10_000


def _station_ok(sid: str) -> bool:
    try:
        topics.station_root("c", sid)
    except ValueError:
        return False
    return True


class MediaWeb:
    def __init__(self, config: CentreConfig) -> None:
        self.config = config
        self._store = None
        self._lock = threading.Lock()
        self._frames: OrderedDict[str, list[tuple[int, int]]] = OrderedDict()

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            if self._store is None:
                self._store = open_store(self.config.store)
            rows = list(self._store._exec(sql, params))
            self._store.commit()  # end the read transaction: the next read sees new rows
            return rows

    @staticmethod
    def _info(sid: str, row: tuple) -> dict[str, Any]:
        media_id, media_type, window, caused_by, state, held, chunks, size, started, ext, event_id = row
        info = {
            "media_id": media_id,
            "type": media_type,
            "window": window,
            "caused_by": caused_by,
            "event": event_id,
            "state": state,
            "held": held,
            "chunks": chunks,
            "size": size,
            "started": started,
            "format": ext,
        }
        if state == "complete":
            info["url"] = f"/media/{sid}/{media_id}.{ext}"
            if ext == "mjpeg":
                info["frames_url"] = f"/media/{sid}/{media_id}/frames"
        return info

    def station_media(self, sid: str) -> dict[str, Any]:
        cols = "media_id, type, window_no, caused_by, state, held, chunks, size, started, ext, event_id"
        clips = self._query(
            f"SELECT {cols} FROM media WHERE station = ? AND caused_by IS NOT NULL"
            " ORDER BY announced_at DESC LIMIT 500",
            (sid,),
        )
        snaps = self._query(
            f"""SELECT {cols} FROM media m WHERE station = ? AND type = 'snapshot' AND state = 'complete'
                AND completed_at = (SELECT MAX(completed_at) FROM media n WHERE n.station = m.station
                                    AND n.window_no = m.window_no AND n.type = 'snapshot' AND n.state = 'complete')""",
            (sid,),
        )
        marks = ", ".join("?" for _ in OPEN_STATES)
        incomplete = self._query(
            f"SELECT {cols} FROM media WHERE station = ? AND state IN ({marks}) ORDER BY announced_at LIMIT ?",
            (sid, *OPEN_STATES, MAX_LISTED),
        )
        states = dict(self._query("SELECT state, COUNT(*) FROM media WHERE station = ? GROUP BY state", (sid,)))
        counts = dict(self._query("SELECT what, n FROM media_counts WHERE station = ?", (sid,)))
        return {
            "clips": {row[3]: self._info(sid, row) for row in reversed(clips)},
            "snapshots": {str(row[2]): self._info(sid, row) for row in snaps},
            "incomplete": [self._info(sid, row) for row in incomplete],
            "states": states,
            "missing": sum(n for s, n in states.items() if s in OPEN_STATES),
            "counts": counts,
        }

    # ----- routes ------------------------------------------------------------------------------

    @access("video", station="sid")
    def media(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        if not _station_ok(sid):
            return JSONResponse({"error": f"{sid!r} is not a station id"}, status_code=404)
        return JSONResponse(self.station_media(sid))

    def _offsets(self, sid: str, media_id: str) -> list[tuple[int, int]] | None:
        key = f"{sid}/{media_id}"
        if key in self._frames:
            self._frames.move_to_end(key)
            return self._frames[key]
        path = self.config.media_dir / sid / f"{media_id}.mjpeg"
        if not _station_ok(sid) or not MEDIA_ID.match(media_id) or not path.is_file():
            return None
        offsets, pos = [], 0
        try:
            # Mapped, not read: a station's clip may be MAX_MEDIA_BYTES, and several viewers at once.
            with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
                for frame in split_mjpeg(data):  # type: ignore[arg-type]
                    if len(offsets) == MAX_FRAMES:
                        raise ValueError(f"over {MAX_FRAMES} frames")
                    offsets.append((pos, len(frame)))
                    pos += len(frame)
        except ValueError as exc:  # a complete file that is no MJPEG (or empty): nothing to play
            log.warning("%s/%s.mjpeg is not a playable clip: %s", sid, media_id, exc)
            return None
        with self._lock:
            self._frames[key] = offsets
            while len(self._frames) > _FRAME_CACHE:
                self._frames.popitem(last=False)
        return offsets

    @access("video", station="sid", audit="clip-view")
    def frames(self, request: Request) -> Response:
        offsets = self._offsets(request.path_params["sid"], request.path_params["media_id"])
        if offsets is None:
            return JSONResponse({"error": "no such complete clip"}, status_code=404)
        return JSONResponse({"frames": len(offsets)})

    @access("video", station="sid", audit="clip-view")
    def frame(self, request: Request) -> Response:
        sid, media_id = request.path_params["sid"], request.path_params["media_id"]
        offsets = self._offsets(sid, media_id)
        n = request.path_params["n"]
        if offsets is None or not 0 <= n < len(offsets):
            return Response("no such frame", status_code=404)
        start, length = offsets[n]
        with open(self.config.media_dir / sid / f"{media_id}.mjpeg", "rb") as fh:
            fh.seek(start)
            data = fh.read(length)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=86400"})

    def routes(self) -> list[Route]:
        return [
            Route("/api/station/{sid}/media", self.media),
            Route("/media/{sid}/{media_id}/frames", self.frames),
            Route("/media/{sid}/{media_id}/frame/{n:int}", self.frame),
        ]
