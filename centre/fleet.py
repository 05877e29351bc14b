"""Many simulated stations in one process: for the demo, the console's tests and the load test.

A real gateway is a process with an outbox on disk; thousands of them do not fit on one
machine. A fleet station keeps only what the county can see of a station: its own MQTT
connection with a retained birth and a last will (`session` counting up), events in the real
envelope (edge.events.Event) with seqs from 1, a short history it answers `replay` from, and
the commands `ping`, `replay`, `rebirth` and `live-view`, checked by the real command schema
(mqtt.commands). All connections are driven by one thread with a selector (paho's external
loop), so a process holds hundreds of stations without hundreds of threads.

Tests steer it: `withhold` makes seqs that are assigned but not sent (a gap only a replay
fills), `kill` drops a connection without a DISCONNECT (the broker publishes the will),
`rating` sends a rating now, with its evidence clip if asked.

    python -m centre.fleet --port P --county C --count N [--first K] [--rate R]
reads `kill <station>` / `stats` / `herd` / `stop` lines on stdin and prints JSON lines (ready,
killed, stats, herd: per station when it lost the broker, got back and delivered again).
A connection that breaks (not one a test killed) is reconnected as a gateway's is: with
mqtt.uplink.Backoff and the same [broker] reconnect settings.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import heapq
import io
import itertools
import json
import logging
import queue
import random
import resource
import selectors
import socket
import sys
import threading
import time
import zlib
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime, timedelta
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge import __version__
from edge.events import Event, Priority, format_ts
from mqtt import codec, topics
from mqtt.commands import Arg, Command, CommandError, parse_request, response
from mqtt.config import BrokerConfig
from mqtt.uplink import Backoff

log = logging.getLogger("yimen.fleet")

HISTORY = 5000  # events a fleet station can replay
CLERKS = ("王芳", "李强", "张伟", "刘洋", "陈静", "杨磊", "赵敏", "黄勇")


class FleetStation:
    """One simulated station; every method runs on the fleet's loop thread."""

    def __init__(self, fleet: Fleet, sid: str, windows: int, rng: random.Random) -> None:
        self.fleet = fleet
        self.id = sid
        self.windows = windows
        self.rng = rng
        self.seq = 0
        self.session = 0
        self.history: OrderedDict[int, tuple[str, bytes]] = OrderedDict()
        self.withheld: set[int] = set()
        self.withhold_next = 0
        self.clips = False
        self.live: dict[int, tuple[float, float]] = {}  # window -> (until, interval_s)
        self.live_sent = 0
        self.live_requests = 0
        self.uploading: deque[tuple[str, bytes]] = deque()  # paced media messages not yet sent
        self.killed = False
        self.connected = False
        self.last_sent: paho.MQTTMessageInfo | None = None
        self.unsent: list[int] = []
        self.numbers = itertools.count(1)
        self.waiting: dict[str, float] = {}
        self.script: list[tuple[str, Priority, dict[str, Any]]] = []
        self.clerks = {w: CLERKS[(zlib.crc32(sid.encode()) + w) % len(CLERKS)] for w in range(1, windows + 1)}
        self.commands = {
            c.name: c
            for c in (
                Command("ping", lambda _a: {"pong": time.time(), "version": __version__}),
                Command(
                    "replay",
                    self._replay,
                    args={"first": Arg("int", required=True, min=1), "last": Arg("int", required=True, min=1)},
                ),
                Command("rebirth", lambda _a: (self._birth(), {"session": self.session})[1]),
                Command(
                    "live-view",
                    self._live_view,
                    args={
                        "window": Arg("int", min=1),
                        "seconds": Arg("number", min=1, max=1800),
                        "stop": Arg("bool"),
                        "via": Arg("str", choices=("mqtt",)),
                        "interval_s": Arg("number", min=0.5, max=60),
                    },
                ),
            )
        }
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"yimen-{fleet.county}-{sid}",
            protocol=paho.MQTTv5 if fleet.protocol == "5" else paho.MQTTv311,
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        # Reconnecting as a gateway does (mqtt.uplink.Backoff, same settings), for the herd bench.
        self.backoff = Backoff(fleet.reconnect_min_s, fleet.reconnect_max_s)
        self.retrying = False  # a reconnect is scheduled
        self.herd: dict[str, Any] = {
            "down_at": None,
            "back_at": None,
            "delivered_at": None,
            "attempts": 0,
            "refused": 0,
        }

    # ----- connection ------------------------------------------------------------------------

    def connect(self) -> None:
        self.session += 1
        self.killed = False
        self.client.will_set(
            topics.status_topic(self.fleet.county, self.id), codec.offline(self.session, "lost"), qos=1, retain=True
        )
        if self.session == 1:
            self.client.connect(self.fleet.host, self.fleet.port, keepalive=self.fleet.keepalive)
        else:
            self.client.reconnect()
        self.fleet.register(self)

    def lost(self) -> None:
        """The connection broke (not killed by a test): try again after the backoff's delay."""
        self.connected = False
        if self.retrying:
            return
        self.retrying = True
        if self.herd["down_at"] is None or self.herd["delivered_at"] is not None:
            self.herd.update(down_at=time.time(), back_at=None, delivered_at=None)
        self.fleet.schedule_reconnect(self, self.backoff.next_delay())

    def reconnect(self) -> None:
        self.retrying = False
        self.herd["attempts"] += 1
        try:
            self.connect()
        except OSError:  # refused or unreachable: the broker is not back yet
            self.lost()

    def _on_publish(self, *_: Any) -> None:
        if self.herd["back_at"] is not None and self.herd["delivered_at"] is None:
            self.herd["delivered_at"] = time.time()

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            log.error("%s: connection refused: %s", self.id, rc)
            self.herd["refused"] += 1
            return
        self.backoff.reset()
        if self.herd["down_at"] is not None:
            self.herd["back_at"] = time.time()
        client.subscribe(topics.command_filter(self.fleet.county, self.id), qos=1)
        self._birth()
        self.connected = True
        for seq in self.unsent:
            if seq in self.history:
                kind, payload = self.history[seq]
                self.last_sent = client.publish(topics.event_topic(self.fleet.county, self.id, kind), payload, qos=1)
        self.unsent.clear()

    def _birth(self) -> None:
        self.client.publish(
            topics.status_topic(self.fleet.county, self.id),
            codec.online(self.session, version=__version__, simulated=True, last_seq=self.seq),
            qos=1,
            retain=True,
        )

    def _on_disconnect(self, *_: Any) -> None:
        self.connected = False
        if not self.killed and not self.fleet.quiet():
            self.lost()

    def kill(self) -> None:
        """Drop the link without a DISCONNECT, as a power cut or a dead modem would."""
        self.killed = True
        self.connected = False
        sock = self.client.socket()
        if sock is not None:
            self.fleet.unregister(sock)
            sock.close()

    def sending(self) -> bool:
        """Events handed to paho and not yet acknowledged by the broker."""
        return self.connected and self.last_sent is not None and not self.last_sent.is_published()

    def shutdown(self) -> None:
        """A clean stop: say offline (cause shutdown) ourselves, then disconnect."""
        self.client.publish(
            topics.status_topic(self.fleet.county, self.id), codec.offline(self.session, "shutdown"), qos=1, retain=True
        )
        self.client.disconnect()

    # ----- events --------------------------------------------------------------------------------

    def emit(self, kind: str, priority: Priority, data: dict[str, Any], at: datetime | None = None) -> Event:
        self.seq += 1
        now = format_ts(at or datetime.now().astimezone())
        event = Event(self.id, self.seq, kind, now, "synced", priority, {**data, "simulated": True})
        payload = event.to_bytes()
        self.history[event.seq] = (kind, payload)
        while len(self.history) > HISTORY:
            self.history.popitem(last=False)
        if self.withhold_next > 0:
            self.withhold_next -= 1
            self.withheld.add(event.seq)
        elif self.connected:
            self.last_sent = self.client.publish(topics.event_topic(self.fleet.county, self.id, kind), payload, qos=1)
        else:
            self.unsent.append(event.seq)  # as an outbox would: sent once connected
        self.fleet.sent += 1
        return event

    def next_event(self) -> None:
        """The next step of the citizen being served, or a new citizen."""
        if not self.script:
            self.script = self._citizen()
        kind, priority, data = self.script.pop(0)
        if kind == "rating":
            self.rating(data["verdict"], data["window"], level=data["level"], ticket=data["ticket"])
        else:
            self.emit(kind, priority, data)

    def _citizen(self) -> list[tuple[str, Priority, dict[str, Any]]]:
        ticket = f"A{next(self.numbers):03d}"
        window = self.rng.randint(1, self.windows)
        clerk = self.clerks[window]
        level = self.rng.choices((5, 4, 3, 2, 1), weights=(60, 25, 8, 5, 2))[0]
        queued = format_ts(datetime.now().astimezone())
        steps: list[tuple[str, Priority, dict[str, Any]]] = [
            ("queue", Priority.NORMAL, {"action": "issue", "ticket": ticket, "ticket_id": ticket, "queued": queued}),
            (
                "queue",
                Priority.NORMAL,
                {"action": "call", "ticket": ticket, "ticket_id": ticket, "window": window, "clerk": clerk},
            ),
            (
                "queue",
                Priority.NORMAL,
                {"action": "end", "ticket": ticket, "ticket_id": ticket, "window": window, "clerk": clerk},
            ),
        ]
        rating = {"verdict": "good" if level >= 3 else "bad", "level": level, "window": window, "ticket": ticket}
        return [*steps, ("rating", Priority.CRITICAL, rating)]

    def backfill(self, first: datetime, days: int, per_day: int) -> list[Event]:
        """A past stretch of service, sent now with its own times, as a station sends its
        outbox after a long outage: per day `per_day` citizens between 09:00 and 17:00, each an
        issue, a call, an end (wait and service times, sometimes a time-limit overrun) and a
        rating (sometimes none, sometimes bad with a reason). Returns every event sent."""
        sent: list[Event] = []
        reasons = {"r1": "态度不好", "r2": "等待太久", "r3": "没有办成"}
        for day in range(days):
            opening = (first + timedelta(days=day)).replace(hour=9, minute=0, second=0, microsecond=0)
            for n in range(per_day):
                window = self.rng.randint(1, self.windows)
                clerk = self.clerks[window]
                number = f"A{n + 1:03d}"
                ticket = {"ticket": number, "ticket_id": f"{self.id}-{opening:%Y%m%d}-{number}", "category": "A"}
                queued = opening + timedelta(seconds=self.rng.uniform(0, 8 * 3600 - 3600))
                wait, service = round(self.rng.uniform(10, 1800), 1), round(self.rng.uniform(60, 1200), 1)
                ended = queued + timedelta(seconds=wait + service)
                served = {**ticket, "window": window, "clerk": clerk, "wait_s": wait, "service_s": service}
                # The service's time-limit light, as a station with limits reports it (`limit` events).
                limit = self.rng.choices(((), ("warn",), ("warn", "over")), weights=(85, 10, 5))[0]
                sent.append(self.emit("queue", Priority.NORMAL, {"action": "issue", **ticket}, at=queued))
                called = queued + timedelta(seconds=wait)
                sent.append(self.emit("queue", Priority.NORMAL, {"action": "call", **served}, at=called))
                for n, level in enumerate(limit, 1):
                    at = called + timedelta(seconds=service * n / (len(limit) + 1))
                    light = {"action": level, "what": "service", **served}
                    sent.append(self.emit("limit", Priority.NORMAL, light, at=at))
                end = {"action": "end", **served}
                sent.append(self.emit("queue", Priority.NORMAL, end, at=ended))
                level = self.rng.choices((5, 4, 3, 2, 1, 0), weights=(50, 20, 8, 6, 4, 12))[0]
                if level:  # 0: the citizen left without rating
                    key = self.rng.choice([None, *reasons]) if level <= 2 else None
                    rating = {
                        **served,
                        "verdict": "good" if level >= 3 else "bad",
                        "level": level,
                        "reason": {"key": key, "name": reasons[key]} if key else None,
                        "item": {"code": "A", "name": "社保"},
                        "linked": True,
                        "channel": "simulator",
                    }
                    sent.append(self.emit("rating", Priority.CRITICAL, rating, at=ended + timedelta(seconds=5)))
        return sent

    def rating(self, verdict: str, window: int, *, level: int | None = None, ticket: str | None = None) -> Event:
        """A rating; a bad one gets its evidence clip (a media event with caused_by) when clips are on."""
        event = self.emit(
            "rating",
            Priority.CRITICAL,
            {
                "verdict": verdict,
                "level": level if level is not None else (5 if verdict == "good" else 1),
                "window": window,
                "clerk": self.clerks.get(window, "—"),
                "ticket": ticket,
                "channel": "simulator",
            },
        )
        if verdict == "bad" and self.clips:
            self.media("clip", window, caused_by=event.id)
        return event

    def media(self, media_type: str, window: int, caused_by: str | None = None) -> Event:
        """A media event and then, as a station's uploader does, its file: manifest and chunks."""
        prefix = "evidence" if caused_by else media_type
        stamp = datetime.now()
        media_id = f"{prefix}-w{window}-{stamp:%Y%m%d-%H%M%S}-{stamp.microsecond // 1000:03d}-{self.seq + 1:08x}"
        ext = "jpg" if media_type == "snapshot" else "mjpeg"
        frames = sample_frames()
        clip = [frames[n % len(frames)] for n in range(self.fleet.clip_frames)]
        data = frames[window % len(frames)] if media_type == "snapshot" else b"".join(clip)
        event = self.emit(
            "media",
            Priority.BULK,
            {
                "media_id": media_id,
                "type": media_type,
                "window": window,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "caused_by": caused_by,
                "path": f"media/{media_id}.{ext}",
                "frames": 1 if media_type == "snapshot" else len(clip),
                "started": format_ts(stamp.astimezone()),
                "ended": format_ts(stamp.astimezone()),
            },
        )
        if self.fleet.upload:
            self.upload(event, data)
        return event

    def upload(self, event: Event, data: bytes, chunk_size: int = 16 * 1024) -> None:
        """The file of a media event, as mqtt/media_upload.py sends it (without its pacing)."""
        d = event.data
        chunks = -(-len(data) // chunk_size)
        manifest = {
            "media_id": d["media_id"], "event": event.id, "type": d["type"], "window": d["window"],
            "caused_by": d["caused_by"], "size": len(data), "sha256": d["sha256"], "chunk_size": chunk_size,
            "chunks": chunks, **({"content_type": d["content_type"]} if d.get("content_type") else {}),
        }  # fmt: skip
        county, media_id = self.fleet.county, d["media_id"]
        messages = [(topics.media_topic(county, self.id, media_id, topics.MANIFEST), json.dumps(manifest).encode())]
        messages += [
            (topics.media_topic(county, self.id, media_id, n), data[n * chunk_size : (n + 1) * chunk_size])
            for n in range(chunks)
        ]
        if self.fleet.upload_kbps is None:
            for topic, payload in messages:
                self.client.publish(topic, payload, qos=1)
            return
        if not self.uploading:
            self.fleet._schedule(0.0, "chunk", self.id)
        self.uploading.extend(messages)

    def next_chunk(self) -> float | None:
        """Paced upload (`upload_kbps`): send the next message; seconds until the one after."""
        if not self.uploading:
            return None
        topic, payload = self.uploading.popleft()
        self.client.publish(topic, payload, qos=1)
        return len(payload) * 8 / 1000 / (self.fleet.upload_kbps or 1.0)

    def telemetry(self) -> Event:
        return self.emit(
            "telemetry",
            Priority.BULK,
            {
                "backlog": {"critical": 0, "normal": 0, "bulk": 0},
                "oldest_undelivered_age_s": None,
                "parked": 0,
                "uptime_s": round(time.monotonic() - self.fleet.started),
                "clock": "synced",
                "outages": [],
            },
        )

    # ----- commands ----------------------------------------------------------------------------

    def _replay(self, args: dict[str, Any]) -> dict[str, Any]:
        first, last = args["first"], args["last"]
        if last < first or last - first >= 10_000:
            raise CommandError("bad-request", f"replay range {first}..{last}: give first <= last, at most 10000")
        props = codec.replay_properties() if self.fleet.protocol == "5" else None
        count = 0
        for seq in range(first, last + 1):
            if seq in self.history:
                kind, payload = self.history[seq]
                self.client.publish(
                    topics.event_topic(self.fleet.county, self.id, kind), payload, qos=1, properties=props
                )
                self.withheld.discard(seq)
                count += 1
        return {"first": first, "last": last, "count": count}

    def _live_view(self, args: dict[str, Any]) -> dict[str, Any]:
        """As mqtt/live.py does over MQTT: a frame every `interval_s` on .../live/<window> until the deadline."""
        window = args.get("window") or 1
        if args.get("stop"):
            return {"window": window, "stopped": self.live.pop(window, None) is not None}
        self.live_requests += 1
        until = time.time() + float(args.get("seconds", 300))
        started = window not in self.live
        self.live[window] = (until, float(args.get("interval_s", 0.5)))
        if started:
            self.fleet._schedule(0.0, f"live:{window}", self.id)
        return {
            "window": window,
            "stream": "simulated",
            "via": "mqtt",
            "until": until,
            "interval_s": self.live[window][1],
        }

    def live_frame(self, window: int) -> float | None:
        """Send the window's next live frame; seconds until the one after, or None once it ended."""
        until, interval = self.live.get(window, (0.0, 0.0))
        if time.time() >= until:
            self.live.pop(window, None)
            return None
        frames = sample_frames()
        self.live_sent += 1
        self.client.publish(
            topics.live_topic(self.fleet.county, self.id, window), frames[self.live_sent % len(frames)], qos=0
        )
        return interval

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        name = topics.parse(msg.topic).kind or ""
        correlation = None
        try:
            args = parse_request(self.commands.get(name), name, msg.payload)
            correlation = args.get("correlation")
            reply = response(self.commands[name].handler(args), correlation=correlation)
        except CommandError as exc:
            reply = response(error=exc, correlation=correlation)
        props = getattr(msg, "properties", None)
        reply_to = getattr(props, "ResponseTopic", None) or topics.reply_topic(self.fleet.county, self.id, name)
        out = None
        if getattr(props, "CorrelationData", None) is not None:
            out = Properties(PacketTypes.PUBLISH)
            out.CorrelationData = props.CorrelationData
        self.client.publish(reply_to, reply, qos=1, properties=out)


@functools.cache
def sample_frames() -> list[bytes]:
    """A few small JPEGs (made once per process): snapshots are one, clips all of them, twice."""
    from PIL import Image, ImageDraw

    out = []
    for n, colour in enumerate(((40, 90, 160), (160, 60, 40), (40, 140, 70), (120, 120, 40))):
        image = Image.new("RGB", (160, 120), colour)
        ImageDraw.Draw(image).text((10, 50), f"yimen fleet frame {n}", fill=(255, 255, 255))
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=70)
        out.append(buf.getvalue())
    return out


class Fleet:
    """Stations driven by one "yimen-fleet" thread. `rate` is events per second per station."""

    def __init__(
        self,
        host: str,
        port: int,
        county: str,
        ids: list[str],
        *,
        rate: float = 0.1,
        windows: int = 3,
        telemetry_s: float = 60.0,
        snapshot_s: float = 300.0,
        keepalive: int = 30,
        protocol: str = "5",
        seed: int = 1,
        reconnect_min_s: float = BrokerConfig.reconnect_min_s,
        reconnect_max_s: float = BrokerConfig.reconnect_max_s,
        upload: bool = True,
        upload_kbps: float | None = None,
        clip_share: float = 0.0,
        clip_every_s: float = 60.0,
        clip_frames: int = 8,
    ) -> None:
        self.host, self.port, self.county = host, port, county
        self.reconnect_min_s, self.reconnect_max_s = reconnect_min_s, reconnect_max_s
        self.rate, self.telemetry_s, self.snapshot_s = rate, telemetry_s, snapshot_s
        self.keepalive, self.protocol = keepalive, protocol
        self.upload = upload  # media events are followed by their files
        self.upload_kbps = upload_kbps  # None: all at once; else paced like a station's uploader
        # The load test's clip uploaders: this share of stations makes a bad rating with its
        # evidence clip (`clip_frames` frames) every `clip_every_s` seconds.
        self.clip_share, self.clip_every_s, self.clip_frames = clip_share, clip_every_s, clip_frames
        self.rng = random.Random(seed)
        self.stations = {sid: FleetStation(self, sid, windows, random.Random(f"{seed}-{sid}")) for sid in ids}
        self.sent = 0
        self.started = time.monotonic()
        self._selector = selectors.DefaultSelector()
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._quiet = threading.Event()  # no new events: the fleet is stopping
        self._thread = threading.Thread(target=self._run, name="yimen-fleet", daemon=True)
        self._timers: list[tuple[float, int, str, str]] = []  # (when, tiebreak, what, station)
        self._order = itertools.count()

    def register(self, station: FleetStation) -> None:
        sock = station.client.socket()
        if sock is not None:
            try:
                self._selector.register(sock, selectors.EVENT_READ, station)
            except KeyError:  # its fd number was a closed socket's that paho closed by itself
                self._selector.modify(sock, selectors.EVENT_READ, station)

    def unregister(self, sock: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)

    def quiet(self) -> bool:
        """The fleet is stopping: no new events, no reconnects."""
        return self._quiet.is_set()

    def schedule_reconnect(self, station: FleetStation, delay: float) -> None:
        self._schedule(delay, "reconnect", station.id)

    def _schedule(self, delay: float, what: str, sid: str) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._order), what, sid))

    def start(self) -> Fleet:
        for station in self.stations.values():
            station.connect()
            self._schedule(self.rng.expovariate(self.rate) if self.rate > 0 else 1e9, "event", station.id)
            self._schedule(self.rng.uniform(1, self.telemetry_s), "telemetry", station.id)
            self._schedule(self.rng.uniform(1, self.snapshot_s), "snapshot", station.id)
            if self.rng.random() < self.clip_share:
                station.clips = True
                self._schedule(self.rng.uniform(1, self.clip_every_s), "clip", station.id)
        self._thread.start()
        return self

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run fn on the fleet's thread (paho clients are not shared between threads); its result."""
        future: Future[Any] = Future()
        self._calls.put((fn, future))
        return future.result(timeout)

    def station(self, sid: str) -> FleetStation:
        return self.stations[sid]

    def connected(self) -> int:
        return sum(s.connected for s in self.stations.values())

    def stop(self) -> None:
        """Stop making events, let what is in flight be acknowledged, then say goodbye cleanly."""
        self._quiet.set()
        if self._thread.is_alive():
            # A barrier: a timer fired before `quiet` may still be emitting on the fleet's thread.
            # Its events must be in `sending()` before we look, or the DISCONNECT below overtakes
            # those paho holds back for its inflight window, and `seq` counts events never sent.
            self.call(lambda: None)
        deadline = time.monotonic() + 10
        while any(s.sending() for s in self.stations.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._thread.is_alive():
            self.call(lambda: [s.shutdown() for s in self.stations.values() if s.connected])
            time.sleep(0.3)
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        last_misc = 0.0
        while not self._stop.is_set():
            for key, _mask in self._selector.select(timeout=0.02):
                station: FleetStation = key.data
                if station.client.loop_read() != paho.MQTT_ERR_SUCCESS and not station.killed:
                    self.unregister(key.fileobj)  # type: ignore[arg-type]
                    if not self._quiet.is_set():
                        station.lost()  # paho may not have called on_disconnect for a failed read
            while not self._calls.empty():
                fn, future = self._calls.get()
                try:
                    future.set_result(fn())
                except Exception as exc:  # noqa: BLE001 - handed to the caller, who re-raises it
                    future.set_exception(exc)
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, what, sid = heapq.heappop(self._timers)
                self._fire(what, self.stations[sid])
            for station in self.stations.values():
                if not station.killed and station.client.want_write():
                    station.client.loop_write()
            if now - last_misc >= 1.0:
                last_misc = now
                for station in self.stations.values():
                    if not station.killed:
                        station.client.loop_misc()

    def _fire(self, what: str, station: FleetStation) -> None:
        if station.killed or self._quiet.is_set():
            return
        if what == "reconnect":
            station.reconnect()
        elif what == "chunk":
            again = station.next_chunk()
            if again is not None:
                self._schedule(again, what, station.id)
        elif what == "clip":
            station.rating("bad", 1)
            self._schedule(self.clip_every_s, "clip", station.id)
        elif what.startswith("live:"):
            again = station.live_frame(int(what[5:]))
            if again is not None:
                self._schedule(again, what, station.id)
        elif what == "event":
            station.next_event()
            self._schedule(self.rng.expovariate(self.rate), "event", station.id)
        elif what == "telemetry":
            station.telemetry()
            self._schedule(self.telemetry_s, "telemetry", station.id)
        elif what == "snapshot":
            for window in range(1, station.windows + 1):
                station.media("snapshot", window)
            self._schedule(self.snapshot_s, "snapshot", station.id)


def main() -> None:
    parser = argparse.ArgumentParser(description="simulated stations for the console's load test")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--county", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--first", type=int, default=1)
    parser.add_argument("--rate", type=float, default=0.1, help="events per second per station")
    parser.add_argument("--telemetry", type=float, default=60.0)
    parser.add_argument("--snapshot", type=float, default=300.0)
    parser.add_argument("--reconnect-min", type=float, default=BrokerConfig.reconnect_min_s)
    parser.add_argument("--reconnect-max", type=float, default=BrokerConfig.reconnect_max_s)
    parser.add_argument(
        "--upload-kbps", type=float, default=None, help="pace uploads like a station (default: at once)"
    )
    parser.add_argument("--clip-share", type=float, default=0.0, help="share of stations uploading evidence clips")
    parser.add_argument("--clip-every", type=float, default=60.0, help="seconds between their clips")
    parser.add_argument("--clip-frames", type=int, default=8, help="frames per clip (about 1.5 KB each)")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.count + 256)), hard))
    ids = [f"s{n:05d}" for n in range(args.first, args.first + args.count)]
    fleet = Fleet(
        args.host,
        args.port,
        args.county,
        ids,
        rate=args.rate,
        telemetry_s=args.telemetry,
        snapshot_s=args.snapshot,
        seed=args.first,
        reconnect_min_s=args.reconnect_min,
        reconnect_max_s=args.reconnect_max,
        upload_kbps=args.upload_kbps,
        clip_share=args.clip_share,
        clip_every_s=args.clip_every,
        clip_frames=args.clip_frames,
    ).start()

    def say(doc: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()

    deadline = time.monotonic() + 60
    while fleet.connected() < len(ids) and time.monotonic() < deadline:
        time.sleep(0.1)
    say({"ready": fleet.connected(), "of": len(ids)})
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "kill":
            at = time.time()
            fleet.call(lambda sids=words[1:]: [fleet.station(s).kill() for s in sids])
            say({"killed": words[1:], "at": at})
        elif words[0] == "stats":
            say({"sent": fleet.sent, "connected": fleet.connected()})
        elif words[0] == "herd":
            say({"herd": fleet.call(lambda: {sid: dict(st.herd) for sid, st in fleet.stations.items()})})
        elif words[0] == "stop":
            break
    fleet.stop()
    say({"stopped": True, "sent": fleet.sent})


if __name__ == "__main__":
    main()
