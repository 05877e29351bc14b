"""Fixtures for camera tests: a hand-moved clock, a media store, started synthetic cameras."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.media import MediaStore
from peripherals.camera import CameraConfig, make_camera
from peripherals.camera.pipeline import FrameCamera
from tests.support.manual_clock import ManualClock
from tests.support.recording_outbox import RecordingOutbox


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[RecordingOutbox]:
    recorder = RecordingOutbox(tmp_path / "outbox")
    yield recorder
    recorder.close()


@pytest.fixture
def store(tmp_path: Path, outbox: RecordingOutbox) -> MediaStore:
    return MediaStore(tmp_path, outbox.emit)


@pytest.fixture
def sim_camera(store: MediaStore, clock: ManualClock) -> Iterator:
    """Makes started synthetic cameras on the manual clock, and stops them after the test."""
    cameras: list[FrameCamera] = []

    def make(**options: object) -> FrameCamera:
        camera = make_camera(CameraConfig(window=1, backend="sim", **options), store, clock)  # type: ignore[arg-type]
        assert isinstance(camera, FrameCamera)
        camera.start()
        clock.advance(0)  # the first frame
        cameras.append(camera)
        return camera

    yield make
    for camera in cameras:
        camera.stop()
