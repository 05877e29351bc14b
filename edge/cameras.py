"""The station's cameras as a group: by window, a clip for every bad rating, the `snapshot` command.

Until the station logic calls `camera.clip(caused_by=...)` itself, `on_events` watches the
outbox: a committed `rating` whose `verdict` is `bad` (or that says `"camera": true`) asks the
camera of that rating's window for its clip. It runs on the thread that made the outbox's
commit and only hands over: `clip()` puts a request on the camera's own queue and returns a Future.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from edge.events import Event
from mqtt.commands import Arg, Command, CommandError
from peripherals.camera import Camera

log = logging.getLogger("yimen.cameras")

SNAPSHOT_WAIT_S = 10.0


def wants_clip(event: Event) -> bool:
    """A rating the county will want to see: bad, or flagged for the camera."""
    return event.kind == "rating" and (event.data.get("verdict") == "bad" or event.data.get("camera") is True)


class Cameras:
    def __init__(self, cameras: Iterable[Camera]) -> None:
        self.by_window: dict[int, Camera] = {camera.config.window: camera for camera in cameras}

    def on_events(self, events: list[Event]) -> None:
        """Outbox listener (the committing thread): hand each bad rating's clip to its window's camera."""
        for event in events:
            if not wants_clip(event):
                continue
            camera = self.by_window.get(event.data.get("window"))  # type: ignore[arg-type]
            if camera is None:
                log.debug("bad rating %s: no camera on window %s", event.id, event.data.get("window"))
                continue
            camera.clip(caused_by=event.id).add_done_callback(lambda f, cause=event.id: _clip_done(cause, f))

    def commands(self) -> list[Command]:
        return [
            Command(
                "snapshot",
                self._snapshot,
                args={"window": Arg("int", min=1)},
                doc="store a snapshot of a window now (default: the lowest camera window); uploaded like any other",
            )
        ]

    def _snapshot(self, args: dict[str, Any]) -> dict[str, Any]:
        window = args.get("window", min(self.by_window))
        camera = self.by_window.get(window)
        if camera is None:
            raise CommandError("bad-request", f"no camera watches window {window}; cameras: {sorted(self.by_window)}")
        try:
            # Another failure (camera stopped, disk budget spent) reaches the downlink: `failed`.
            event = camera.snapshot().result(SNAPSHOT_WAIT_S)
        except FutureTimeout:
            raise CommandError("failed", f"window {window}'s camera gave no frame in {SNAPSHOT_WAIT_S:g} s") from None
        data = event.data
        return {
            "window": window,
            "media_id": data["media_id"],
            "event": event.id,
            "size": data["size"],
            "sha256": data["sha256"],
        }


def _clip_done(cause: str, future: Future[Event]) -> None:
    error = future.exception()
    if error is not None:
        log.error("clip for %s not stored: %s", cause, error)
    else:
        log.info("clip for %s stored as %s", cause, future.result().data["media_id"])
