"""The county's media store without a broker: reassembly, refusals, resume, the disk budget.

Real SQLite (and the real file system); the MQTT path is in test_browser.py, test_hostile.py and
test_media_e2e.py."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from centre.bounds import Refused
from centre.config import StoreConfig
from centre.media import MAX_OPEN, MediaStore
from centre.store import open_store

ST = "st-1"


def opened(tmp_path: Path, max_bytes: int = 10**9) -> MediaStore:
    return MediaStore(open_store(StoreConfig(path=tmp_path / "centre.db")), tmp_path / "media", max_bytes)


def manifest(media_id: str, data: bytes, chunk: int = 1024, **extra: object) -> bytes:
    doc = {
        "media_id": media_id, "event": f"{ST}-9", "type": "clip", "window": 1, "caused_by": f"{ST}-8",
        "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "chunk_size": chunk,
        "chunks": -(-len(data) // chunk), **extra,
    }  # fmt: skip
    return json.dumps(doc).encode()


def parts(data: bytes, chunk: int = 1024) -> list[bytes]:
    return [data[i : i + chunk] for i in range(0, len(data), chunk)]


def refused(fn, reason: str) -> None:
    with pytest.raises(Refused) as info:
        fn()
    assert info.value.reason == reason, info.value


def test_a_file_is_visible_only_when_whole_and_its_sha256_matches(tmp_path: Path) -> None:
    store = opened(tmp_path)
    data = random.Random(1).randbytes(10_000)
    store.manifest(ST, "evidence-a", manifest("evidence-a", data), 1.0)
    order = list(enumerate(parts(data)))
    random.Random(2).shuffle(order)
    final = tmp_path / "media" / ST / "evidence-a.mjpeg"
    for i, (n, chunk) in enumerate(order):
        assert not final.exists()
        assert store.chunk(ST, "evidence-a", str(n), chunk, 2.0) == "stored"
        if i == 0:
            assert store.chunk(ST, "evidence-a", str(n), chunk, 2.0) == "duplicate"  # a re-send, held once
    assert final.read_bytes() == data
    assert not (tmp_path / "media" / ".partial" / ST / "evidence-a").exists()  # moved into place
    # A file whose bytes do not match the manifest never appears.
    store.manifest(ST, "evidence-b", manifest("evidence-b", b"x" * 2000), 3.0)
    store.chunk(ST, "evidence-b", "0", b"y" * 1024, 3.0)
    store.chunk(ST, "evidence-b", "1", b"y" * 976, 3.0)
    assert not (tmp_path / "media" / ST / "evidence-b.mjpeg").exists()
    counts = dict(store.store._exec("SELECT what, n FROM media_counts"))
    assert counts == {"complete:clip": 1, "refused:sha256": 1}


def test_an_upload_resumes_across_a_restart_from_what_is_held(tmp_path: Path) -> None:
    data = random.Random(3).randbytes(8000)
    first = opened(tmp_path)
    first.manifest(ST, "clip-r", manifest("clip-r", data), 1.0)
    for n, chunk in list(enumerate(parts(data)))[:5]:
        first.chunk(ST, "clip-r", str(n), chunk, 1.0)
    first.store.close()
    again = opened(tmp_path)
    # The manifest and the chunks held before the restart come again: none is stored twice.
    again.manifest(ST, "clip-r", manifest("clip-r", data), 2.0)
    outcomes = [again.chunk(ST, "clip-r", str(n), c, 2.0) for n, c in enumerate(parts(data))]
    assert outcomes == ["duplicate"] * 5 + ["stored"] * 3
    assert (tmp_path / "media" / ST / "clip-r.mjpeg").read_bytes() == data


def test_manifests_and_chunks_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    store = opened(tmp_path)
    data = b"z" * 3000
    huge = manifest("clip-h", data, chunks=10**6)
    refused(lambda: store.manifest(ST, "clip-h", huge, 1.0), "bad-manifest")  # 10^6 chunks of 3000 bytes
    big = json.loads(manifest("clip-h", data))
    big.update(size=10**12, chunks=10**12 // 1024 + 1)
    refused(lambda: store.manifest(ST, "clip-h", json.dumps(big).encode(), 1.0), "bad-manifest")
    refused(lambda: store.manifest(ST, "clip-x", manifest("clip-h", data), 1.0), "media-mismatch")
    other = manifest("clip-o", data, event="st-2-9")
    refused(lambda: store.manifest(ST, "clip-o", other, 1.0), "station-mismatch")
    store.manifest(ST, "clip-ok", manifest("clip-ok", data), 1.0)
    changed = manifest("clip-ok", b"q" * 3000)
    refused(lambda: store.manifest(ST, "clip-ok", changed, 1.0), "manifest-changed")
    refused(lambda: store.chunk(ST, "clip-ok", "3", b"z" * 1024, 1.0), "chunk-range")
    refused(lambda: store.chunk(ST, "clip-ok", "99999999999999", b"z", 1.0), "chunk-range")
    refused(lambda: store.chunk(ST, "clip-ok", "0", b"z" * 1000, 1.0), "chunk-size")
    refused(lambda: store.chunk(ST, "clip-ok", "2", b"z" * 1024, 1.0), "chunk-size")  # the last is 952
    assert store.chunk(ST, "clip-none", "0", b"z", 1.0) == "no-manifest"
    for n in range(MAX_OPEN - 1):
        store.manifest(ST, f"clip-{n}", manifest(f"clip-{n}", data), 1.0)
    refused(lambda: store.manifest(ST, "clip-more", manifest("clip-more", data), 1.0), "too-many-uploads")


def test_the_disk_budget_deletes_snapshots_first_and_evidence_last(tmp_path: Path) -> None:
    store = opened(tmp_path, max_bytes=5000)

    def upload(media_id: str, media_type: str, caused_by: str | None, at: float) -> None:
        data = media_id.encode() * (2000 // len(media_id))
        store.manifest(ST, media_id, manifest(media_id, data, type=media_type, caused_by=caused_by), at)
        for n, chunk in enumerate(parts(data)):
            store.chunk(ST, media_id, str(n), chunk, at)

    upload("evidence-1", "clip", f"{ST}-1", 1.0)
    upload("snapshot-1", "snapshot", None, 2.0)
    upload("clip-1", "clip", None, 3.0)
    assert sorted(p.name for p in (tmp_path / "media" / ST).iterdir()) == ["clip-1.mjpeg", "evidence-1.mjpeg"]
    upload("evidence-2", "clip", f"{ST}-2", 4.0)
    assert sorted(p.name for p in (tmp_path / "media" / ST).iterdir()) == ["evidence-1.mjpeg", "evidence-2.mjpeg"]
    counts = dict(store.store._exec("SELECT what, n FROM media_counts WHERE what LIKE 'deleted:%'"))
    assert counts == {"deleted:snapshot": 1, "deleted:clip": 1}


def test_an_assembly_abandoned_half_way_is_done_again(tmp_path: Path) -> None:
    store = opened(tmp_path)
    data = b"a" * 3000
    store.manifest(ST, "clip-a", manifest("clip-a", data), 1.0)
    store.chunk(ST, "clip-a", "0", data[:1024], 1.0)
    store.chunk(ST, "clip-a", "1", data[1024:2048], 1.0)
    # Another process claimed it and stopped before it finished (its last chunk held, no file).
    store.store._exec("INSERT INTO media_chunks VALUES (?, 'clip-a', 2)", (ST,))
    with open(tmp_path / "media" / ".partial" / ST / "clip-a", "r+b") as fh:
        fh.seek(2048)
        fh.write(data[2048:])
    store.store._exec("UPDATE media SET state = 'assembling', completed_at = 1.0 WHERE media_id = 'clip-a'")
    store.store.commit()
    store.recover(30.0)  # still within its time
    assert not (tmp_path / "media" / ST / "clip-a.mjpeg").exists()
    store.recover(100.0)
    assert (tmp_path / "media" / ST / "clip-a.mjpeg").read_bytes() == data


def test_files_the_station_evicted_are_no_longer_awaited(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.announce(ST, f"{ST}-5", {"media_id": "clip-gone", "type": "clip", "window": 1}, 1.0)
    store.announce(ST, f"{ST}-6", {"media_id": "clip-kept", "type": "clip", "window": 1}, 1.0)
    store.never_coming(ST, ["clip-gone", "../../etc", 7], 2.0)
    states = dict(store.store._exec("SELECT media_id, state FROM media"))
    assert states == {"clip-gone": "lost", "clip-kept": "announced"}


def test_an_h264_clip_keeps_its_kind(tmp_path: Path) -> None:
    """A station that sends H.264 clips says so in the manifest; the county names the file .mp4."""
    store = opened(tmp_path)
    data = b"\x00\x00\x00\x18ftypmp42" + b"m" * 2000
    store.manifest(ST, "evidence-v", manifest("evidence-v", data, content_type="video/mp4"), 1.0)
    for n, chunk in enumerate(parts(data)):
        store.chunk(ST, "evidence-v", str(n), chunk, 1.0)
    assert (tmp_path / "media" / ST / "evidence-v.mp4").read_bytes() == data
    refused(
        lambda: store.manifest(ST, "evidence-w", manifest("evidence-w", data, content_type="x/y"), 1.0), "bad-manifest"
    )
