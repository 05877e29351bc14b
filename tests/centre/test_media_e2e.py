"""Issue 11's proof, end to end through the product's own path: a real gateway with a simulated
camera makes a bad rating's evidence clip; it travels over MQTT in chunks to the county console,
which is restarted mid-upload, and then the broker is restarted mid-upload too; the clip is put
together at the county byte for byte (sha256), and the page in headless Chromium plays it, and
shows the station's live frames and their end."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from tests.centre.conftest import CHROMIUM
from tests.centre.test_browser import log_in
from tests.conftest import STATION, GatewayProcess, station_config, wait_until
from tests.support.proxy import Proxy

pytestmark = pytest.mark.slow

CAMERA = """
[media]
upload_kbps = 24
chunk_kb = 1
live_interval_s = 0.5

[[cameras]]
window = 1
backend = "sim"
width = 320
height = 240
fps = 2
quality = 50
clip_before_s = 2
clip_after_s = 1
snapshot_interval_s = 3600
clip_format = "mjpeg"   # the frame-by-frame player and upload timing this proof is built on
"""


def first_clip(console) -> dict | None:
    clips = console.get(f"/api/station/{STATION}/media")["clips"]
    return min(clips.values(), key=lambda m: m["media_id"]) if clips else None


def test_a_bad_ratings_clip_reaches_the_county_across_restarts_and_plays(
    tmp_path: Path, broker, console_factory, gateways
) -> None:
    if not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed (./dev test installs it)")
    console = console_factory(broker.port)
    console.config.write_text(console.config.read_text().replace('dir = "media"', 'dir = "media"\nlive_view_s = 5'))
    console.start()
    link = Proxy(broker.port)  # the station's way in: held shut while the broker restarts
    config = station_config(tmp_path, link.port, extra=CAMERA, rate=10)
    config.write_text(config.read_text() + "windows = 1\n")
    try:
        run(tmp_path, broker, console, link, config, gateways)
    finally:
        link.close()


def run(tmp_path: Path, broker, console, link: Proxy, config: Path, gateways: list) -> None:
    """The proof, with the page open from the first chunk to the live view's end."""
    gw = GatewayProcess(config).start()
    gateways.append(gw)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(locale="zh-CN")
        page.set_default_timeout(15_000)
        log_in(page, console.url, *console.admin)
        wait_until(lambda: (first_clip(console) or {}).get("held", 0) >= 2, 60, "an evidence clip half uploaded")
        clip = first_clip(console)
        assert clip["state"] == "partial" and clip["chunks"] >= 10, clip
        # The page says how far the upload is, before the clip is there.
        page.goto(f"{console.url}/#{STATION}")
        row = page.locator(f'tr[data-rating="{clip["caused_by"]}"]')
        row.locator(".uploading").wait_for()
        assert f"/ {clip['chunks']}" in row.inner_text() and "上传中" in row.inner_text()

        # The console restarts mid-upload: chunks sent meanwhile wait in its broker session.
        assert console.stop() == 0
        time.sleep(1.5)
        console.start()
        held = first_clip(console)["held"]
        wait_until(lambda: first_clip(console)["held"] > held, 20, "the upload going on after the restart")
        assert first_clip(console)["state"] == "partial", "the clip finished too soon: lower upload_kbps"

        # The broker restarts mid-upload (no persistence): the station resends what was in flight.
        link.set_mode(Proxy.REFUSE)
        time.sleep(0.5)  # what the broker took reaches the console before it stops
        broker.stop()
        broker.start()
        wait_until(lambda: console.get("/api/metrics")["ingest"]["subscribed"], 10, "the console back")
        time.sleep(2)  # its media connection resubscribes too (reconnect within 1 s)
        link.set_mode(Proxy.PASS)

        wait_until(lambda: first_clip(console)["state"] == "complete", 90, "the whole clip at the county")
        clip = first_clip(console)
        held_bytes = (console.media / STATION / clip["url"].rsplit("/", 1)[1]).read_bytes()
        station_file = next((tmp_path / "state" / "media").glob(f"{clip['media_id']}.*")).read_bytes()
        assert held_bytes == station_file, "byte for byte what the station recorded"
        with sqlite3.connect(console.directory / "centre.db") as db:
            payloads = [json.loads(r[0]) for r in db.execute("SELECT payload FROM events WHERE kind = 'media'")]
        announced = next(p["data"] for p in payloads if p["data"]["media_id"] == clip["media_id"])
        assert hashlib.sha256(held_bytes).hexdigest() == announced["sha256"] and announced["caused_by"]
        counts = console.get(f"/api/station/{STATION}/media")["counts"]
        assert not any(k.startswith("refused") for k in counts), counts

        # The open page turns the row into the clip (no reload), and plays it.
        row.locator("a.clip").wait_for(timeout=30_000)
        row.locator("button.play").click()
        page.wait_for_function("Number(document.getElementById('player-img').dataset.frame) >= 2")
        assert page.locator("#player-img").evaluate("el => el.naturalWidth") == 320
        page.click("#player-close")
        # Live view of the real gateway's camera, until its deadline.
        page.locator('button.live[data-window="1"]').first.click()
        page.wait_for_function("Number(document.getElementById('live-img').dataset.frame) >= 2")
        assert page.locator("#live-img").evaluate("el => el.naturalWidth") == 320
        page.locator('#live[data-ended="1"]').wait_for(timeout=15_000)
        browser.close()
