"""Window units: a small board at each service window, on USB or RS-485 serial.

This module owns the `[[windows]]` tables and the optional `[window_unit]` section, and builds
the driver (driver.py) or its simulator (sim.py); both are `WindowUnitDriver`s.

```toml
[window_unit]              # optional; the defaults suit Raspberry Pi Picos on USB
usb_ids = ["2e8a:0005"]    # vendor:product ids that `unit = "auto"` looks for
ping_s = 2.0               # a unit silent this long (plus 2.25 s of retries) is offline
ports = []                 # device path patterns `auto` also tries, e.g. ["/dev/serial/by-path/*-port0"]

[[windows]]
number = 1
unit = "/dev/ttyACM0"      # or "auto"
# uid = "e6614103e7..."    (with auto: which unit is this window's)
```
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from edge.configfile import ConfigError, Section
from edge.events import Emit
from firmware import link
from peripherals.keyevents import OnKey

AUTO = "auto"
UID_PATTERN = r"[0-9a-f]{4,64}"
USB_ID_PATTERN = r"[0-9a-f]{4}:[0-9a-f]{4}"
# MicroPython on a Raspberry Pi Pico / Pico W / Pico 2.
DEFAULT_USB_IDS = ("2e8a:0005",)


@dataclass(frozen=True)
class WindowConfig:
    """One service window and how its keys reach the gateway.

    `unit`: a window unit's device path, "auto", or None. `gpio`: (key, BCM pin) pairs for
    buttons wired to the Pi. `keypad`: an evdev device whose keys `keymap` (evdev key name, key)
    maps, or the default map when empty. `card_reader`: an evdev device that types a clerk's card
    number and Enter.
    """

    number: int
    unit: str | None = None
    uid: str | None = None
    gpio: tuple[tuple[str, int], ...] = ()
    keypad: str | None = None
    keymap: tuple[tuple[str, str], ...] = ()
    card_reader: str | None = None


@dataclass(frozen=True)
class WindowUnitOptions:
    usb_ids: tuple[str, ...] = DEFAULT_USB_IDS
    # Glob patterns of device paths `auto` tries besides the USB ids: for serial adapters whose
    # USB id says nothing about what is behind them.
    ports: tuple[str, ...] = ()
    baud: int = 115200
    ping_s: float = 2.0
    # How often `auto` looks for new units, and a named port that is absent is tried again.
    scan_s: float = 1.0

    @property
    def usb_id_pairs(self) -> frozenset[tuple[int, int]]:
        return frozenset((int(v, 16), int(p, 16)) for v, p in (u.split(":") for u in self.usb_ids))


@dataclass(frozen=True)
class WindowsConfig:
    windows: tuple[WindowConfig, ...] = ()
    options: WindowUnitOptions = WindowUnitOptions()

    @property
    def with_units(self) -> tuple[WindowConfig, ...]:
        return tuple(w for w in self.windows if w.unit is not None)

    @property
    def with_gpio(self) -> tuple[WindowConfig, ...]:
        return tuple(w for w in self.windows if w.gpio)

    @property
    def with_input_devices(self) -> tuple[WindowConfig, ...]:
        return tuple(w for w in self.windows if w.keypad or w.card_reader)


class WindowUnitDriver(Protocol):
    """What the gateway holds: the serial driver and the simulator alike."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def status(self) -> dict: ...

    def set_led(self, window: int, led: str) -> None:
        """Show `led` (one of firmware.link.LEDS) on the window's unit; safe from any thread."""

    def set_limit(self, window: int, level: str) -> None:
        """Show the time-limit light (one of firmware.link.LIMITS); safe from any thread."""

    def show(self, window: int, fields: dict[str, str]) -> None:
        """Show the clerk (`name`, `no`) and `ticket` on the unit's display; safe from any thread."""


def _device(section: Section, key: str, *, auto: bool = False) -> str | None:
    path = section.get_str(key, None)
    if path is None or path.startswith("/") or (auto and path == AUTO):
        return path
    hint = 'a device path such as /dev/ttyACM0, or "auto"' if auto else "a device path such as /dev/input/by-id/..."
    raise section.error(key, f"{path!r}: give {hint}")


def _key_name(section: Section, where: str, key: str, reasons: tuple[str, ...]) -> str:
    if not link.is_builtin(key) and key not in reasons:
        raise section.error(
            where, f"{key!r} is not a key (good, bad, r1..r5, next, start, ticket:A, ..., or a [ratings] reason key)"
        )
    return key


def _window(section: Section, reasons: tuple[str, ...]) -> WindowConfig:
    gpio = section.section("gpio")
    keymap = section.section("keymap")
    cfg = WindowConfig(
        number=section.get_int("number", minval=1, maxval=999),
        unit=_device(section, "unit", auto=True),
        uid=section.get_str("uid", None, pattern=UID_PATTERN),
        gpio=tuple(
            (_key_name(section, "gpio", k, reasons), gpio.get_int(k, minval=0, maxval=27)) for k in gpio.unread()
        ),
        keypad=_device(section, "keypad"),
        keymap=tuple((name, _key_name(section, "keymap", keymap.get_str(name), reasons)) for name in keymap.unread()),
        card_reader=_device(section, "card_reader"),
    )
    # No section.done() here: [[windows]] tables are shared with the station logic, and
    # edge/config.py rejects the keys no owner read once every owner has read its own.
    if cfg.unit == AUTO and cfg.uid is None:
        raise section.error(
            "uid", 'unit = "auto" needs the uid of this window\'s unit (the gateway reports unknown uids)'
        )
    if cfg.keymap and not cfg.keypad:
        raise section.error("keymap", "a keymap needs a keypad")
    return cfg


def _options(section: Section) -> WindowUnitOptions:
    usb_ids = tuple(section.get_list("usb_ids", list(WindowUnitOptions.usb_ids)))
    for usb_id in usb_ids:
        if not isinstance(usb_id, str) or not re.fullmatch(USB_ID_PATTERN, usb_id.lower()):
            raise section.error("usb_ids", f"{usb_id!r} is not a vendor:product id such as 2e8a:0005")
    ports = tuple(section.get_list("ports", []))
    for pattern in ports:
        if not isinstance(pattern, str) or not pattern.startswith("/"):
            raise section.error("ports", f"{pattern!r} is not a device path pattern such as /dev/serial/by-path/*")
    cfg = WindowUnitOptions(
        usb_ids=tuple(u.lower() for u in usb_ids),
        ports=ports,
        baud=section.get_int("baud", WindowUnitOptions.baud, minval=1200),
        ping_s=section.get_float("ping_s", WindowUnitOptions.ping_s, minval=0.5, maxval=3600),
        scan_s=section.get_float("scan_s", WindowUnitOptions.scan_s, minval=0.1, maxval=60),
    )
    section.done()
    return cfg


def parse_windows(
    sections: list[Section], options: Section | None = None, reasons: tuple[str, ...] = ()
) -> WindowsConfig:
    """Read the `[[windows]]` tables (one Section each) and `[window_unit]`; checks them as a whole.
    `reasons`: the station's reason key names, which keys may be mapped to besides the built-in ones.

    Two windows with one device path, uid or GPIO pin are an error naming both.
    """
    windows = tuple(_window(section, reasons) for section in sections)
    claims: dict[str, dict[object, int]] = {}  # what -> value -> index of the window claiming it
    for index, window in enumerate(windows):
        # (Two tables with one window number are the station logic's check: edge/station/config.py.)
        owned = [("unit", window.unit), ("uid", window.uid)]
        owned += [("keypad", window.keypad), ("card_reader", window.card_reader)]
        owned += [("gpio pin", pin) for _, pin in window.gpio]
        for what, value in owned:
            if value is None or value == AUTO:
                continue
            seen = claims.setdefault("device" if what in ("unit", "keypad", "card_reader") else what, {})
            if value in seen:
                first = sections[seen[value]].name
                here = sections[index]
                raise ConfigError(f"{here.source}: [{first}] and [{here.name}] both use {what} {value!r}")
            seen[value] = index
    return WindowsConfig(windows, _options(options) if options is not None else WindowUnitOptions())


def window_units(
    config: WindowsConfig,
    emit: Emit,
    *,
    on_key: OnKey | None = None,
    known_key: Callable[[str], bool] | None = None,
    simulate: bool = False,
    firmware: Any = None,
) -> WindowUnitDriver:
    """The driver for the configured windows; `emit` must return only once the event is on disk."""
    if simulate:
        from peripherals.window_unit.sim import SimWindowUnits

        return SimWindowUnits(config, emit, on_key=on_key)
    from peripherals.window_unit.driver import WindowUnits

    return WindowUnits(config, emit, on_key=on_key, known_key=known_key, firmware=firmware)  # fwupdate.Updates
