"""Payloads that are not events: the station's retained status (birth and last will).

Event payloads are the outbox's stored envelope bytes (edge/events.py) and are never
re-encoded here: a re-send is the same bytes as the first send.
"""

from __future__ import annotations

import json
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.events import compact_json


def _dump(doc: dict[str, Any]) -> bytes:
    return compact_json(doc).encode()


def online(session: int, **fields: Any) -> bytes:
    """Birth message, retained: published first on every connection."""
    return _dump({"state": "online", "session": session, **fields})


def offline(session: int, cause: str) -> bytes:
    """Last will (cause `lost`), or what a clean shutdown publishes itself (cause `shutdown`).

    `session` lets the county ignore a will that arrives after a newer connection's birth."""
    return _dump({"state": "offline", "session": session, "cause": cause})


def decode_status(payload: bytes) -> dict[str, Any]:
    doc = json.loads(payload)
    if not isinstance(doc, dict) or doc.get("state") not in ("online", "offline") or "session" not in doc:
        raise ValueError(f"not a yimen status payload: {payload[:80]!r}")
    return doc


class FrozenProperties(Properties):
    """PUBLISH properties that never change once made, packed once. paho packs a publish's
    properties at every send by walking all 27 property names it knows, which cost a live
    event more than the rest of its publish."""

    def __init__(self) -> None:
        super().__init__(PacketTypes.PUBLISH)

    def pack(self) -> bytes:
        packed = vars(self).get("packed_once")
        if packed is None:
            packed = super().pack()
            object.__setattr__(self, "packed_once", packed)  # paho's __setattr__ takes property names only
        return packed


def _replay() -> Properties:
    props = FrozenProperties()
    props.UserProperty = ("replay", "1")
    return props


_REPLAY = _replay()


def replay_properties() -> Properties:
    """MQTT 5 user property replay=1: marks a re-send without changing the payload bytes.

    One shared instance: paho only reads a publish's properties, and building them costs more
    than the rest of a re-send (every event of a backlog is one)."""
    return _REPLAY
