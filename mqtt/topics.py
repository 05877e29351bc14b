"""The topic contract, in one place: topics are built and parsed here and nowhere else.

    yimen/v1/<county>/<station>/events/<kind>     one event, its JSON envelope, QoS 1
    yimen/v1/<county>/<station>/status            retained online/offline, QoS 1
    yimen/v1/<county>/<station>/cmd/<name>        a command to the station
    yimen/v1/<county>/<station>/cmd-reply/<name>  its reply, where the request named no response topic
    yimen/enrol/v1/<county>/<claim>/request       a new station's enrolment request (that claim's own login)
    yimen/enrol/v1/<county>/<claim>/reply         the registrar's reply, sealed to the requester's key
    yimen/v1/<county>/<station>/media/<media-id>/manifest   what a media file's chunks add up to
    yimen/v1/<county>/<station>/media/<media-id>/<n>        chunk n (from 0) of a media file, raw bytes
    yimen/v1/<county>/<station>/live/<window>     live view: one JPEG per message, QoS 0
    yimen/v1/<county>/<station>/ota-want          the station asks for chunks of a release
    yimen/v1/<county>/<station>/ota/<release>/<file>/<n>   chunk n of file number <file>, county to station
See mqtt/TOPICS.md for the payloads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ROOT = "yimen/v1"
_SEGMENT = re.compile(r"^[a-z0-9-]{1,32}$")
# A media id names kind, window, UTC start and hash (edge/media.py): longer than a station id.
_MEDIA_ID = re.compile(r"^[a-z0-9-]{1,64}$")
MANIFEST = "manifest"


# channel -> how many segments follow it
CHANNELS = {"status": 0, "events": 1, "cmd": 1, "cmd-reply": 1, "media": 2, "live": 1, "ota-want": 0, "ota": 3}


@dataclass(frozen=True)
class Topic:
    county: str
    station: str
    channel: str  # a key of CHANNELS
    kind: str | None = None  # the event kind, command name, media id or window
    part: str | None = None  # media: "manifest" or the chunk number


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


def command_topic(county: str, station: str, name: str) -> str:
    return f"{station_root(county, station)}/cmd/{name}"


def command_filter(county: str, station: str) -> str:
    """What a station subscribes to: its own commands, and no other station's."""
    return f"{station_root(county, station)}/cmd/+"


def reply_topic(county: str, station: str, name: str) -> str:
    return f"{station_root(county, station)}/cmd-reply/{name}"


def media_topic(county: str, station: str, media_id: str, part: int | str) -> str:
    """A media file's chunk `part` (0, 1, ...) or its manifest (`part` = MANIFEST)."""
    if not _MEDIA_ID.match(media_id):
        raise ValueError(f"media id {media_id!r} is not a valid topic segment ([a-z0-9-]{{1,64}})")
    if part != MANIFEST and not (isinstance(part, int) and part >= 0):
        raise ValueError(f"media part {part!r}: give a chunk number >= 0 or {MANIFEST!r}")
    return f"{station_root(county, station)}/media/{media_id}/{part}"


def live_topic(county: str, station: str, window: int) -> str:
    return f"{station_root(county, station)}/live/{window}"


def ota_want_topic(county: str, station: str) -> str:
    return f"{station_root(county, station)}/ota-want"


def ota_chunk_topic(county: str, station: str, release: str, file: int, chunk: int) -> str:
    """Chunk `chunk` of file number `file` (its place in the manifest) of a release, to one station."""
    if not _SEGMENT.match(release) or file < 0 or chunk < 0:
        raise ValueError(f"release chunk {release!r}/{file}/{chunk}: not a valid release id, file or chunk")
    return f"{station_root(county, station)}/ota/{release}/{file}/{chunk}"


def ota_chunk_filter(county: str, station: str) -> str:
    """What a station subscribes to for release chunks: its own, and no other station's (`+`, not
    `#`: the dynamic-security plugin grants a subscription's wildcards only level by level)."""
    return f"{station_root(county, station)}/ota/+/+/+"


def county_ota_want_filter(county: str) -> str:
    return f"{ROOT}/{_check('county', county)}/+/ota-want"


def county_ota_chunk_filter(county: str) -> str:
    """Every station's release chunks: what the console's rollout service publishes."""
    return f"{ROOT}/{_check('county', county)}/+/ota/#"


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
    if CHANNELS.get(channel) != len(parts) - 5:
        raise ValueError(f"unknown yimen topic: {topic!r}")
    return Topic(county, station, channel, parts[5] if len(parts) > 5 else None, parts[6] if len(parts) > 6 else None)


# Enrolment lives outside yimen/v1/<county>/... so that no county subscriber (`county_filter`)
# ever sees a claim token, and no station name can collide with it.
ENROL_ROOT = "yimen/enrol/v1"


def enrol_topic(county: str, claim: str, part: str) -> str:
    """`part` ("request" or "reply") of one claim: per claim, so that each claim's login may
    touch its own two topics and nothing else."""
    return f"{ENROL_ROOT}/{_check('county', county)}/{_check('claim', claim)}/{part}"


def enrol_filter(county: str, part: str) -> str:
    """Every claim's requests (what the registrar reads) or replies (where it answers)."""
    return f"{ENROL_ROOT}/{_check('county', county)}/+/{part}"


def enrol_claim(topic: str) -> str:
    """The claim id of an enrolment request topic; ValueError for anything else."""
    parts = topic.split("/")
    if len(parts) != 6 or "/".join(parts[:3]) != ENROL_ROOT or parts[5] != "request":
        raise ValueError(f"not an enrolment request topic: {topic!r}")
    return _check("claim", parts[4])


# ----- the county side ------------------------------------------------------------------------


def county_events_filter(county: str) -> str:
    return f"{ROOT}/{_check('county', county)}/+/events/+"


def county_media_filter(county: str) -> str:
    """Every station's media manifests and chunks."""
    return f"{ROOT}/{_check('county', county)}/+/media/+/+"


def county_live_filter(county: str) -> str:
    """Every station's live-view frames (QoS 0)."""
    return f"{ROOT}/{_check('county', county)}/+/live/+"


def county_status_filter(county: str) -> str:
    """Every station's retained status: the console's online picture, the registrar's "last status"."""
    return f"{ROOT}/{_check('county', county)}/+/status"


def county_command_filter(county: str) -> str:
    """Every station's commands: what the console may publish."""
    return f"{ROOT}/{_check('county', county)}/+/cmd/+"


def county_reply_filter(county: str) -> str:
    """Command replies: a station may publish only in its own tree, so the console's MQTT 5
    requests name `.../cmd-reply/<name>` as their response topic too."""
    return f"{ROOT}/{_check('county', county)}/+/cmd-reply/+"


def shared(group: str, topic_filter: str) -> str:
    """An MQTT 5 shared subscription: the broker hands each message to one member of the group."""
    return f"$share/{group}/{topic_filter}"
