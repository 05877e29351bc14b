"""Clip bytes: a 30 s, 640x480 evidence clip as H.264 in MP4 beside the same clip as MJPEG.

The real camera pipeline (`peripherals.camera` synthetic backend: a moving scene with
sensor-like noise, the privacy mask of the README's example, 2 fps, JPEG quality 60) runs on a
hand-moved clock; a clip is asked for 45 s in (20 s before, 10 s after: 61 frames), once with
`clip_format = "mp4"` (the default: libx264 through PyAV here, CRF 28, denoise 1.5 px) and once
with `clip_format = "mjpeg"` (what main stores), from the same scene at the same moments. Each
MP4 is decoded frame by frame (every frame's presentation time must be the capture time drawn
into it); reported: bytes, frames, frame rate, the encode CPU on the camera thread, and the
ratio (goal: at most 0.25 of MJPEG, at least the same frame rate). `--crf` and `--denoise`
show what each setting buys.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _common as c

from edge.media import MediaStore
from peripherals.camera import CameraConfig, MaskRegion, make_camera
from tests.support.clips import frame_times
from tests.support.manual_clock import ManualClock
from tests.support.recording_outbox import RecordingOutbox


def one_clip(work: Path, **options: object) -> dict:
    outbox = RecordingOutbox(work / "outbox")
    store = MediaStore(work, outbox.emit)
    clock = ManualClock()
    mask = (MaskRegion(x=0.0, y=0.6, w=1.0, h=0.4),)
    config = CameraConfig(window=1, backend="sim", snapshot_interval_s=0, mask=mask, **options)  # type: ignore[arg-type]
    camera = make_camera(config, store, clock)
    camera.start()
    clock.advance(45)
    future = camera.clip(caused_by="bench-1")
    cpu0 = time.process_time()
    clock.advance(10.5)
    event = future.result(timeout=30)
    cpu = time.process_time() - cpu0
    camera.stop()
    outbox.close()
    data = (work / event.data["path"]).read_bytes()
    times = frame_times(data)
    span = times[-1] - times[0]
    return {
        "bytes": len(data),
        "frames": len(times),
        "fps": round((len(times) - 1) / span, 3),
        "seconds": round(span, 3),
        "ext": event.data["ext"],
        "cpu_s_during_clip": round(cpu, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--crf", type=int, default=CameraConfig.clip_crf)
    ap.add_argument("--denoise", type=float, default=CameraConfig.clip_denoise)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="yimen-bench-clip-") as tmp:
        work = Path(tmp)
        mjpeg = one_clip(work / "mjpeg", clip_format="mjpeg")
        mp4 = one_clip(work / "mp4", clip_format="mp4", clip_crf=args.crf, clip_denoise=args.denoise)
        plain = one_clip(work / "mp4-nodenoise", clip_format="mp4", clip_crf=args.crf, clip_denoise=0)
    ratio = mp4["bytes"] / mjpeg["bytes"]
    result = {
        "mjpeg": mjpeg,
        "mp4": mp4,
        "mp4_without_denoise": plain,
        "crf": args.crf,
        "denoise_px": args.denoise,
        "ratio": round(ratio, 3),
        "ratio_without_denoise": round(plain["bytes"] / mjpeg["bytes"], 3),
        "goal": "<= 0.25 of MJPEG bytes, fps >= MJPEG's",
        "goal_met": ratio <= 0.25 and mp4["fps"] >= mjpeg["fps"] - 0.001 and mp4["frames"] == mjpeg["frames"],
    }
    c.report(
        "clip_size",
        result,
        f"30 s 640x480 clip: MP4 {mp4['bytes']:,} B ({mp4['frames']} frames, {mp4['fps']} fps) vs MJPEG "
        f"{mjpeg['bytes']:,} B ({mjpeg['frames']} frames): {ratio:.3f} (goal <= 0.25: "
        f"{'met' if result['goal_met'] else 'NOT met'}); without denoise {result['ratio_without_denoise']}",
    )


if __name__ == "__main__":
    main()
