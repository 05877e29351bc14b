"""The media store: a file that is whole on disk before its event, and an eviction order."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.events import Event, NewEvent, Priority
from edge.media import MediaStore, MediaType, deletion_order
from tests.support.recording_outbox import RecordingOutbox

T0 = datetime(2026, 11, 25, 8, 30, 0, 123000).astimezone().timestamp()


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[RecordingOutbox]:
    recorder = RecordingOutbox(tmp_path / "outbox")
    yield recorder
    recorder.close()


def test_snapshot_file_matches_its_event(tmp_path: Path, outbox: RecordingOutbox) -> None:
    store = MediaStore(tmp_path, outbox.emit)
    data = b"\xff\xd8 not really a jpeg \xff\xd9"
    event = store.put(MediaType.SNAPSHOT, 2, data, started=T0, ended=T0)

    assert (event.kind, event.priority) == ("media", Priority.BULK)
    info = event.data
    path = tmp_path / info["path"]
    assert path.parent == tmp_path / "media"
    assert path.read_bytes() == data
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["size"] == len(data)
    assert (info["type"], info["window"], info["caused_by"], info["frames"]) == ("snapshot", 2, None, 1)
    assert info["media_id"] == path.stem
    assert info["started"] == info["ended"]
    assert datetime.fromisoformat(info["started"]).timestamp() == pytest.approx(T0, abs=0.001)
    assert outbox.emitted == [event]


def test_clip_written_in_pieces_and_caused_by_an_event(tmp_path: Path, outbox: RecordingOutbox) -> None:
    store = MediaStore(tmp_path, outbox.emit)
    writer = store.begin(MediaType.CLIP, 1, caused_by="st1-41")
    pieces = [bytes([i]) * 1000 for i in range(5)]
    for piece in pieces:
        writer.write(piece)
    event = writer.commit(started=T0 - 20, ended=T0 + 10, frames=5)

    info = event.data
    assert (tmp_path / info["path"]).read_bytes() == b"".join(pieces)
    assert (info["type"], info["caused_by"], info["frames"], info["size"]) == ("clip", "st1-41", 5, 5000)
    assert info["path"].endswith(".mjpeg")
    duration = datetime.fromisoformat(info["ended"]) - datetime.fromisoformat(info["started"])
    assert duration.total_seconds() == pytest.approx(30)


def test_file_is_whole_under_its_name_before_the_event(tmp_path: Path, outbox: RecordingOutbox) -> None:
    seen: list[bytes] = []

    def emit(new: NewEvent) -> Event:
        seen.append((tmp_path / new.data["path"]).read_bytes())
        return outbox.emit(new)

    MediaStore(tmp_path, emit).put(MediaType.SNAPSHOT, 1, b"abc" * 1000, started=T0, ended=T0)
    assert seen == [b"abc" * 1000]
    assert [p.name for p in (tmp_path / "media").iterdir() if p.name.startswith(".")] == []


def test_failed_emit_leaves_no_orphan_file(tmp_path: Path) -> None:
    def emit(new: NewEvent) -> Event:
        raise OSError("outbox disk full")

    store = MediaStore(tmp_path, emit)
    with pytest.raises(OSError, match="disk full"):
        store.put(MediaType.SNAPSHOT, 1, b"x", started=T0, ended=T0)
    assert list((tmp_path / "media").iterdir()) == []


def test_abort_and_crash_leftovers_leave_nothing(tmp_path: Path, outbox: RecordingOutbox) -> None:
    store = MediaStore(tmp_path, outbox.emit)
    writer = store.begin(MediaType.CLIP, 1)
    writer.write(b"half a clip")
    writer.abort()
    assert list(store.dir.iterdir()) == []

    crashed = store.begin(MediaType.CLIP, 1)
    crashed.write(b"power cut here")
    MediaStore(tmp_path, outbox.emit)  # the gateway starting again
    assert list(store.dir.iterdir()) == []
    assert outbox.emitted == []


def test_identical_items_at_the_same_moment_get_two_files(tmp_path: Path, outbox: RecordingOutbox) -> None:
    store = MediaStore(tmp_path, outbox.emit)
    first = store.put(MediaType.SNAPSHOT, 1, b"same", started=T0, ended=T0)
    second = store.put(MediaType.SNAPSHOT, 1, b"same", started=T0, ended=T0)
    assert first.data["path"] != second.data["path"]
    assert first.data["media_id"] != second.data["media_id"]
    assert all((tmp_path / e.data["path"]).read_bytes() == b"same" for e in (first, second))


def test_deletion_order_snapshots_oldest_first_bad_rating_clips_last(tmp_path: Path, outbox: RecordingOutbox) -> None:
    store = MediaStore(tmp_path, outbox.emit)

    def clip(started: float, caused_by: str | None) -> Path:
        writer = store.begin(MediaType.CLIP, 1, caused_by)
        writer.write(f"{started}".encode())
        return tmp_path / writer.commit(started=started, ended=started + 30, frames=1).data["path"]

    def snap(started: float) -> Path:
        event = store.put(MediaType.SNAPSHOT, 1, f"{started}".encode(), started=started, ended=started)
        return tmp_path / event.data["path"]

    # Made out of order, as a restart or two windows would.
    evidence_new = clip(T0 + 500, "st1-9")
    snap_new = snap(T0 + 600)
    evidence_old = clip(T0 + 100, "st1-3")
    snap_old = snap(T0)
    plain_clip = clip(T0 + 700, None)
    snap_mid = snap(T0 + 300)
    (store.dir / "notes.txt").write_text("not a media item")
    store.begin(MediaType.SNAPSHOT, 1).write(b"being written")

    assert deletion_order(tmp_path) == [snap_old, snap_mid, snap_new, plain_clip, evidence_old, evidence_new]


def test_deletion_order_of_an_empty_storage(tmp_path: Path) -> None:
    assert deletion_order(tmp_path) == []


def test_media_id_names_kind_window_and_utc_start(tmp_path: Path, outbox: RecordingOutbox) -> None:
    event = MediaStore(tmp_path, outbox.emit).put(MediaType.SNAPSHOT, 3, b"x", started=T0, ended=T0)
    utc = datetime.fromtimestamp(T0, UTC)
    assert event.data["media_id"].startswith(f"snapshot-w3-{utc:%Y%m%d-%H%M%S}-123-")
