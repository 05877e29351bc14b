"""The county's side of media: every message of a county with its arrival time, and files put
back together from their manifest and chunks. Used by the media tests and bench/camera_wire.py.

An MQTT client of its own (a separate connection, reconnecting by itself within 0.2 s), so what
it measures is what crossed the broker, not what the station meant to send.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from mqtt import topics


@dataclass(frozen=True)
class Received:
    at: float  # time.monotonic() on arrival
    topic: topics.Topic
    payload: bytes
    wire: int  # bytes of the PUBLISH packet as the broker sent it (QoS as subscribed)


class MediaCounty:
    def __init__(self, port: int, county: str) -> None:
        self.county = county
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self.subscriptions = 0
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"media-county-{county}", protocol=paho.MQTTv5
        )
        self._client.on_connect = lambda c, *_: c.subscribe(topics.county_filter(county), qos=1)
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(0.05, 0.2)
        self._port = port

    def start(self, timeout: float = 10.0) -> MediaCounty:
        self._client.connect_async("127.0.0.1", self._port, keepalive=5)
        self._client.loop_start()
        deadline = time.monotonic() + timeout
        while self.subscriptions == 0:
            if time.monotonic() > deadline:
                raise TimeoutError("the media county could not subscribe")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_subscribe(self, *_: object) -> None:
        with self._lock:
            self.subscriptions += 1

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        topic = topics.parse(msg.topic)
        # fixed header (1 + length), topic length + topic, packet id (QoS 1), properties length
        body = 2 + len(msg.topic.encode()) + (2 if msg.qos else 0) + 1 + len(msg.payload)
        wire = 1 + (1 if body < 128 else 2 if body < 16_384 else 3) + body
        with self._lock:
            self._received.append(Received(time.monotonic(), topic, msg.payload, wire))

    def received(self, channel: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self._received if channel is None or r.topic.channel == channel]

    def manifest(self, media_id: str) -> dict | None:
        for r in self.received("media"):
            if r.topic.kind == media_id and r.topic.part == topics.MANIFEST:
                return json.loads(r.payload)
        return None

    def chunk_copies(self, media_id: str) -> dict[int, list[bytes]]:
        """Chunk number -> every copy received (a re-send after a lost PUBACK is a second copy)."""
        out: dict[int, list[bytes]] = {}
        for r in self.received("media"):
            if r.topic.kind == media_id and r.topic.part != topics.MANIFEST:
                out.setdefault(int(r.topic.part or 0), []).append(r.payload)
        return out

    def file(self, media_id: str) -> bytes | None:
        """The file, once its manifest and every chunk are in and the sha256 matches; else None."""
        manifest = self.manifest(media_id)
        if manifest is None:
            return None
        copies = self.chunk_copies(media_id)
        if set(copies) != set(range(manifest["chunks"])):
            return None
        data = b"".join(copies[n][0] for n in range(manifest["chunks"]))
        return data if hashlib.sha256(data).hexdigest() == manifest["sha256"] else None
