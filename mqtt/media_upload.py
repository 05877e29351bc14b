"""Media files to the county in chunks, over the uplink's one connection, after every event.

The outbox carries each media item's `media` event (bulk); once the broker has acknowledged
that event, the file itself follows as a manifest and numbered chunks on
`.../media/<media-id>/{manifest,0,1,...}` (mqtt/TOPICS.md). This module decides what goes next
and remembers what arrived; it owns no thread and no connection. The uplink thread drives it:
it registers delivered media events, asks for messages when the outbox has nothing left to
send (so ratings and queue events never wait behind a file), publishes them at QoS 1 in the
same in-flight window, and reports each PUBACK back by key.

Progress lives in its own SQLite file beside the outbox (`media-upload.db`). An acknowledged
chunk is recorded with `synchronous=NORMAL`, like a delivery mark: a record lost in a power
cut costs one re-sent chunk, while an fsync per chunk would cost more than the chunk. A job is
registered with `synchronous=FULL` before the outbox marks its event delivered, so a delivered
media event always has its upload job. After a disconnect only the chunks that were in flight
are sent again; acknowledged ones never are.

Bandwidth: a token bucket of one message's depth paces media messages at `[media]
upload_kbps`, counting whole MQTT PUBLISH packets. A message may leave when the bucket is not
in debt, and puts it in debt by its size, so over any interval media bytes stay within
rate x interval plus one message. Live-view frames are charged to the same bucket (capped), so
chunks yield while someone watches.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.events import Event
from edge.outbox import Pending
from mqtt import topics
from mqtt.config import MediaConfig

log = logging.getLogger("yimen.media_upload")

PROGRESS_DB = "media-upload.db"
CONTENT_TYPES = {"jpg": "image/jpeg", "mjpeg": "video/x-motion-jpeg", "mp4": "video/mp4"}
MANIFEST_PART = -1  # the manifest's place in a job's send order: before chunk 0
# Chunks in flight at once: enough to keep a 3G round trip busy at the capped rate, few enough
# that a disconnect re-sends little and that events always find room in the shared window.
MAX_INFLIGHT = 4
# At most this many seconds of upload are owed to live view: chunks resume soon after it ends.
LIVE_DEBT_S = 5.0

Key = tuple[str, int]  # (media id, part): MANIFEST_PART or a chunk number

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS jobs (
        media_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, event_id TEXT NOT NULL, rank INTEGER NOT NULL,
        path TEXT NOT NULL, size INTEGER NOT NULL, chunk_size INTEGER NOT NULL, manifest BLOB NOT NULL,
        registered REAL NOT NULL, done REAL, gone TEXT)""",
    "CREATE TABLE IF NOT EXISTS acked (media_id TEXT NOT NULL, part INTEGER NOT NULL, PRIMARY KEY (media_id, part))",
)


def publish_size(topic: str, payload_len: int, *, qos: int, v5: bool) -> int:
    """Bytes of an MQTT PUBLISH packet on the wire (fixed header, topic, packet id, properties, payload)."""
    remaining = 2 + len(topic.encode()) + (2 if qos else 0) + (1 if v5 else 0) + payload_len
    length_bytes = 1 if remaining < 128 else 2 if remaining < 16_384 else 3 if remaining < 2_097_152 else 4
    return 1 + length_bytes + remaining


class Pacer:
    """A token bucket one message deep: `rate` bytes per second, measured in whole messages."""

    def __init__(self, rate: float, now: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._now = now
        self._tokens = 0.0
        self._at = now()

    def _refill(self) -> None:
        t = self._now()
        self._tokens = min(0.0, self._tokens + (t - self._at) * self.rate)
        self._at = t

    def wait_s(self) -> float:
        """Seconds until the next message may go (0 now)."""
        self._refill()
        return -self._tokens / self.rate

    def spend(self, nbytes: int, floor: float | None = None) -> None:
        self._refill()
        self._tokens -= nbytes
        if floor is not None:
            self._tokens = max(self._tokens, floor)


@dataclass(frozen=True)
class MediaMessage:
    key: Key
    topic: str
    payload: bytes
    size: int  # on the wire


@dataclass
class _Job:
    media_id: str
    seq: int
    rank: int
    path: Path
    size: int
    chunk_size: int
    manifest: bytes
    todo: list[int]  # parts not yet acknowledged nor in flight, ascending (manifest first)
    inflight: set[int] = field(default_factory=set)

    @property
    def chunks(self) -> int:
        return -(-self.size // self.chunk_size)

    def bytes_left(self) -> int:
        parts = [p for p in (*self.todo, *self.inflight) if p != MANIFEST_PART]
        return sum(min(self.chunk_size, self.size - p * self.chunk_size) for p in parts)


def _manifest(event: Event, chunk_size: int) -> bytes:
    data = event.data
    doc = {
        "media_id": data["media_id"],
        "event": event.id,
        "type": data.get("type"),
        # The county names the file from it (mqtt/TOPICS.md): a clip is MP4 or MJPEG.
        "content_type": CONTENT_TYPES.get(data.get("ext") or str(data.get("path", "")).rpartition(".")[2]),
        "window": data.get("window"),
        "caused_by": data.get("caused_by"),
        "size": data["size"],
        "sha256": data["sha256"],
        "chunk_size": chunk_size,
        "chunks": -(-data["size"] // chunk_size),
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


class MediaUploader:
    """Chunked, resumable, paced upload of media files; driven by the uplink thread only
    (`uploaded` excepted: the disk budget asks it from the outbox's commit thread)."""

    def __init__(
        self,
        config: MediaConfig,
        storage: Path,
        county: str,
        station: str,
        *,
        v5: bool = True,
        now: Callable[[], float] = time.monotonic,
        may_upload: Callable[[str], bool] = lambda _media_id: True,
    ) -> None:
        self._storage = storage
        self._may_upload = may_upload  # the month's data budget (edge/budget.py) may hold media back
        self._county = county
        self._station = station
        self._v5 = v5
        self._chunk_size = config.chunk_kb * 1024
        self._pacer = Pacer(config.upload_kbps * 1000 / 8, now)
        self.db_path = storage / PROGRESS_DB
        storage.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout = 5000")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        for sql in _SCHEMA:
            self._conn.execute(sql)
        self._jobs: list[_Job] = []
        self._inflight: set[Key] = set()
        self._counts = {"sent": 0, "acked": 0, "completed": 0, "given_up": 0, "unacked_at_disconnect": 0}
        self._load()

    # ----- uplink thread -----------------------------------------------------------------------

    def delivered(self, events: Iterable[Pending]) -> None:
        """The broker took these events: register an upload job for each media event among them.

        Called before the outbox marks them delivered, and committed with an fsync, so that no
        delivered media event is ever left without its job. A re-delivered event is ignored."""
        rows = []
        for pending in events:
            if pending.kind != "media":
                continue
            try:
                event = Event.from_bytes(pending.payload)
                data = event.data
                topics.media_topic(self._county, self._station, data["media_id"], topics.MANIFEST)  # a valid id
                rank = 1 if data.get("type") == "clip" and data.get("caused_by") else 0  # evidence first
                manifest = _manifest(event, self._chunk_size)
                row = (data["media_id"], event.seq, event.id, rank, data["path"], int(data["size"]))
            except (ValueError, KeyError, TypeError) as exc:
                # Never let one odd event stop the uplink thread; the event itself was delivered.
                log.error("media event seq %d has no usable file description (%s); not uploading it", pending.seq, exc)
                continue
            rows.append((*row, self._chunk_size, manifest))
        if not rows:
            return
        self._conn.execute("PRAGMA synchronous = FULL")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            new = []
            for row in rows:
                cur = self._conn.execute(
                    "INSERT OR IGNORE INTO jobs (media_id, seq, event_id, rank, path, size, chunk_size, manifest,"
                    " registered) VALUES (?,?,?,?,?,?,?,?,?)",
                    (*row, time.time()),
                )
                if cur.rowcount:
                    new.append(row)
            self._conn.execute("COMMIT")
        finally:
            self._conn.execute("PRAGMA synchronous = NORMAL")
        for media_id, seq, _eid, rank, path, size, chunk_size, manifest in new:
            self._add(_Job(media_id, seq, rank, self._storage / path, size, chunk_size, manifest, []))

    def take(self, room: int) -> list[MediaMessage]:
        """The messages that may go now: within `room` window slots, MAX_INFLIGHT and the pace."""
        if not self._jobs:  # the usual case, asked at every fill of the window
            return []
        out: list[MediaMessage] = []
        while room > len(out) and len(self._inflight) < MAX_INFLIGHT and self._pacer.wait_s() == 0:
            message = self._next()
            if message is None:
                break
            self._pacer.spend(message.size)
            self._inflight.add(message.key)
            self._counts["sent"] += 1
            out.append(message)
        return out

    def wait_s(self) -> float | None:
        """When `take` could yield again by the clock alone; None if only a PUBACK or new job can help."""
        if len(self._inflight) >= MAX_INFLIGHT or not any(job.todo for job in self._jobs if self._may_go(job)):
            return None
        return self._pacer.wait_s()

    def acked(self, key: Key, reason_code: int) -> None:
        """A PUBACK for one of our messages (any reason code)."""
        self._inflight.discard(key)
        media_id, part = key
        job = next((j for j in self._jobs if j.media_id == media_id), None)
        if job is None:
            return  # given up meanwhile
        job.inflight.discard(part)
        if reason_code >= 0x80:
            self._give_up(job, f"the broker refused part {part}: reason 0x{reason_code:02X}")
            return
        self._conn.execute("INSERT OR IGNORE INTO acked VALUES (?, ?)", key)
        self._counts["acked"] += 1
        if not job.todo and not job.inflight:
            self._finish(job, "done", time.time())
            self._counts["completed"] += 1
            log.info("uploaded %s (%d bytes, %d chunks)", media_id, job.size, job.chunks)

    def lost(self) -> None:
        """The connection is gone with its session: what was in flight must go again."""
        self._counts["unacked_at_disconnect"] += len(self._inflight)
        for job in self._jobs:
            job.todo = sorted({*job.todo, *job.inflight})
            job.inflight.clear()
        self._inflight.clear()

    def charge(self, nbytes: int) -> None:
        """Bytes sent for live view: media chunks make way for them, up to LIVE_DEBT_S of upload."""
        self._pacer.spend(nbytes, floor=-self._pacer.rate * LIVE_DEBT_S)

    def status(self) -> dict[str, Any]:
        return {
            "jobs": len(self._jobs),
            "bytes_left": sum(job.bytes_left() for job in self._jobs),
            "inflight": len(self._inflight),
            "upload_kbps": self._pacer.rate * 8 / 1000,
            **self._counts,
        }

    def close(self) -> None:
        self._conn.close()

    # ----- any thread ----------------------------------------------------------------------------

    def uploaded(self) -> set[str]:
        """Media ids whose upload is complete: what the disk budget may delete without a loss."""
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            return {row[0] for row in conn.execute("SELECT media_id FROM jobs WHERE done IS NOT NULL")}
        finally:
            conn.close()

    # ----- internals -----------------------------------------------------------------------------

    def _load(self) -> None:
        """Unfinished jobs from an earlier run, minus what the broker already acknowledged."""
        acked: dict[str, set[int]] = {}
        for media_id, part in self._conn.execute("SELECT media_id, part FROM acked"):
            acked.setdefault(media_id, set()).add(part)
        rows = self._conn.execute(
            "SELECT media_id, seq, rank, path, size, chunk_size, manifest FROM jobs WHERE done IS NULL AND gone IS NULL"
        ).fetchall()
        for media_id, seq, rank, path, size, chunk_size, manifest in rows:
            job = _Job(media_id, seq, rank, self._storage / path, size, chunk_size, manifest, [])
            self._add(job, acked.get(media_id, set()))
        # Uploaded files already deleted by the disk budget need no record any more.
        for media_id, path in self._conn.execute("SELECT media_id, path FROM jobs WHERE done IS NOT NULL").fetchall():
            if not (self._storage / path).exists():
                self._conn.execute("DELETE FROM jobs WHERE media_id = ?", (media_id,))

    def _add(self, job: _Job, acked: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        job.todo = [p for p in range(MANIFEST_PART, job.chunks) if p not in acked]
        self._jobs.append(job)
        self._jobs.sort(key=lambda j: (-j.rank, j.seq))

    def _may_go(self, job: _Job) -> bool:
        """A file the budget holds back waits, unless it is under way (its manifest went)."""
        return MANIFEST_PART not in job.todo or self._may_upload(job.media_id)

    def _next(self) -> MediaMessage | None:
        for job in list(self._jobs):
            if not self._may_go(job):
                continue
            while job.todo:
                part = job.todo.pop(0)
                payload = job.manifest if part == MANIFEST_PART else self._read(job, part)
                if payload is None:
                    break  # the job was given up
                job.inflight.add(part)
                topic = topics.media_topic(
                    self._county, self._station, job.media_id, topics.MANIFEST if part == MANIFEST_PART else part
                )
                size = publish_size(topic, len(payload), qos=1, v5=self._v5)
                return MediaMessage((job.media_id, part), topic, payload, size)
        return None

    def _read(self, job: _Job, part: int) -> bytes | None:
        want = min(job.chunk_size, job.size - part * job.chunk_size)
        try:
            with open(job.path, "rb") as fh:
                fh.seek(part * job.chunk_size)
                data = fh.read(want)
        except FileNotFoundError:
            self._give_up(job, "the file was deleted before it was uploaded (disk budget; see the eviction event)")
            return None
        except OSError as exc:
            self._give_up(job, f"cannot read the file: {exc}")
            return None
        if len(data) != want:
            self._give_up(job, f"the file is shorter than its media event says ({job.size} bytes)")
            return None
        return data

    def _give_up(self, job: _Job, reason: str) -> None:
        log.error("media %s: not uploaded: %s", job.media_id, reason)
        self._counts["given_up"] += 1
        self._finish(job, "gone", reason)

    def _finish(self, job: _Job, column: str, value: object) -> None:
        self._jobs.remove(job)
        self._inflight.difference_update((job.media_id, p) for p in job.inflight)
        self._conn.execute("BEGIN")
        self._conn.execute(f"UPDATE jobs SET {column} = ? WHERE media_id = ?", (value, job.media_id))
        self._conn.execute("DELETE FROM acked WHERE media_id = ?", (job.media_id,))
        self._conn.execute("COMMIT")
