"""USB keypads and card readers, as Linux input devices (evdev).

Per window in `[[windows]]`: `keypad = "/dev/input/by-id/...-event-kbd"` with an optional
`keymap = { KEY_KP1 = "r1", KEY_KPENTER = "next" }` (evdev key names; DEFAULT_KEYMAP otherwise),
and `card_reader = "/dev/input/by-id/...-event-kbd"`, a reader that types a clerk's card number
and Enter, reported as a `key` event with key `signin` and the card number. Both devices are
grabbed, so their keystrokes reach no console or other program. Needs the `pi` extra (evdev,
Linux only); a gateway without input devices never imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.events import Emit
from peripherals.keyevents import OnKey
from peripherals.window_unit import WindowsConfig

if TYPE_CHECKING:
    from peripherals.evdev_input.driver import EvdevInputs


def evdev_inputs(config: WindowsConfig, emit: Emit, *, on_key: OnKey | None = None) -> EvdevInputs:
    """The driver for every window's keypad and card reader; `emit` returns once the event is on disk."""
    from peripherals.evdev_input.driver import EvdevInputs

    return EvdevInputs(config, emit, on_key=on_key)
