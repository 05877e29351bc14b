"""The `snapshot` command: a picture from a window's camera, on the county's request.

The picture travels like every other: a media file and its bulk `media` event through the
outbox. The reply says which event to look for, so the county can match it up.
"""

from __future__ import annotations

from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from mqtt.commands import Arg, Command, CommandError
from peripherals.camera import Camera

# A camera takes its next frame within 1/fps (at least 0.2 fps): 10 s is generous.
SNAPSHOT_WAIT_S = 10.0


def snapshot_command(cameras: list[Camera]) -> Command:
    by_window = {cam.config.window: cam for cam in cameras}

    def snapshot(args: dict[str, Any]) -> dict[str, Any]:
        window = args.get("window", min(by_window))
        camera = by_window.get(window)
        if camera is None:
            raise CommandError("bad-request", f"no camera at window {window}; cameras watch {sorted(by_window)}")
        try:
            event = camera.snapshot(caused_by="command").result(timeout=SNAPSHOT_WAIT_S)
        except FutureTimeout:
            why = f"camera at window {window} gave no frame within {SNAPSHOT_WAIT_S:g} s"
            raise CommandError("failed", why) from None
        return {"window": window, "seq": event.seq, "media": event.data}

    return Command("snapshot", snapshot, args={"window": Arg("int", min=1)}, doc="a picture from a window's camera")
