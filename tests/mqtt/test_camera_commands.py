"""Cameras seen from the county: live view that stops at its deadline or on request, a snapshot on
demand, and a bad rating's clip arriving whole, all from a gateway process over a real broker."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image

from edge.events import Event
from edge.media import MediaStore
from mqtt.broker import free_port
from mqtt.commands import CommandError
from mqtt.config import MediaConfig
from mqtt.live import LiveView
from peripherals.camera import CameraConfig, make_camera
from peripherals.camera.sim import read_timestamp
from tests.conftest import COUNTY, STATION, GatewayProcess, station_config, wait_until
from tests.mqtt.test_commands import Requester
from tests.support.clips import frame_times
from tests.support.media_county import MediaCounty
from tests.support.recording_outbox import RecordingOutbox

CAMERA = """
[media]
upload_kbps = 4000
chunk_kb = 8

[[cameras]]
window = 1
backend = "sim"
fps = 4
snapshot_interval_s = 0
clip_before_s = 2
clip_after_s = 1
"""


def drawn_times(jpegs: list[bytes]) -> list[float]:
    return [read_timestamp(Image.open(io.BytesIO(j))) / 1000 for j in jpegs]


def test_live_view_snapshot_and_bad_rating_clip(tmp_path: Path, broker, gateways) -> None:
    county = MediaCounty(broker.port, COUNTY).start()
    config = station_config(tmp_path, broker.port, extra=CAMERA, rate=4)
    config.write_text(config.read_text().replace("seed = 7", "seed = 7\nwindows = 1"))
    gw = GatewayProcess(config).start()
    gateways.append(gw)
    req = None
    try:
        wait_until(lambda: gw.status()["broker"]["connection"] == "connected", 15, "the gateway to connect")
        req = Requester(broker.port)

        # Live view for 2 s: frames flow, then stop by themselves; none drawn after the deadline.
        _msg, reply = req.request("live-view", json.dumps({"window": 1, "seconds": 2, "interval_s": 0.5}).encode())
        assert reply["ok"], reply
        result = reply["result"]
        assert (result["via"], result["topic"]) == ("mqtt", f"yimen/v1/{COUNTY}/{STATION}/live/1")
        time.sleep(3)
        frames = [r.payload for r in county.received("live")]
        time.sleep(1.5)
        assert len(county.received("live")) == len(frames), "live frames kept coming after the deadline"
        assert 2 <= len(frames) <= 6
        assert max(drawn_times(frames)) <= result["until"]

        # Live view stopped by the county before its deadline.
        req.request("live-view", json.dumps({"window": 1, "seconds": 600, "interval_s": 0.5}).encode())
        wait_until(lambda: len(county.received("live")) > len(frames), 5, "live frames again")
        _msg, reply = req.request("live-view", b'{"window": 1, "stop": true}')
        assert reply == {"ok": True, "result": {"window": 1, "stopped": True}}
        time.sleep(0.5)
        stopped_at = len(county.received("live"))
        time.sleep(1.5)
        assert len(county.received("live")) == stopped_at, "live frames kept coming after stop"

        _msg, reply = req.request("live-view", b'{"window": 9}')
        assert reply["error"]["code"] == "bad-request" and "no camera watches window 9" in reply["error"]["message"]

        # A snapshot on demand, then uploaded whole.
        _msg, reply = req.request("snapshot", b'{"window": 1}')
        assert reply["ok"], reply
        snap_id = reply["result"]["media_id"]
        wait_until(lambda: county.file(snap_id) is not None, 15, "the snapshot at the county")
        assert (tmp_path / "state" / "media" / f"{snap_id}.jpg").read_bytes() == county.file(snap_id)

        # The simulator's bad ratings (window 1) each yield a clip that reaches the county whole.
        # One rated now has a full ring behind it (the camera has run for several seconds).
        since = time.time()

        def evidence() -> list[tuple[dict, Event]]:
            events = {e.id: e for e in (Event.from_bytes(r.payload) for r in county.received("events"))}
            found = []
            for r in county.received("media"):
                if r.topic.part == "manifest":
                    manifest = json.loads(r.payload)
                    cause = events.get(manifest["caused_by"])
                    recent = cause is not None and datetime.fromisoformat(cause.ts).timestamp() > since
                    if recent and county.file(manifest["media_id"]) is not None:
                        found.append((manifest, cause))
            return found

        wait_until(evidence, 30, "a bad rating's clip at the county")
        clip, cause = evidence()[0]
        assert (cause.kind, cause.data["verdict"], cause.data["window"]) == ("rating", "bad", 1)
        times = frame_times(county.file(clip["media_id"]))
        assert clip["content_type"] == "video/mp4"
        rated = datetime.fromisoformat(cause.ts).timestamp()
        assert rated - 2.5 < times[0] < rated - 1 and rated + 0.5 < times[-1] <= rated + 1.5
    finally:
        if req is not None:
            req.close()
        county.stop()
    assert gw.stop() == 0


@pytest.fixture
def live(tmp_path: Path):
    recorder = RecordingOutbox(tmp_path / "outbox")
    camera = make_camera(CameraConfig(window=1, backend="sim"), MediaStore(tmp_path, recorder.emit))

    def make(config: MediaConfig) -> LiveView:
        return LiveView({1: camera}, lambda _t, _p: None, COUNTY, STATION, config)

    yield make
    recorder.close()


def test_push_without_a_server_url_is_refused(live) -> None:
    with pytest.raises(CommandError, match="no \\[media\\] live_push_url") as info:
        live(MediaConfig()).commands()[0].handler({"window": 1, "via": "push"})
    assert info.value.code == "bad-request"


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed here: push is untested")
def test_push_reaches_an_rtmp_server_and_stops_at_the_deadline(tmp_path: Path) -> None:
    port = free_port()
    received = tmp_path / "received.flv"
    server = subprocess.Popen(
        ["ffmpeg", "-loglevel", "error", "-listen", "1", "-i", f"rtmp://127.0.0.1:{port}/live/st", "-c", "copy",
         str(received)],
    )  # fmt: skip
    recorder = RecordingOutbox(tmp_path / "outbox")
    camera = make_camera(CameraConfig(window=1, backend="sim", fps=4), MediaStore(tmp_path, recorder.emit))
    camera.start()
    try:
        time.sleep(0.5)  # the server listens
        config = MediaConfig(live_push_url=f"rtmp://127.0.0.1:{port}/live/st")
        view = LiveView({1: camera}, lambda _t, _p: None, COUNTY, STATION, config)
        reply = view.commands()[0].handler({"window": 1, "seconds": 2})
        assert reply["via"] == "push"
        wait_until(lambda: not view.status()["sessions"], 10, "the push to end at its deadline")
        server.wait(10)  # the stream ended, so the server finished its file
        assert received.stat().st_size > 1000
    finally:
        camera.stop()
        recorder.close()
        if server.poll() is None:
            server.kill()
