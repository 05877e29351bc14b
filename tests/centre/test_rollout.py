"""Rollouts on the console (`yimen centre` with [rollout]), against a station played by the test:
the offer carries the signed manifest, chunks are served only to the station a running rollout
offered that release to and within bounds, per-station state follows the station's events, stop
stops. The real station's side is in tests/ota/test_update_end_to_end.py."""

from __future__ import annotations

import base64
import json
import os
import queue
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edge.events import Event
from mqtt import topics
from mqtt.broker import Mosquitto
from ota import release
from tests.conftest import COUNTY, wait_until


def make_release(releases: Path, version: str) -> release.Manifest:
    files = releases / f"yimen-{version}" / "files"
    files.mkdir(parents=True)
    (files / "a.whl").write_bytes(os.urandom(40_000))
    key = releases / "county.key"
    if not key.exists():
        release.keygen(key)
    raw = release.make_manifest(version, "linux_x86_64", "3.11", [files / "a.whl"], 16 * 1024)
    (files.parent / release.MANIFEST).write_bytes(raw)
    (files.parent / release.SIGNATURE).write_text(release.sign(raw, release.load_private(key)))
    return release.parse_manifest(raw)


def post(console: Any, path: str, body: Any) -> tuple[int, dict]:
    """POST as the console's logged-in admin: the status and the answer, refusals included."""
    http = console.http
    headers = {"Content-Type": "application/json", "X-CSRF-Token": http.csrf}
    try:
        with http.open(path, json.dumps(body).encode(), headers) as res:
            return res.status, json.load(res)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


class Station:
    """A station's MQTT side only: its birth, its commands and chunks, its ota-want and update events."""

    def __init__(self, port: int, sid: str) -> None:
        self.sid = sid
        self.got: queue.SimpleQueue = queue.SimpleQueue()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{sid}", protocol=paho.MQTTv5)
        self.client.on_message = lambda _c, _u, msg: self.got.put((msg.topic, msg.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        root = topics.station_root(COUNTY, sid)
        self.client.subscribe([(f"{root}/cmd/+", 1), (f"{root}/ota/#", 1)])
        self.client.publish(topics.status_topic(COUNTY, sid), json.dumps({"state": "online", "session": 1,
                            "version": "1.0.0"}), qos=1, retain=True)  # fmt: skip

    def want(self, doc: Any) -> None:
        self.client.publish(topics.ota_want_topic(COUNTY, self.sid), json.dumps(doc).encode(), qos=1)

    def event(self, seq: int, data: dict) -> None:
        body = {"id": f"{self.sid}-{seq}", "station": self.sid, "seq": seq, "kind": "update", "data": data,
                "ts": "2026-11-29T08:00:00.000+08:00", "clock": "synced", "priority": "normal"}  # fmt: skip
        Event.from_bytes(json.dumps(body).encode())
        self.client.publish(topics.event_topic(COUNTY, self.sid, "update"), json.dumps(body).encode(), qos=1)

    def take(self, timeout: float = 5) -> tuple[str, bytes]:
        return self.got.get(timeout=timeout)

    def nothing(self, wait: float = 1.0) -> bool:
        try:
            self.got.get(timeout=wait)
        except queue.Empty:
            return True
        return False


def test_rollout_offers_serves_tracks_and_stops(tmp_path: Path, broker: Mosquitto, console_factory: Any) -> None:
    releases = tmp_path / "releases"
    manifest = make_release(releases, "2.0.0")
    extra = f'[rollout]\nreleases = "{releases}"\nstate = "{tmp_path / "rollouts.json"}"\n'
    console = console_factory(broker.port, extra=extra).start()
    a, b = Station(broker.port, "st-a"), Station(broker.port, "st-b")
    wait_until(lambda: len(console.get("/api/rollouts")["stations"]) == 2, 10, "the console to see both stations")

    for bad in [{"version": "9.9.9", "stations": ["st-a"]}, {"version": "2.0.0"}, {"version": "2.0.0", "share": 2},
                {"version": "2.0.0", "stations": ["../x"]}, ["not", "an", "object"]]:  # fmt: skip
        status, doc = post(console, "/api/rollouts", bad)
        assert status == 400 and doc["error"], (bad, doc)

    status, doc = post(console, "/api/rollouts", {"version": "2.0.0", "stations": ["st-a"], "per_minute": 60})
    assert status == 201
    rid = doc["id"]
    topic, payload = a.take()
    assert topic.endswith("/cmd/update")
    args = json.loads(payload)
    assert base64.b64decode(args["manifest"]) == manifest.raw
    assert b.nothing(), "a station the rollout does not name was offered it"

    a.want({"release": manifest.release_id, "file": 0, "chunks": [0, 2]})
    got = dict(a.take() for _ in range(2))
    data = (releases / "yimen-2.0.0" / "files" / "a.whl").read_bytes()
    assert got[topics.ota_chunk_topic(COUNTY, "st-a", manifest.release_id, 0, 2)] == data[32768:49152]

    # Hostile or mistaken asks get nothing: too many chunks, out of range, not offered to that station.
    a.want({"release": manifest.release_id, "file": 0, "chunks": list(range(100))})
    a.want({"release": manifest.release_id, "file": 0, "chunks": [99]})
    a.want({"release": manifest.release_id, "file": 5, "chunks": [0]})
    a.want("x" * 5000)
    b.want({"release": manifest.release_id, "file": 0, "chunks": [0]})
    assert a.nothing() and b.nothing()
    wait_until(lambda: console.get("/api/rollouts")["wants_refused"] == 5, 5, "five refused asks")

    a.event(1, {"state": "healthy", "release": manifest.release_id, "version": "2.0.0"})
    roll = lambda: next(r for r in console.get("/api/rollouts")["rollouts"] if r["id"] == rid)  # noqa: E731
    wait_until(lambda: roll()["per_station"]["st-a"]["state"] == "healthy", 5, "st-a healthy on the console")
    assert roll()["counts"]["healthy"] == 1

    assert post(console, f"/api/rollouts/{rid}/stop", {})[0] == 200
    a.want({"release": manifest.release_id, "file": 0, "chunks": [1]})
    assert a.nothing(), "a stopped rollout still served chunks"
    assert roll()["stopped"]
    with console.http.open("/rollouts") as res:
        assert "远程升级" in res.read().decode()
    for s in (a, b):
        s.client.loop_stop()
        s.client.disconnect()


def test_a_share_of_the_fleet_is_offered_throttled(tmp_path: Path, broker: Mosquitto, console_factory: Any) -> None:
    releases = tmp_path / "releases"
    make_release(releases, "2.0.0")
    extra = f'[rollout]\nreleases = "{releases}"\nstate = "{tmp_path / "rollouts.json"}"\n'
    console = console_factory(broker.port, extra=extra).start()
    stations = [Station(broker.port, f"st-{i}") for i in range(6)]
    wait_until(lambda: len(console.get("/api/rollouts")["stations"]) == 6, 10, "the console to see the fleet")
    status, doc = post(console, "/api/rollouts", {"version": "2.0.0", "share": 0.5, "per_minute": 1})
    assert status == 201
    rid = doc["id"]
    roll = lambda: next(r for r in console.get("/api/rollouts")["rollouts"] if r["id"] == rid)  # noqa: E731
    wait_until(lambda: len(roll()["per_station"]) == 1, 5, "the first offer")
    offered = [s for s in stations if not s.nothing(0.2)]
    assert len(offered) == 1, "per_minute = 1 offers one station in the first minute, not the whole share"
    for s in stations:
        s.client.loop_stop()
        s.client.disconnect()
