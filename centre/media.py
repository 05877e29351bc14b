"""What the county holds of its stations' pictures and clips: uploads put back together, checked,
kept within a disk budget.

A station announces each file with a `media` event and then sends a manifest and numbered
chunks (mqtt/TOPICS.md, Media). Here, for each (station, media id):

- the manifest is checked (every number bounded, the topic's station and media id are the
  truth) and recorded in the store's `media` table; a station has at most MAX_OPEN uploads open;
- each chunk must fit its manifest (number in range, exact size) or it is refused and counted;
  it is written at its place in `<dir>/.partial/<station>/<media id>` and recorded in
  `media_chunks`. A chunk already held is not written again, so an upload resumes
  from what is held across a console restart, and across several console processes sharing
  one store and one media directory;
- once every chunk is held, one process (the one that moves the row from `partial` to
  `assembling`) checks the whole file's sha256 against the manifest and only then renames it
  into place as `<dir>/<station>/<media id>.<ext>`: a file there is complete;
- a disk budget (`[media] max_mb`): past it, complete files are deleted, snapshots first, then
  clips, clips of bad ratings last, each deletion counted.

Counts (refusals by reason, deletions by type) are rows in `media_counts`, so every console
process shows the same. Owned by the "centre-media" thread (centre/media_ingest.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from centre.bounds import MAX_LOSS_RANGES, Refused
from centre.store import Store

log = logging.getLogger("yimen.centre.media")

MAX_MEDIA_BYTES = 256 * 2**20  # one file; a 30 s evidence clip is a few MB
MIN_CHUNK, MAX_CHUNK = 1024, 2**20  # the station's chunk_kb is 1..256 KiB
MAX_OPEN = 32  # uploads of one station not yet complete: beyond, a new manifest is refused
MEDIA_ID = re.compile(r"^[a-z0-9-]{1,64}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
TYPES = ("snapshot", "clip")
# What a manifest's (or media event's) `content_type` may say, and the file name it gets.
CONTENT_TYPES = {"image/jpeg": "jpg", "video/x-motion-jpeg": "mjpeg", "video/mp4": "mp4"}
DEFAULT_EXT = {"snapshot": "jpg", "clip": "mjpeg"}
PARTIAL = ".partial"
OPEN_FILES = 64  # partial files kept open between chunks
ASSEMBLY_S = 60.0  # an assembly claimed longer ago than this was abandoned (its process stopped)
# An upload still partial this long after its manifest will not complete (a broker restarted
# without persistence lost chunks the station saw acknowledged): when a station's open uploads
# reach MAX_OPEN, these are given up as lost, so they cannot block its new ones for good.
STALE_S = 30 * 86_400.0

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS media (
        station TEXT NOT NULL, media_id TEXT NOT NULL, event_id TEXT, type TEXT, window_no INTEGER,
        caused_by TEXT, started TEXT, ended TEXT, size BIGINT, sha256 TEXT, chunk_size BIGINT, chunks BIGINT,
        ext TEXT, state TEXT NOT NULL, held BIGINT NOT NULL DEFAULT 0, announced_at DOUBLE PRECISION,
        manifest_at DOUBLE PRECISION, completed_at DOUBLE PRECISION, deleted_at DOUBLE PRECISION,
        PRIMARY KEY (station, media_id))""",
    "CREATE INDEX IF NOT EXISTS media_state ON media (station, state)",
    """CREATE TABLE IF NOT EXISTS media_chunks (
        station TEXT NOT NULL, media_id TEXT NOT NULL, n BIGINT NOT NULL, PRIMARY KEY (station, media_id, n))""",
    """CREATE TABLE IF NOT EXISTS media_counts (
        station TEXT NOT NULL, what TEXT NOT NULL, n BIGINT NOT NULL, PRIMARY KEY (station, what))""",
]
OPEN_STATES = ("announced", "partial", "assembling")


@dataclass(frozen=True)
class Manifest:
    media_id: str
    event: str
    type: str
    window: int
    caused_by: str | None
    size: int
    sha256: str
    chunk_size: int
    chunks: int
    ext: str

    def chunk_len(self, n: int) -> int:
        return min(self.chunk_size, self.size - n * self.chunk_size)


def _int(doc: dict[str, Any], key: str, low: int, high: int) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise Refused("bad-manifest", f"{key} {str(value)[:30]} is not an integer in {low}..{high}", hostile=True)
    return value


def _ext(doc: dict[str, Any], media_type: str) -> str:
    content = doc.get("content_type")
    if content is None:
        suffix = str(doc.get("path") or "").rpartition(".")[2]
        return suffix if suffix in CONTENT_TYPES.values() else DEFAULT_EXT[media_type]
    if content not in CONTENT_TYPES:
        raise Refused("bad-manifest", f"content_type {str(content)[:40]!r} is none of {', '.join(CONTENT_TYPES)}")
    return CONTENT_TYPES[content]


def parse_manifest(station: str, media_id: str, payload: bytes) -> Manifest:
    """A manifest from `station` on `media_id`'s topic, with every number bounded. The topic's
    media id names the upload's files, so it is checked first (a station makes only MEDIA_ID)."""
    if not MEDIA_ID.match(media_id):
        raise Refused("bad-media-id", f"media id {media_id[:70]!r} is not {MEDIA_ID.pattern}", hostile=True)
    if len(payload) > 4096:
        raise Refused("bad-manifest", f"{len(payload)} bytes, at most 4096", hostile=True)
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Refused("bad-manifest", f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise Refused("bad-manifest", "not a JSON object")
    if doc.get("media_id") != media_id:
        raise Refused(
            "media-mismatch", f"manifest says {str(doc.get('media_id'))[:70]!r}, topic {media_id!r}", hostile=True
        )
    event = doc.get("event")
    if not isinstance(event, str) or not event.startswith(f"{station}-") or len(event) > 80:
        raise Refused("station-mismatch", f"manifest's event {str(event)[:80]!r} is not {station}'s", hostile=True)
    media_type = doc.get("type")
    if media_type not in TYPES:
        raise Refused("bad-manifest", f"type {str(media_type)[:20]!r} is none of {', '.join(TYPES)}")
    size = _int(doc, "size", 0, MAX_MEDIA_BYTES)
    chunk_size = _int(doc, "chunk_size", MIN_CHUNK, MAX_CHUNK)
    chunks = _int(doc, "chunks", 0, math.ceil(MAX_MEDIA_BYTES / MIN_CHUNK))
    if chunks != math.ceil(size / chunk_size):
        raise Refused("bad-manifest", f"{chunks} chunks of {chunk_size} bytes cannot make {size} bytes", hostile=True)
    sha = doc.get("sha256")
    if not isinstance(sha, str) or not SHA256.match(sha):
        raise Refused("bad-manifest", "sha256 is not 64 lowercase hex digits")
    caused_by = doc.get("caused_by")
    if caused_by is not None and (not isinstance(caused_by, str) or len(caused_by) > 80):
        raise Refused("bad-manifest", "caused_by is not an event id")
    window = _int(doc, "window", 0, 999) if doc.get("window") is not None else 0
    return Manifest(
        media_id, event, media_type, window, caused_by, size, sha, chunk_size, chunks, _ext(doc, media_type)
    )


def chunk_number(part: str | None, manifest: Manifest) -> int:
    if part is None or not part.isdigit() or len(part) > 10 or int(part) >= manifest.chunks:
        raise Refused("chunk-range", f"chunk {str(part)[:12]!r} of {manifest.media_id}: it has {manifest.chunks}")
    return int(part)


class MediaStore:
    """The county's media files and their records; one thread uses it (see the module doc)."""

    def __init__(self, store: Store, directory: Path, max_bytes: int) -> None:
        self.store = store
        self.dir = directory
        self.max_bytes = max_bytes
        self.dir.mkdir(parents=True, exist_ok=True)
        for statement in SCHEMA:
            store.conn.execute(statement)
        store.commit()
        self._manifests: dict[tuple[str, str], Manifest | None] = {}  # a small cache of the table
        self._fds: dict[Path, int] = {}

    # ----- counts ----------------------------------------------------------------------------

    def count(self, station: str, what: str, n: int = 1) -> None:
        self.store._exec(
            """INSERT INTO media_counts (station, what, n) VALUES (?, ?, ?)
               ON CONFLICT (station, what) DO UPDATE SET n = media_counts.n + excluded.n""",
            (station, what, n),
        )

    # ----- what arrives ------------------------------------------------------------------------

    def announce(self, station: str, event_id: str, data: dict[str, Any], now: float) -> None:
        """A `media` event: the county now knows this file should come (media completeness)."""
        media_id = data.get("media_id")
        if not isinstance(media_id, str) or not MEDIA_ID.match(media_id):
            return
        media_type = data.get("type") if data.get("type") in TYPES else None
        window = data.get("window") if isinstance(data.get("window"), int) and 0 <= data["window"] <= 999 else None
        caused_by = data.get("caused_by") if isinstance(data.get("caused_by"), str) else None
        text = {k: str(data.get(k))[:40] if data.get(k) is not None else None for k in ("started", "ended")}
        self.store._exec(
            """INSERT INTO media (station, media_id, event_id, type, window_no, caused_by, started, ended, state,
                                  announced_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'announced', ?)
               ON CONFLICT (station, media_id) DO UPDATE SET event_id = excluded.event_id,
                 started = excluded.started, ended = excluded.ended, announced_at = excluded.announced_at""",
            (station, media_id, event_id, media_type, window, caused_by and caused_by[:80], *text.values(), now),
        )
        self.store.commit()

    def never_coming(self, station: str, media_ids: Any, now: float) -> None:
        """An `eviction` event's `media`: files the station deleted before uploading them all. They
        are `lost`, no longer awaited (media completeness); at most MAX_LOSS_RANGES of them. What
        was held of them (partial file, chunk rows) is deleted: no budget counts it, and a station
        could otherwise fill the county's disk by half sending uploads and then listing them."""
        if not isinstance(media_ids, list):
            return
        for media_id in media_ids[:MAX_LOSS_RANGES]:
            if isinstance(media_id, str) and MEDIA_ID.match(media_id):
                self._lose(station, media_id, now)  # not one being assembled: it has every chunk
                self.count(station, "lost-at-station")
        self.store.commit()

    def manifest(self, station: str, media_id: str, payload: bytes, now: float) -> None:
        """Record a manifest; raises Refused. The same manifest again (a re-send) is no change."""
        m = parse_manifest(station, media_id, payload)
        known = self.known(station, media_id)
        if known is not None:
            if known != m:
                raise Refused("manifest-changed", f"{media_id}: a second, different manifest", hostile=True)
            return
        open_now = self._open_uploads(station)
        if open_now >= MAX_OPEN:
            open_now -= self._give_up_stale(station, now)
        if open_now >= MAX_OPEN:
            raise Refused("too-many-uploads", f"{open_now} uploads open at once, at most {MAX_OPEN}", hostile=True)
        self.store._exec(
            """INSERT INTO media (station, media_id, event_id, type, window_no, caused_by, size, sha256, chunk_size,
                                  chunks, ext, state, manifest_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'partial', ?)
               ON CONFLICT (station, media_id) DO UPDATE SET type = excluded.type, window_no = excluded.window_no,
                 caused_by = excluded.caused_by, size = excluded.size, sha256 = excluded.sha256,
                 chunk_size = excluded.chunk_size, chunks = excluded.chunks, ext = excluded.ext, state = 'partial',
                 manifest_at = excluded.manifest_at""",
            (
                station,
                media_id,
                m.event,
                m.type,
                m.window,
                m.caused_by,
                m.size,
                m.sha256,
                m.chunk_size,
                m.chunks,
                m.ext,
                now,
            ),
        )
        self.store.commit()
        self._manifests[(station, media_id)] = m
        if m.chunks == 0:
            self._maybe_complete(station, m, now)

    def _open_uploads(self, station: str) -> int:
        return self.store._exec(
            "SELECT COUNT(*) FROM media WHERE station = ? AND state IN ('partial', 'assembling')", (station,)
        ).fetchone()[0]

    def _give_up_stale(self, station: str, now: float) -> int:
        """The station's uploads partial for over STALE_S become lost, what was held of them
        deleted; how many."""
        stale = [
            row[0]
            for row in self.store._exec(
                "SELECT media_id FROM media WHERE station = ? AND state = 'partial' AND manifest_at < ?",
                (station, now - STALE_S),
            ).fetchall()
        ]
        for media_id in stale:
            self._lose(station, media_id, now)
        if stale:
            self.count(station, "lost-stale", len(stale))
            self.store.commit()
            log.warning("%s: %d uploads partial for over %.0f days given up", station, len(stale), STALE_S / 86400)
        return len(stale)

    def _lose(self, station: str, media_id: str, now: float) -> bool:
        """An upload not yet complete (nor being assembled) becomes `lost`; what was held of it
        (partial file, chunk rows) is deleted. False if it was in no such state."""
        cur = self.store._exec(
            """UPDATE media SET state = 'lost', deleted_at = ? WHERE station = ? AND media_id = ?
               AND state IN ('announced', 'partial')""",
            (now, station, media_id),
        )
        if cur.rowcount != 1:
            return False
        self.store._exec("DELETE FROM media_chunks WHERE station = ? AND media_id = ?", (station, media_id))
        self._drop_partial(station, media_id)
        return True

    def known(self, station: str, media_id: str) -> Manifest | None:
        """The manifest the store holds for this upload (from this process or another), if any."""
        key = (station, media_id)
        if self._manifests.get(key) is None:
            row = self.store._exec(
                """SELECT event_id, type, window_no, caused_by, size, sha256, chunk_size, chunks, ext FROM media
                   WHERE station = ? AND media_id = ? AND sha256 IS NOT NULL""",
                key,
            ).fetchone()
            if row is None:
                return None
            if len(self._manifests) > 10_000:
                self._manifests.clear()
            self._manifests[key] = Manifest(media_id, *row)
        return self._manifests[key]

    def chunk(self, station: str, media_id: str, part: str | None, payload: bytes, now: float) -> str:
        """Hold one chunk; returns `stored`, `duplicate` or `no-manifest` (not yet known: the
        caller may try again shortly). Raises Refused for a chunk that does not fit, or that no
        manifest could allow (before the caller holds it while waiting for its manifest)."""
        if len(payload) > MAX_CHUNK:
            raise Refused("chunk-size", f"chunk of {media_id[:70]!r} has {len(payload)} bytes, at most {MAX_CHUNK}")
        m = self.known(station, media_id)
        if m is None:
            return "no-manifest"
        n = chunk_number(part, m)
        if len(payload) != m.chunk_len(n):
            raise Refused("chunk-size", f"chunk {n} of {media_id} has {len(payload)} bytes, not {m.chunk_len(n)}")
        state = self.store._exec(
            "SELECT state FROM media WHERE station = ? AND media_id = ?", (station, media_id)
        ).fetchone()
        if state is None or state[0] != "partial":
            return "duplicate"  # complete (or being completed) already: a late re-send
        held = self.store._exec(
            "SELECT 1 FROM media_chunks WHERE station = ? AND media_id = ? AND n = ?", (station, media_id, n)
        ).fetchone()
        if held:
            return "duplicate"
        os.pwrite(self._partial_fd(station, media_id), payload, n * m.chunk_size)
        cur = self.store._exec(
            "INSERT INTO media_chunks (station, media_id, n) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (station, media_id, n),
        )
        if cur.rowcount == 1:
            self.store._exec("UPDATE media SET held = held + 1 WHERE station = ? AND media_id = ?", (station, media_id))
        self.store.commit()  # before counting: another process's last chunk must see ours
        self._maybe_complete(station, m, now)
        return "stored"

    # ----- putting a file together -------------------------------------------------------------

    def path(self, station: str, media_id: str, ext: str) -> Path:
        return self.dir / station / f"{media_id}.{ext}"

    def _maybe_complete(self, station: str, m: Manifest, now: float) -> None:
        held = self.store._exec(
            "SELECT COUNT(*) FROM media_chunks WHERE station = ? AND media_id = ?", (station, m.media_id)
        ).fetchone()[0]
        if held < m.chunks:
            return
        claim = self.store._exec(
            """UPDATE media SET state = 'assembling', completed_at = ?
               WHERE station = ? AND media_id = ? AND state = 'partial'""",
            (now, station, m.media_id),
        )
        self.store.commit()
        if claim.rowcount != 1:
            return  # another console process is putting it together
        try:
            self._assemble(station, m, now)
        except OSError:
            # Put back for recover() to try again; what is held stays held.
            self.store._exec(
                "UPDATE media SET state = 'partial' WHERE station = ? AND media_id = ?", (station, m.media_id)
            )
            self.store.commit()
            raise

    def recover(self, now: float) -> None:
        """Uploads left `assembling` by a process that stopped (or failed) half way: again."""
        stale = self.store._exec(
            "SELECT station, media_id FROM media WHERE state = 'assembling' AND completed_at < ?",
            (now - ASSEMBLY_S,),
        ).fetchall()
        for station, media_id in stale:
            self.store._exec(
                "UPDATE media SET state = 'partial' WHERE station = ? AND media_id = ?", (station, media_id)
            )
            self.store.commit()
            m = self.known(station, media_id)
            if m is not None:
                self._maybe_complete(station, m, now)

    def _partial(self, station: str, media_id: str) -> Path:
        return self.dir / PARTIAL / station / media_id

    def _drop_partial(self, station: str, media_id: str) -> None:
        partial = self._partial(station, media_id)
        fd = self._fds.pop(partial, None)
        if fd is not None:
            os.close(fd)
        partial.unlink(missing_ok=True)

    def _partial_fd(self, station: str, media_id: str) -> int:
        """The upload's partial file, open for writing at offsets (kept open: creating a file per
        chunk costs more than the chunk). Several processes may write it: each chunk has its place."""
        path = self._partial(station, media_id)
        fd = self._fds.pop(path, None)
        if fd is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
            while len(self._fds) >= OPEN_FILES:
                os.close(self._fds.pop(next(iter(self._fds))))
        self._fds[path] = fd  # most recently used last
        return fd

    def _assemble(self, station: str, m: Manifest, now: float) -> None:
        """Check the whole file against its sha256; only then rename it into place."""
        partial = self._partial(station, m.media_id)
        fd = self._fds.pop(partial, None)
        if fd is not None:
            os.close(fd)
        final = self.path(station, m.media_id, m.ext)
        final.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        partial.touch()  # an empty file has no chunk that made it
        with open(partial, "r+b") as fh:
            while block := fh.read(2**20):
                digest.update(block)
            fh.truncate(m.size)
            os.fsync(fh.fileno())
        if digest.hexdigest() != m.sha256:
            partial.unlink()
            self._set_state(station, m.media_id, "bad", None)
            self.count(station, "refused:sha256")
            self.store.commit()
            log.warning("%s: %s does not match its manifest's sha256; discarded", station, m.media_id)
            return
        os.replace(partial, final)
        self._set_state(station, m.media_id, "complete", now)
        self.count(station, f"complete:{m.type}")
        self.store.commit()
        log.info("%s: %s complete (%d bytes)", station, final.name, m.size)
        self.enforce_budget(now)

    def _set_state(self, station: str, media_id: str, state: str, completed: float | None) -> None:
        self.store._exec(
            "UPDATE media SET state = ?, completed_at = ? WHERE station = ? AND media_id = ?",
            (state, completed, station, media_id),
        )
        self.store._exec("DELETE FROM media_chunks WHERE station = ? AND media_id = ?", (station, media_id))

    # ----- the disk budget ----------------------------------------------------------------------

    def enforce_budget(self, now: float) -> int:
        """Delete complete files past `max_bytes`: snapshots first, then clips, evidence clips
        (of bad ratings) last, oldest first within each; every deletion counted. Returns how many."""
        total = self.store._exec("SELECT COALESCE(SUM(size), 0) FROM media WHERE state = 'complete'").fetchone()[0]
        deleted = 0
        while total > self.max_bytes:
            victims = self.store._exec(
                """SELECT station, media_id, ext, size, type, caused_by FROM media WHERE state = 'complete'
                   ORDER BY CASE WHEN type = 'snapshot' THEN 0 WHEN caused_by IS NULL THEN 1 ELSE 2 END, completed_at
                   LIMIT 100"""
            ).fetchall()
            if not victims:
                break
            for station, media_id, ext, size, media_type, caused_by in victims:
                if total <= self.max_bytes:
                    break
                self.path(station, media_id, ext).unlink(missing_ok=True)
                self.store._exec(
                    "UPDATE media SET state = 'deleted', deleted_at = ? WHERE station = ? AND media_id = ?",
                    (now, station, media_id),
                )
                kind = "evidence" if caused_by else media_type
                self.count(station, f"deleted:{kind}")
                total -= size
                deleted += 1
            self.store.commit()
        if deleted:
            log.info("media over the county's budget: %d files deleted (snapshots first)", deleted)
        return deleted
