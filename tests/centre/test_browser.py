"""The console's page in headless Chromium (Debian's package, driven by Playwright), fed by
simulated stations: what an operator who leaves the page open would see change, without reload."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from typing import Any

import pytest

from edge.events import Priority
from tests.conftest import wait_until

pytestmark = pytest.mark.slow

RED = "rgb(198, 40, 40)"


@pytest.fixture
def page(browser) -> Any:
    page = browser.new_page(locale="zh-CN")
    page.set_default_timeout(10_000)
    return page


@pytest.fixture
def county(broker, console_factory, fleet_factory, page) -> tuple[Any, Any]:
    console = console_factory(broker.port).start()
    fleet = fleet_factory(broker.port, ["st-a", "st-b", "st-c"], rate=1.0, telemetry_s=5.0, snapshot_s=3.0)
    wait_until(lambda: console.get("/api/summary")["totals"].get("online") == 3, 30, "three stations online")
    log_in(page, console.url, *console.admin)
    return console, fleet


def log_in(page: Any, url: str, name: str, password: str) -> None:
    """Through the login page, as a person does; the page then lands on the console."""
    page.goto(url + "/")
    page.fill("#user", name)
    page.fill("#password", password)
    page.click("#submit")
    page.locator("#who").wait_for()


def test_a_station_going_offline_turns_red_within_5_s(county, page) -> None:
    console, fleet = county
    page.goto(console.url)
    tile = page.locator('.tile[data-station="st-a"]')
    tile.and_(page.locator('[data-state="online"]')).wait_for()
    killed = time.monotonic()
    fleet.call(lambda: fleet.station("st-a").kill())  # no DISCONNECT: the broker sends the will
    page.locator('.tile[data-station="st-a"][data-state="offline"]').wait_for(timeout=5_000)
    assert time.monotonic() - killed < 5.0
    assert tile.evaluate("el => getComputedStyle(el).borderLeftColor") == RED
    tile.click()
    card = page.locator("#station-card")
    assert "离线" in card.inner_text()  # Chinese first; the toggle switches every label
    page.click("#lang")
    page.locator("#station-card", has_text="Offline").wait_for()
    assert "connection lost" in card.inner_text()
    assert page.locator("#outages").inner_text().count("connection lost") == 1


def test_a_bad_rating_appears_with_its_clip(county, page) -> None:
    console, fleet = county
    fleet.station("st-b").clips = True
    page.goto(f"{console.url}/#st-b")
    page.locator('#station-card[data-station="st-b"]').wait_for()
    rating = fleet.call(lambda: fleet.station("st-b").rating("bad", 2))
    row = page.locator(f'tr[data-rating="{rating.id}"]')
    row.wait_for()
    # The clip travels over MQTT (manifest and chunks) and is put together at the county: the
    # row becomes a link to the file, byte for byte what the station made (its sha256).
    link = row.locator("a.clip")
    link.wait_for()
    clip = console.get("/api/station/st-b/media")["clips"][rating.id]
    assert link.get_attribute("href") == clip["url"] and clip["state"] == "complete"
    body = page.request.get(console.url + clip["url"]).body()
    sent = [json.loads(p) for _k, p in fleet.call(lambda: list(fleet.station("st-b").history.values()))]
    made = next(e["data"] for e in sent if e["kind"] == "media" and e["data"]["caused_by"] == rating.id)
    assert hashlib.sha256(body).hexdigest() == made["sha256"] and len(body) == made["size"]
    # Play: the clip's frames shown in turn in the page.
    row.locator("button.play").click()
    img = page.locator("#player-img")
    page.wait_for_function("document.getElementById('player-img').dataset.frame === '2'")
    assert img.evaluate("el => el.naturalWidth") == 160
    # A bad rating whose station sends no clip is listed all the same, saying so.
    fleet.station("st-b").clips = False
    plain = fleet.call(lambda: fleet.station("st-b").rating("bad", 1))
    page.locator(f'tr[data-rating="{plain.id}"]', has_text="无视频").wait_for()


def test_an_h264_clip_plays_in_the_page(county, page, tmp_path) -> None:
    """A station that sends H.264 clips (an MP4, `content_type` video/mp4): the page plays it."""
    console, fleet = county
    if not shutil.which("ffmpeg"):
        pytest.skip("Debian's ffmpeg is not installed (./dev test installs it)")
    mp4 = tmp_path / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=5", "-t", "2",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(mp4)],
        check=True, timeout=60,
    )  # fmt: skip
    data = mp4.read_bytes()
    station = fleet.station("st-a")

    def send() -> str:
        rating = station.rating("bad", 1)
        info = {
            "media_id": f"evidence-w1-h264-{rating.seq:08x}", "type": "clip", "window": 1, "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "caused_by": rating.id, "content_type": "video/mp4",
        }  # fmt: skip
        station.upload(station.emit("media", Priority.BULK, info), data)
        return rating.id

    rating_id = fleet.call(send)
    page.goto(f"{console.url}/#st-a")
    row = page.locator(f'tr[data-rating="{rating_id}"]')
    row.locator("button.play").click()
    page.wait_for_function("document.getElementById('player-video').currentTime > 0.5")
    assert page.locator("#player-video").evaluate("el => el.videoWidth") == 160
    assert console.get("/api/station/st-a/media")["clips"][rating_id]["url"].endswith(".mp4")


def test_live_view_shows_frames_until_its_deadline_and_two_operators_share_it(
    broker, console_factory, fleet_factory, page
) -> None:
    console = console_factory(broker.port)
    console.config.write_text(console.config.read_text().replace('dir = "media"', 'dir = "media"\nlive_view_s = 6'))
    console.start()
    fleet = fleet_factory(broker.port, ["st-l"], rate=1.0, telemetry_s=5.0, snapshot_s=3.0)
    station = fleet.station("st-l")
    log_in(page, console.url, *console.admin)
    page.goto(f"{console.url}/#st-l")
    page.locator('button.live[data-window="2"]').first.click()
    started = time.monotonic()
    page.wait_for_function("Number(document.getElementById('live-img').dataset.frame) >= 3")
    assert "剩余" in page.locator("#live-state").inner_text()  # the time left, counting down
    assert page.locator("#live-img").evaluate("el => el.naturalWidth") == 160
    # A second operator on the same window joins the running session: no second request.
    second = console.post("/api/station/st-l/live/2/start")
    assert second["shared"] is True and second["viewers"] == 2
    assert fleet.call(lambda: station.live_requests) == 1
    # At the deadline the page says it ended, and the station stopped sending.
    page.locator('#live[data-ended="1"]').wait_for(timeout=10_000)
    assert 5.0 <= time.monotonic() - started < 9.0
    assert "已结束" in page.locator("#live-state").inner_text()
    wait_until(lambda: fleet.call(lambda: not station.live), 3, "the station's session over")
    # The stop button ends a view before its deadline: the last viewer out stops the station.
    page.locator('button.live[data-window="1"]').first.click()
    page.locator("#live-state", has_text="窗口 1").wait_for()
    page.wait_for_function("Number(document.getElementById('live-img').dataset.frame) >= 1")
    page.click("#live-stop")
    wait_until(lambda: fleet.call(lambda: 1 not in station.live), 5, "the station told to stop")


def test_a_gap_is_filled_by_replay(county, page) -> None:
    console, fleet = county
    page.goto(f"{console.url}/#st-c")
    page.locator('#station-card[data-station="st-c"]').wait_for()
    station = fleet.station("st-c")

    def withhold() -> int:
        station.withhold_next = 4  # assigned, never sent: only a replay brings them
        return station.seq

    before = fleet.call(withhold)
    fleet.call(lambda: [station.next_event() for _ in range(6)])
    page.locator("#seq-replayed", has_text="4").wait_for()
    assert page.locator("#seq-missing").inner_text() == "0"
    assert f"{before + 1}–{before + 4}" in page.locator("#seq").inner_text()  # the request, as asked
    assert console.station("st-c")["seq"]["floor"] >= before + 6
