"""The station's download, driven by a county played by the test: resume after a restart, never
ahead of events, and hostile chunks (unasked, truncated) refused. MQTT itself is in the end-to-end
test; here the county answers each `ota-want` by calling the fetcher's on_message directly."""

from __future__ import annotations

import base64
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.events import NewEvent
from mqtt import topics
from mqtt.commands import CommandError
from ota import release
from ota.fetch import Fetcher
from ota.paths import Updates, read_json
from tests.conftest import wait_until

COUNTY, STATION = "c", "s1"
PLATFORM = f"linux_{platform.machine()}"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


class County:
    """Serves a release's chunks for what the fetcher asks, optionally spoiled."""

    def __init__(self, tmp: Path, version: str = "9.0.0") -> None:
        self.files = tmp / "county-files"
        self.files.mkdir(parents=True, exist_ok=True)
        (self.files / "a.whl").write_bytes(os.urandom(5000))
        (self.files / "b.whl").write_bytes(os.urandom(3000))
        self.key = tmp / f"county-{version}.key"
        pub = release.keygen(self.key)
        self.trusted = [release.parse_public(pub.read_text())]
        self.release(version)
        self.wants: list[dict] = []
        self.asked_files: list[int] = []
        self.spoil = lambda data: data

    def release(self, version: str) -> None:
        """Sign the files as they are now as `version`."""
        self.raw = release.make_manifest(version, PLATFORM, PYTHON, sorted(self.files.iterdir()), 1024)
        self.sig = release.sign(self.raw, release.load_private(self.key))
        self.manifest = release.parse_manifest(self.raw)

    def offer(self) -> dict:
        return {"manifest": base64.b64encode(self.raw).decode(), "signature": self.sig}

    def publish(self, topic: str, payload: bytes) -> None:
        assert topic == topics.ota_want_topic(COUNTY, STATION)
        self.wants.append(json.loads(payload))
        self.asked_files.append(self.wants[-1]["file"])

    def answer(self, fetcher: Fetcher, limit: int | None = None) -> int:
        """Answer the wants received so far (at most `limit` chunks); returns how many were sent."""
        sent = 0
        while self.wants and (limit is None or sent < limit):
            want = self.wants.pop(0)
            entry = self.manifest.files[want["file"]]
            data = (self.files / entry.name).read_bytes()
            for n in want["chunks"][: None if limit is None else limit - sent]:
                chunk = self.spoil(data[n * 1024 : (n + 1) * 1024])
                topic = topics.ota_chunk_topic(COUNTY, STATION, want["release"], want["file"], n)
                fetcher.on_message(topic, chunk, None)
                sent += 1
        return sent


def make_fetcher(tmp: Path, county: County, events: list, may_send=lambda: True) -> Fetcher:
    def emit(event: NewEvent) -> None:
        events.append(event.data)

    return Fetcher(tmp / "state", COUNTY, STATION, trusted=lambda: county.trusted, emit=emit,
                   publish=county.publish, may_send=may_send, kbps=100_000, version="1.0.0")  # fmt: skip


def refused_after_answer(county: County, fetcher: Fetcher, events: list) -> bool:
    county.answer(fetcher)
    return any(e["state"] == "refused" for e in events)


def run_until_ready(fetcher: Fetcher, county: County, timeout: float = 30) -> None:
    def step() -> bool:
        county.answer(fetcher)
        return Updates.of(fetcher.updates.root.parent).ready.exists()

    wait_until(step, timeout, "the release to be downloaded", interval=0.02)


def test_download_resumes_after_a_restart_and_hands_over_a_checked_release(tmp_path: Path) -> None:
    county, events = County(tmp_path), []
    fetcher = make_fetcher(tmp_path, county, events)
    assert fetcher.commands()[0].handler(county.offer())["accepted"]
    fetcher.start()
    answered = [0]

    def three_written() -> bool:
        answered[0] += county.answer(fetcher, limit=3 - answered[0])
        return fetcher.counts["chunks"] == 3

    wait_until(three_written, 30, "three chunks written")
    fetcher.stop()

    county.wants.clear()
    again = make_fetcher(tmp_path, county, events)
    again.start()
    wait_until(lambda: county.wants, 30, "the resumed download's first want")
    assert county.wants[0]["file"] == 0 and county.wants[0]["chunks"][0] == 3, "re-fetched what it had"
    run_until_ready(again, county)
    again.stop()
    ready = read_json(again.updates.ready)
    assert ready == {"release": county.manifest.release_id, "version": "9.0.0"}
    release.check_files(county.manifest, again.updates.release_dir(county.manifest.release_id) / "files")
    assert [e["state"] for e in events] == ["downloading", "downloading", "downloaded"]


def test_nothing_is_asked_while_events_wait(tmp_path: Path) -> None:
    county, events = County(tmp_path), []
    backlog = [True]
    fetcher = make_fetcher(tmp_path, county, events, may_send=lambda: not backlog[0])
    fetcher.commands()[0].handler(county.offer())
    fetcher.start()
    try:
        wait_until(lambda: events, 30, "the downloading event")
        time.sleep(1.0)
        assert county.wants == [], "asked for a release while events were waiting"
        backlog[0] = False
        wait_until(lambda: county.wants, 30, "a want once the outbox drained")
    finally:
        fetcher.stop()


@pytest.fixture
def offered(tmp_path: Path) -> Iterator[tuple[County, list, Fetcher]]:
    """A fetcher that accepted the county's offer and runs."""
    county, events = County(tmp_path), []
    fetcher = make_fetcher(tmp_path, county, events)
    fetcher.commands()[0].handler(county.offer())
    fetcher.start()
    yield county, events, fetcher
    fetcher.stop()


def test_unasked_chunks_are_ignored_and_truncated_ones_abandon_the_release(offered: tuple) -> None:
    county, events, fetcher = offered
    rid = county.manifest.release_id
    for topic in [
        topics.ota_chunk_topic(COUNTY, STATION, rid, 1, 0),  # another file
        topics.ota_chunk_topic(COUNTY, STATION, "r0000000000000000", 0, 0),  # another release
        topics.ota_chunk_topic(COUNTY, STATION, rid, 0, 99),  # never asked for
    ]:
        fetcher.on_message(topic, b"x" * 1024, None)
    wait_until(lambda: fetcher.counts["bad_chunks"] == 3, 30, "three unasked chunks counted")
    county.spoil = lambda data: data[:100]
    wait_until(lambda: refused_after_answer(county, fetcher, events), 30, "a refusal")
    refused = next(e for e in events if e["state"] == "refused")
    assert refused["code"] == "truncated-chunk" and "100 bytes" in refused["reason"], refused
    assert not fetcher.updates.release_dir(rid).exists()
    with pytest.raises(CommandError) as err:
        fetcher.commands()[0].handler(county.offer())
    assert err.value.code == "given-up"


def test_a_file_that_does_not_hash_as_signed_is_refused(offered: tuple) -> None:
    county, events, fetcher = offered
    county.spoil = lambda data: bytes([data[0] ^ 1]) + data[1:]
    wait_until(lambda: refused_after_answer(county, fetcher, events), 30, "a refusal")
    refused = next(e for e in events if e["state"] == "refused")
    assert refused["code"] == "wrong-hash", refused
    assert not fetcher.updates.ready.exists()


@pytest.mark.parametrize(("version", "code"), [("1.0.0", "not-newer"), ("0.9.0", "not-newer")])
def test_an_older_or_same_version_is_refused_at_the_offer(tmp_path: Path, version: str, code: str) -> None:
    county, events = County(tmp_path, version), []
    fetcher = make_fetcher(tmp_path, county, events)
    with pytest.raises(CommandError) as err:
        fetcher.commands()[0].handler(county.offer())
    assert err.value.code == code
    assert events == [{"state": "refused", "running": "1.0.0", "code": code, "reason": str(err.value),
                       "release": county.manifest.release_id}]  # fmt: skip


def test_a_file_the_last_release_had_is_not_fetched_again(tmp_path: Path) -> None:
    county, events = County(tmp_path), []
    fetcher = make_fetcher(tmp_path, county, events)
    fetcher.commands()[0].handler(county.offer())
    fetcher.start()
    try:
        run_until_ready(fetcher, county)
        fetcher.updates.ready.unlink()  # the updater took it
        (county.files / "b.whl").write_bytes(os.urandom(3000))  # a.whl unchanged
        county.release("9.1.0")
        county.asked_files.clear()
        fetcher.commands()[0].handler(county.offer())
        run_until_ready(fetcher, county)
        assert set(county.asked_files) == {1} and read_json(fetcher.updates.ready)["version"] == "9.1.0"
        wait_until(lambda: [e for e in events if e["state"] == "downloaded"][1:], 30, "the second downloaded event")
        done = [e for e in events if e["state"] == "downloaded"][-1]
        assert done["version"] == "9.1.0" and done["reused_bytes"] == 5000, done
    finally:
        fetcher.stop()
