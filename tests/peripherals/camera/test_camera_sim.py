"""The synthetic camera end to end: snapshots, clips around a trigger, the privacy mask, status.

Every test reads back what a county would receive: the stored files, decoded with Pillow, and the
media events. Frame times are read from the bar code drawn into each frame, not trusted from the
camera's own bookkeeping.
"""

from __future__ import annotations

import hashlib
import io
import itertools
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageFilter, ImageStat

from edge.events import Event, NewEvent
from edge.media import MediaStore
from peripherals.camera import CameraConfig, MaskRegion, make_camera
from peripherals.camera.frames import encode_jpeg
from peripherals.camera.pipeline import CameraStopped, WallClock
from peripherals.camera.sim import draw_scene, read_timestamp
from tests.support.clips import clip_images, frame_times
from tests.support.manual_clock import START, ManualClock
from tests.support.recording_outbox import RecordingOutbox

MAX_SNAPSHOT_BYTES = 60 * 1024


def stored(storage: Path, event: Event) -> bytes:
    """The item's bytes, after checking them against the sha256 and size its event announced."""
    data = (storage / event.data["path"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == event.data["sha256"]
    assert len(data) == event.data["size"]
    return data


def media_events(outbox: RecordingOutbox, media_type: str) -> list[Event]:
    return [e for e in outbox.emitted if e.kind == "media" and e.data["type"] == media_type]


def iso_seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@pytest.mark.parametrize("size", [(640, 480), (320, 240), (1280, 720)])
def test_timestamp_survives_jpeg(size: tuple[int, int]) -> None:
    ts = START + 12.345
    jpeg = encode_jpeg(draw_scene(*size, ts, 1), quality=30)
    assert read_timestamp(Image.open(io.BytesIO(jpeg))) == round(ts * 1000)


def test_unreadable_code_is_reported_not_guessed() -> None:
    image = draw_scene(640, 480, START, 1)
    image.paste((0, 0, 0), (0, 0, 640, 60))
    assert read_timestamp(image) is None


def test_snapshots_every_interval_and_under_the_size_limit(
    sim_camera, clock: ManualClock, outbox: RecordingOutbox, tmp_path: Path
) -> None:
    sim_camera(snapshot_skip_diff=0)  # defaults: 640x480, every 60 s; never skipped as unchanged
    clock.advance(10 * 60)

    snaps = media_events(outbox, "snapshot")
    times = [frame_times(stored(tmp_path, e))[0] for e in snaps]
    assert times == [START + 60 * i for i in range(11)]
    for event in snaps:
        data = stored(tmp_path, event)
        assert len(data) < MAX_SNAPSHOT_BYTES
        assert Image.open(io.BytesIO(data)).size == (640, 480)
        assert event.data["window"] == 1 and event.data["caused_by"] is None
        assert iso_seconds(event.data["started"]) == pytest.approx(frame_times(data)[0], abs=0.001)


def test_snapshot_size_and_quality_follow_config(
    sim_camera, clock: ManualClock, outbox: RecordingOutbox, tmp_path: Path
) -> None:
    sim_camera(width=320, height=240, quality=30, snapshot_interval_s=5)
    clock.advance(5)
    small = [stored(tmp_path, e) for e in media_events(outbox, "snapshot")]
    assert len(small) == 2
    assert all(Image.open(io.BytesIO(data)).size == (320, 240) for data in small)
    assert max(map(len, small)) < 15 * 1024


def test_unchanged_scene_is_skipped_and_counted(sim_camera, clock: ManualClock, outbox: RecordingOutbox) -> None:
    """The ball crosses the counter every 20 s: 60 s apart it is where it was (nothing changed but
    the clock's digits), so only the first scheduled snapshot is stored."""
    camera = sim_camera(snapshot_interval_s=60)
    clock.advance(5 * 60)
    assert len(media_events(outbox, "snapshot")) == 1
    assert camera.status()["snapshots_skipped"] == 5
    future = camera.snapshot()  # a snapshot someone asked for is never skipped
    clock.advance(0.5)
    assert future.result(timeout=0).data["type"] == "snapshot"


def test_changed_scene_is_stored(sim_camera, clock: ManualClock) -> None:
    """5 s apart the ball has moved a quarter of the way: the scene changed (but for a few
    steps where it moves least on its path: the threshold leaves room for the drawn clock)."""
    camera = sim_camera(snapshot_interval_s=5)
    clock.advance(60)
    counts = camera.status()
    assert counts["snapshots"] + counts["snapshots_skipped"] == 13 and counts["snapshots"] >= 9, counts


def test_snapshot_on_demand(sim_camera, clock: ManualClock, outbox: RecordingOutbox, tmp_path: Path) -> None:
    camera = sim_camera(snapshot_interval_s=0)
    clock.advance(30)
    assert media_events(outbox, "snapshot") == []

    asked_at = clock.now()
    future = camera.snapshot(caused_by="st1-5")
    clock.advance(1)
    event = future.result(timeout=0)
    assert event.data["caused_by"] == "st1-5"
    (taken,) = frame_times(stored(tmp_path, event))
    assert asked_at < taken <= asked_at + 0.5  # the next frame at 2 fps


def test_clip_holds_20_s_before_to_10_s_after_the_trigger(
    sim_camera, clock: ManualClock, outbox: RecordingOutbox, tmp_path: Path
) -> None:
    camera = sim_camera(snapshot_interval_s=0)
    clock.advance(45.2)
    trigger = clock.now()
    future = camera.clip(caused_by="st1-17")
    clock.advance(9)
    assert not future.done()  # still recording the 10 s after
    clock.advance(1.5)
    event = future.result(timeout=0)

    times = frame_times(stored(tmp_path, event))
    assert trigger - 20.5 < times[0] <= trigger - 20 + 0.5
    assert trigger + 10 - 0.5 <= times[-1] <= trigger + 10
    assert all(b - a == pytest.approx(0.5, abs=0.002) for a, b in itertools.pairwise(times))
    assert len(times) == event.data["frames"] == 60
    info = event.data
    assert (info["type"], info["caused_by"], info["window"]) == ("clip", "st1-17", 1)
    assert iso_seconds(info["started"]) == pytest.approx(times[0], abs=0.001)
    assert iso_seconds(info["ended"]) == pytest.approx(times[-1], abs=0.001)
    assert info["path"].startswith("media/evidence-")


def test_clip_lengths_follow_config(sim_camera, clock: ManualClock, tmp_path: Path) -> None:
    camera = sim_camera(snapshot_interval_s=0, clip_before_s=5, clip_after_s=3, fps=4)
    clock.advance(60)
    future = camera.clip(caused_by="st1-1")
    clock.advance(4)
    times = frame_times(stored(tmp_path, future.result(timeout=0)))
    assert (times[0], times[-1]) == (START + 55, START + 63)
    assert len(times) == 8 * 4 + 1


def test_overlapping_triggers_each_get_their_whole_clip(sim_camera, clock: ManualClock, tmp_path: Path) -> None:
    camera = sim_camera(snapshot_interval_s=0)
    clock.advance(40)
    first = camera.clip(caused_by="st1-1")
    clock.advance(5)
    second = camera.clip(caused_by="st1-2")
    clock.advance(15)
    for future, trigger in ((first, START + 40), (second, START + 45)):
        times = frame_times(stored(tmp_path, future.result(timeout=0)))
        assert (times[0], times[-1]) == (trigger - 20, trigger + 10)


def test_clip_soon_after_start_holds_what_there_is(sim_camera, clock: ManualClock, tmp_path: Path) -> None:
    camera = sim_camera(snapshot_interval_s=0)
    clock.advance(5)
    future = camera.clip()
    clock.advance(11)
    event = future.result(timeout=0)
    times = frame_times(stored(tmp_path, event))
    assert (times[0], times[-1]) == (START, START + 15)
    assert event.data["caused_by"] is None and event.data["path"].startswith("media/clip-")


def test_stop_stores_a_clip_cut_short(sim_camera, clock: ManualClock, tmp_path: Path) -> None:
    camera = sim_camera(snapshot_interval_s=0)
    clock.advance(30)
    future = camera.clip(caused_by="st1-3")
    clock.advance(4)
    camera.stop()
    times = frame_times(stored(tmp_path, future.result(timeout=5)))
    assert (times[0], times[-1]) == (START + 10, START + 34)
    with pytest.raises(CameraStopped):
        camera.snapshot().result(timeout=0)


def test_ring_memory_stays_bounded(sim_camera, clock: ManualClock) -> None:
    camera = sim_camera(snapshot_interval_s=0)
    clock.advance(5 * 60)
    status = camera.status()
    assert status["frames"] == 5 * 60 * 2 + 1
    assert status["ring_frames"] <= (20 + 1) * 2 + 2  # 20 s, one request's delay, rounding
    assert status["ring_bytes"] <= status["ring_frames"] * MAX_SNAPSHOT_BYTES


def _region_stats(image: Image.Image, box: tuple[int, int, int, int]) -> ImageStat.Stat:
    return ImageStat.Stat(image.crop(box).convert("L"))


@pytest.mark.parametrize("style", ["fill", "blur"])
def test_privacy_mask_changes_only_the_masked_region(
    style: str, sim_camera, outbox: RecordingOutbox, tmp_path: Path
) -> None:
    region = MaskRegion(x=0.0, y=0.6, w=1.0, h=0.4)  # the citizen's side of the counter
    sim_camera(mask=(region,), mask_style=style)
    (event,) = media_events(outbox, "snapshot")
    masked = Image.open(io.BytesIO(stored(tmp_path, event))).convert("RGB")
    # What an unmasked camera stores for the same moment: the scene depends on the time alone.
    plain = Image.open(io.BytesIO(encode_jpeg(draw_scene(640, 480, START, 1), CameraConfig.quality)))
    inside, outside = region.box(640, 480), (0, 0, 640, 280)

    difference = ImageChops.difference(plain, masked)
    assert _region_stats(difference, inside).mean[0] > 5  # the ball and the detail are gone
    assert _region_stats(difference, outside).mean[0] < 1  # untouched: the same bytes, near enough
    if style == "fill":
        assert _region_stats(masked, inside).mean[0] == pytest.approx(128, abs=3)
        assert _region_stats(masked, inside).stddev[0] < 3
    else:
        # Edges (the ball's outline, the noise) are what identifies; blurring (then JPEG) leaves a sixth.
        before, after = (_region_stats(i.filter(ImageFilter.FIND_EDGES), inside) for i in (plain, masked))
        assert after.mean[0] < before.mean[0] / 4


def test_h264_clip_every_frame_decodes_with_its_time_and_the_mask(
    sim_camera, clock: ManualClock, tmp_path: Path
) -> None:
    """The clip a county plays: H.264 in MP4, decoded frame by frame (PyAV), each frame at its
    capture time (checked by clip_images against the drawn bar code), the citizen's side grey."""
    region = MaskRegion(x=0.0, y=0.6, w=1.0, h=0.4)
    camera = sim_camera(snapshot_interval_s=0, mask=(region,), mask_style="fill")
    clock.advance(40)
    future = camera.clip(caused_by="st1-9")
    clock.advance(10.5)
    event = future.result(timeout=0)
    data = stored(tmp_path, event)
    assert event.data["ext"] == "mp4" and event.data["path"].endswith(".mp4")
    images = clip_images(data)
    assert len(images) == event.data["frames"] == 61
    inside = region.box(640, 480)
    for image in images:
        stats = _region_stats(image, (inside[0] + 8, inside[1] + 8, inside[2] - 8, inside[3] - 8))
        assert stats.mean[0] == pytest.approx(128, abs=4) and stats.stddev[0] < 4, "the masked side shows"


def test_a_store_failure_fails_the_request_not_the_camera(
    tmp_path: Path, clock: ManualClock, outbox: RecordingOutbox
) -> None:
    failing = {"on": True}

    def emit(new: NewEvent) -> Event:
        if failing["on"]:
            raise OSError("outbox disk full")
        return outbox.emit(new)

    camera = make_camera(CameraConfig(window=1, backend="sim"), MediaStore(tmp_path, emit), clock)
    camera.start()
    clock.advance(1)
    future = camera.snapshot()
    clock.advance(1)
    with pytest.raises(OSError, match="disk full"):
        future.result(timeout=0)
    failing["on"] = False
    future = camera.snapshot()
    clock.advance(1)
    assert future.result(timeout=0).data["type"] == "snapshot"
    status = camera.status()
    camera.stop()
    assert status["state"] == "running"
    assert status["store_errors"] == 2  # the first scheduled snapshot and the first request
    assert status["snapshots"] == 1


def test_status_reports_the_lifecycle(sim_camera, clock: ManualClock) -> None:
    camera = sim_camera(snapshot_interval_s=10, snapshot_skip_diff=0)
    clock.advance(60)
    status = camera.status()
    assert (status["state"], status["backend"], status["window"]) == ("running", "sim", 1)
    assert status["snapshots"] == 7  # at 0, 10, ..., 60 s
    assert status["last_frame"] == START + 60
    camera.stop()
    assert camera.status()["state"] == "stopped"


def test_runs_on_the_wall_clock(store: MediaStore) -> None:
    camera = make_camera(CameraConfig(window=3, backend="sim", fps=10), store, WallClock())
    camera.start()
    try:
        event = camera.snapshot(caused_by="st1-1").result(timeout=10)
    finally:
        camera.stop()
    assert event.data["window"] == 3
    assert camera.status()["state"] == "stopped"
