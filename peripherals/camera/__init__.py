"""Cameras that watch the service windows: config, the interface both backends share, the factory.

Config is one `[[cameras]]` table per camera, each naming the window it watches:

    [[cameras]]
    window = 1
    backend = "picamera2"        # or "sim": the synthetic test scene
    camera = 0                   # picamera2's camera number
    width = 640
    height = 480
    quality = 60                 # JPEG quality, 1..95
    fps = 2.0                    # frames per second kept for clips (and the source of snapshots)
    snapshot_interval_s = 60     # 0: snapshots on demand only
    clip_before_s = 20
    clip_after_s = 10
    mask_style = "fill"          # or "blur"
    mask = [{x = 0.0, y = 0.6, w = 1.0, h = 0.4}]   # fractions of the frame: the citizen's side
    clip_format = "mp4"          # H.264 in fragmented MP4 (peripherals/camera/video.py), or "mjpeg"
    clip_crf = 28                # libx264 quality (lower: better, bigger), 18..40
    clip_kbps = 128              # the hardware encoder's bit rate (it takes no crf)
    clip_denoise = 1.5           # Gaussian radius in pixels before the software encoder; 0: none
    clip_encoder = "auto"        # h264_v4l2m2m (the Pi's hardware) where it opens, else libx264
    snapshot_width = 0           # 0: the camera's width; snapshots may be smaller than clips
    snapshot_height = 0
    snapshot_quality = 0         # 0: the camera's quality
    snapshot_skip_diff = 3.0     # a scheduled snapshot is skipped (and counted) when the scene
                                 # changed less than this (mean grey difference, 0..255, at 32x24)

Backends: `sim.py` (always available) and `driver.py` (picamera2, imported only when a camera
uses it, because picamera2 comes from Raspberry Pi OS and exists nowhere else).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from edge.configfile import ConfigError, Section
from edge.events import Event

if TYPE_CHECKING:
    from edge.media import MediaStore
    from peripherals.camera.frames import Frame
    from peripherals.camera.pipeline import FrameClock

BACKENDS = ("picamera2", "sim")
MASK_STYLES = ("fill", "blur")


@dataclass(frozen=True)
class MaskRegion:
    """A rectangle in fractions of the frame, so it stays put when the resolution changes."""

    x: float
    y: float
    w: float
    h: float

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """Pixel box (left, top, right, bottom) in a frame of the given size, at least one pixel."""
        left, top = round(self.x * width), round(self.y * height)
        return (
            left,
            top,
            max(left + 1, round((self.x + self.w) * width)),
            max(top + 1, round((self.y + self.h) * height)),
        )


@dataclass(frozen=True)
class CameraConfig:
    window: int
    backend: str = "picamera2"
    camera: int = 0
    width: int = 640
    height: int = 480
    # The synthetic scene (with sensor-like noise) at 640x480 is about 35 KB at 60 and 46 KB at 70;
    # 60 leaves room under the 60 KB a 2G/3G uplink can carry for a busier real scene.
    quality: int = 60
    fps: float = 2.0
    snapshot_interval_s: float = 60.0
    clip_before_s: float = 20.0
    clip_after_s: float = 10.0
    mask: tuple[MaskRegion, ...] = ()
    mask_style: str = "fill"
    clip_format: str = "mp4"
    clip_crf: int = 28
    clip_kbps: int = 128
    clip_denoise: float = 1.5
    clip_encoder: str = "auto"
    snapshot_width: int = 0
    snapshot_height: int = 0
    snapshot_quality: int = 0
    snapshot_skip_diff: float = 3.0


def _region(section: Section) -> MaskRegion:
    region = MaskRegion(
        x=section.get_float("x", minval=0.0, maxval=1.0),
        y=section.get_float("y", minval=0.0, maxval=1.0),
        w=section.get_float("w", minval=0.0, maxval=1.0),
        h=section.get_float("h", minval=0.0, maxval=1.0),
    )
    section.done()
    if region.x + region.w > 1.0 or region.y + region.h > 1.0:
        raise section.error("w", "region reaches past the frame's edge (x + w and y + h must be <= 1)")
    return region


def parse_camera(section: Section) -> CameraConfig:
    """One camera's table; errors name the table and key."""
    mask = tuple(
        _region(Section(f"{section.name}.mask[{i}]", raw, source=section.source))
        for i, raw in enumerate(section.get_list("mask", []))
    )
    interval = section.get_float("snapshot_interval_s", CameraConfig.snapshot_interval_s, minval=0.0)
    cfg = CameraConfig(
        window=section.get_int("window", minval=1),
        backend=section.get_str("backend", CameraConfig.backend, choices=BACKENDS),
        camera=section.get_int("camera", CameraConfig.camera, minval=0),
        width=section.get_int("width", CameraConfig.width, minval=160, maxval=1920),
        height=section.get_int("height", CameraConfig.height, minval=120, maxval=1080),
        quality=section.get_int("quality", CameraConfig.quality, minval=1, maxval=95),
        fps=section.get_float("fps", CameraConfig.fps, minval=0.2, maxval=15.0),
        snapshot_interval_s=interval,
        clip_before_s=section.get_float("clip_before_s", CameraConfig.clip_before_s, minval=0.0, maxval=60.0),
        clip_after_s=section.get_float("clip_after_s", CameraConfig.clip_after_s, minval=0.0, maxval=60.0),
        mask=mask,
        mask_style=section.get_str("mask_style", CameraConfig.mask_style, choices=MASK_STYLES),
        clip_format=section.get_str("clip_format", CameraConfig.clip_format, choices=("mp4", "mjpeg")),
        clip_crf=section.get_int("clip_crf", CameraConfig.clip_crf, minval=18, maxval=40),
        clip_kbps=section.get_int("clip_kbps", CameraConfig.clip_kbps, minval=16, maxval=8000),
        clip_denoise=section.get_float("clip_denoise", CameraConfig.clip_denoise, minval=0.0, maxval=5.0),
        clip_encoder=section.get_str(
            "clip_encoder", CameraConfig.clip_encoder, choices=("auto", "h264_v4l2m2m", "libx264")
        ),
        snapshot_width=section.get_int("snapshot_width", 0, minval=0, maxval=1920),
        snapshot_height=section.get_int("snapshot_height", 0, minval=0, maxval=1080),
        snapshot_quality=section.get_int("snapshot_quality", 0, minval=0, maxval=95),
        snapshot_skip_diff=section.get_float(
            "snapshot_skip_diff", CameraConfig.snapshot_skip_diff, minval=0.0, maxval=255.0
        ),
    )
    section.done()
    if 0 < interval < 1:
        raise section.error("snapshot_interval_s", "must be 0 (on demand only) or at least 1")
    return cfg


def parse_cameras(top: Section) -> tuple[CameraConfig, ...]:
    """Every `[[cameras]]` table of the document; two cameras on one window or one sensor is an error."""
    cameras = tuple(
        parse_camera(Section(f"cameras[{i}]", raw, source=top.source))
        for i, raw in enumerate(top.get_list("cameras", []))
    )
    for i, cam in enumerate(cameras):
        for j, other in enumerate(cameras[:i]):
            if cam.window == other.window:
                raise ConfigError(f"{top.source}: [cameras[{i}]] window: {cam.window} is also cameras[{j}]'s")
            if cam.backend == other.backend == "picamera2" and cam.camera == other.camera:
                raise ConfigError(
                    f"{top.source}: [cameras[{i}]] camera: picamera2 camera {cam.camera} is also cameras[{j}]'s"
                )
    return cameras


@dataclass(frozen=True)
class MediaThrottle:
    """What a metered line's budget (edge/budget.py) lets the camera do now: scheduled snapshots
    `snapshot_every` times less often, at most `snapshot_quality`, or none (`snapshots`).
    Snapshots someone asked for and clips are never throttled here; their upload may wait."""

    snapshot_every: int = 1
    snapshot_quality: int | None = None
    snapshots: bool = True


class Camera(Protocol):
    """What the station sees of a camera, whichever backend is behind it."""

    config: CameraConfig

    def start(self) -> None:
        """Begin capturing on the camera's own thread; a camera that cannot start reports itself failed."""

    def stop(self) -> None:
        """Stop capturing; a clip still collecting frames is stored with what it has."""

    def status(self) -> dict[str, Any]:
        """Plain values for station status: state, error, counters."""

    def snapshot(self, caused_by: str | None = None) -> Future[Event]:
        """Store the next frame as a snapshot; resolves to its media event."""

    def clip(self, caused_by: str | None = None) -> Future[Event]:
        """Store the frames from `clip_before_s` before now to `clip_after_s` after; resolves when stored."""

    def add_frame_listener(self, listener: Callable[[Frame], None]) -> Callable[[], None]:
        """Call `listener` on the camera thread with every frame (masked, encoded) until the returned
        function is called; it must only hand over (live view)."""


def make_camera(
    config: CameraConfig,
    media: MediaStore,
    clock: FrameClock | None = None,
    throttle: Callable[[], MediaThrottle] | None = None,
) -> Camera:
    """The camera for one `[[cameras]]` table; `clock` is for tests (default: the wall clock),
    `throttle` the data budget's say (default: none)."""
    if config.backend == "sim":
        from peripherals.camera.sim import SyntheticCamera

        return SyntheticCamera(config, media, clock, throttle)
    from peripherals.camera.driver import Picamera2Camera

    return Picamera2Camera(config, media, clock, throttle)
