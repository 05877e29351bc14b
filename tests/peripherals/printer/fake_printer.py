"""A fake ESC/POS thermal printer on the master side of a pseudo-terminal.

The driver opens the slave side as it would /dev/ttyUSB0. A thread here parses the bytes it
receives the way a printer does (text as GB18030 once `FS &` selects Chinese mode, ESC/GS/FS
commands by their lengths, the QR payload out of `GS ( k`, `GS V` cuts the page) and answers
`DLE EOT n` with the status byte a real printer sends. It is written from the ESC/POS command
reference, not from the driver's code, so a mistake in one does not cancel out in the other.

A test changes its state (paper, cover, offline, an error, mute) and reads what it printed.
"""

from __future__ import annotations

import os
import select
import threading
import tty
from dataclasses import dataclass, field

ESC, GS, FS, DLE, LF, CR = 0x1B, 0x1D, 0x1C, 0x10, 0x0A, 0x0D
EOT = 0x04

# Commands of fixed length, by their second byte (the first is ESC, GS or FS).
_FIXED = {
    ESC: {b"@": 2, b"2": 2, **dict.fromkeys([b"!", b"E", b"-", b"a", b"M", b"d", b"t", b"G", b"J", b"3"], 3)},
    GS: dict.fromkeys([b"!", b"B", b"b", b"|", b"h", b"w", b"H", b"f"], 3),
    FS: {b"&": 2, b".": 2, **dict.fromkeys([b"C", b"!", b"-", b"W"], 3)},
}


@dataclass
class Line:
    text: str
    width: int  # character size multipliers in force when the line was printed
    height: int


@dataclass
class Page:
    """What came out between two cuts."""

    lines: list[Line] = field(default_factory=list)
    qr: list[str] = field(default_factory=list)

    @property
    def text(self) -> list[str]:
        return [line.text for line in self.lines]


class FakePrinter:
    def __init__(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        # The state a test sets; the next DLE EOT answer reflects it.
        self.paper = "ok"  # "ok", "near_end" or "out"
        self.cover_open = False
        self.offline = False  # offline with no cause given (e.g. waiting for online recovery)
        self.autocutter_error = False
        self.mute = False  # a printer that never answers
        self._state_lock = threading.Lock()
        # What it received.
        self.pages: list[Page] = []  # cut pages, oldest first
        self.unknown: list[bytes] = []  # commands it did not know
        self.queries: list[int] = []  # the n of each DLE EOT n
        self._buf = bytearray()
        self._text = bytearray()
        self._page = Page()
        self._chinese = False
        self._size = (1, 1)
        self._qr_data = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-printer", daemon=True)

    def start(self) -> FakePrinter:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Unplug: the driver's next read or write fails."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        os.close(self._master)
        os.close(self._slave)

    def set(self, **state: object) -> None:
        """Change several things at once, as one event in the printer's life."""
        with self._state_lock:
            for key, value in state.items():
                if not hasattr(self, key):
                    raise AttributeError(key)
                setattr(self, key, value)

    # -- what a printer answers -----------------------------------------------------------------

    def status_byte(self, n: int) -> int:
        """The answer to DLE EOT n: fixed bits 0x12 plus the bits ESC/POS defines for n."""
        with self._state_lock:
            return self._status_bits(n)

    def _status_bits(self, n: int) -> int:
        paper_out = self.paper == "out"
        offline = self.offline or self.cover_open or paper_out or self.autocutter_error
        bits = {
            1: 0x08 * offline,
            2: 0x04 * self.cover_open | 0x20 * paper_out | 0x40 * self.autocutter_error,
            3: 0x08 * self.autocutter_error,
            # The near-end sensor sits before the end sensor: an empty roll trips both.
            4: 0x0C * (self.paper in ("near_end", "out")) | 0x60 * paper_out,
        }[n]
        return 0x12 | bits

    # -- the receiving thread -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.02)
            if not ready:
                continue
            try:
                chunk = os.read(self._master, 4096)
            except OSError:
                return
            self._buf += chunk
            self._parse()

    def _parse(self) -> None:
        while self._buf:
            length = self._length(self._buf)
            if length is None or length > len(self._buf):
                return  # the rest of the command is still on its way
            command = bytes(self._buf[:length])
            del self._buf[:length]
            self._handle(command)

    def _length(self, buf: bytearray) -> int | None:
        first = buf[0]
        if first >= 0x20:  # text: GB18030 bytes are never control bytes
            return next((i for i, b in enumerate(buf) if b < 0x20), len(buf))
        if first in (LF, CR):
            return 1
        if len(buf) < 2:
            return None
        second = bytes(buf[1:2])
        if first == DLE:
            return 3
        if first == GS and second == b"V":
            return None if len(buf) < 3 else (3 if buf[2] in (0, 1, 48, 49) else 4)
        if first == GS and second == b"(":
            return None if len(buf) < 5 else 5 + buf[3] + 256 * buf[4]
        if first in _FIXED and second in _FIXED[first]:
            return _FIXED[first][second]
        return 2  # unknown: recorded, and the test fails on it

    def _handle(self, command: bytes) -> None:
        first = command[0]
        if first >= 0x20:
            self._text += command
        elif first == LF:
            self._end_line()
        elif first == CR:
            pass
        elif first == DLE and command[1] == EOT:
            self.queries.append(command[2])
            if not self.mute:  # read unlocked: one attribute
                os.write(self._master, bytes([self.status_byte(command[2])]))
        elif command[:2] == b"\x1b@":
            self._chinese, self._size = False, (1, 1)
        elif command[:2] in (b"\x1c&", b"\x1c."):
            self._chinese = command[1:2] == b"&"
        elif command[:2] == b"\x1b!":
            self._size = (1 + bool(command[2] & 0x20), 1 + bool(command[2] & 0x10))
        elif command[:2] == b"\x1d!":
            self._size = (1 + (command[2] >> 4), 1 + (command[2] & 0x0F))
        elif command[:3] == b"\x1d(k":
            self._two_d_code(command[5:6], command[6:7], command[7:])
        elif command[:2] == b"\x1dV":
            self._end_line()
            self.pages.append(self._page)
            self._page = Page()
        elif command[1:2] not in _FIXED.get(first, {}):
            self.unknown.append(command)
        # Else a known command that does not change what the text says (bold, align, feed).

    def _two_d_code(self, cn: bytes, fn: bytes, rest: bytes) -> None:
        if cn != b"1":  # only QR codes are expected on a ticket
            self.unknown.append(b"GS ( k cn=" + cn)
        elif fn == b"P":  # store the data: m ('0') then the payload
            self._qr_data = rest[1:]
        elif fn == b"Q":  # print the stored symbol
            self._page.qr.append(self._qr_data.decode("ascii"))

    def _end_line(self) -> None:
        if not self._text:
            return
        # Outside Chinese mode a printer shows a byte per character from its code page.
        text = self._text.decode("gb18030" if self._chinese else "cp437")
        self._page.lines.append(Line(text, *self._size))
        self._text.clear()
