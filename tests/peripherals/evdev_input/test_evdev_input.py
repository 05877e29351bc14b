"""Keypads and card readers: real `evdev.InputEvent` objects through the driver, and where the
machine has /dev/uinput, a real virtual keyboard that the driver must grab."""

from __future__ import annotations

import os
from collections import deque

import pytest

evdev = pytest.importorskip("evdev", reason="evdev is Linux-only (install the pi extra)")
from evdev import InputEvent, ecodes  # noqa: E402

from edge.events import Priority  # noqa: E402
from peripherals.evdev_input.driver import EvdevInputs  # noqa: E402
from peripherals.window_unit import WindowConfig, WindowsConfig  # noqa: E402
from tests.peripherals.window_unit.rig import wait_until  # noqa: E402


def typed(*codes: int) -> list[InputEvent]:
    """What a keyboard sends for each key: down, up, and a SYN report."""
    events = []
    for i, code in enumerate(codes):
        events += [
            InputEvent(1000 + i, 0, ecodes.EV_MSC, ecodes.MSC_SCAN, 458840),
            InputEvent(1000 + i, 0, ecodes.EV_KEY, code, 1),
            InputEvent(1000 + i, 0, ecodes.EV_SYN, ecodes.SYN_REPORT, 0),
            InputEvent(1000 + i, 100, ecodes.EV_KEY, code, 0),
            InputEvent(1000 + i, 100, ecodes.EV_SYN, ecodes.SYN_REPORT, 0),
        ]
    return events


class FakeDevice:
    """An input device whose events are real InputEvents; its fd is a pipe, so select() works."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd, self._wake = os.pipe()
        self.grabbed = False
        self.gone = False
        self._events: deque[InputEvent] = deque()

    def send(self, events: list[InputEvent]) -> None:
        self._events.extend(events)
        os.write(self._wake, b"x")

    def unplug(self) -> None:
        self.gone = True
        os.write(self._wake, b"x")

    def grab(self) -> None:
        self.grabbed = True

    def read(self):
        os.read(self.fd, 1)
        if self.gone:
            raise OSError(19, "No such device")
        while self._events:
            yield self._events.popleft()

    def close(self) -> None:
        os.close(self.fd)
        os.close(self._wake)


@pytest.fixture
def devices():
    opened: dict[str, FakeDevice] = {}

    def open_device(path: str) -> FakeDevice:
        if path in opened and not opened[path].gone:
            raise OSError(16, "busy")
        opened[path] = FakeDevice(path)
        return opened[path]

    return opened, open_device


KEYPAD = "/dev/input/by-id/usb-keypad-event-kbd"
READER = "/dev/input/by-id/usb-reader-event-kbd"


def test_keypad_keys_and_a_card_become_key_events_of_their_window(devices, recorder) -> None:
    opened, open_device = devices
    window = WindowConfig(4, keypad=KEYPAD, keymap=(("KEY_A", "good"), ("KEY_KPENTER", "next")), card_reader=READER)
    driver = EvdevInputs(WindowsConfig((window,)), recorder, open_device=open_device)
    driver.start()
    try:
        wait_until(lambda: len(recorder.events("unit")) == 2, "both devices online")
        assert opened[KEYPAD].grabbed and opened[READER].grabbed
        opened[KEYPAD].send(typed(ecodes.KEY_A, ecodes.KEY_B, ecodes.KEY_KPENTER))
        opened[READER].send(typed(ecodes.KEY_0, ecodes.KEY_0, ecodes.KEY_4, ecodes.KEY_2, ecodes.KEY_ENTER))
        wait_until(lambda: len(recorder.events("key")) == 3, "two keys and a sign-in")
    finally:
        driver.stop()
    keys = recorder.events("key")
    assert sorted((k["window"], k["key"], k.get("card")) for k in keys) == [
        (4, "good", None),
        (4, "next", None),
        (4, "signin", "0042"),
    ]
    assert all(k["priority"] == Priority.CRITICAL for k in keys)


def test_autorepeat_is_not_another_press_and_noise_is_not_a_card(devices, recorder) -> None:
    opened, open_device = devices
    driver = EvdevInputs(
        WindowsConfig((WindowConfig(1, keypad=KEYPAD, card_reader=READER),)),
        recorder,
        open_device=open_device,
    )
    driver.start()
    try:
        wait_until(lambda: len(recorder.events("unit")) == 2, "both devices online")
        held = [InputEvent(1, 0, ecodes.EV_KEY, ecodes.KEY_KPPLUS, 1)]
        held += [InputEvent(1, 500 + i, ecodes.EV_KEY, ecodes.KEY_KPPLUS, 2) for i in range(5)]
        opened[KEYPAD].send([*held, InputEvent(2, 0, ecodes.EV_KEY, ecodes.KEY_KPPLUS, 0)])
        opened[READER].send(typed(ecodes.KEY_1, ecodes.KEY_Q, ecodes.KEY_ENTER, ecodes.KEY_7, ecodes.KEY_ENTER))
        wait_until(lambda: len(recorder.events("key")) == 2, "one press and one card")
    finally:
        driver.stop()
    assert sorted((k["key"], k.get("card")) for k in recorder.events("key")) == [
        ("good", None),
        ("signin", "7"),
    ]


def test_an_unplugged_keypad_is_reported_and_taken_back_when_it_returns(devices, recorder) -> None:
    opened, open_device = devices
    driver = EvdevInputs(WindowsConfig((WindowConfig(2, keypad=KEYPAD),)), recorder, open_device=open_device)
    driver.start()
    try:
        wait_until(lambda: recorder.events("unit"), "the keypad online")
        opened[KEYPAD].unplug()
        wait_until(lambda: len(recorder.events("unit")) == 3, "offline, then online again")
        opened[KEYPAD].send(typed(ecodes.KEY_KP3))
        wait_until(lambda: recorder.events("key"), "a press on the returned keypad")
    finally:
        driver.stop()
    assert [e["state"] for e in recorder.events("unit")] == ["online", "offline", "online"]
    assert [k["key"] for k in recorder.events("key")] == ["r3"]


def test_a_keymap_naming_no_evdev_key_fails_the_driver_naming_the_window(devices, recorder) -> None:
    _, open_device = devices
    window = WindowConfig(5, keypad=KEYPAD, keymap=(("KEY_NOPE", "good"),))
    driver = EvdevInputs(WindowsConfig((window,)), recorder, open_device=open_device)
    driver.start()
    driver.stop()
    assert driver.status()["failure"] == "window 5: keymap: KEY_NOPE is not an evdev key name (e.g. KEY_KP1)"


def test_a_real_virtual_keyboard_is_grabbed_and_read(recorder) -> None:
    if not os.access("/dev/uinput", os.W_OK):
        pytest.skip("no writable /dev/uinput on this machine: cannot make a virtual keyboard")
    keyboard = evdev.UInput({ecodes.EV_KEY: [ecodes.KEY_KP1, ecodes.KEY_KPENTER]}, name="yimen-test-keypad")
    try:
        path = keyboard.device.path
        driver = EvdevInputs(WindowsConfig((WindowConfig(1, keypad=path),)), recorder)
        driver.start()
        try:
            wait_until(lambda: recorder.events("unit"), "the virtual keypad online")
            with pytest.raises(OSError):
                evdev.InputDevice(path).grab()  # ours alone
            for code in (ecodes.KEY_KP1, ecodes.KEY_KPENTER):
                keyboard.write(ecodes.EV_KEY, code, 1)
                keyboard.write(ecodes.EV_KEY, code, 0)
                keyboard.syn()
            wait_until(lambda: len(recorder.events("key")) == 2, "two presses")
        finally:
            driver.stop()
    finally:
        keyboard.close()
    assert [k["key"] for k in recorder.events("key")] == ["r1", "next"]
