"""The picamera2 backend: on a Pi with a camera, the real thing; elsewhere, that it fails alone.

The hardware test runs only where picamera2 imports (Raspberry Pi OS, `python3-picamera2`, a venv
made with --system-site-packages); elsewhere it is skipped and pytest's -ra prints why.
"""

from __future__ import annotations

import importlib.util
import io
import time
from pathlib import Path

import pytest
from PIL import Image

from edge.media import MediaStore
from peripherals.camera import CameraConfig, MaskRegion, make_camera
from peripherals.camera.frames import split_mjpeg
from tests.support.recording_outbox import RecordingOutbox

HAVE_PICAMERA2 = importlib.util.find_spec("picamera2") is not None


def test_on_a_pi_snapshot_and_clip(tmp_path: Path) -> None:
    pytest.importorskip("picamera2", reason="picamera2 is not installed: not a Raspberry Pi OS machine")
    outbox = RecordingOutbox(tmp_path / "outbox")
    config = CameraConfig(
        window=1,
        width=640,
        height=480,
        snapshot_interval_s=0,
        clip_before_s=2,
        clip_after_s=2,
        mask=(MaskRegion(0.0, 0.5, 1.0, 0.5),),
    )
    camera = make_camera(config, MediaStore(tmp_path, outbox.emit))
    camera.start()
    try:
        time.sleep(3)  # fill the 2 s ring
        assert camera.status()["state"] == "running", camera.status()
        snapshot = camera.snapshot().result(timeout=10)
        clip = camera.clip(caused_by="st1-1").result(timeout=10)
    finally:
        camera.stop()

    image = Image.open(tmp_path / snapshot.data["path"])
    assert image.size == (640, 480)
    # The masked half is flat grey: the mask reached the pixels before the encoder.
    darkest, brightest = image.convert("L").crop((0, 260, 640, 480)).getextrema()
    assert brightest - darkest < 30
    frames = list(split_mjpeg((tmp_path / clip.data["path"]).read_bytes()))
    assert len(frames) == clip.data["frames"] >= 2 * 4 * 2 - 2  # 4 s at 2 fps, give or take the edges
    assert all(Image.open(io.BytesIO(jpeg)).size == (640, 480) for jpeg in frames)


@pytest.mark.skipif(HAVE_PICAMERA2, reason="picamera2 is installed here: the real camera test covers it")
def test_without_picamera2_the_camera_fails_alone(tmp_path: Path) -> None:
    camera = make_camera(CameraConfig(window=1), MediaStore(tmp_path, RecordingOutbox(tmp_path / "outbox").emit))
    camera.start()
    camera.stop()
    status = camera.status()
    assert status["state"] == "failed"
    assert "python3-picamera2" in status["error"]
