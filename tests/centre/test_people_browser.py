"""The county's people in headless Chromium: each role logs in through the login page and sees
what it may; a township account cannot open another township's station by URL; the audit page
shows the live view just watched; a simulated month's appraisal on the page and in the XLSX
matches figures computed from the same events; an alert reaches a webhook, is acknowledged
on the page and clears."""

from __future__ import annotations

import calendar
import http.server
import io
import json
import threading
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import pytest

from mqtt.broker import free_port
from tests.centre.appraisal import expected, matches
from tests.conftest import wait_until

pytestmark = pytest.mark.slow

PASSWORDS = {"county-boss": "county-password", "east-clerk": "east-password", "reader": "reader-password"}


class Receiver:
    """A group-chat robot's webhook, on loopback: records what it is sent."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[dict[str, Any]] = []
        got = self.messages

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b'{"errcode":0}')

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, name="test-webhook", daemon=True).start()

    def texts(self) -> list[str]:
        return [m["text"]["content"] for m in self.messages]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.server.shutdown()


@pytest.fixture
def county(broker, console_factory, fleet_factory, receiver) -> tuple[Any, Any]:
    extra = f"""
[townships]
east = ["st-a", "st-b"]
west = ["st-c"]

[alerts]
webhook = "http://127.0.0.1:{receiver.port}/hook"
[alerts.offline]
threshold = 0.02
escalate = 1000
holdoff_s = 0
[alerts.bad_rating]
enabled = false
"""
    console = console_factory(broker.port, extra=extra).start()
    console.user("add", "county-boss", "--role", "county", password=PASSWORDS["county-boss"])
    console.user("add", "east-clerk", "--role", "township", "--township", "east", password=PASSWORDS["east-clerk"])
    console.user("add", "reader", "--role", "viewer", password=PASSWORDS["reader"])
    fleet = fleet_factory(broker.port, ["st-a", "st-b", "st-c"], rate=0.2, telemetry_s=5.0, snapshot_s=2.0)
    wait_until(lambda: console.get("/api/summary")["totals"].get("online") == 3, 30, "three stations online")
    return console, fleet


def logged_in(browser: Any, url: str, name: str, password: str) -> Any:
    page = browser.new_context(locale="zh-CN", accept_downloads=True).new_page()
    page.set_default_timeout(10_000)
    page.goto(url + "/")
    assert page.url.endswith("/login")  # no session: the page sends the browser to log in
    page.fill("#user", name)
    page.fill("#password", password)
    page.click("#submit")
    page.locator("#who").wait_for()
    return page


def tiles(page: Any) -> list[str]:
    page.locator(".tile").first.wait_for()
    return sorted(page.locator(".tile").evaluate_all("els => els.map(e => e.dataset.station)"))


def test_each_role_sees_what_it_may(county, browser) -> None:
    console, _fleet = county
    admin = logged_in(browser, console.url, *console.admin)
    assert tiles(admin) == ["st-a", "st-b", "st-c"]
    assert admin.locator("nav a[href='/audit']").is_visible()
    assert admin.goto(console.url + "/users").status == 200
    admin.locator("tr[data-user='east-clerk']").wait_for()

    boss = logged_in(browser, console.url, "county-boss", PASSWORDS["county-boss"])
    assert tiles(boss) == ["st-a", "st-b", "st-c"]
    assert not boss.locator("nav a[href='/audit']").is_visible()
    assert boss.goto(console.url + "/audit").status == 403

    east = logged_in(browser, console.url, "east-clerk", PASSWORDS["east-clerk"])
    assert tiles(east) == ["st-a", "st-b"]
    east.goto(console.url + "/#st-a")
    east.locator('#station-card[data-station="st-a"]').wait_for()
    east.locator("button.live").first.wait_for()  # video is allowed for its own stations
    # Another township's station by URL: the page shows nothing of it, the server refuses it.
    east.goto(console.url + "/#st-c")
    east.wait_for_timeout(1500)
    assert east.locator('#station-card[data-station="st-c"]').count() == 0
    for path in ("/api/station/st-c", "/media/st-c/x.jpg", "/api/report?from=2026-01-01&to=2026-01-31&station=st-c"):
        assert east.request.get(console.url + path).status == 403

    reader = logged_in(browser, console.url, "reader", PASSWORDS["reader"])
    assert tiles(reader) == ["st-a", "st-b", "st-c"]
    reader.goto(console.url + "/#st-a")
    reader.locator('#station-card[data-station="st-a"]').wait_for()
    assert reader.locator("button.live:visible").count() == 0  # figures only, no video
    assert reader.request.get(console.url + "/api/station/st-a").json()["snapshots"] == {}


def test_the_audit_page_shows_the_live_view_just_watched(county, browser) -> None:
    console, _fleet = county
    page = logged_in(browser, console.url, *console.admin)
    page.goto(console.url + "/#st-a")
    page.locator('#station-card[data-station="st-a"]').wait_for()
    page.locator('button.live[data-window="1"]').first.click()
    page.wait_for_function("Number(document.getElementById('live-img').dataset.frame) >= 1")
    page.wait_for_timeout(1200)
    page.click("#live-stop")
    page.goto(console.url + "/audit")
    row = page.locator('#audit tr[data-action="live-view-stop"][data-target="st-a"]')
    row.wait_for()
    seconds = float(row.locator(".detail").inner_text().split("seconds=")[1].split()[0])
    assert 1.0 <= seconds < 60
    assert page.locator('#audit tr[data-action="live-view-start"][data-target="st-a"]').count() == 1
    assert page.locator('#audit tr[data-action="command"][data-target="st-a"]').count() == 1


def test_a_simulated_month_on_the_page_and_in_the_xlsx(county, browser) -> None:
    import openpyxl

    console, fleet = county
    today = date.today()
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    days = calendar.monthrange(year, month)[1]
    first = datetime(year, month, 1).astimezone()
    events = fleet.call(lambda: [e for s in fleet.stations.values() for e in s.backfill(first, days, 6)], timeout=60)
    by = ("month", "station", "clerk")
    want = expected(events, by)
    served = sum(f["served"] for f in want.values())
    span = f"from={year}-{month:02d}-01&to={year}-{month:02d}-{days}"
    report = f"/api/report?{span}&by={','.join(by)}"
    wait_until(lambda: sum(r["served"] for r in console.get(report)["rows"]) == served, 60, "the month stored")
    matches(console.get(report)["rows"], want, by)

    page = logged_in(browser, console.url, "county-boss", PASSWORDS["county-boss"])
    page.goto(f"{console.url}/reports?{span}&by={','.join(by)}")
    page.locator("#report tbody tr").nth(len(want) - 1).wait_for()
    assert page.locator("#report tbody tr").count() == len(want)
    with page.expect_download() as download:
        page.click("#xlsx")
    book = openpyxl.load_workbook(io.BytesIO(download.value.path().read_bytes()))
    sheet = book.active
    header = [c.value for c in sheet[1]]
    assert header[:3] == ["月份", "站点", "工作人员"] and "好评率" in header and "等待时间P90(秒)" in header
    got = {}
    for row in sheet.iter_rows(min_row=2, values_only=True):
        doc = dict(zip(header, row, strict=True))
        got[(doc["月份"], doc["站点"], doc["工作人员"])] = doc
    assert set(got) == set(want)
    for key, figures in want.items():
        sheet_row = got[key]
        assert (sheet_row["好评"], sheet_row["差评"], sheet_row["办件数"]) == (
            figures["good"],
            figures["bad"],
            figures["served"],
        )
        assert sheet_row["非常不满意"] == figures["l1"] and sheet_row["超时次数"] == figures["overruns"]
        assert sheet_row["等待时间中位数(秒)"] == pytest.approx(figures["wait_p50"], abs=0.11)
    # The trend of one station by day, drawn by the vendored chart library.
    page.fill("#station", "st-a")
    page.click("#run")
    page.locator("#trend-card:not([hidden]) canvas#ratings-chart").wait_for()
    assert page.evaluate("typeof Chart") == "function"
    exports = console.get("/api/audit?action=export")["entries"]
    assert any(e["actor"] == "county-boss" and e["detail"]["format"] == "xlsx" for e in exports)


def test_an_alert_reaches_the_webhook_is_acknowledged_and_clears(county, browser, receiver) -> None:
    console, fleet = county
    page = logged_in(browser, console.url, "east-clerk", PASSWORDS["east-clerk"])
    fleet.call(lambda: fleet.station("st-a").kill())
    wait_until(lambda: any("站点离线" in t and "st-a" in t for t in receiver.texts()), 20, "the alert at the webhook")
    assert receiver.messages[0]["msgtype"] == "text"  # the group-chat robot's JSON shape
    alert = page.locator('#yimen-alerts li[data-rule="offline"]', has_text="st-a")
    alert.wait_for()
    alert.locator("button.ack").click()
    page.locator('#yimen-alerts li.acked[data-rule="offline"]', has_text="已确认: east-clerk").wait_for()
    fleet.call(lambda: fleet.station("st-a").connect())
    alert.wait_for(state="detached", timeout=15_000)
    acks = console.get("/api/audit?action=alert-ack")["entries"]
    assert [(e["actor"], e["target"]) for e in acks] == [("east-clerk", "st-a")]
    assert len([t for t in receiver.texts() if "站点离线" in t and "st-a" in t]) == 1  # sent once
