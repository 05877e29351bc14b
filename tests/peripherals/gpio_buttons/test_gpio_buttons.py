"""GPIO buttons through the driver, with fake pins at our own seam (peripherals/gpio_buttons/pins.py).

Blinka's OS-agnostic board cannot be made to press a button, so the driver is given fake pins
and sampled at chosen moments with `poll(now)`: no sleeping, no timing. One test runs the timer.
"""

from __future__ import annotations

from edge.events import Priority
from peripherals.gpio_buttons.driver import GpioButtons
from peripherals.window_unit import WindowConfig, WindowsConfig
from tests.peripherals.window_unit.rig import Recorder, wait_until


class FakePin:
    def __init__(self, bcm: int) -> None:
        self.bcm = bcm
        self.value = True  # pulled up: not pressed
        self.released = False

    def deinit(self) -> None:
        self.released = True


def sample(driver: GpioButtons, pin: FakePin, levels: list[tuple[int, bool]]) -> None:
    for now, level in levels:
        pin.value = level
        driver.poll(now)


def test_a_press_is_one_critical_key_event_however_the_contact_bounces(recorder: Recorder) -> None:
    pins: dict[int, FakePin] = {}
    config = WindowsConfig((WindowConfig(2, gpio=(("good", 17), ("next", 22))),))
    driver = GpioButtons(config, recorder, open_pin=lambda bcm: pins.setdefault(bcm, FakePin(bcm)))
    assert driver.open()
    try:
        [online] = recorder.events("unit")
        assert (online["window"], online["state"], online["port"]) == (2, "online", "gpio:17,22")
        bounce = [(0, False), (2, True), (4, False), (6, True), (8, False), (30, False), (40, False)]
        sample(driver, pins[17], [*bounce, (60, True), (90, True)])
        sample(driver, pins[22], [(100, False), (130, False), (200, True), (230, True)])
    finally:
        driver.stop()
    keys = recorder.events("key")
    assert [(k["window"], k["key"], k["unit"], k["n"]) for k in keys] == [
        (2, "good", "gpio", 1),
        (2, "next", "gpio", 2),
    ]
    assert all(k["priority"] == Priority.CRITICAL for k in keys)
    assert all(pin.released for pin in pins.values())


def test_a_press_the_outbox_refused_is_kept_and_recorded_later(recorder: Recorder) -> None:
    pins: dict[int, FakePin] = {}
    failing = True

    def emit(new):
        if failing and new.kind == "key":
            raise OSError("disk full")
        return recorder(new)

    config = WindowsConfig((WindowConfig(1, gpio=(("bad", 27),)),))
    driver = GpioButtons(config, emit, open_pin=lambda bcm: pins.setdefault(bcm, FakePin(bcm)))
    assert driver.open()
    sample(driver, pins[27], [(0, False), (25, False), (50, True), (80, True)])
    assert recorder.events("key") == []
    assert driver.status()["windows"][1]["pending"] == 1
    failing = False
    driver.poll(5000)
    assert [(k["key"], k["n"]) for k in recorder.events("key")] == [("bad", 1)]
    driver.stop()


def test_a_pin_that_cannot_be_had_fails_this_driver_alone(recorder: Recorder) -> None:
    def open_pin(bcm: int) -> FakePin:
        raise RuntimeError(f"GPIO{bcm} is busy")

    driver = GpioButtons(WindowsConfig((WindowConfig(1, gpio=(("good", 5),)),)), recorder, open_pin=open_pin)
    driver.start()
    assert driver.status()["state"] == "failed"
    assert "GPIO5 is busy" in driver.status()["failure"]
    driver.stop()


def test_the_timer_thread_reads_the_pins(recorder: Recorder) -> None:
    pin = FakePin(26)
    driver = GpioButtons(WindowsConfig((WindowConfig(1, gpio=(("r1", 26),)),)), recorder, open_pin=lambda _: pin)
    driver.start()
    try:
        pin.value = False
        wait_until(lambda: recorder.events("key"), "the press to be reported")
    finally:
        driver.stop()
    assert [(k["key"], k["window"]) for k in recorder.events("key")] == [("r1", 1)]
    assert pin.released
