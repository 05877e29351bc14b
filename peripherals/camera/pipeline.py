"""What happens to a frame once a backend has it: ring buffer, clips, snapshots, on one thread.

Each camera owns one named thread (`camera-w<window>`). The backend gives it frames; the thread
keeps the last `clip_before_s` of them in a ring, takes scheduled snapshots, and serves requests
that other threads only hand over through a queue (`snapshot()`, `clip()` return a Future). No
state is shared, so nothing here needs a lock.

The ring behaves like picamera2's `CircularOutput2`: a time-bounded deque of encoded frames that
is flushed into an output when a clip is wanted, then followed live until the clip's end. Unlike
`CircularOutput2`, whose single output sees frames only after they leave the buffer (so a
20 s + 10 s clip is done 30 s after the trigger), each trigger here copies the ring at once and
finishes `clip_after_s` after it, and overlapping bad ratings each get their own clip. The ring
holds JPEGs, which have no inter-frame dependencies, so there is no keyframe to wait for; a clip
encodes them (and the frames that follow) as H.264 at the event, on an encoder thread of its
own (peripherals/camera/video.py), so the camera thread never waits for the encoder.
Clip frames go to their file as they come; memory is the ring and one encoder per open clip.

Snapshots: at `snapshot_interval_s`, at their own size and quality where the config gives one;
a scheduled snapshot of a scene that has not changed since the last one stored (mean grey
difference on a 32x24 thumbnail under `snapshot_skip_diff`) is skipped and counted.

Frame listeners (live view) see every frame on the camera thread and must only hand over. The
listener tuple is replaced whole under a lock when one is added or removed, so the camera
thread reads it without one.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from edge.events import Event
from edge.media import MediaStore, MediaType, MediaWriter
from peripherals.camera import CameraConfig, MediaThrottle, video
from peripherals.camera.frames import Frame, resized_jpeg, thumbnail

# Overlapping clips beyond this are refused: four already cover any 30 s window several times over,
# and each open clip is an open file and a write per frame.
MAX_PENDING_CLIPS = 4


class CameraStopped(RuntimeError):
    """A snapshot or clip request the camera stopped before it could serve."""


class FrameClock(Protocol):
    """Where a camera gets the time and waits; tests pass a clock they advance by hand."""

    def now(self) -> float:
        """Seconds since the epoch."""

    def sleep(self, seconds: float, stopping: threading.Event) -> bool:
        """Wait up to `seconds`; True as soon as `stopping` is set."""


class WallClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float, stopping: threading.Event) -> bool:
        return stopping.wait(seconds)


class Ring:
    """The last `seconds` of frames; bounded in count too, should the clock step backwards."""

    def __init__(self, seconds: float, fps: float) -> None:
        self.seconds = seconds
        self._frames: deque[Frame] = deque(maxlen=math.ceil(seconds * fps) + 2)

    def add(self, frame: Frame) -> None:
        self._frames.append(frame)
        while self._frames and self._frames[0].ts < frame.ts - self.seconds:
            self._frames.popleft()

    def since(self, ts: float) -> list[Frame]:
        return [frame for frame in self._frames if frame.ts >= ts]

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def nbytes(self) -> int:
        return sum(len(frame.jpeg) for frame in self._frames)


@dataclass
class _Request:
    media_type: MediaType
    at: float
    caused_by: str | None
    future: Future[Event] = field(default_factory=Future)


@dataclass
class _Clip:
    """A clip collecting frames until `end`; its bytes are already in the media store's tmp file."""

    writer: MediaWriter
    sink: video.Sink
    end: float
    future: Future[Event]
    first: float | None = None
    last: float | None = None
    frames: int = 0

    def add(self, frame: Frame) -> None:
        self.sink.add(frame)
        if self.first is None:
            self.first = frame.ts
        self.last = frame.ts
        self.frames += 1


class FrameCamera(ABC):
    """The camera both backends are: they differ only in where frames come from."""

    backend: ClassVar[str]

    def __init__(
        self,
        config: CameraConfig,
        media: MediaStore,
        clock: FrameClock | None = None,
        throttle: Callable[[], MediaThrottle] | None = None,
    ) -> None:
        self.config = config
        self.media = media
        self.clock: FrameClock = clock or WallClock()
        self._throttle = throttle or MediaThrottle
        self.log = logging.getLogger(f"yimen.camera.w{config.window}")
        # A request is served at the frame after it, up to a period late: keep that much more.
        self._ring = Ring(config.clip_before_s + 2 / config.fps, config.fps)
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._clips: list[_Clip] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_snapshot: float | None = None
        self._state = "stopped"
        self._error: str | None = None
        self._counts = {
            "frames": 0, "snapshots": 0, "snapshots_skipped": 0, "snapshots_deferred": 0,
            "clips": 0, "clips_refused": 0, "store_errors": 0,
        }  # fmt: skip
        self._last_thumb: bytes | None = None  # the last stored snapshot's 32x24 grey thumbnail
        self._last_frame: float | None = None
        self._frame_listeners: tuple[Callable[[Frame], None], ...] = ()
        self._listeners_lock = threading.Lock()

    # --- the interface (any thread) ---

    def start(self) -> None:
        self._stopping.clear()
        self._state = "starting"
        self._thread = threading.Thread(target=self._run, name=f"camera-w{self.config.window}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive():
                self.log.error("camera thread did not stop within 10 s")
            self._thread = None

    def status(self) -> dict[str, Any]:
        return {
            "window": self.config.window,
            "backend": self.backend,
            "state": self._state,
            "error": self._error,
            "last_frame": self._last_frame,
            "clips_pending": len(self._clips),
            "ring_frames": len(self._ring),
            "ring_bytes": self._ring.nbytes,
            **self._counts,
        }

    def snapshot(self, caused_by: str | None = None) -> Future[Event]:
        return self._request(MediaType.SNAPSHOT, caused_by)

    def add_frame_listener(self, listener: Callable[[Frame], None]) -> Callable[[], None]:
        """Call `listener` with every frame from now on; returns the function that stops it."""
        with self._listeners_lock:
            self._frame_listeners = (*self._frame_listeners, listener)

        def remove() -> None:
            with self._listeners_lock:
                self._frame_listeners = tuple(f for f in self._frame_listeners if f is not listener)

        return remove

    def clip(self, caused_by: str | None = None) -> Future[Event]:
        return self._request(MediaType.CLIP, caused_by)

    def _request(self, media_type: MediaType, caused_by: str | None) -> Future[Event]:
        request = _Request(media_type, self.clock.now(), caused_by)
        if self._stopping.is_set() or self._thread is None:
            request.future.set_exception(CameraStopped(f"camera w{self.config.window} is not running"))
        else:
            self._requests.put(request)
        return request.future

    # --- what a backend provides (camera thread) ---

    @abstractmethod
    def _open(self) -> None:
        """Acquire the source; raising marks the camera failed."""

    @abstractmethod
    def _next_frame(self, stopping: threading.Event) -> Frame | None:
        """Block until the next frame; None once `stopping` is set."""

    @abstractmethod
    def _close(self) -> None:
        """Release the source; called on the camera thread even after a failed `_open`."""

    def _fail(self, error: str) -> None:
        if self._error != error:
            self.log.error("%s", error)
        self._state, self._error = "failed", error

    # --- the camera thread ---

    def _run(self) -> None:
        try:
            self._open()
            self._state = "running"
            while (frame := self._next_frame(self._stopping)) is not None:
                self._on_frame(frame)
        except Exception as exc:
            # A camera fails alone: the station, the queue and the other cameras run on.
            self.log.exception("camera stopped by an error")
            self._fail(f"{type(exc).__name__}: {exc}")
        finally:
            self._wind_down()

    def _wind_down(self) -> None:
        for clip in self._clips:
            self._finish(clip)  # a truncated clip is still evidence
        self._clips.clear()
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                break
            request.future.set_exception(CameraStopped(f"camera w{self.config.window} stopped"))
        try:
            self._close()
        except Exception:
            self.log.exception("error while closing the camera")
        if self._state != "failed":
            self._state = "stopped"

    def _on_frame(self, frame: Frame) -> None:
        self._counts["frames"] += 1
        self._last_frame = frame.ts
        if self._state == "failed":
            self.log.info("frames again after: %s", self._error)
            self._state, self._error = "running", None
        self._ring.add(frame)
        for listener in self._frame_listeners:
            try:
                listener(frame)
            except Exception:  # a viewer's bug must not stop the capture
                self.log.exception("frame listener failed")
        for clip in list(self._clips):
            self._feed(clip, frame)
            if frame.ts >= clip.end:
                self._clips.remove(clip)
                self._finish(clip)
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                break
            if request.media_type is MediaType.SNAPSHOT:
                self._store_snapshot(frame, request.caused_by, request.future)
            else:
                self._begin_clip(frame, request)
        throttle = self._throttle()
        interval = self.config.snapshot_interval_s * throttle.snapshot_every
        if interval > 0:
            if self._next_snapshot is None or frame.ts >= self._next_snapshot + interval:
                self._next_snapshot = frame.ts  # first frame, or the cadence fell behind (a stall)
            if frame.ts >= self._next_snapshot:
                self._next_snapshot += interval
                if not throttle.snapshots:
                    self._counts["snapshots_deferred"] += 1  # the month's data budget runs low
                elif self._unchanged(frame):
                    self._counts["snapshots_skipped"] += 1
                else:
                    self._store_snapshot(frame, None, Future(), throttle.snapshot_quality)

    def _unchanged(self, frame: Frame) -> bool:
        """Whether the scene differs from the last stored snapshot by less than the threshold."""
        limit = self.config.snapshot_skip_diff
        if limit <= 0 or self._last_thumb is None:
            return False
        thumb = thumbnail(frame.jpeg)
        return sum(abs(a - b) for a, b in zip(thumb, self._last_thumb, strict=True)) / len(thumb) < limit

    def _store_snapshot(
        self, frame: Frame, caused_by: str | None, future: Future[Event], quality_cap: int | None = None
    ) -> None:
        cfg = self.config
        data = frame.jpeg
        quality = min(cfg.snapshot_quality or cfg.quality, quality_cap or 100)
        if cfg.snapshot_width or quality != cfg.quality:
            width = cfg.snapshot_width or cfg.width
            height = cfg.snapshot_height or round(width * cfg.height / cfg.width)
            data = resized_jpeg(frame.jpeg, (width, height), quality)
        event = self._guarded(
            future,
            self.media.put,
            MediaType.SNAPSHOT,
            self.config.window,
            data,
            started=frame.ts,
            ended=frame.ts,
            caused_by=caused_by,
        )
        if event is not None:
            self._counts["snapshots"] += 1
            if cfg.snapshot_skip_diff > 0:
                self._last_thumb = thumbnail(frame.jpeg)
            future.set_result(event)

    def _begin_clip(self, frame: Frame, request: _Request) -> None:
        if len(self._clips) >= MAX_PENDING_CLIPS:
            self._counts["clips_refused"] += 1
            self.log.warning("clip for %s refused: %d clips already recording", request.caused_by, MAX_PENDING_CLIPS)
            request.future.set_exception(RuntimeError(f"{MAX_PENDING_CLIPS} clips already recording"))
            return
        cfg = self.config
        writer = self._guarded(
            request.future, self.media.begin, MediaType.CLIP, cfg.window, request.caused_by, video.extension(cfg)
        )
        if writer is None:
            return
        sink = self._guarded(request.future, video.sink_for, writer.write, cfg)
        if sink is None:
            writer.abort()
            return
        clip = _Clip(writer, sink, request.at + cfg.clip_after_s, request.future)
        for old in self._ring.since(request.at - self.config.clip_before_s):
            self._feed(clip, old)
        if frame.ts >= clip.end:
            self._finish(clip)
        else:
            self._clips.append(clip)

    def _feed(self, clip: _Clip, frame: Frame) -> None:
        if frame.ts <= clip.end and not clip.future.done():
            self._guarded(clip.future, clip.add, frame)

    def _finish(self, clip: _Clip) -> None:
        # The encoder's last frames (or its error) first: nothing may write the file after this.
        self._guarded(clip.future, clip.sink.close)
        if clip.future.done():  # a write or the encoder failed; the error is already on the future
            clip.writer.abort()
            return
        if clip.first is None or clip.last is None:
            clip.writer.abort()
            clip.future.set_exception(CameraStopped("no frames were captured for the clip"))
            return
        event = self._guarded(clip.future, clip.writer.commit, started=clip.first, ended=clip.last, frames=clip.frames)
        if event is not None:
            self._counts["clips"] += 1
            clip.future.set_result(event)

    def _guarded(self, future: Future[Event], action: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a store action; a failure (disk full, outbox error) goes on the future, not up the thread."""
        try:
            return action(*args, **kwargs)
        except Exception as exc:
            self._counts["store_errors"] += 1
            self.log.exception("storing media failed")
            if not future.done():
                future.set_exception(exc)
            return None
