"""[[windows]] and [window_unit] as a person writes them; mistakes are errors naming what to fix."""

from __future__ import annotations

import textwrap
import tomllib

import pytest

from edge import config
from edge.configfile import ConfigError
from peripherals.window_unit import WindowConfig, WindowUnitOptions, window_units
from peripherals.window_unit.driver import WindowUnits
from peripherals.window_unit.sim import SimWindowUnits

BASE = '[station]\nid = "st-0001"\ncounty = "c"\n[storage]\npath = "/tmp/yimen-unused"\n'


def parse(text: str):
    """Through the gateway's own config parser, as a person's file is read."""
    return config.parse(tomllib.loads(BASE + textwrap.dedent(text)), "station.toml").windows


def test_named_and_auto_windows() -> None:
    cfg = parse(
        """
        [window_unit]
        usb_ids = ["2E8A:0005", "239a:80f4"]
        ping_s = 5

        [[windows]]
        number = 1
        unit = "/dev/ttyACM0"

        [[windows]]
        number = 2
        unit = "auto"
        uid = "e6614103e7"

        [[windows]]
        number = 3
        gpio = { good = 17, bad = 27, next = 22 }
        keypad = "/dev/input/by-id/usb-keypad-event-kbd"
        keymap = { KEY_KP1 = "r1", KEY_KPENTER = "next" }
        card_reader = "/dev/input/by-id/usb-reader-event-kbd"
        """
    )
    assert cfg.windows == (
        WindowConfig(1, "/dev/ttyACM0"),
        WindowConfig(2, "auto", "e6614103e7"),
        WindowConfig(
            3,
            gpio=(("bad", 27), ("good", 17), ("next", 22)),
            keypad="/dev/input/by-id/usb-keypad-event-kbd",
            keymap=(("KEY_KP1", "r1"), ("KEY_KPENTER", "next")),
            card_reader="/dev/input/by-id/usb-reader-event-kbd",
        ),
    )
    assert cfg.options == WindowUnitOptions(usb_ids=("2e8a:0005", "239a:80f4"), ping_s=5.0)
    assert cfg.options.usb_id_pairs == {(0x2E8A, 0x0005), (0x239A, 0x80F4)}
    assert [w.number for w in cfg.with_units] == [1, 2]
    assert [w.number for w in cfg.with_gpio] == [w.number for w in cfg.with_input_devices] == [3]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[windows]]\nnumber = 1\nunit = "auto"', r"\[windows #1\] uid: .*needs the uid"),
        ('[[windows]]\nnumber = 1\nunit = "ttyACM0"', r"\[windows #1\] unit: 'ttyACM0': give a device path"),
        ('[[windows]]\nnumber = 1\nunti = "/dev/ttyACM0"', r"\[windows #1\] unti: unknown key"),
        ("[[windows]]\nunit = '/dev/ttyACM0'", r"\[windows #1\] number: missing"),
        (
            '[[windows]]\nnumber = 1\nunit = "/dev/ttyACM0"\n[[windows]]\nnumber = 2\nunit = "/dev/ttyACM0"',
            r"\[windows #1\] and \[windows #2\] both use unit '/dev/ttyACM0'",
        ),
        (
            "[[windows]]\nnumber = 4\n[[windows]]\nnumber = 4",
            r"\[windows #2\] number: window 4 is already given in \[windows #1\]",
        ),
        (
            "[[windows]]\nnumber = 1\ngpio = { good = 17 }\n[[windows]]\nnumber = 2\ngpio = { bad = 17 }",
            r"\[windows #1\] and \[windows #2\] both use gpio pin 17",
        ),
        (
            '[[windows]]\nnumber = 1\nunit = "/dev/ttyS1"\n[[windows]]\nnumber = 2\nkeypad = "/dev/ttyS1"',
            r"\[windows #1\] and \[windows #2\] both use keypad '/dev/ttyS1'",
        ),
        ("[[windows]]\nnumber = 1\ngpio = { great = 17 }", r"\[windows #1\] gpio: 'great' is not a key"),
        (
            "[[windows]]\nnumber = 1\ngpio = { good = 40 }",
            r"\[windows #1.gpio\] good: 40 is above the maximum 27",
        ),
        (
            "[[windows]]\nnumber = 1\nkeymap = { KEY_A = 'good' }",
            r"\[windows #1\] keymap: a keymap needs a keypad",
        ),
        ('[window_unit]\nusb_ids = ["pico"]\n[[windows]]\nnumber = 1', r"\[window_unit\] usb_ids: 'pico'"),
        ("[window_unit]\nping_s = 0\n[[windows]]\nnumber = 1", r"\[window_unit\] ping_s: 0.0 is below"),
        ('[window_unit]\nports = ["ttyUSB*"]\n[[windows]]\nnumber = 1', r"\[window_unit\] ports: 'ttyUSB\*' is not"),
    ],
)
def test_mistakes_are_errors_naming_section_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(text)


def test_the_factory_gives_the_driver_or_the_simulator() -> None:
    cfg = parse('[[windows]]\nnumber = 1\nunit = "/dev/ttyACM0"')
    assert isinstance(window_units(cfg, print), WindowUnits)  # type: ignore[arg-type]
    assert isinstance(window_units(cfg, print, simulate=True), SimWindowUnits)  # type: ignore[arg-type]
