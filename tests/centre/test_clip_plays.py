"""A station's H.264 clip, as its camera makes it (fragmented MP4 from PyAV), travels over MQTT
to the county console and plays in the page's <video> in headless Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.centre.conftest import CHROMIUM
from tests.centre.test_browser import log_in
from tests.centre.test_media_e2e import CAMERA as MEDIA_CAMERA
from tests.centre.test_media_e2e import first_clip
from tests.conftest import STATION, GatewayProcess, station_config, wait_until

pytestmark = pytest.mark.slow

# The media proof's camera, with the default clip format (MP4) and a fast upload.
CAMERA = MEDIA_CAMERA.replace('clip_format = "mjpeg"', "").replace("upload_kbps = 24", "upload_kbps = 2000")


def test_the_stations_h264_clip_plays_at_the_county(tmp_path: Path, broker, console_factory, gateways) -> None:
    if not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed (./dev test installs it)")
    console = console_factory(broker.port).start()
    config = station_config(tmp_path, broker.port, extra=CAMERA, rate=10)
    config.write_text(config.read_text() + "windows = 1\n")
    gateways.append(GatewayProcess(config).start())
    wait_until(lambda: (first_clip(console) or {}).get("state") == "complete", 60, "an evidence clip at the county")
    clip = first_clip(console)
    assert clip["url"].endswith(".mp4"), clip
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.set_default_timeout(15_000)
        log_in(page, console.url, *console.admin)
        page.goto(f"{console.url}/#{STATION}")
        row = page.locator(f'tr[data-rating="{clip["caused_by"]}"]')
        row.locator("button.play").click()
        page.wait_for_function("document.getElementById('player-video').currentTime > 0.5")
        assert page.locator("#player-video").evaluate("el => el.videoWidth") == 320
        browser.close()
