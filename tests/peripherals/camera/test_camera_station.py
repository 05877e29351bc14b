"""The camera as the station uses it: a bad rating committed to the outbox yields a clip of that
window around the rating; frame listeners (live view) see every frame until removed."""

from __future__ import annotations

from pathlib import Path

from edge.cameras import Cameras
from edge.events import NewEvent, Priority
from tests.peripherals.camera.test_camera_sim import frame_times, media_events, stored
from tests.support.manual_clock import ManualClock
from tests.support.recording_outbox import RecordingOutbox


def rating(verdict: str, window: int, **extra: object) -> NewEvent:
    return NewEvent("rating", Priority.CRITICAL, {"verdict": verdict, "window": window, **extra})


def test_a_bad_rating_yields_a_clip_of_its_window(
    sim_camera, clock: ManualClock, outbox: RecordingOutbox, tmp_path: Path
) -> None:
    camera = sim_camera(snapshot_interval_s=0, clip_before_s=5, clip_after_s=3, fps=4)
    outbox.outbox.subscribe_events(Cameras([camera]).on_events)
    clock.advance(30)
    trigger = clock.now()
    bad = outbox.emit(rating("bad", 1))
    outbox.emit(rating("good", 1))  # no clip
    outbox.emit(rating("bad", 2))  # no camera there: nothing, and no error
    clock.advance(10)
    flagged = outbox.emit(rating("good", 1, camera=True))  # the station logic asks for one
    clock.advance(10)

    clips = media_events(outbox, "clip")
    assert [c.data["caused_by"] for c in clips] == [bad.id, flagged.id]
    times = frame_times(stored(tmp_path, clips[0]))
    assert (times[0], times[-1]) == (trigger - 5, trigger + 3)
    assert clips[0].data["path"].startswith("media/evidence-w1-")


def test_frame_listener_sees_every_frame_until_removed(sim_camera, clock: ManualClock) -> None:
    camera = sim_camera(snapshot_interval_s=0, fps=2)
    seen: list[float] = []
    remove = camera.add_frame_listener(lambda frame: seen.append(frame.ts))
    start = clock.now()
    clock.advance(5)
    remove()
    clock.advance(5)
    assert seen == [start + 0.5 * i for i in range(1, 11)]
