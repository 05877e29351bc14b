"""A fake `digitalio` for the firmware under the MicroPython unix port (tests only).

A key's pin reads low (pressed) while a file `pins/<pin>` exists in the unit's directory, so a
test presses keys from outside the process; LEDs are kept in memory."""

import os


class Direction:
    INPUT = "input"
    OUTPUT = "output"


class Pull:
    UP = "up"
    DOWN = "down"


class DigitalInOut:
    def __init__(self, pin):
        self._pin = pin
        self._level = True
        self.direction = None
        self.pull = None

    @property
    def value(self):
        if self.direction == Direction.OUTPUT:
            return self._level
        try:
            os.stat("pins/" + self._pin)
            return False
        except OSError:
            return True

    @value.setter
    def value(self, level):
        self._level = level
