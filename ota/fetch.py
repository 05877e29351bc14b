"""The station's side of a release download: the `update` command, then chunks over MQTT.

The county offers a release with the `update` command, carrying the signed manifest. Before
anything is downloaded the station checks the signature against the keys it trusts, that the
version is newer than the one running, and that the release is for this platform; a refusal is
the command's reply and an `update` event. Then the "yimen-ota" thread asks for chunks on
`.../ota-want` and the county answers each on `.../ota/<release>/<file>/<n>`:

- never ahead of events: it asks only while the broker is connected and the outbox has nothing
  waiting; a press always overtakes a release;
- rate-capped: a token bucket at `[update] kbps` over the chunks it asks for (a request for up to
  WINDOW chunks goes once the bucket is out of debt, and puts it in debt by their size);
- resumable: each file is written in order to `<name>.part`; after a disconnect or a restart the
  download goes on from the part file's length (whole chunks), so nothing acknowledged is
  fetched twice;
- incremental: a file the previous release had too (same name and sha256, i.e. a dependency that
  did not change) is taken from `updates/cache/` instead of the link: usually only the yimen wheel
  travels;
- hostile chunks are refused: a chunk of the wrong length (truncated) or one not asked for is
  dropped and asked for again, three strikes abandon the release; every file's size and sha256
  are checked before it is kept.

When every file is in, the release is handed to the root updater by writing `ready.json`.
Only this thread touches the download's state; paho's thread and the command thread enqueue.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import platform
import queue
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge import __version__
from edge.events import NewEvent, Priority
from mqtt import topics
from mqtt.commands import Arg, Command, CommandError
from mqtt.media_upload import Pacer, publish_size
from ota import release
from ota.paths import Updates, read_json, write_json

log = logging.getLogger("yimen.ota")

WINDOW = 4  # chunks asked for at once
CHUNK_TIMEOUT_S = 30.0  # a chunk asked for and not seen by then is asked for again
MAX_STRIKES = 3  # bad chunks before a release is abandoned


def platform_matches(manifest: release.Manifest) -> str | None:
    """Why this station cannot run the release, or None."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    if manifest.python != python:
        return f"the release is for Python {manifest.python}; this station runs {python}"
    machine = platform.machine()
    if not manifest.platform.endswith(machine):
        return f"the release is for {manifest.platform}; this station is {machine}"
    return None


@dataclass
class _Download:
    manifest: release.Manifest
    directory: Path
    file: int = 0  # the file being fetched (its place in the manifest)
    next_chunk: int = 0  # the first chunk not yet written
    asked: dict[int, float] = field(default_factory=dict)  # chunk -> monotonic time asked
    early: dict[int, bytes] = field(default_factory=dict)  # chunks that overtook one before them
    strikes: int = 0

    @property
    def entry(self) -> release.FileEntry:
        return self.manifest.files[self.file]

    def part_path(self) -> Path:
        return self.directory / "files" / f"{self.entry.name}.part"

    def expected_len(self, chunk: int) -> int:
        size, step = self.entry.size, self.manifest.chunk_size
        return min(step, size - chunk * step)


class Fetcher:
    def __init__(
        self,
        storage: Path,
        county: str,
        station: str,
        *,
        trusted: Callable[[], list],
        emit: Callable[[NewEvent], object],
        publish: Callable[[str, bytes], None],
        may_send: Callable[[], bool],
        kbps: float,
        version: str = __version__,
    ) -> None:
        self.updates = Updates.of(storage)
        self._county = county
        self._station = station
        self._trusted = trusted
        self._emit = emit
        self._publish = publish
        self._may_send = may_send
        self._pacer = Pacer(kbps * 1000 / 8)
        self._version = version
        self._queue: queue.SimpleQueue[tuple] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="yimen-ota", daemon=True)
        self._job: _Download | None = None
        self.counts = {"chunks": 0, "bad_chunks": 0, "asked": 0, "chunk_bytes": 0, "reused_bytes": 0}

    # ----- any thread ----------------------------------------------------------------------------

    def commands(self) -> list[Command]:
        return [
            Command(
                "update",
                self._offer,
                args={
                    "manifest": Arg("str", required=True),
                    "signature": Arg("str", required=True),
                },
                doc="a signed release offered by the county: checked, then fetched over MQTT and installed",
            )
        ]

    def subscriptions(self) -> list[tuple[str, int]]:
        return [(topics.ota_chunk_filter(self._county, self._station), 1)]

    def on_message(self, topic: str, payload: bytes, _props: Any) -> None:
        """paho's thread: hand over, nothing more."""
        self._queue.put(("chunk", topic, payload))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(("stop",))
        if self._thread.is_alive():
            self._thread.join(5)

    def status(self) -> dict[str, Any]:
        job = self._job
        return {
            "release": job.manifest.release_id if job else None,
            "version": job.manifest.version if job else None,
            **self.counts,
        }

    # ----- the command thread --------------------------------------------------------------------

    def _offer(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            raw = base64.b64decode(args["manifest"], validate=True)
        except ValueError:
            raise CommandError("bad-request", "manifest must be base64 of the manifest's bytes") from None
        try:
            manifest = self._check(raw, args["signature"])
        except release.ReleaseError as exc:
            self._report("refused", code=exc.code, reason=str(exc), release=release.release_id(raw))
            raise CommandError(exc.code, str(exc)) from None
        directory = self.updates.release_dir(manifest.release_id)
        (directory / "files").mkdir(parents=True, exist_ok=True)
        write_json(directory / "offer.json", {"manifest": args["manifest"], "signature": args["signature"]})
        self._queue.put(("offer", manifest))
        return {"accepted": True, "release": manifest.release_id, "version": manifest.version,
                "bytes": manifest.total_bytes}  # fmt: skip

    def _check(self, raw: bytes, signature: str) -> release.Manifest:
        manifest = release.verify(raw, signature, self._trusted())
        rid = manifest.release_id
        if release.version_key(manifest.version) <= release.version_key(self._version):
            raise release.ReleaseError(
                "not-newer", f"release {manifest.version} is not newer than the running {self._version}"
            )
        gave_up = self.updates.given_up(rid)
        if gave_up:
            raise release.ReleaseError("given-up", f"this station gave release {rid} up before: {gave_up}")
        wrong = platform_matches(manifest)
        if wrong:
            raise release.ReleaseError("wrong-platform", wrong)
        return manifest

    # ----- the yimen-ota thread ------------------------------------------------------------------

    def _run(self) -> None:
        self._resume()
        while True:
            try:
                item = self._queue.get(timeout=self._pacer.wait_s() or 0.5)
            except queue.Empty:
                item = ("tick",)
            if item[0] == "stop":
                return
            try:
                if item[0] == "offer":
                    self._begin(item[1])
                elif item[0] == "chunk":
                    self._chunk(item[1], item[2])
                self._ask()
            except OSError as exc:
                log.exception("release download: disk error")
                self._abandon("disk-error", f"cannot write the release under {self.updates.root}: {exc}")

    def _resume(self) -> None:
        """A download the gateway was busy with before it restarted goes on where it stopped."""
        if not self.updates.root.is_dir() or self.updates.ready.exists():
            return
        offers = sorted(self.updates.root.glob("r*/offer.json"), key=lambda p: p.stat().st_mtime)
        for path in reversed(offers):
            doc = read_json(path) or {}
            try:
                manifest = self._check(base64.b64decode(doc.get("manifest", "")), str(doc.get("signature", "")))
            except (release.ReleaseError, ValueError):
                shutil.rmtree(path.parent, ignore_errors=True)
                continue
            self._begin(manifest, resumed=True)
            return

    def _begin(self, manifest: release.Manifest, resumed: bool = False) -> None:
        if self._job is not None and self._job.manifest.release_id == manifest.release_id:
            return  # offered again while we fetch it
        if self._job is not None:
            log.info("release %s replaces %s being fetched", manifest.version, self._job.manifest.version)
            shutil.rmtree(self._job.directory, ignore_errors=True)
        job = _Download(manifest, self.updates.release_dir(manifest.release_id))
        self._job = job
        self._report("downloading", resumed=resumed)
        self._open_file(job)

    def _open_file(self, job: _Download) -> None:
        """Skip files already complete; continue the current one from its part file's whole chunks."""
        while job.file < len(job.manifest.files):
            done = job.directory / "files" / job.entry.name
            if not done.exists():
                self._reuse(job.entry, done)
            if done.exists() and done.stat().st_size == job.entry.size:
                job.file += 1
                continue
            part = job.part_path()
            have = part.stat().st_size if part.exists() else 0
            whole = min(have // job.manifest.chunk_size, job.entry.chunks(job.manifest.chunk_size))
            with open(part, "ab") as fh:
                fh.truncate(whole * job.manifest.chunk_size)
            job.next_chunk, job.asked, job.early = whole, {}, {}
            if whole * job.manifest.chunk_size < job.entry.size:
                return
            if not self._finish_file(job):
                return
            job.file += 1
        self._complete(job)

    def _reuse(self, entry: release.FileEntry, done: Path) -> None:
        """A file the last release had too (an unchanged dependency) is taken from the cache, not fetched."""
        cached = self.updates.cache / entry.name
        try:
            if cached.stat().st_size != entry.size or release.file_sha256(cached) != entry.sha256:
                return
            os.link(cached, done)
        except OSError:
            return
        self.counts["reused_bytes"] += entry.size

    def _keep_for_later(self, job: _Download) -> None:
        """This release's files become the cache the next release draws on (hard links: no copy)."""
        fresh = self.updates.root / "cache.new"
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.mkdir(parents=True)
        for entry in job.manifest.files:
            os.link(job.directory / "files" / entry.name, fresh / entry.name)
        shutil.rmtree(self.updates.cache, ignore_errors=True)
        os.replace(fresh, self.updates.cache)

    def _ask(self) -> None:
        job = self._job
        if job is None or job.file >= len(job.manifest.files):
            return
        now = time.monotonic()
        for chunk, at in list(job.asked.items()):
            if now - at > CHUNK_TIMEOUT_S:
                del job.asked[chunk]  # lost with a connection, or never answered: ask again
        if not self._may_send() or self._pacer.wait_s() > 0:
            return
        # One request for as many chunks as the window has room for, paid for at once: the rate
        # holds over time (the next request waits out the debt), and requests stay few.
        total = job.entry.chunks(job.manifest.chunk_size)
        wanted = []
        n = job.next_chunk
        while len(job.asked) + len(wanted) < WINDOW and n < total:
            if n not in job.asked and n not in job.early:
                wanted.append(n)
                topic = topics.ota_chunk_topic(self._county, self._station, job.manifest.release_id, job.file, n)
                self._pacer.spend(publish_size(topic, job.expected_len(n), qos=1, v5=True))
            n += 1
        if not wanted:
            return
        doc = {"release": job.manifest.release_id, "file": job.file, "chunks": wanted}
        self._publish(topics.ota_want_topic(self._county, self._station), json.dumps(doc).encode())
        self.counts["asked"] += len(wanted)
        for chunk in wanted:
            job.asked[chunk] = now

    def _chunk(self, topic_text: str, payload: bytes) -> None:
        job = self._job
        try:
            topic = topics.parse(topic_text)
        except ValueError:
            return
        file_text, chunk_text = topic_text.rsplit("/", 2)[1:]
        if job is None or topic.kind != job.manifest.release_id or not (file_text.isdigit() and chunk_text.isdigit()):
            self.counts["bad_chunks"] += 1
            return  # not asked for: an old release, or a county that sends what nobody wanted
        file_no, chunk = int(file_text[:6]), int(chunk_text[:9])
        if file_no != job.file or chunk not in job.asked:
            self.counts["bad_chunks"] += 1
            return
        del job.asked[chunk]
        want = job.expected_len(chunk)
        if len(payload) != want:
            self.counts["bad_chunks"] += 1
            job.strikes += 1
            why = f"chunk {chunk} of {job.entry.name} is {len(payload)} bytes; it should be {want}"
            log.warning("release %s: %s (strike %d of %d)", job.manifest.version, why, job.strikes, MAX_STRIKES)
            if job.strikes >= MAX_STRIKES:
                self._abandon("truncated-chunk", why)
            return
        self.counts["chunks"] += 1
        self.counts["chunk_bytes"] += len(payload)
        job.early[chunk] = payload
        with open(job.part_path(), "ab") as fh:
            while job.next_chunk in job.early:
                fh.write(job.early.pop(job.next_chunk))
                job.next_chunk += 1
        if job.next_chunk >= job.entry.chunks(job.manifest.chunk_size) and self._finish_file(job):
            job.file += 1
            self._open_file(job)

    def _finish_file(self, job: _Download) -> bool:
        """Keep a whole file if its size and hash are the manifest's; else abandon the release."""
        part, entry = job.part_path(), job.entry
        digest = release.file_sha256(part)
        if part.stat().st_size != entry.size or digest != entry.sha256:
            self._abandon(
                "wrong-hash",
                f"{entry.name}: got {part.stat().st_size} bytes with sha256 {digest[:16]}…; "
                f"the signed manifest says {entry.size} bytes, {entry.sha256[:16]}…",
            )
            return False
        os.replace(part, job.directory / "files" / entry.name)
        return True

    def _complete(self, job: _Download) -> None:
        try:
            release.check_files(job.manifest, job.directory / "files")
        except release.ReleaseError as exc:
            self._abandon(exc.code, str(exc))
            return
        self._keep_for_later(job)
        write_json(self.updates.ready, {"release": job.manifest.release_id, "version": job.manifest.version})
        self._report("downloaded", fetched_bytes=self.counts["chunk_bytes"], reused_bytes=self.counts["reused_bytes"])
        log.info("release %s downloaded and checked; handed to the updater", job.manifest.version)
        self._job = None

    def _abandon(self, code: str, reason: str) -> None:
        job = self._job
        if job is None:
            return
        log.error("release %s abandoned: %s", job.manifest.version, reason)
        self.updates.give_up(job.manifest.release_id, f"{code}: {reason}")
        self._report("refused", code=code, reason=reason)
        shutil.rmtree(job.directory, ignore_errors=True)
        self._job = None

    def _report(self, state: str, **data: Any) -> None:
        job = self._job
        doc = {"state": state, "running": self._version}
        if job is not None:
            doc |= {"release": job.manifest.release_id, "version": job.manifest.version}
        self._emit(NewEvent("update", Priority.NORMAL, doc | data))
