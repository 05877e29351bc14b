"""Serial I/O for window units (pyserial): opening a port, reading without a busy loop, finding units.

Everything that touches a file descriptor is here; driver.py only sees `read()`, `write()` and
`close()`, so tests can give it a pseudo-terminal and nothing else changes.
"""

from __future__ import annotations

import contextlib
import glob
import os

import serial
from serial.tools import list_ports

# A read returns as soon as a byte arrives, or after this long with none, so the reader thread
# also gets to retransmit and ping on time.
READ_TIMEOUT_S = 0.02


class PortError(OSError):
    """The port cannot be opened, or went away (unplugged, unit reset); the message names it."""


class SerialPort:
    """One open serial port to one window unit."""

    def __init__(self, path: str, baud: int) -> None:
        self.path = path
        try:
            # exclusive: a second gateway, or a stray terminal, must not steal the unit's bytes.
            self._serial = serial.Serial(path, baud, timeout=READ_TIMEOUT_S, write_timeout=1, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortError(f"{path}: cannot open: {exc}") from None

    def read(self) -> bytes:
        try:
            data = self._serial.read(1)
            if data and self._serial.in_waiting:
                data += self._serial.read(self._serial.in_waiting)
        except (serial.SerialException, OSError) as exc:
            raise PortError(f"{self.path}: {exc}") from None
        return data

    def write(self, data: bytes) -> None:
        try:
            self._serial.write(data)
        except (serial.SerialException, OSError) as exc:
            raise PortError(f"{self.path}: {exc}") from None

    def close(self) -> None:
        with contextlib.suppress(serial.SerialException, OSError):  # it is gone either way
            self._serial.close()


def find_units(usb_ids: frozenset[tuple[int, int]], patterns: tuple[str, ...] = ()) -> list[str]:
    """Device paths of the USB serial ports whose vendor:product id is one of `usb_ids`, and of
    those matching the glob `patterns`; one path per device, since a unit opens only once."""
    found = {p.device for p in list_ports.comports() if (p.vid, p.pid) in usb_ids}
    devices = {os.path.realpath(path) for path in found}
    for path in sorted(path for pattern in patterns for path in glob.glob(pattern)):
        if os.path.realpath(path) not in devices:
            devices.add(os.path.realpath(path))
            found.add(path)
    return sorted(found)
