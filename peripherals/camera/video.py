"""Clips as a browser plays them: the camera's JPEG frames encoded as H.264 in fragmented MP4.

The ring buffer keeps the frames as JPEGs (each masked before it was first encoded, so no frame
of a clip ever held the masked region); at the event they and the frames that follow are decoded
and encoded as H.264, each with its capture time as its presentation time (milliseconds from
the clip's first frame, no B-frames, so a decoder returns every frame with the time it was
taken). The MP4 is fragmented (`empty_moov`, a fragment per keyframe): it is written front to
back with no seek and no rewrite, straight into the media store's file, and plays in a browser.

Encoder: the Pi's hardware H.264 encoder through V4L2 mem2mem (`h264_v4l2m2m`, the device that
picamera2's H264Encoder drives) where it opens, else libx264 (PyAV's wheels carry both). A light
Gaussian denoise (`clip_denoise`, pixels) stands in for the ISP's denoise stage before the
software encoder: sensor noise that changes every frame is what inter-frame coding cannot
predict. `clip_format = "mjpeg"` keeps the older concatenated-JPEG clips.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
from collections.abc import Callable
from fractions import Fraction
from functools import cache
from typing import Any, Protocol

from PIL import Image, ImageFilter

from peripherals.camera import CameraConfig
from peripherals.camera.frames import Frame

log = logging.getLogger("yimen.camera.video")

MP4_OPTIONS = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
TIME_BASE = Fraction(1, 1000)
ENCODERS = ("h264_v4l2m2m", "libx264")


class Sink(Protocol):
    """Where a clip's frames go, in order; `write` is the media store's writer."""

    def add(self, frame: Frame) -> None: ...

    def close(self) -> None:
        """Flush what the encoder still holds; the file is complete after this."""


class MjpegSink:
    """Concatenated JPEGs (the format before H.264): the frames' bytes as captured."""

    def __init__(self, write: Any) -> None:
        self._write = write

    def add(self, frame: Frame) -> None:
        self._write(frame.jpeg)

    def close(self) -> None:
        """Nothing is held back."""


class _Writer(io.RawIOBase):
    """A write-only file for PyAV that hands every byte on (to the media store's hashing writer)."""

    def __init__(self, write: Any) -> None:
        self._write = write

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._write(chunk)
        return len(chunk)


@cache
def encoder_for(width: int, height: int, choice: str) -> str:
    """The first H.264 encoder that opens at this size (probed once per process)."""
    import av

    for name in ENCODERS if choice == "auto" else (choice,):
        try:
            ctx = av.CodecContext.create(name, "w")
            ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = width, height, "yuv420p", TIME_BASE
            ctx.open()
        except (av.error.FFmpegError, OSError, ValueError) as exc:  # no device, or a codec FFmpeg lacks
            log.info("H.264 encoder %s unavailable: %s", name, exc)
            continue
        return name
    raise RuntimeError(f'no H.264 encoder opens at {width}x{height} (tried {choice}); set clip_format = "mjpeg"')


class Mp4Sink:
    """H.264 in fragmented MP4, encoded frame by frame as the clip's frames come."""

    def __init__(self, write: Any, config: CameraConfig) -> None:
        import av  # only where clips are made: its libraries weigh on a Pi's memory

        self._config = config
        self._out = av.open(_Writer(write), mode="w", format="mp4", options=MP4_OPTIONS)
        name = encoder_for(config.width, config.height, config.clip_encoder)
        stream = self._out.add_stream(name, rate=max(1, round(config.fps)))
        stream.width, stream.height, stream.pix_fmt = config.width, config.height, "yuv420p"
        stream.time_base = TIME_BASE
        stream.codec_context.time_base = TIME_BASE
        keyframes = str(max(1, round(config.fps * 10)))  # a fragment, and a place to seek, every 10 s
        if name == "libx264":
            stream.options = {"crf": str(config.clip_crf), "preset": "veryfast", "g": keyframes, "bf": "0"}
        else:
            stream.bit_rate = config.clip_kbps * 1000
            stream.options = {"g": keyframes, "bf": "0"}
        self._stream = stream
        self._first: float | None = None
        self._last_pts = -1
        self._av = av

    def add(self, frame: Frame) -> None:
        if self._first is None:
            self._first = frame.ts
        pts = round((frame.ts - self._first) * 1000)
        if pts <= self._last_pts:
            return  # a clock that stepped back: a frame out of order cannot be shown in order
        self._last_pts = pts
        image = Image.open(io.BytesIO(frame.jpeg)).convert("RGB")
        if image.size != (self._config.width, self._config.height):
            image = image.resize((self._config.width, self._config.height))
        if self._config.clip_denoise > 0:
            image = image.filter(ImageFilter.GaussianBlur(self._config.clip_denoise))
        picture = self._av.VideoFrame.from_image(image)
        picture.pts, picture.time_base = pts, TIME_BASE
        for packet in self._stream.encode(picture):
            self._out.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode():
            self._out.mux(packet)
        self._out.close()


class EncoderThread:
    """A sink's work on a thread of its own (`camera-w<N>-clip`), so that encoding never holds
    up the camera thread: a stalled camera thread is frames missing from evidence. The camera
    thread only hands frames over; `close` waits for what is left (a few frames: the encoder
    keeps up with 2 fps, only the ring at the start is a burst) and raises what the encoder raised."""

    def __init__(self, make: Callable[[], Sink], name: str) -> None:
        self._make = make
        self._frames: queue.SimpleQueue[Frame | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def add(self, frame: Frame) -> None:
        self._frames.put(frame)

    def close(self) -> None:
        self._frames.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        sink: Sink | None = None
        try:
            sink = self._make()
            while (frame := self._frames.get()) is not None:
                sink.add(frame)
            sink.close()
        except Exception as exc:  # handed to the camera thread by close(): the clip fails, not the camera
            log.exception("encoding a clip failed")
            self._error = exc
            while self._frames.get() is not None:
                pass  # drain until close()


def sink_for(write: Any, config: CameraConfig) -> Sink:
    if config.clip_format != "mp4":
        return MjpegSink(write)
    return EncoderThread(lambda: Mp4Sink(write, config), f"camera-w{config.window}-clip")


def extension(config: CameraConfig) -> str:
    return "mp4" if config.clip_format == "mp4" else "mjpeg"
