"""A day in the hall driven only through window units: the real firmware on ptys (the
CircuitPython-API rig), the gateway as a process with its station logic, calling screen and
speech, a real broker and the county. Tickets are taken, called, started, rated with reasons,
transferred, skipped and put back at the units; a green-channel citizen goes first; clerks sign
in by card and by code; a service overruns its time limit. The county's events must reconcile
with the script exactly, the calling screen (headless Chromium) must follow, also with the
broker down. And the bad input a hall sees: a key from a window that serves nothing, a reason
with no bad rating waiting, a transfer to a closed category, a code that matches no clerk, a
unit speaking the older protocol."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mqtt.broker import free_port
from tests.conftest import GatewayProcess, Subscriber, station_config, wait_until
from tests.hall import categories
from tests.mqtt.test_commands import Requester
from tests.peripherals.window_unit.rig import Line, Unit, boards, fw_link
from tests.support.chromium import chromium

pytestmark = pytest.mark.slow

REASONS = ("slow", "attitude")  # two reason keys: the card reader takes the third one's pin
SERVICE_OVER_S = 15  # category A: yellow light after 9 s of service, red after 15
LIMITS = "service_warn_min = 0.15\nservice_over_min = 0.25"


def hall_config(spoken: Path, port: int, w1: Line, w2: Line, w4: Line) -> str:
    # The speech command gets the text as its last argument, as espeak-ng does; with no audio
    # device here, a script writes down what would have been said.
    speak = spoken.with_suffix(".sh")
    speak.write_text(f'#!/bin/sh\necho "$1" >> {spoken}\n', encoding="utf-8")
    return f"""
[window_unit]
ping_s = 1

[announce]
voice = true
command = ["sh", "{speak}"]

[ratings]
reason_wait_s = 20

[screen]
port = {port}
bind = "127.0.0.1"

[[windows]]
number = 1
unit = "{w1.path}"
reason_keys = true

[[windows]]
number = 2
unit = "{w2.path}"

[[windows]]
number = 4
unit = "{w4.path}"

{categories(LIMITS)}
[[clerks]]
id = "c01"
name = "张丽"
cards = ["0001000001"]

[[clerks]]
id = "c02"
name = "王强"
code = "2222"
"""


class County:
    """What the county has received, each event once (by seq), in seq order."""

    def __init__(self, subscriber: Subscriber) -> None:
        self.subscriber = subscriber

    def events(self) -> list[dict[str, Any]]:
        seen: dict[int, dict[str, Any]] = {}
        for doc in self.subscriber.docs():
            seen.setdefault(doc["seq"], doc)
        return [seen[s] for s in sorted(seen)]

    def data(self, kind: str) -> list[dict[str, Any]]:
        return [e["data"] for e in self.events() if e["kind"] == kind]

    def queue(self, ticket: str) -> list[str]:
        return [q["action"] for q in self.data("queue") if q.get("ticket") == ticket]

    def has(self, kind: str, **match: Any) -> bool:
        return any(all(d.get(k) == v for k, v in match.items()) for d in self.data(kind))


@pytest.fixture
def page() -> Iterator[Any]:
    with chromium() as browser:
        yield browser.new_page(locale="zh-CN", viewport={"width": 1280, "height": 720})


def refused(unit: Unit) -> bool:
    return unit.app.unit.led_state(fw_link.ticks_ms()) == "error"


def test_a_day_at_the_windows(tmp_path: Path, broker, subscriber, gateways, page) -> None:
    w1, w2, w4 = (Line(tmp_path, name) for name in ("unit-w1", "unit-w2", "unit-w4"))
    # Window 1: one unit for citizen and clerk: the 5-key pad with reasons, clerk keys, tickets,
    # and a card reader. It must be wirable on a Pico as it is.
    boards.check_pins(boards.BOARDS["raspberry_pi_pico"], boards.keys_for("5", True, "ticket:A", REASONS,
                      "transfer:B", "green:A"), REASONS, card_reader=True)  # fmt: skip
    pad = Unit(w1.unit_fd, "e6614103e7a1", layout="5", reasons=REASONS, ticket="ticket:A", green="green:A",
               transfer="transfer:B", card_reader=True)  # fmt: skip
    keypad = Unit(w2.unit_fd, "e6614103e7a2", layout="keypad")  # window 2: the clerk's keypad
    old = Unit(w4.unit_fd, "e6614103e7a4", layout="2", proto=1)  # window 4: serves no category
    spoken = tmp_path / "spoken.txt"
    port = free_port()
    config = station_config(tmp_path, broker.port, extra=hall_config(spoken, port, w1, w2, w4))
    gw = GatewayProcess(config).start()
    gateways.append(gw)
    county = County(subscriber)
    try:
        wait_until(lambda: len([u for u in county.data("unit") if u["state"] == "online"]) == 3, 30, "units online")
        assert {u["unit"]: u.get("keys", [])[:1] for u in county.data("unit")}["e6614103e7a4"] == ["good"]
        page.goto(f"http://127.0.0.1:{port}/")
        page.locator("#station", has_text="测试村便民服务站").wait_for()

        # Clerks sign in: by card at window 1, by code at window 2 (a wrong code first).
        pad.swipe("0001000001")
        for key in "9999":
            keypad.press(key)
        keypad.press("enter")
        wait_until(lambda: refused(keypad), 10, "the keypad to show the unknown code refused")
        for key in "2222":
            keypad.press(key)
        keypad.press("enter")
        wait_until(lambda: len(county.data("clerk")) == 3, 15, "the clerk events")
        wait_until(lambda: pad.app.unit.shown.get("name") == "张丽", 10, "亮身份 at window 1")
        assert pad.app.unit.screen(fw_link.ticks_ms())[0] == "张丽 c01"

        # Citizens take tickets at window 1; the third one by the green channel.
        for key in ("ticket:A", "ticket:A", "green:A"):
            pad.press(key)
        wait_until(lambda: len(county.data("queue")) == 3, 15, "three tickets")

        # A003 (green) is called first, starts, and is rated 不满意 with a reason.
        pad.press("next")
        page.locator('#latest[data-ticket="A003"][data-window="1"]').wait_for(timeout=10_000)
        pad.press("start")
        pad.press("r2")
        pad.press("slow")
        # A001 is called, and sent on to category B; a transfer to closed C is refused (county).
        pad.press("next")
        wait_until(lambda: county.queue("A001")[-1:] == ["call"], 15, "A001 called")
        pad.press("start")
        requester = Requester(broker.port)
        _msg, closed = requester.request("hall-transfer", json.dumps({"window": 1, "category": "C"}).encode())
        assert closed["error"] == {"code": "refused", "message": "category C is closed now"}
        pad.press("transfer:B")
        keypad.press("next")
        page.locator('#latest[data-ticket="A001"][data-window="2"]').wait_for(timeout=10_000)
        keypad.press("start")
        keypad.press("done")
        # A002 does not come: skipped, then put back when the citizen turns up, called again.
        pad.press("next")
        pad.press("skip")
        pad.press("put-back")
        pad.press("next")
        pad.press("start")
        wait_until(lambda: county.queue("A002")[-1:] == ["start"], 15, "A002 started")
        started = time.monotonic()
        wait_until(lambda: pad.led("yellow"), SERVICE_OVER_S, "the yellow light at window 1")
        wait_until(lambda: county.has("limit", ticket="A002", action="over"), SERVICE_OVER_S + 10, "the overrun")
        assert time.monotonic() - started >= 9
        page.locator('#windows tr[data-window="1"][data-light="over"]').wait_for(timeout=5_000)
        wait_until(lambda: pad.app.unit.limit == "over", 5, "the unit's overrun light")
        pad.press("r5")
        wait_until(lambda: county.has("rating", ticket="A002"), 15, "A002's rating")
        # A reason key with no bad rating waiting: refused, shown on the unit.
        wait_until(lambda: not refused(pad), 5, "the unit's light back")
        pad.press("attitude")
        wait_until(lambda: refused(pad), 10, "the reason refused")
        # Window 4 serves no category and its unit speaks protocol 1: `next` is refused, a rating is kept.
        old.press("next")
        old.press("good")
        wait_until(lambda: county.has("rating", window=4), 15, "window 4's rating")

        # The broker goes down: the hall goes on, and the screen with it.
        broker.stop()
        wait_until(lambda: gw.status()["broker"]["connection"] != "connected", 15, "the gateway to notice")
        pad.press("ticket:A")
        pad.press("next")
        page.locator('#latest[data-ticket="A004"][data-window="1"]').wait_for(timeout=10_000)
        assert page.locator("#offline").is_hidden(), "the screen needs the Pi, not the county"
        broker.start()
        wait_until(lambda: gw.status()["backlog"] == {"critical": 0, "normal": 0, "bulk": 0}, 30, "the backlog sent")
        last_seq = gw.status()["last_seq"]
        requester.close()
        requester = Requester(broker.port)
        have = {e["seq"] for e in county.events()}
        missing = sorted(set(range(1, last_seq + 1)) - have)
        if missing:  # published while the county was reconnecting: the county asks again, as the console does
            _msg, replay = requester.request("replay", json.dumps({"first": missing[0], "last": missing[-1]}).encode())
            assert replay["ok"], replay
        wait_until(lambda: {e["seq"] for e in county.events()} >= set(range(1, last_seq + 1)), 20, "every event")
        requester.close()
        assert gw.stop() == 0
    finally:
        if gw.proc is not None and gw.proc.poll() is None:
            gw.kill()
        for unit in (pad, keypad, old):
            unit.shutdown()
        for line in (w1, w2, w4):
            line.close()

    # Every ticket's fate.
    assert county.queue("A003") == ["issue", "call", "start", "end"]
    assert county.queue("A001") == ["issue", "call", "start", "transfer", "call", "start", "end"]
    assert county.queue("A002") == ["issue", "call", "skip", "put-back", "call", "start", "end"]
    assert county.queue("A004") == ["issue", "call"]
    issued = {q["ticket"]: q for q in county.data("queue") if q["action"] == "issue"}
    assert issued["A003"]["green"] is True and issued["A003"]["ahead"] == 0
    transfer = next(q for q in county.data("queue") if q["action"] == "transfer")
    assert (transfer["to"], transfer["window"], transfer["clerk"]) == ("B", 1, "c01")
    second = next(q for q in county.data("queue") if q.get("ticket") == "A001" and q["action"] == "end")
    assert (second["category"], second["window"], second["clerk"], second["by"]) == ("B", 2, "c02", "done")
    # Every rating's ticket, clerk and reason.
    fields = ("ticket", "clerk", "window", "level", "reason", "linked")
    ratings = [tuple(r[f] for f in fields) for r in county.data("rating")]
    assert ratings == [
        ("A003", "c01", 1, 2, {"key": "slow", "name": "办理时间长"}, True),
        ("A002", "c01", 1, 5, None, True),
        (None, None, 4, None, None, False),
    ]
    assert all(len(r["at"]) == len("2026-01-26T08:33:30.000+08:00") for r in county.data("rating")), "ms in at"
    # Every overrun, and only the one the script made.
    limits = [(x["ticket"], x["what"], x["action"], x["window"]) for x in county.data("limit")]
    assert limits == [("A002", "service", "warn", 1), ("A002", "service", "over", 1)]
    clerks = [(c["action"], c["window"], c["clerk"], c.get("by")) for c in county.data("clerk")]
    assert clerks == [("sign-in", 1, "c01", "card"), ("unknown-code", 2, None, None), ("sign-in", 2, "c02", "code")]
    # The calls were spoken, in Mandarin, in order.
    said = spoken.read_text(encoding="utf-8").splitlines()
    assert said == [f"请{n}号到{w}号窗口办理" for n, w in [("A零零三", 1), ("A零零一", 1), ("A零零一", 2),
                                                        ("A零零二", 1), ("A零零二", 1), ("A零零四", 1)]]  # fmt: skip
