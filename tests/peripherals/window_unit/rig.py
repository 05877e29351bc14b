"""A test rig: the real firmware (CPython, pins faked at the digitalio seam) on pseudo-terminals.

- `FakeDigitalio` and `FakeBoard` stand in for CircuitPython's `digitalio` and `board`; a test
  presses a key by pulling its fake pin low, and reads LEDs from the fake pins the firmware drives.
- `Unit` runs firmware/app.py's `App` on its own thread, as the board's main loop would.
- `Line` joins the gateway and a unit through two ptys and a relay that can drop and corrupt bytes,
  fall silent, or be unplugged and plugged in again (the gateway opens a symlink, as /dev/serial/by-id).
- `Recorder` is `emit` for tests: the real outbox, every event on disk before it returns.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import random
import select
import sys
import threading
import time
import tty
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.firmware import use_firmware_path
from tests.support.recording_outbox import RecordingOutbox

use_firmware_path()

WAIT_S = 15.0  # generous: waits end as soon as the condition holds; this only bounds a failure


def wait_until(condition: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class FakePin:
    """A pin's electrical level; keys pull it low (pull-up), LEDs are lit when driven high."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.level = True


class FakeDigitalInOut:
    def __init__(self, pin: FakePin) -> None:
        self._pin = pin
        self.direction = None
        self.pull = None

    @property
    def value(self) -> bool:
        return self._pin.level

    @value.setter
    def value(self, level: bool) -> None:
        self._pin.level = level


def install_fake_digitalio() -> None:
    """Put fake `board` and `digitalio` modules where firmware/hw.py imports them."""
    if "digitalio" not in sys.modules:
        digitalio = types.ModuleType("digitalio")
        digitalio.DigitalInOut = FakeDigitalInOut  # type: ignore[attr-defined]
        digitalio.Direction = types.SimpleNamespace(INPUT="input", OUTPUT="output")  # type: ignore[attr-defined]
        digitalio.Pull = types.SimpleNamespace(UP="up", DOWN="down")  # type: ignore[attr-defined]
        sys.modules["digitalio"] = digitalio
        sys.modules["board"] = FakeBoard()  # type: ignore[assignment]


class FakeBoard(types.ModuleType):
    """One board's pins, made on first use under whatever name the pin map asks for."""

    board_id = "raspberry_pi_pico"

    def __init__(self) -> None:
        super().__init__("board")
        self.pins: dict[str, FakePin] = {}

    def __getattr__(self, name: str) -> FakePin:
        if name.startswith("__"):
            raise AttributeError(name)
        return self.pins.setdefault(name, FakePin(name))


install_fake_digitalio()
app = importlib.import_module("app")
boards = importlib.import_module("boards")
cardreader = importlib.import_module("cardreader")
hw = importlib.import_module("hw")
fw_link = importlib.import_module("link")


class Unit:
    """A window unit running the firmware's own main loop on a thread, its pins faked."""

    def __init__(
        self,
        fd: int,
        uid: str,
        *,
        layout: str = "2",
        ticket: str = "",
        proto: int = 2,
        clerk: bool = True,
        reasons: tuple[str, ...] = (),
        transfer: str = "",
        green: str = "",
        display: Any = None,
        card_reader: bool = False,
    ) -> None:
        self.fd = fd
        self.uid = uid
        self.keys = boards.keys_for(layout, clerk, ticket, reasons, transfer, green)
        self.reasons = reasons
        self.proto = proto
        self.display = display
        self.card_reader = FakeUart() if card_reader else None
        self.board = FakeBoard()
        self.pins = boards.BOARDS["raspberry_pi_pico"]
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.app: Any = None
        self.boot()

    def boot(self) -> None:
        """Power on: fresh RAM (empty queue, counters at zero), a new random seq."""
        self.shutdown()
        self._stopped = threading.Event()
        hw.board = self.board  # the pins this unit's App claims
        self.app = app.App(
            hw.FdStream(self.fd),
            self.uid,
            "raspberry_pi_pico",
            self.keys,
            "2.0.0",
            fw_link.ticks_ms(),
            random.getrandbits(8),
            self.reasons,
            self.display,
            self.card_reader,
        )
        if self.proto != fw_link.PROTO:  # a unit from older or some future firmware
            hello = json.loads(self.app.unit.announce[0])
            if self.proto == 1:
                del hello["nkeys"]  # version 1 listed every key in its HELLO
            self.app.unit.announce[0] = fw_link.dumps({**hello, "proto": self.proto})
        self._thread = threading.Thread(target=self.app.run, args=(self._stopped.is_set,), name=f"unit-{self.uid}")
        self._thread.start()

    def shutdown(self) -> None:
        """Power off, losing whatever was not acknowledged."""
        if self._thread is not None:
            self._stopped.set()
            self._thread.join(5)
            self._thread = None

    def press(self, key: str) -> None:
        """Hold the key until the firmware has debounced the press, as a person would, then let go
        until it has debounced the release.

        Waiting for the firmware rather than for fixed times, so that a test machine that stalls
        the firmware's thread for a moment does not lose a press that no person would have lost.
        """
        pin = self.board.pins.setdefault(boards.pin_for(self.pins, key, self.reasons), FakePin(key))
        debouncer = self.app.keys._debouncers[self.app.key_names.index(key)]
        pin.level = False
        try:
            wait_until(lambda: debouncer.pressed, f"the unit to see {key} pressed")
        finally:
            pin.level = True
        wait_until(lambda: not debouncer.pressed, f"the unit to see {key} released")

    def swipe(self, card: str) -> None:
        """A card held to the unit's reader: the frames an RDM6300 sends while it is held."""
        assert self.card_reader is not None, "this unit has no card reader"
        self.card_reader.receive(cardreader.frame_for(card) * 3)

    def led(self, colour: str) -> bool:
        return self.board.pins[self.pins[f"led_{colour}"]].level

    @property
    def unacked(self) -> int:
        return len(self.app.unit.queue)


class FakeUart:
    """A card reader's UART as hw.UartStream reads it: bytes the reader sent, taken once."""

    def __init__(self) -> None:
        self._data = b""
        self._lock = threading.Lock()

    def receive(self, data: bytes) -> None:
        with self._lock:
            self._data += data

    def read(self) -> bytes:
        with self._lock:
            data, self._data = self._data, b""
        return data


def raw_pty() -> tuple[int, int]:
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no line editing: a serial line, not a terminal
    tty.setraw(master)
    return master, slave


class Line:
    """Gateway <-> relay <-> unit over two ptys; the relay drops and corrupts at set rates."""

    def __init__(
        self, directory: Path, name: str = "unit", *, drop: float = 0.0, corrupt: float = 0.0, seed: int = 1
    ) -> None:
        self.path = str(directory / name)  # what the gateway opens, like /dev/serial/by-id/...
        self.drop = drop
        self.corrupt = corrupt
        self.silent = False
        self._random = random.Random(seed)
        self._gw_master, self._gw_slave = raw_pty()
        self._unit_master, self.unit_fd = raw_pty()
        os.symlink(os.ttyname(self._gw_slave), self.path)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._relay, name=f"relay-{name}", daemon=True)
        self._thread.start()

    def unplug(self) -> None:
        """The gateway's side of the line goes away, as a USB device does when pulled out."""
        with self._lock:
            os.unlink(self.path)
            os.close(self._gw_master)
            os.close(self._gw_slave)
            self._gw_master = -1

    def plug(self) -> None:
        with self._lock:
            self._gw_master, self._gw_slave = raw_pty()
            os.symlink(os.ttyname(self._gw_slave), self.path)

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        for fd in (self._gw_master, self._gw_slave, self._unit_master, self.unit_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _mangle(self, data: bytes) -> bytes:
        if self.silent:
            return b""
        out = bytearray()
        for byte in data:
            if self._random.random() < self.drop:
                continue
            if self._random.random() < self.corrupt:
                byte ^= 1 << self._random.randrange(8)
            out.append(byte)
        return bytes(out)

    def _relay(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                gw, unit = self._gw_master, self._unit_master
            fds = [unit] + ([gw] if gw >= 0 else [])
            readable, _, _ = select.select(fds, [], [], 0.02)
            with self._lock:
                for fd in readable:
                    if fd != self._unit_master and fd != self._gw_master:
                        continue  # unplugged meanwhile
                    try:
                        data = os.read(fd, 4096)
                    except OSError:  # the gateway closed its end; nothing to pass on
                        time.sleep(0.01)
                        continue
                    target = self._gw_master if fd == self._unit_master else self._unit_master
                    data = self._mangle(data)
                    if data and target >= 0:
                        os.write(target, data)


def one_unit_station(unit_path: str) -> str:
    """Config for a station whose window 1 has the window unit at `unit_path` and a queue (category A)."""
    return f"""
[window_unit]
ping_s = 1

[[windows]]
number = 1
unit = "{unit_path}"

[[categories]]
code = "A"
name = "社会保障"
item = "SB-001"
windows = [1]
"""


class Recorder(RecordingOutbox):
    """`emit` for window-unit tests: the real outbox; `events` and `keys` read back what is on disk."""

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return self.stored(kind)

    def keys(self) -> list[tuple[str, int]]:
        return [(e["key"], e["n"]) for e in self.events("key")]
