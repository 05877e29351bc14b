"""Clerks signing in and out; calls announced without holding up the queue."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace

from edge.station.announce import spoken
from tests.edge.station.station_support import FakeClock, Harness, settings


def test_sign_in_and_out_by_card_and_code(station: Harness) -> None:
    st = station.station
    assert st.swipe(1, "0009000003", source="card-reader") == "idle"  # c03's second card
    assert st.keypad_code(2, "3333", source="keypad") == "idle"  # c03 moves to window 2
    assert st.swipe(2, "0001000002", source="card-reader") == "idle"  # c02 takes window 2 over
    assert st.swipe(2, "0001000002", source="card-reader") == "idle"  # and leaves it
    assert st.swipe(1, "1234567890123456", source="card-reader") == "error"
    assert st.keypad_code(1, "9999", source="keypad") == "error"
    assert not st.command("sign-out", window=3).ok
    got = [(e["action"], e["window"], e["clerk"], e.get("by"), e.get("card")) for e in station.data("clerk")]
    assert got == [
        ("sign-in", 1, "c03", "card", None),
        ("sign-out", 1, "c03", "moved", None),
        ("sign-in", 2, "c03", "code", None),
        ("sign-out", 2, "c03", "replaced", None),
        ("sign-in", 2, "c02", "card", None),
        ("sign-out", 2, "c02", "card", None),
        ("unknown-card", 1, None, None, "************3456"),
        ("unknown-code", 1, None, None, None),
    ]


def test_calls_are_spoken_and_shown_without_blocking_the_queue(
    make_station: Callable[..., Harness], clock: FakeClock
) -> None:
    base = settings()
    config = replace(base, announce=replace(base.announce, voice=True, display=True, max_pending=2))
    spoke: list[str] = []
    hold = threading.Event()
    speaking = threading.Event()

    def speak(text: str) -> None:
        spoke.append(text)
        speaking.set()
        hold.wait()  # a speech engine stuck on the audio device

    station = make_station(config=config, speak=speak)
    st = station.station
    for _ in range(5):
        st.press(1, "ticket", source="window-unit")
    st.press(1, "next", source="window-unit")
    assert speaking.wait(10)
    for _ in range(4):  # each answered at once although the speaker is stuck
        assert st.press(1, "recall", source="window-unit") in ("idle", "error")
        st.press(2, "next", source="window-unit")
    voice = station.station.status()["announce"]["voice"]
    assert voice["dropped"] > 0 and voice["pending"] == 2
    hold.set()
    assert spoke[0] == "请A零零一号到1号窗口办理"
    deadline = time.monotonic() + 10
    while not (calls := station.data("call")) and time.monotonic() < deadline:
        time.sleep(0.01)  # the display thread appends on its own time
    assert calls[0] == {"ticket": "A001", "window": 1, "category": "社会保障", "text": "请A001号到1号窗口办理",
                        "at": "2026-01-26T08:30:00+08:00"}  # fmt: skip


def test_spoken_numbers() -> None:
    assert spoken("B120") == "B一二零"
