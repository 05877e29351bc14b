"""The GPIO pin seam: the only code that touches Blinka. Tests give the driver fake pins instead."""

from __future__ import annotations

from typing import Protocol


class Pin(Protocol):
    """What the driver needs of a pin: its level (a pressed button reads False) and a way to let go."""

    @property
    def value(self) -> bool: ...

    def deinit(self) -> None: ...


def open_button(bcm: int) -> Pin:
    """An input with the pull-up on, for a button between BCM pin `bcm` and GND."""
    import board  # Blinka; imported here so that a gateway without GPIO buttons runs without it
    import digitalio

    pin = digitalio.DigitalInOut(getattr(board, f"D{bcm}"))
    pin.direction = digitalio.Direction.INPUT
    pin.pull = digitalio.Pull.UP
    return pin
