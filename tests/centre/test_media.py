"""The county's media store without a broker: reassembly, refusals, resume, the disk budget.

Real SQLite (and the real file system); the MQTT path is in test_browser.py, test_hostile.py and
test_media_e2e.py."""

from __future__ import annotations

import hashlib
import json
import random
import tracemalloc
from pathlib import Path

import pytest
from starlette.requests import Request

from centre import config as centre_config
from centre.bounds import Refused
from centre.config import StoreConfig
from centre.media import MAX_CHUNK, MAX_OPEN, STALE_S, MediaStore
from centre.media_ingest import MAX_EARLY_BYTES, MediaIngest
from centre.media_web import MAX_FRAMES, MediaWeb
from centre.store import open_store
from mqtt import topics

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


@pytest.mark.parametrize("media_id", ["..", ".", "Clip-A", "clip a", "<img src=x onerror=alert(1)>", "x" * 65])
def test_a_media_id_the_topic_gives_is_checked_before_it_names_a_file(tmp_path: Path, media_id: str) -> None:
    """A station publishes on `media/<id>/manifest` with an id no station makes: the id would
    name its partial file and its final file, so it is refused (hostile) and nothing is written."""
    store = opened(tmp_path)
    refused(lambda: store.manifest(ST, media_id, manifest(media_id, b"", chunks=0), 1.0), "bad-media-id")
    assert store.known(ST, media_id) is None
    assert not (tmp_path / "media" / ST).exists()


def test_a_chunk_too_big_for_any_manifest_is_refused_before_it_is_held(tmp_path: Path) -> None:
    """A chunk with no manifest (yet) is kept a while by the ingest thread; one larger than any
    manifest allows is refused at once, so hostile 256 MB messages are never held."""
    store = opened(tmp_path)
    refused(lambda: store.chunk(ST, "clip-none", "0", b"z" * (MAX_CHUNK + 1), 1.0), "chunk-size")
    assert store.chunk(ST, "clip-none", "0", b"z" * MAX_CHUNK, 1.0) == "no-manifest"


def test_a_lost_upload_gives_back_its_disk(tmp_path: Path) -> None:
    """A station's eviction lists an upload it had half sent: the county's partial file and its
    chunk rows go with it, so uploads lost (or a station repeating the trick) never fill the disk
    outside the budget."""
    store = opened(tmp_path)
    data = b"p" * 5000
    store.manifest(ST, "clip-half", manifest("clip-half", data), 1.0)
    for n, chunk in list(enumerate(parts(data)))[:3]:
        assert store.chunk(ST, "clip-half", str(n), chunk, 1.0) == "stored"
    partial = tmp_path / "media" / ".partial" / ST / "clip-half"
    assert partial.exists()
    store.never_coming(ST, ["clip-half"], 2.0)
    assert not partial.exists()
    assert store.store._exec("SELECT COUNT(*) FROM media_chunks").fetchone()[0] == 0
    # A late chunk of the lost upload is not written again.
    assert store.chunk(ST, "clip-half", "3", parts(data)[3], 3.0) == "duplicate"
    assert not partial.exists()


def _web(tmp_path: Path) -> MediaWeb:
    """The media routes over the same store and directory the MediaStore fills."""
    doc = {"centre": {"county": "c1"}, "store": {"path": str(tmp_path / "centre.db")},
           "media": {"dir": str(tmp_path / "media")}}  # fmt: skip
    return MediaWeb(centre_config.parse(doc, str(tmp_path / "c.toml")))


def get(route, media_id: str, n: int | None = None) -> tuple[int, bytes]:
    params = {"sid": ST, "media_id": media_id} | ({} if n is None else {"n": n})
    response = route(Request({"type": "http", "method": "GET", "path_params": params}))
    return response.status_code, response.body


def upload(store: MediaStore, media_id: str, data: bytes) -> None:
    store.manifest(ST, media_id, manifest(media_id, data, chunk=MAX_CHUNK), 1.0)
    for n, chunk in enumerate(parts(data, MAX_CHUNK)):
        store.chunk(ST, media_id, str(n), chunk, 1.0)


def test_a_clip_that_is_no_mjpeg_is_not_playable_and_breaks_nothing(tmp_path: Path) -> None:
    """A station's complete, sha-checked clip whose bytes are not concatenated JPEGs, or are
    millions of tiny ones: its frame routes answer 404, not a server error or a huge index."""
    upload(opened(tmp_path), "clip-junk", b"\xff\xd8" + b"junk" * 1000)
    tiny = b"\xff\xd8\xff\xda\xff\xd9"  # the smallest frame the splitter takes
    upload(opened(tmp_path), "clip-many", tiny * (MAX_FRAMES + 1))
    web = _web(tmp_path)
    assert get(web.frames, "clip-junk")[0] == 404
    assert get(web.frame, "clip-junk", 0)[0] == 404
    assert get(web.frames, "clip-many")[0] == 404, "more frames than any camera makes"


def test_a_clips_frames_are_found_without_reading_it_into_memory(tmp_path: Path) -> None:
    """Indexing a clip's frames (a station may send 256 MB) maps the file, it does not copy it:
    a handful of viewers on large clips must not exhaust the console's memory."""
    jpeg = b"\xff\xd8\xff\xe0\x00\x04ab\xff\xda\x00\x02" + b"p" * 60_000 + b"\xff\xd9"
    data = jpeg * 300  # 18 MB
    upload(opened(tmp_path), "clip-big", data)
    web = _web(tmp_path)
    tracemalloc.start()
    try:
        assert get(web.frames, "clip-big") == (200, b'{"frames":300}')
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < len(data) // 4, f"{peak} bytes allocated to index an {len(data)}-byte clip"
    assert get(web.frame, "clip-big", 299) == (200, jpeg)


def test_uploads_stuck_for_a_month_do_not_block_a_station_for_good(tmp_path: Path) -> None:
    """A broker restarted without persistence loses chunks the station saw acknowledged: those
    uploads stay partial at the county. Once MAX_OPEN of them are older than STALE_S, they are
    lost (counted, their partial files deleted) and the station's new uploads are taken again."""
    store = opened(tmp_path)
    data = b"s" * 3000
    for n in range(MAX_OPEN):
        store.manifest(ST, f"clip-{n}", manifest(f"clip-{n}", data), 1.0)
        store.chunk(ST, f"clip-{n}", "0", data[:1024], 1.0)
    refused(lambda: store.manifest(ST, "clip-new", manifest("clip-new", data), 2.0), "too-many-uploads")
    later = 1.0 + STALE_S + 1
    store.manifest(ST, "clip-new", manifest("clip-new", data), later)
    assert not list((tmp_path / "media" / ".partial" / ST).glob("clip-[0-9]*"))
    states = dict(store.store._exec("SELECT state, COUNT(*) FROM media GROUP BY state"))
    assert states == {"lost": MAX_OPEN, "partial": 1}
    assert dict(store.store._exec("SELECT what, n FROM media_counts"))["lost-stale"] == MAX_OPEN


def test_chunks_waiting_for_their_manifest_are_bounded_in_bytes(tmp_path: Path) -> None:
    """Chunks that come before their manifest are held a while (shared subscriptions split a
    station's messages between console processes); a station sending only such chunks, each
    the largest allowed, is refused past MAX_EARLY_BYTES, not held up to MAX_EARLY MiB."""
    doc = {"centre": {"county": "c1"}, "store": {"path": str(tmp_path / "centre.db")},
           "media": {"dir": str(tmp_path / "media")}}  # fmt: skip
    ingest = MediaIngest(centre_config.parse(doc, str(tmp_path / "c.toml")), "t")
    ingest.media = opened(tmp_path)
    for n in range(64):
        ingest._message(topics.media_topic("c1", ST, f"clip-{n}", 0), b"z" * MAX_CHUNK, 1.0)
    held = ingest.metrics()["early_bytes"]
    assert 0 < held <= MAX_EARLY_BYTES
    assert ingest.counters["refused"] == 64 - held // MAX_CHUNK
