"""CPU and memory of one synthetic camera: frames at the clip rate, the ring full, snapshots, a clip.

    python bench/camera_cpu.py [--seconds 60] [--snapshot-interval 10] [--fps 2]

Runs on the wall clock, as the gateway does, with a real media store in a temporary folder and
an emit that only counts. Prints CPU time as a share of one core, peak RSS (and what it was
before the camera started, i.e. the interpreter plus Pillow), ring size, and the media bytes per
hour a window produces at these settings: what the uplink will have to carry.
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.events import Clock, Event, NewEvent, format_ts
from edge.media import MediaStore
from peripherals.camera import CameraConfig, make_camera


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--snapshot-interval", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=CameraConfig.fps)
    args = parser.parse_args()

    events: list[Event] = []

    def emit(new: NewEvent) -> Event:
        event = Event(
            "bench",
            len(events) + 1,
            new.kind,
            format_ts(datetime.now().astimezone()),
            Clock.SYNCED,
            new.priority,
            new.data,
        )
        events.append(event)
        return event

    config = CameraConfig(window=1, backend="sim", fps=args.fps, snapshot_interval_s=args.snapshot_interval)
    with tempfile.TemporaryDirectory() as storage:
        camera = make_camera(config, MediaStore(Path(storage), emit))
        baseline_mb = peak_rss_mb()
        cpu0, wall0 = time.process_time(), time.monotonic()
        camera.start()
        # One clip in the middle, once the ring is full: its writes are part of the cost.
        time.sleep(max(args.seconds / 2, config.clip_before_s + 1))
        clip = camera.clip(caused_by="bench-1")
        time.sleep(max(0.0, args.seconds - (time.monotonic() - wall0)))
        clip_event = clip.result(timeout=config.clip_after_s + 5)
        status = camera.status()
        camera.stop()
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0

    snapshots = [e.data["size"] for e in events if e.data["type"] == "snapshot"]
    mean_snapshot = sum(snapshots) / len(snapshots)
    snapshot_mb_per_hour = mean_snapshot * 3600 / CameraConfig.snapshot_interval_s / 1e6
    print(f"machine: {platform.machine()} {platform.processor() or ''}, Python {platform.python_version()}")
    print(
        f"settings: {config.width}x{config.height} q{config.quality} {config.fps} fps, "
        f"snapshot every {config.snapshot_interval_s:g} s, ring {config.clip_before_s:g} s"
    )
    print(f"ran {wall:.1f} s: {status['frames']} frames, {len(snapshots)} snapshots, 1 clip")
    print(f"CPU: {cpu:.2f} s = {100 * cpu / wall:.1f} % of one core")
    print(f"peak RSS: {peak_rss_mb():.1f} MB (before the camera started: {baseline_mb:.1f} MB)")
    print(f"ring: {status['ring_frames']} frames, {status['ring_bytes'] / 1e6:.2f} MB")
    print(f"snapshot: mean {mean_snapshot / 1024:.1f} KB, max {max(snapshots) / 1024:.1f} KB")
    print(f"clip: {clip_event.data['frames']} frames, {clip_event.data['size'] / 1e6:.2f} MB")
    print(
        f"at the default snapshot interval ({CameraConfig.snapshot_interval_s:g} s): "
        f"{snapshot_mb_per_hour:.2f} MB/h of snapshots per window, before MQTT overhead"
    )


if __name__ == "__main__":
    main()
