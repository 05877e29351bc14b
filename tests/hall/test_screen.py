"""The calling screen: the Pi's own page in headless Chromium, fed by a real station on a real
outbox and no broker at all; what it shows is compared, as pixels, with the same page rendering
what the test called. And the server's answers to what a browser should not send."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.screen import MAX_CONNECTIONS, MAX_STREAMS, Screen, ScreenConfig
from tests.edge.station.station_support import CONFIG, FakeClock, Harness, morning, settings
from tests.support.chromium import chromium

LIMITED = CONFIG.replace(
    'hours = ["08:30-12:00", "14:00-17:30"]',
    'hours = ["08:30-12:00", "14:00-17:30"]\nwait_warn_min = 5\nwait_over_min = 10',
)
RED, YELLOW = "rgb(198, 40, 40)", "rgb(249, 168, 37)"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(morning())


@pytest.fixture
def hall(tmp_path: Path, clock: FakeClock) -> Iterator[tuple[Harness, Screen]]:
    harness = Harness(tmp_path, clock, config=settings(LIMITED))
    screen = Screen(ScreenConfig(port=0, bind="127.0.0.1"), "测试村便民服务站", harness.station.hall)
    harness.station.on_view(screen.changed)
    screen.start()
    yield harness, screen
    screen.stop()
    harness.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def reference(browser: Any, url: str, state: dict[str, Any]) -> Any:
    """The screen's own page, fed `state` by the test instead of by the station."""
    page = browser.new_page(locale="zh-CN", viewport={"width": 1280, "height": 720})
    doc = json.dumps(state, ensure_ascii=False)
    page.add_init_script(
        f"window.fetch = () => Promise.resolve({{json: () => ({doc})}});"
        "window.EventSource = class { constructor() {} };"
    )
    page.goto(url)
    page.locator("#latest[data-n]").and_(page.locator(f'[data-ticket="{state["calls"][0]["ticket"]}"]')).wait_for()
    return page


def test_the_screen_shows_each_call_as_it_happens(hall, browser, clock: FakeClock) -> None:
    harness, screen = hall
    st = harness.station
    url = f"http://127.0.0.1:{screen.port}/"
    page = browser.new_page(locale="zh-CN", viewport={"width": 1280, "height": 720})
    page.set_default_timeout(10_000)
    page.goto(url)
    page.locator("#station", has_text="测试村便民服务站").wait_for()
    for _ in range(3):
        st.press(1, "ticket", source="u1")
    st.press(3, "ticket:B", source="u3")
    clock.advance(10 * 60)  # A001..A003 have waited ten minutes: red
    st.press(1, "next", source="u1")  # A001 to window 1; the station ticks once an hour here
    page.locator('#latest[data-ticket="A001"][data-window="1"]').wait_for()
    assert page.locator("#latest").inner_text() == "请 A001 号到 1 号窗口"
    st.press(2, "next", source="u2")
    page.locator('#latest[data-ticket="A002"][data-window="2"]').wait_for()
    assert page.locator("#calls li").all_inner_texts() == ["请 A001 号到 1 号窗口"]
    row = page.locator('#categories tr[data-category="A"]')
    assert row.get_attribute("data-light") == "over" and "1 人" in row.inner_text()
    assert row.locator(".dot").evaluate("el => getComputedStyle(el).backgroundColor") == RED
    assert page.evaluate("document.fonts.check('64px \"WenQuanYi Zen Hei\"')"), "a CJK font for the page"
    shot = page.locator("main").screenshot()
    expected = reference(browser, url, json.loads(screen.state()))
    assert expected.locator("main").screenshot() == shot, "the screen shows what was called, pixel for pixel"
    called = {
        "station": "测试村便民服务站",
        "categories": {"A": "社会保障", "B": "民政事务"},
        "calls": [{"n": 2, "ticket": "A002", "window": 2}, {"n": 1, "ticket": "A001", "window": 1}],
        "queue": json.loads(screen.state())["queue"],
    }
    expected = reference(browser, url, called)
    assert expected.locator("#latest").screenshot() == page.locator("#latest").screenshot()
    wrong = reference(browser, url, called | {"calls": [{"n": 2, "ticket": "A003", "window": 2}]})
    assert wrong.locator("#latest").screenshot() != page.locator("#latest").screenshot(), "the comparison can fail"


def request(screen: Screen, method: str, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", screen.port, timeout=5)
    conn.request(method, path)
    response = conn.getresponse()
    body = response.read() if response.status != 200 or path != "/events" else b""
    conn.close()
    return response.status, body


def test_the_server_answers_only_what_a_screen_asks(hall) -> None:
    _harness, screen = hall
    assert request(screen, "POST", "/state")[0] == 405
    assert request(screen, "GET", "/../../etc/passwd")[0] == 404
    status, body = request(screen, "GET", "/state")
    assert status == 200 and json.loads(body)["station"] == "测试村便民服务站"
    streams = []
    for _ in range(MAX_STREAMS):
        sock = socket.create_connection(("127.0.0.1", screen.port))
        sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.0 200")
        streams.append(sock)
    assert request(screen, "GET", "/events")[0] == 503, "a bounded number of streams"
    for sock in streams:
        sock.close()


def test_idle_connections_cannot_pile_up(hall) -> None:
    """Connections that never send a request (a slowloris) take at most MAX_CONNECTIONS threads."""
    _harness, screen = hall
    idle = [socket.create_connection(("127.0.0.1", screen.port)) for _ in range(MAX_CONNECTIONS)]
    extra = socket.create_connection(("127.0.0.1", screen.port))
    extra.settimeout(5)
    assert extra.recv(1) == b"", "one more is closed unanswered"
    extra.close()
    for sock in idle:
        sock.close()
    wait = 0
    while request(screen, "GET", "/state")[0] != 200 and wait < 50:  # the slots come back as they close
        wait += 1
    assert request(screen, "GET", "/state")[0] == 200


def test_a_taken_port_fails_the_screen_alone(hall, caplog, monkeypatch) -> None:
    """Another program on the screen's port: an error saying what to do, and the screen comes up
    once the port is free; nothing else stops."""
    harness, _screen = hall
    monkeypatch.setattr("edge.screen.RETRY_S", 0.1)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    second = Screen(ScreenConfig(port=port, bind="127.0.0.1"), "测试村便民服务站", harness.station.hall)
    caplog.set_level("ERROR")
    second.start()
    assert any(f"cannot listen on 127.0.0.1:{port}" in r.message and "set [screen] port" in r.message
               for r in caplog.records)  # fmt: skip
    assert harness.station.press(1, "ticket", source="u1") == "thanks", "the station runs on"
    taken.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if request(second, "GET", "/state")[0] == 200:
                break
        except (OSError, AssertionError):
            time.sleep(0.05)
    assert request(second, "GET", "/state")[0] == 200
    second.stop()


def test_the_screen_tells_the_hall_only_what_it_shows(hall) -> None:
    """The page is on the hall's network: its state carries what the screen shows (calls,
    waiting per category, each window's ticket and lights), not who is signed in at a window
    nor the day's totals."""
    harness, screen = hall
    assert harness.station.swipe(1, "0001000001", source="card-reader") == "idle"  # c01 at window 1
    status, body = request(screen, "GET", "/state")
    doc = json.loads(body)
    assert status == 200 and b"c01" not in body
    assert set(doc) == {"station", "queue", "calls", "categories"}
    assert set(doc["queue"]) == {"waiting", "windows", "limits"}
    assert doc["queue"]["windows"]["1"] == {"state": "open", "ticket": None}


def test_the_screen_listens_on_the_pi_alone_unless_told() -> None:
    """The narrowest reach by default: a screen on another machine needs `bind` set to the
    address the hall's network reaches (docs/hall.md)."""
    assert ScreenConfig().bind == "127.0.0.1"


def test_a_request_head_is_bounded_in_size(hall) -> None:
    """A header flood (http.server alone allows 100 lines of 64 KiB each, per connection) is
    answered 431 after MAX_HEAD bytes."""
    _harness, screen = hall
    with socket.create_connection(("127.0.0.1", screen.port), timeout=5) as sock:
        sock.sendall(b"GET /state HTTP/1.1\r\nHost: x\r\n")
        with contextlib.suppress(OSError):  # the server may close while this is still sending
            for n in range(64):
                sock.sendall(f"X-Flood-{n}: ".encode() + b"a" * 1000 + b"\r\n")
            sock.sendall(b"\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.0 431")


def test_a_request_head_that_trickles_in_is_dropped(hall, monkeypatch) -> None:
    """A slowloris sending a byte just inside the idle time keeps no slot for longer than
    HEAD_S: the whole head must come within it."""
    monkeypatch.setattr("edge.screen.HEAD_S", 1.0, raising=False)
    _harness, screen = hall
    with socket.create_connection(("127.0.0.1", screen.port), timeout=5) as sock:
        sock.sendall(b"GET /state HTTP/1.1\r\n")
        closed_after = None
        for n in range(40):  # 8 s of trickle, a byte every 0.2 s
            try:
                sock.sendall(b"X-%d: 1\r\n" % n)
            except OSError:
                closed_after = n
                break
            time.sleep(0.2)
            sock.setblocking(False)
            try:
                if sock.recv(4096) == b"":
                    closed_after = n
                    break
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
        assert closed_after is not None and closed_after < 30, "the trickle was served for 8 s"
