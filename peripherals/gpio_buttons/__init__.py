"""Buttons wired straight to the Raspberry Pi's GPIO: the one-window station without a window unit.

Configured per window in `[[windows]]` as `gpio = { good = 17, bad = 27, next = 22 }` (key name =
BCM pin number; each button between its pin and GND). Pins are read through Blinka's `digitalio`
(libgpiod underneath, from the `gpiod` package) on a timer and debounced by the firmware's own
debouncer; Blinka's `keypad` is not used, as its deinit() can hang a shutdown. Needs the `pi`
extra (`pip install yimen[pi]`); a gateway without GPIO buttons never imports Blinka.
"""

from __future__ import annotations

from edge.events import Emit
from peripherals.gpio_buttons.driver import GpioButtons
from peripherals.keyevents import OnKey
from peripherals.window_unit import WindowsConfig


def gpio_buttons(config: WindowsConfig, emit: Emit, *, on_key: OnKey | None = None) -> GpioButtons:
    """The driver for every window with `gpio` buttons; `emit` returns once the event is on disk."""
    return GpioButtons(config, emit, on_key=on_key)
