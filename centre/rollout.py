"""County side of over-the-air updates: rollouts to stations, and the release chunks they ask for.

A rollout offers one built release (`yimen release build`) to named stations or to a share of
the stations this service has seen (their retained status), at most `per_minute` offers a
minute (ThingsBoard's throttling: a county's link and broker are shared with the events). Each
offer is the `update` command with the signed manifest. The station then asks for chunks on
`.../ota-want`; they are answered only for a release an active rollout offered to that station,
at most WANT_MAX chunks per request, each read from the release's files by offset.

Per-station state comes from the station itself: the command's reply (`refused` with its code),
its `update` events (downloading, downloaded, installed, healthy, rolled-back, refused) and the
version in its birth. Stopping a rollout offers to no one else and answers no more chunks; a
station in the middle of its download keeps what it has and asks again if a rollout resumes.

One thread ("yimen-rollout") owns all state; paho's callbacks and the web handlers enqueue or
read a snapshot under a lock. The state is kept in a JSON file, replaced atomically.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from centre.auth import access
from edge.configfile import Section
from mqtt import topics
from mqtt.client import make_client
from mqtt.config import BrokerConfig
from ota import build, release
from ota.paths import read_json, write_json

log = logging.getLogger("yimen.rollout")

WANT_MAX = 8  # chunks one request may ask for
MAX_WANT_BYTES = 1024
STATES = ("offered", "refused", "downloading", "downloaded", "installed", "healthy", "rolled-back")


PAGE = Path(__file__).parent / "static" / "rollouts.html"


class RolloutError(ValueError):
    pass


@dataclass(frozen=True)
class RolloutConfig:
    """`[rollout]` in the console's config: where built releases are, where rollout state is kept."""

    releases: Path
    state: Path


def parse_rollout(section: Section) -> RolloutConfig:
    cfg = RolloutConfig(
        releases=section.get_path("releases", "releases"), state=section.get_path("state", "rollouts.json")
    )
    section.done()
    return cfg


class Rollouts:
    def __init__(
        self,
        broker: BrokerConfig,
        county: str,
        releases: Path,
        state_file: Path,
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.county = county
        self.releases = releases
        self._state_file = state_file
        self._now = now
        self._lock = threading.Lock()
        doc = read_json(state_file) or {}
        self._rollouts: dict[str, dict[str, Any]] = doc.get("rollouts", {})
        self._seen: dict[str, str | None] = doc.get("seen", {})  # station -> version from its birth
        self._loaded: dict[str, tuple[release.Manifest, str]] = {}
        self._queue: queue.SimpleQueue[tuple] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="yimen-rollout", daemon=True)
        self.counts = {"chunks_sent": 0, "chunk_bytes": 0, "wants_refused": 0}
        self.client = make_client(broker, f"yimen-rollout-{county}-{uuid.uuid4().hex[:6]}", reconnect_on_failure=True)
        self.client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(
            [
                (f, 1)
                for f in (
                    topics.county_status_filter(county),
                    topics.county_ota_want_filter(county),
                    topics.county_events_filter(county),
                    topics.county_reply_filter(county),
                )
            ]
        )
        self.client.on_message = lambda _c, _u, msg: self._queue.put(("msg", msg.topic, msg.payload, msg.properties))
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self._broker = broker

    # ----- any thread ----------------------------------------------------------------------------

    def start(self) -> Rollouts:
        self.client.connect_async(self._broker.host, self._broker.port, keepalive=self._broker.keepalive_s)
        self.client.loop_start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._queue.put(("stop",))
        self._thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()

    def begin(self, version: str, stations: list[str] | None, share: float | None, per_minute: float) -> str:
        """Start a rollout of release `version` (from the releases directory); returns its id."""
        manifest, _sig = self._release(version)
        if (stations is None) == (share is None):
            raise RolloutError("give either stations (a list of ids) or share (0 < share <= 1)")
        if share is not None and not 0 < share <= 1:
            raise RolloutError(f"share {share} must be above 0 and at most 1")
        if not 0 < per_minute <= 10_000:
            raise RolloutError(f"per_minute {per_minute} must be above 0 and at most 10000")
        for sid in stations or []:
            topics.station_root(self.county, sid)  # a valid id, or ValueError
        rid = f"ro-{uuid.uuid4().hex[:8]}"
        roll = {"id": rid, "version": version, "release": manifest.release_id, "stations": stations,
                "share": share, "per_minute": per_minute, "started": self._now(), "stopped": None,
                "per_station": {}}  # fmt: skip
        with self._lock:
            self._rollouts[rid] = roll
            self._save()
        self._queue.put(("tick",))
        return rid

    def halt(self, rollout: str) -> None:
        with self._lock:
            roll = self._rollouts.get(rollout)
            if roll is None:
                raise RolloutError(f"no rollout {rollout!r}")
            roll["stopped"] = roll["stopped"] or self._now()
            self._save()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            rollouts = json.loads(json.dumps(list(self._rollouts.values())))
            seen = dict(self._seen)
        for roll in rollouts:
            counts = dict.fromkeys(STATES, 0)
            for st in roll["per_station"].values():
                counts[st["state"]] = counts.get(st["state"], 0) + 1
            roll["counts"] = counts
        return {"rollouts": rollouts, "stations": seen, **self.counts}

    # ----- the rollout thread --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                item = ("tick",)
            if item[0] == "stop":
                return
            try:
                if item[0] == "msg":
                    self._message(item[1], item[2], item[3])
                self._offer_due()
            except Exception:
                log.exception("rollout: a message or an offer failed; going on")

    def _release(self, version: str) -> tuple[release.Manifest, str]:
        if version not in self._loaded:
            directory = self.releases / f"yimen-{version}"
            if not directory.is_dir() or not release.is_version(version):
                raise RolloutError(f"no release {version!r} in {self.releases} (build it with yimen release build)")
            self._loaded[version] = build.open_release(directory)
        return self._loaded[version]

    def _message(self, topic_text: str, payload: bytes, props: Any) -> None:
        topic = topics.parse(topic_text)
        if topic.channel == "cmd-reply" and topic.kind == "update":
            self._reply(topic.station, payload, props)
        elif topic.channel == "status":
            doc = json.loads(payload) if payload else {}
            if isinstance(doc, dict) and doc.get("state") == "online":
                with self._lock:
                    self._seen[topic.station] = str(doc.get("version"))[:32]
                    self._save()
        elif topic.channel == "events" and topic.kind == "update":
            data = json.loads(payload).get("data", {})
            self._set(topic.station, data.get("release"), str(data.get("state")), data)
        elif topic.channel == "ota-want":
            self._want(topic.station, payload)

    def _reply(self, station: str, payload: bytes, props: Any) -> None:
        """The station's answer to an offer (the topic names the station; the payload cannot)."""
        corr = getattr(props, "CorrelationData", None)
        _station, _, rel = (corr or b"").decode(errors="replace").partition("/")
        doc = json.loads(payload)
        if not doc.get("ok"):
            error = doc.get("error") or {}
            self._set(station, rel, "refused", {"code": error.get("code"), "reason": error.get("message")})

    def _set(self, station: str, rel: Any, state: str, data: dict[str, Any]) -> None:
        if state not in STATES:
            return
        with self._lock:
            for roll in self._rollouts.values():
                entry = roll["per_station"].get(station)
                if roll["release"] == rel and entry is not None:
                    reason, code = data.get("reason"), data.get("code")  # from a station: bounded, as text
                    entry.update(state=state, at=self._now(), reason=None if reason is None else str(reason)[:300],
                                 code=None if code is None else str(code)[:40])  # fmt: skip
            self._save()

    def _want(self, station: str, payload: bytes) -> None:
        """A station asks for chunks: answered only within an active rollout that offered it that release."""
        try:
            if len(payload) > MAX_WANT_BYTES:
                raise ValueError("request too large")
            doc = json.loads(payload)
            rel, file_no, chunks = str(doc["release"]), doc["file"], doc["chunks"]
            if not (isinstance(file_no, int) and isinstance(chunks, list) and 0 < len(chunks) <= WANT_MAX):
                raise ValueError("file must be an int and chunks a list of 1..8 ints")
            with self._lock:
                roll = next((r for r in self._rollouts.values() if r["release"] == rel and not r["stopped"]
                             and station in r["per_station"]), None)  # fmt: skip
            if roll is None:
                raise ValueError(f"no active rollout offered release {rel} to {station}")
            manifest, _sig = self._release(roll["version"])
            if not 0 <= file_no < len(manifest.files):
                raise ValueError(f"file {file_no} is not in the release")
            entry = manifest.files[file_no]
            path = self.releases / f"yimen-{roll['version']}" / "files" / entry.name
            with open(path, "rb") as fh:
                for n in chunks:
                    if not (isinstance(n, int) and 0 <= n < entry.chunks(manifest.chunk_size)):
                        raise ValueError(f"chunk {n!r} is not in file {file_no}")
                    fh.seek(n * manifest.chunk_size)
                    data = fh.read(manifest.chunk_size)
                    self.client.publish(topics.ota_chunk_topic(self.county, station, rel, file_no, n), data, qos=1)
                    self.counts["chunks_sent"] += 1
                    self.counts["chunk_bytes"] += len(data)
            if roll["per_station"][station]["state"] == "offered":
                self._set(station, rel, "downloading", {})
        except (ValueError, KeyError, TypeError, OSError) as exc:
            self.counts["wants_refused"] += 1
            log.warning("release chunks for %s refused: %s", station, exc)

    def _offer_due(self) -> None:
        """Offer each active rollout to the next stations its throttle allows."""
        now = self._now()
        with self._lock:
            rolls = [r for r in self._rollouts.values() if not r["stopped"]]
            seen = sorted(self._seen)
        for roll in rolls:
            targets = roll["stations"] if roll["stations"] is not None else self._share(roll, seen)
            allowed = math.floor((now - roll["started"]) / 60 * roll["per_minute"]) + 1
            todo = [s for s in targets if s not in roll["per_station"]][: max(0, allowed - len(roll["per_station"]))]
            for station in todo:
                self._offer(roll, station)

    def _share(self, roll: dict[str, Any], seen: list[str]) -> list[str]:
        """A stable share of the stations seen so far: the same stations whenever it is asked."""
        ranked = sorted(seen, key=lambda s: hashlib.sha256(f"{roll['id']}/{s}".encode()).digest())
        return ranked[: math.ceil(len(ranked) * roll["share"])]

    def _offer(self, roll: dict[str, Any], station: str) -> None:
        manifest, signature = self._release(roll["version"])
        args = {"manifest": base64.b64encode(manifest.raw).decode(), "signature": signature}
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = topics.reply_topic(self.county, station, "update")
        props.CorrelationData = f"{station}/{roll['release']}".encode()
        self.client.publish(topics.command_topic(self.county, station, "update"), json.dumps(args), qos=1,
                            properties=props)  # fmt: skip
        with self._lock:
            roll["per_station"][station] = {"state": "offered", "at": self._now(), "reason": None, "code": None}
            self._save()
        log.info("rollout %s: offered %s to %s", roll["id"], roll["version"], station)

    def _save(self) -> None:
        write_json(self._state_file, {"rollouts": self._rollouts, "seen": self._seen})


def routes(rollouts: Rollouts) -> list[Route]:
    """The console's rollout API, behind the console's gate: only admins start or stop a rollout
    (it changes the code every station runs), and each start and stop is in the audit trail."""

    @access("admin")
    def listing(_request: Request) -> Response:
        return JSONResponse(rollouts.snapshot())

    @access("admin", audit="rollout")
    async def start(request: Request) -> Response:
        try:
            doc = await request.json()
            if not isinstance(doc, dict):
                raise RolloutError("the body must be a JSON object")
            rid = rollouts.begin(
                str(doc.get("version", "")),
                doc.get("stations"),
                doc.get("share"),
                float(doc.get("per_minute", 10)),
            )
        except (RolloutError, ValueError, TypeError, release.ReleaseError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"id": rid}, status_code=201)

    @access("admin", audit="rollout")
    def halt(request: Request) -> Response:
        try:
            rollouts.halt(request.path_params["rid"])
        except RolloutError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        return JSONResponse({"stopped": True})

    @access("admin")
    def page(_request: Request) -> Response:
        return FileResponse(PAGE, headers={"Cache-Control": "no-cache"})

    return [
        Route("/rollouts", page),
        Route("/api/rollouts", listing),
        Route("/api/rollouts", start, methods=["POST"]),
        Route("/api/rollouts/{rid}/stop", halt, methods=["POST"]),
    ]
