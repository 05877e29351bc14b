"""The media store: camera pictures and clips as files under `<storage>/media/`, each with an outbox event.

A media item is two things that must agree: a file, and a `media` event (priority bulk, so ratings
and queue events always go first) that tells the county its size and sha256. The file is made
durable first (tmp + fsync + rename + fsync of the folder) and only then is the event emitted, so
an event never points at a file a power cut could take back. If the emit fails the file is
removed: a file with no event would never be uploaded, only take space.

Retention needs an order that survives a restart without asking the outbox, so the file name
carries what it needs: the kind of item (`snapshot`, `clip`, or `evidence` for a clip caused by an
event, i.e. a bad rating) and its start time in UTC.

Media count against the disk budget ([storage] max_mb): the store keeps a running total of its
files' bytes (the outbox asks on every commit, so no folder scan there), and under pressure the
outbox's eviction calls `reclaim`, which deletes in `deletion_order`, uploaded items first.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import re
import threading
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from edge.events import Emit, Event, NewEvent, Priority, format_ts
from edge.syncdir import sync_dir

MEDIA_DIR = "media"
TMP_PREFIX = ".tmp-"

log = logging.getLogger("yimen.media")
_tmp_numbers = itertools.count(1)


class MediaType(StrEnum):
    SNAPSHOT = "snapshot"
    CLIP = "clip"


_EXTENSION = {MediaType.SNAPSHOT: "jpg", MediaType.CLIP: "mjpeg"}  # unless the camera says (clips: "mp4")

# Deletion rank by id prefix: lower goes first when the disk budget is short.
_RANK = {"snapshot": 0, "clip": 1, "evidence": 2}
_NAME_RE = re.compile(r"^(snapshot|clip|evidence)-w\d+-(\d{8}-\d{6}-\d{3})-[0-9a-f]{8}(?:-\d+)?\.(jpg|mjpeg|mp4)$")


def _local_ts(seconds: float) -> str:
    return format_ts(datetime.fromtimestamp(seconds).astimezone())


class MediaStore:
    """Writes media files and emits their events; safe to share between camera threads."""

    def __init__(self, storage: Path, emit: Emit) -> None:
        self.storage = storage
        self.dir = storage / MEDIA_DIR
        self._emit = emit
        # Held only around choosing a free name and renaming into it, never while writing.
        self._name_lock = threading.Lock()
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob(TMP_PREFIX + "*"):
            # Left by a power cut mid-write: never renamed, so no event refers to it.
            log.warning("removing unfinished media file %s", stale.name)
            stale.unlink(missing_ok=True)
        # Guards only the running total: any camera thread adds, the outbox's commit (on whichever thread) deletes.
        self._used_lock = threading.Lock()
        self._used = sum(p.stat().st_size for p in self.dir.iterdir() if p.is_file())

    def used_bytes(self) -> int:
        """Bytes of the finished media files: what media take of the disk budget."""
        with self._used_lock:
            return self._used

    def _account(self, nbytes: int) -> None:
        with self._used_lock:
            self._used += nbytes

    def reclaim(self, nbytes: int, uploaded: Callable[[], Collection[str]]) -> list[str]:
        """Delete media files until `nbytes` are freed (or none are left); returns the ids of the
        deleted items that had not been uploaded (losses for the county to be told of).

        Items already at the county go first; within each group, `deletion_order`: oldest
        snapshots first, evidence clips of bad ratings last."""
        done = set(uploaded())
        order = sorted(deletion_order(self.storage), key=lambda p: p.stem not in done)  # stable
        freed = 0
        lost: list[str] = []
        for path in order:
            if freed >= nbytes:
                break
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            freed += size
            self._account(-size)
            if path.stem not in done:
                lost.append(path.stem)
        if lost:
            log.error("disk budget: deleted %d media items before they were uploaded: %s", len(lost), lost[:5])
        return lost

    def begin(
        self, media_type: MediaType, window: int, caused_by: str | None = None, extension: str | None = None
    ) -> MediaWriter:
        """Start an item that is written piece by piece (a clip, frame by frame); `extension`
        names its format (`mp4`, `mjpeg`, `jpg`), by default the type's."""
        return MediaWriter(self, media_type, window, caused_by, extension or _EXTENSION[media_type])

    def put(
        self,
        media_type: MediaType,
        window: int,
        data: bytes,
        *,
        started: float,
        ended: float,
        frames: int = 1,
        caused_by: str | None = None,
    ) -> Event:
        """Store a whole item at once (a snapshot) and return its media event."""
        writer = self.begin(media_type, window, caused_by)
        writer.write(data)
        return writer.commit(started=started, ended=ended, frames=frames)

    def _publish(self, final: Path, data: dict[str, Any]) -> Event:
        try:
            return self._emit(NewEvent(kind="media", priority=Priority.BULK, data=data))
        except BaseException:
            try:
                final.unlink()
            except FileNotFoundError:
                pass  # the disk budget took it already, and uncounted it
            else:
                self._account(-data["size"])
            raise

    def _claim(self, tmp: Path, stem: str, extension: str) -> Path:
        """Rename tmp to the first free `stem[-n].extension`; returns the final path."""
        with self._name_lock:
            final = self.dir / f"{stem}.{extension}"
            n = 1
            while final.exists():
                n += 1
                final = self.dir / f"{stem}-{n}.{extension}"
            os.replace(tmp, final)
        sync_dir(self.dir)
        self._account(final.stat().st_size)  # counted before its event commits: the budget sees it
        return final


class MediaWriter:
    """One item being written to a hidden tmp file; `commit` makes it a media item, `abort` drops it."""

    def __init__(
        self, store: MediaStore, media_type: MediaType, window: int, caused_by: str | None, extension: str
    ) -> None:
        self._store = store
        self.extension = extension
        self.media_type = media_type
        self.window = window
        self.caused_by = caused_by
        self._hash = hashlib.sha256()
        self.size = 0
        self._tmp = store.dir / f"{TMP_PREFIX}{media_type}-w{window}-{next(_tmp_numbers)}"
        self._file = open(self._tmp, "wb")  # noqa: SIM115 - lives until commit or abort

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    def commit(self, *, started: float, ended: float, frames: int) -> Event:
        """Make the file durable under its final name, then emit and return the media event.

        On any failure nothing is left behind: not the tmp file, not a file without its event.
        """
        try:
            return self._commit(started, ended, frames)
        except BaseException:
            self.abort()
            raise

    def _commit(self, started: float, ended: float, frames: int) -> Event:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        sha256 = self._hash.hexdigest()
        prefix = "evidence" if self.media_type is MediaType.CLIP and self.caused_by else str(self.media_type)
        ms = round(started * 1000)
        stamp = datetime.fromtimestamp(ms // 1000, UTC)
        stem = f"{prefix}-w{self.window}-{stamp:%Y%m%d-%H%M%S}-{ms % 1000:03d}-{sha256[:8]}"
        final = self._store._claim(self._tmp, stem, self.extension)
        data = {
            "media_id": final.stem,
            "type": str(self.media_type),
            "window": self.window,
            "size": self.size,
            "sha256": sha256,
            "caused_by": self.caused_by,
            "path": final.relative_to(self._store.storage).as_posix(),
            "ext": self.extension,
            "frames": frames,
            "started": _local_ts(started),
            "ended": _local_ts(ended),
        }
        return self._store._publish(final, data)

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


def deletion_order(storage: Path) -> list[Path]:
    """Media files in the order the disk budget should delete them.

    Oldest snapshots first, then clips nobody's event asked for, then evidence clips (those caused
    by an event: a bad rating), each oldest first. Files being written (tmp) and files that are not
    media items are left out: this order never deletes what it does not know.
    """
    ranked: list[tuple[int, str, str, Path]] = []
    media = storage / MEDIA_DIR
    if not media.is_dir():
        return []
    for path in media.iterdir():
        match = _NAME_RE.match(path.name)
        if match and path.is_file():
            ranked.append((_RANK[match[1]], match[2], path.name, path))
    ranked.sort()
    return [path for *_, path in ranked]
