"""Reading a stored clip back as a county's player would: every frame and the time drawn in it.

H.264 in MP4 is decoded frame by frame with PyAV: every frame must decode, and its presentation
time (from the clip's first frame) must be its capture time as the synthetic camera drew it. An
MJPEG clip (`clip_format = "mjpeg"`) is split into its JPEGs.
"""

from __future__ import annotations

import io

import av
import pytest
from PIL import Image

from peripherals.camera.frames import split_mjpeg
from peripherals.camera.sim import read_timestamp


def is_mp4(data: bytes) -> bool:
    return data[4:8] == b"ftyp"


def clip_images(data: bytes) -> list[Image.Image]:
    """Every frame of a clip, decoded, in order; for MP4, each frame's pts checked against the
    capture time drawn into it."""
    if not is_mp4(data):
        return [Image.open(io.BytesIO(jpeg)) for jpeg in split_mjpeg(data)]
    images: list[Image.Image] = []
    first = None
    with av.open(io.BytesIO(data)) as container:
        (stream,) = container.streams.video
        assert stream.codec_context.name == "h264"
        for frame in container.decode(stream):
            image = frame.to_image()
            drawn = drawn_time(image)
            first = drawn if first is None else first
            assert frame.time is not None
            assert drawn - first == pytest.approx(frame.time, abs=0.0015), "pts is not the capture time"
            images.append(image)
    return images


def drawn_time(image: Image.Image) -> float:
    ms = read_timestamp(image)
    assert ms is not None, "bar code unreadable"
    return ms / 1000


def frame_times(data: bytes) -> list[float]:
    """Capture times (s) drawn into each frame of a clip, or into a snapshot (a JPEG)."""
    if data[:2] == b"\xff\xd8" and data.count(b"\xff\xd8") == 1:
        return [drawn_time(Image.open(io.BytesIO(data)))]
    return [drawn_time(image) for image in clip_images(data)]
