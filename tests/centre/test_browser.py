"""The console's page in headless Chromium (Debian's package, driven by Playwright), fed by
simulated stations: what an operator who leaves the page open would see change, without reload."""

from __future__ import annotations

import time
from typing import Any

import pytest

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
    assert "待上传" in row.inner_text()  # the clip's event is here, its file not yet
    # The upload lands the file in the console's media folder: the row becomes a link.
    clip = console.station("st-b")["bad"][0]["clip"]
    (console.media / "st-b").mkdir(parents=True, exist_ok=True)
    (console.media / "st-b" / clip["file"]).write_bytes(b"--frame\r\nfake mjpeg\r\n")
    link = row.locator("a.clip")
    link.wait_for()
    assert link.get_attribute("href") == clip["url"]
    assert page.request.get(console.url + clip["url"]).body() == b"--frame\r\nfake mjpeg\r\n"
    # A bad rating whose station sends no clip is listed all the same, saying so.
    fleet.station("st-b").clips = False
    plain = fleet.call(lambda: fleet.station("st-b").rating("bad", 1))
    page.locator(f'tr[data-rating="{plain.id}"]', has_text="无视频").wait_for()
    # The live-view button asks the station and shows its answer.
    page.locator('button.live[data-window="2"]').click()
    page.locator("#live-answer", has_text="simulated").wait_for()


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
