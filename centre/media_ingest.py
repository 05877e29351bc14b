"""The county's media connection and the "centre-media" thread that stores what it receives.

Media come on a connection of their own so that files never hold up events, and so that this
connection can keep a broker-side session: with MQTT 5 it connects with `clean_start` false and
a session expiry of `[media] session_expiry_s`, under a client id that is the same each time this
console starts (`[ingest] console`), so chunks published while the console restarts wait at the
broker and arrive when it is back. (A station never sends an acknowledged chunk again; what
the broker loses, for instance in a restart without persistence, shows as an incomplete upload.)
With `workers > 1` the media topics are a shared subscription too, so console processes split
the uploads; a chunk reaching a process before its manifest does waits up to EARLY_WAIT_S for
the manifest to appear in the shared store.

paho's callback only queues; the thread owns the MediaStore (its own store connection), applies
the per-station rate limit and the bounds, and counts what it refuses per station.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from typing import Any

import paho.mqtt.client as paho

from centre import bounds
from centre.config import CentreConfig
from centre.media import MediaStore
from centre.store import open_store
from edge.events import Event
from mqtt import topics
from mqtt.client import make_client, session_args

log = logging.getLogger("yimen.centre.media")

EARLY_WAIT_S = 10.0  # how long a chunk may wait for its manifest
MAX_EARLY = 256  # chunks waiting for manifests, all stations together; beyond, refused
MAX_EARLY_BYTES = 32 * 2**20  # ... and their bytes (a chunk may be 1 MiB)

Item = tuple[str, Any, Any, float]  # (what, station or topic, payload, received)


class MediaIngest:
    def __init__(self, config: CentreConfig, client_tag: str) -> None:
        self.config = config
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="centre-media", daemon=True)
        self._early: deque[tuple[str, bytes, float]] = deque()
        self._early_bytes = 0
        self._limit = bounds.RateLimit(config.ingest.station_rate, config.ingest.station_burst)
        self.counters = {"messages": 0, "chunks": 0, "duplicates": 0, "refused": 0, "rate_limited": 0, "errors": 0}
        self.subscribed = threading.Event()
        self._v5 = config.broker.protocol == "5"
        self.client = make_client(
            config.broker, f"yimen-centre-{config.county}-{client_tag}-media", reconnect_on_failure=True
        )
        self.client.reconnect_delay_set(config.broker.reconnect_min_s, config.broker.reconnect_max_s)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.media: MediaStore | None = None

    def start(self) -> None:
        self.media = MediaStore(open_store(self.config.store), self.config.media_dir, self.config.media_max_bytes)
        self._thread.start()
        cfg = self.config.broker
        session = session_args(int(self.config.media_session_expiry_s)) if self._v5 else {}
        self.client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s, **session)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self._queue.put(None)
        self._thread.join(10)
        if self.media is not None:
            self.media.store.close()

    def on_event(self, event: Event) -> None:
        """A newly stored event (ingest thread): a `media` event announces a file that should
        follow; an `eviction` lists files the station deleted before they were uploaded."""
        if event.kind == "media" or (event.kind == "eviction" and event.data.get("media")):
            self._queue.put(("event", event.station, (event.id, event.kind, event.data), time.time()))

    # ----- paho's thread ---------------------------------------------------------------------

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            log.error("media connection refused by the broker: %s", rc)
            return
        media = topics.county_media_filter(self.config.county)
        shared = self.config.ingest.shared
        client.subscribe(topics.shared(self.config.ingest.group, media) if shared else media, qos=1)

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        self._queue.put(("message", msg.topic, msg.payload, time.time()))

    # ----- the media thread ----------------------------------------------------------------------

    def _run(self) -> None:
        assert self.media is not None
        recovered = 0.0
        while True:
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                item = ("tick", "", b"", time.time())
            if item is None:
                break
            what, target, payload, received = item
            try:
                if what == "event":
                    event_id, kind, data = payload
                    if kind == "media":
                        self.media.announce(target, event_id, data, received)
                    else:
                        self.media.never_coming(target, data.get("media"), received)
                elif what == "message":
                    self._message(target, payload, received)
                self._retry_early(time.time())
                if time.time() - recovered >= 60:
                    recovered = time.time()
                    self.media.recover(recovered)
            except Exception:
                self.counters["errors"] += 1
                log.exception("media message on %s failed; carrying on", target)

    def _message(self, topic_text: str, payload: bytes, received: float, *, early: bool = False) -> None:
        assert self.media is not None
        topic = topics.parse(topic_text)
        sid = topic.station
        if not early:
            self.counters["messages"] += 1
            if not self._limit.admit(sid, received):
                self.counters["rate_limited"] += 1
                self.media.count(sid, "rate-limited")
                self.media.store.commit()
                return
        try:
            if topic.part == topics.MANIFEST:
                self.media.manifest(sid, topic.kind or "", payload, received)
                return
            outcome = self.media.chunk(sid, topic.kind or "", topic.part, payload, received)
        except bounds.Refused as exc:
            self._refused(sid, topic_text, exc)
            return
        if outcome == "no-manifest":
            full = len(self._early) >= MAX_EARLY or self._early_bytes + len(payload) > MAX_EARLY_BYTES
            if early or full:
                self._refused(sid, topic_text, bounds.Refused("no-manifest", "a chunk whose manifest never came"))
            else:
                self._hold(topic_text, payload, received)
        elif outcome == "duplicate":
            self.counters["duplicates"] += 1
        else:
            self.counters["chunks"] += 1

    def _retry_early(self, now: float) -> None:
        """Chunks that came before their manifest: try again; refuse them once EARLY_WAIT_S is up."""
        for _ in range(len(self._early)):
            topic_text, payload, received = self._early.popleft()
            self._early_bytes -= len(payload)
            arrived = self.media is not None and self.media.known(*_station_media(topic_text)) is not None
            if arrived or now - received > EARLY_WAIT_S:
                self._message(topic_text, payload, received, early=True)
            else:
                self._hold(topic_text, payload, received)

    def _hold(self, topic_text: str, payload: bytes, received: float) -> None:
        self._early.append((topic_text, payload, received))
        self._early_bytes += len(payload)

    def _refused(self, sid: str, topic_text: str, exc: bounds.Refused) -> None:
        assert self.media is not None
        self.counters["refused"] += 1
        self.media.count(sid, f"refused:{exc.reason}")
        if exc.hostile:
            self.media.count(sid, f"hostile:{exc.reason}")
        self.media.store.commit()
        log.warning("%s: refused %s: %s", sid, topic_text, exc)

    def metrics(self) -> dict[str, Any]:
        early = {"early": len(self._early), "early_bytes": self._early_bytes}
        return {**self.counters, "queued": self._queue.qsize(), **early}


def _station_media(topic_text: str) -> tuple[str, str]:
    topic = topics.parse(topic_text)
    return topic.station, topic.kind or ""
