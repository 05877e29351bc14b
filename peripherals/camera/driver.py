"""The Pi camera through picamera2 (Raspberry Pi OS's `python3-picamera2` package).

picamera2 is imported on the camera thread when the camera opens, not when this module loads: a
gateway whose config names a picamera2 camera on a machine without it reports that camera failed,
with the fix in the error, and runs on.

The sensor runs at the clip frame rate; picamera2's software `JpegEncoder` encodes every frame at
the configured quality, and a small `Output` hands the JPEGs to the camera thread, where the same
ring, clips and snapshots as the synthetic source take over. The privacy mask is a `pre_callback`,
which picamera2 runs on each frame's buffer before the encoder or any capture sees it.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from peripherals.camera.frames import Frame, mask_array
from peripherals.camera.pipeline import FrameCamera

# Frames waiting for the camera thread; beyond this (the thread stalled on a slow SD card) the
# newest are dropped rather than memory growing.
QUEUE_FRAMES = 8
# No frame for this long means the camera is gone (ribbon cable, sensor crash): report it.
STALL_S = 5.0


def _queue_output(base: type, frames: queue.Queue[Frame]) -> Any:
    """An instance of a picamera2 `Output` subclass (the encoder insists on one) feeding `frames`."""

    class QueueOutput(base):  # type: ignore[misc, valid-type]
        """Runs on picamera2's encoder thread, so it only copies and enqueues."""

        offset: float | None = None
        dropped = 0

        def outputframe(
            self,
            frame: Any,
            keyframe: bool = True,
            timestamp: int | None = None,
            packet: Any = None,
            audio: bool = False,
        ) -> None:
            # The encoder's timestamp is sensor time in us since its first frame; anchor it to the
            # wall clock once so frame times keep the sensor's spacing.
            sensor_s = (timestamp or 0) / 1e6
            if self.offset is None:
                self.offset = time.time() - sensor_s
            try:
                frames.put_nowait(Frame(self.offset + sensor_s, bytes(frame)))
            except queue.Full:
                self.dropped += 1

    return QueueOutput()


class Picamera2Camera(FrameCamera):
    backend = "picamera2"

    _picam2: Any = None
    _output: Any = None

    def _open(self) -> None:
        try:
            from picamera2 import MappedArray, Picamera2
            from picamera2.encoders import JpegEncoder
            from picamera2.outputs import Output
        except ImportError as exc:
            raise RuntimeError(
                f"picamera2 is not importable ({exc}): install Raspberry Pi OS's python3-picamera2 "
                'and create the venv with --system-site-packages, or use backend = "sim"'
            ) from None
        cfg = self.config
        self._frames: queue.Queue[Frame] = queue.Queue(maxsize=QUEUE_FRAMES)
        self._picam2 = Picamera2(cfg.camera)
        video = self._picam2.create_video_configuration(
            main={"size": (cfg.width, cfg.height), "format": "XBGR8888"},
            controls={"FrameRate": cfg.fps},
        )
        self._picam2.configure(video)
        if cfg.mask:

            def apply_mask(request: Any) -> None:
                with MappedArray(request, "main") as mapped:
                    mask_array(mapped.array, cfg.mask, cfg.mask_style)

            self._picam2.pre_callback = apply_mask
        self._output = _queue_output(Output, self._frames)
        # A few frames a second need no parallel encoding; one thread keeps memory down.
        self._picam2.start_recording(JpegEncoder(num_threads=1, q=cfg.quality), self._output)
        self._last_arrival = time.monotonic()

    def _next_frame(self, stopping: threading.Event) -> Frame | None:
        while not stopping.is_set():
            try:
                frame = self._frames.get(timeout=0.5)
            except queue.Empty:
                silent = time.monotonic() - self._last_arrival
                if silent > STALL_S:
                    self._fail(f"no frames from picamera2 camera {self.config.camera} for over {STALL_S:g} s")
                continue
            self._last_arrival = time.monotonic()
            return frame
        return None

    def _close(self) -> None:
        if self._picam2 is not None:
            try:
                self._picam2.stop_recording()  # safe when not started: picamera2 checks
            finally:
                self._picam2.close()
                self._picam2 = None

    def status(self) -> dict[str, Any]:
        dropped = self._output.dropped if self._output is not None else 0
        return {**super().status(), "camera": self.config.camera, "frames_dropped": dropped}
