"""The topic contract, in one place: topics are built and parsed here and nowhere else.

    yimen/v1/<county>/<station>/events/<kind>   one event, its JSON envelope, QoS 1
    yimen/v1/<county>/<station>/status          retained online/offline, QoS 1
See mqtt/TOPICS.md for the payloads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ROOT = "yimen/v1"
_SEGMENT = re.compile(r"^[a-z0-9-]{1,32}$")


@dataclass(frozen=True)
class Topic:
    county: str
    station: str
    channel: str  # "events" or "status"
    kind: str | None = None  # for events


def _check(name: str, value: str) -> str:
    if not _SEGMENT.match(value):
        raise ValueError(f"{name} {value!r} is not a valid topic segment ([a-z0-9-]{{1,32}})")
    return value


def station_root(county: str, station: str) -> str:
    return f"{ROOT}/{_check('county', county)}/{_check('station', station)}"


def event_topic(county: str, station: str, kind: str) -> str:
    return f"{station_root(county, station)}/events/{kind}"


def status_topic(county: str, station: str) -> str:
    return f"{station_root(county, station)}/status"


def county_filter(county: str) -> str:
    """Everything from every station of a county: what a county-side subscriber takes."""
    return f"{ROOT}/{_check('county', county)}/+/#"


def parse(topic: str) -> Topic:
    """Split a yimen topic; raises ValueError for anything outside the contract."""
    parts = topic.split("/")
    if len(parts) < 5 or "/".join(parts[:2]) != ROOT:
        raise ValueError(f"not a yimen v1 topic: {topic!r}")
    county, station, channel = parts[2], parts[3], parts[4]
    _check("county", county)
    _check("station", station)
    if channel == "status" and len(parts) == 5:
        return Topic(county, station, "status")
    if channel == "events" and len(parts) == 6:
        return Topic(county, station, "events", parts[5])
    raise ValueError(f"unknown yimen topic: {topic!r}")
