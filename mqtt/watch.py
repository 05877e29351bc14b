"""A county-side view of what arrives: every station of a county, every event, every status.

It checks the contract as it prints: payloads must parse, ids must match their seq, and a
seq that skips ahead is shown as a gap (filled later by late arrivals, or reported by the
station as an eviction). The demo and the tests use it; the county console (centre/) is the
full version.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edge.events import Event
from mqtt import codec, topics


@dataclass
class StationView:
    seqs: set[int] = field(default_factory=set)
    payloads: dict[int, bytes] = field(default_factory=dict)
    duplicates: int = 0
    mismatches: int = 0  # a duplicate whose bytes differ from the first copy: a contract breach
    replays: int = 0
    status: dict[str, Any] | None = None
    media_bytes: int = 0  # media manifests and chunks, as received
    live_frames: int = 0

    def missing(self) -> list[int]:
        return sorted(set(range(1, max(self.seqs, default=0) + 1)) - self.seqs)


class CountyWatch:
    def __init__(
        self,
        host: str,
        port: int,
        county: str,
        *,
        on_line: Callable[[str], None] | None = None,
        keep_payloads: bool = True,
    ) -> None:
        self.county = county
        self.stations: dict[str, StationView] = {}
        self.errors: list[str] = []
        self._on_line = on_line
        self._keep = keep_payloads
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"county-watch-{county}", protocol=paho.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self._host, self._port = host, port

    def start(self, timeout: float = 10.0) -> CountyWatch:
        self.client.connect(self._host, self._port)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            raise TimeoutError(f"county watch could not subscribe at {self._host}:{self._port}")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: paho.Client, *_: Any) -> None:
        client.subscribe(topics.county_filter(self.county), qos=1)

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        try:
            topic = topics.parse(msg.topic)
        except ValueError as exc:
            self._error(str(exc))
            return
        if topic.channel not in ("status", "events"):
            return  # commands and their replies (a console asking for replays) are not the stations' data
        with self._lock:
            view = self.stations.setdefault(topic.station, StationView())
            if topic.channel == "status":
                try:
                    view.status = codec.decode_status(msg.payload)
                except ValueError as exc:
                    self._error_locked(str(exc))
                    return
                line = f"{topic.station} status {view.status['state']} (session {view.status['session']})"
            elif topic.channel in ("media", "live"):
                line = _media_line(view, topic, msg.payload)
                if line is None:
                    return  # one chunk or frame among many: counted, not printed
            else:
                try:
                    event = Event.from_bytes(msg.payload)
                except ValueError as exc:
                    self._error_locked(f"{msg.topic}: {exc}")
                    return
                props = getattr(msg, "properties", None)
                replay = ("replay", "1") in (getattr(props, "UserProperty", None) or [])
                view.replays += replay
                if event.seq in view.seqs:
                    view.duplicates += 1
                    if self._keep and view.payloads.get(event.seq) != msg.payload:
                        view.mismatches += 1
                        self._error_locked(f"{event.id}: re-sent bytes differ from the first copy")
                else:
                    view.seqs.add(event.seq)
                    if self._keep:
                        view.payloads[event.seq] = msg.payload
                line = f"{event.id:<16} {event.kind:<10} {event.priority.label:<8} {_summary(event)}" + (
                    "  [late]" if replay else ""
                )
            self._changed.notify_all()
        if self._on_line:
            self._on_line(line)

    def _error(self, text: str) -> None:
        with self._lock:
            self._error_locked(text)

    def _error_locked(self, text: str) -> None:
        self.errors.append(text)
        if self._on_line:
            self._on_line(f"CONTRACT ERROR: {text}")

    def wait_for(self, predicate: Callable[[CountyWatch], bool], timeout: float) -> bool:
        """Block until predicate(self) holds (checked under the lock) or timeout; returns it."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)

    def view(self, station: str) -> StationView:
        return self.stations.setdefault(station, StationView())


def _media_line(view: StationView, topic: topics.Topic, payload: bytes) -> str | None:
    """Count media bytes and live frames; a line for each manifest only."""
    if topic.channel == "live":
        view.live_frames += 1
        return None
    view.media_bytes += len(payload)
    if topic.part != topics.MANIFEST:
        return None
    manifest = json.loads(payload)
    return f"{topic.station} media {manifest['media_id']}: {manifest['size']} bytes in {manifest['chunks']} chunks"


def _summary(event: Event) -> str:
    data = event.data
    if event.kind == "rating":
        return (
            f"window {data.get('window')} {data.get('verdict')} (level {data.get('level')}) ticket {data.get('ticket')}"
        )
    if event.kind == "queue":
        return f"{data.get('action')} {data.get('ticket')}" + (
            f" -> window {data['window']}" if data.get("window") else ""
        )
    if event.kind == "telemetry":
        return f"backlog {data.get('backlog')} rss {data.get('memory_rss_bytes', 0) // 1024} KiB"
    return json.dumps(data, ensure_ascii=False)[:100]
