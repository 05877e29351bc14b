"""Camera bytes on the wire per station per hour at default settings, and how well the upload cap holds.

    python bench/camera_wire.py [--seconds 60] [--clips-per-hour 2] [--cap-bytes 600000]

Part 1 runs one station in this process as the gateway wires it (outbox, media store, uploader,
uplink, a synthetic camera at the default 640x480 q60 2 fps, 20 s + 10 s clips, the bad-rating
hook) against a private Mosquitto, for `--seconds` of wall clock with a snapshot every 10 s and
one bad rating after the ring has filled. A county subscriber on its own connection measures
every media message as an MQTT PUBLISH packet: the `media` event, the manifest and the chunks.
Per item sizes do not depend on the snapshot interval or the cap (raised to 4 Mbit/s here so the
run is short), so the hour is scaled from them: 60 snapshots (default interval 60 s) plus
`--clips-per-hour` bad-rating clips per window.

Part 2 uploads `--cap-bytes` of incompressible data at the default cap (`[media] upload_kbps`)
and measures the rate at the subscriber: the bytes of every message but the last, over the time
from the first to the last (the pace holds each message back until the one before is paid for).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from _common import COUNTY, STATION, report  # first: puts the repository on sys.path

from edge.cameras import Cameras
from edge.clock import ClockSource
from edge.config import ClockConfig
from edge.events import Event, NewEvent, Priority
from edge.media import MediaStore, MediaType
from edge.outbox import Outbox
from mqtt.broker import Mosquitto
from mqtt.config import BrokerConfig, MediaConfig
from mqtt.media_upload import MediaUploader
from mqtt.uplink import Uplink
from peripherals.camera import CameraConfig, make_camera
from tests.support.media_county import MediaCounty


class Station:
    def __init__(self, storage: Path, port: int, media: MediaConfig) -> None:
        self.outbox = Outbox(
            storage / "outbox.db", STATION, clock=ClockSource(ClockConfig(sync="assume")), max_bytes=512 << 20
        )
        self.store = MediaStore(storage, self.outbox.append)
        self.uploader = MediaUploader(media, storage, COUNTY, STATION)
        self.uplink = Uplink(BrokerConfig(port=port), COUNTY, STATION, self.outbox, media=self.uploader)
        self.uplink.start()

    def stop(self) -> None:
        self.uplink.stop()
        self.outbox.close()
        self.uploader.close()


def wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def item_wire(county: MediaCounty, event: Event) -> int:
    """PUBLISH bytes of one media item at the subscriber: its `media` event, manifest and chunks."""
    media_id = event.data["media_id"]
    files = sum(r.wire for r in county.received("media") if r.topic.kind == media_id)
    events = [r for r in county.received("events") if r.topic.kind == "media"]
    return files + next(r.wire for r in events if Event.from_bytes(r.payload).id == event.id)


def per_hour(tmp: Path, seconds: float, clips_per_hour: float) -> dict:
    with Mosquitto(tmp / "broker1") as broker:
        county = MediaCounty(broker.port, COUNTY).start()
        station = Station(tmp / "state1", broker.port, MediaConfig(upload_kbps=4000))
        camera = make_camera(CameraConfig(window=1, backend="sim", snapshot_interval_s=10), station.store)
        station.outbox.subscribe_events(Cameras([camera]).on_events)
        camera.start()
        t0 = time.monotonic()
        time.sleep(CameraConfig.clip_before_s + 2)  # the ring is full
        rating = station.outbox.append(NewEvent("rating", Priority.CRITICAL, {"verdict": "bad", "window": 1}))
        time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
        camera.stop()
        media = [Event.from_bytes(r.payload) for r in county.received("events") if r.topic.kind == "media"]
        wait(lambda: all(county.file(e.data["media_id"]) for e in media), 60, "every item at the county")
        station.stop()
        county.stop()
    snaps = [item_wire(county, e) for e in media if e.data["type"] == "snapshot"]
    clips = [item_wire(county, e) for e in media if e.data["caused_by"] == rating.id]
    snap, clip = sum(snaps) / len(snaps), sum(clips) / len(clips)
    payload = [e.data["size"] for e in media if e.data["type"] == "snapshot"]
    hour = 3600 / CameraConfig.snapshot_interval_s * snap + clips_per_hour * clip
    return {
        "snapshots": len(snaps),
        "snapshot_file_bytes": round(sum(payload) / len(payload)),
        "snapshot_wire_bytes": round(snap),
        "clip_file_bytes": next(e.data["size"] for e in media if e.data["caused_by"] == rating.id),
        "clip_wire_bytes": round(clip),
        "clips_per_hour": clips_per_hour,
        "wire_bytes_per_hour": round(hour),
        "mean_kbps": round(hour * 8 / 3600 / 1000, 2),
    }


def cap_accuracy(tmp: Path, nbytes: int) -> dict:
    media = MediaConfig()
    with Mosquitto(tmp / "broker2") as broker:
        county = MediaCounty(broker.port, COUNTY).start()
        station = Station(tmp / "state2", broker.port, media)
        data = random.Random(1).randbytes(nbytes)
        event = station.store.put(MediaType.SNAPSHOT, 1, data, started=time.time(), ended=time.time())
        expected_s = nbytes / (media.upload_kbps * 1000 / 8)
        wait(lambda: county.file(event.data["media_id"]) is not None, 2 * expected_s + 10, "the file")
        station.stop()
        county.stop()
    msgs = county.received("media")
    span = msgs[-1].at - msgs[0].at
    rate = sum(r.wire for r in msgs[:-1]) / span  # each message's bytes paid for by the wait after it
    return {
        "cap_kbps": media.upload_kbps,
        "file_bytes": nbytes,
        "seconds": round(span, 2),
        "measured_kbps": round(rate * 8 / 1000, 2),
        "ratio": round(rate * 8 / 1000 / media.upload_kbps, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clips-per-hour", type=float, default=2.0)
    parser.add_argument("--cap-bytes", type=int, default=600_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="yimen-wire-") as tmp:
        hour = per_hour(Path(tmp), args.seconds, args.clips_per_hour)
        cap = cap_accuracy(Path(tmp), args.cap_bytes)
    report(
        "camera_wire",
        {"per_hour": hour, "cap": cap},
        f"{hour['wire_bytes_per_hour'] / 1e6:.2f} MB/h per window ({hour['mean_kbps']} kbit/s mean) with "
        f"{args.clips_per_hour:g} clips/h; cap {cap['cap_kbps']:g} kbit/s measured {cap['measured_kbps']} kbit/s",
    )


if __name__ == "__main__":
    main()
