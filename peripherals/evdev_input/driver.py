"""Reads grabbed evdev devices, one named thread each (`evdev:<path>`), and reports presses.

A device that goes away (unplugged) is reported offline and opened again when it returns.
"""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Callable
from typing import Any, Protocol

import evdev

from edge.events import Emit
from peripherals.evdev_input.mapping import DEFAULT_KEYMAP, CardReader, Keypad
from peripherals.keyevents import KeyReporter, OnKey, record_keys, unit_event
from peripherals.window_unit import WindowsConfig

RETRY_S = 1.0  # how often a missing device is looked for
READ_TIMEOUT_S = 0.2  # how soon a reader notices stop()


class Device(Protocol):
    fd: int

    def grab(self) -> None: ...

    def read(self) -> Any: ...

    def close(self) -> None: ...


OpenDevice = Callable[[str], Device]


class InputSource:
    """One grabbed input device of one window: a keypad or a card reader."""

    def __init__(self, owner: EvdevInputs, window: int, path: str, keypad: Keypad | None) -> None:
        self.owner = owner
        self.window = window
        self.path = path
        self.keypad = keypad
        self.card_reader = None if keypad else CardReader()
        self.state = "absent"
        self.log = logging.getLogger(f"yimen.evdev.{path.rsplit('/', 1)[-1]}")
        self.reporter = KeyReporter(owner.on_key, window, path, self.log)
        self._thread = threading.Thread(target=self._run, name=f"evdev:{path}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        return {
            "device": self.path,
            "window": self.window,
            "role": "keypad" if self.keypad else "card_reader",
            "state": self.state,
            "presses": self.reporter.n,
            "pending": self.reporter.pending,
            "dropped": self.reporter.dropped,
        }

    def handle(self, event: evdev.InputEvent) -> None:
        """One event from the device: a key press, a card number, or nothing."""
        if self.keypad is not None:
            key = self.keypad.key(event)
            if key is not None:
                self.reporter.press(key)
        elif self.card_reader is not None:
            card = self.card_reader.feed(event)
            if card is not None:
                self.reporter.press("signin", card=card)

    def _run(self) -> None:
        stopping = self.owner.stopping
        while not stopping.is_set():
            try:
                device = self.owner.open_device(self.path)
            except OSError as exc:
                self.log.debug("%s: %s", self.path, exc)
                stopping.wait(RETRY_S)
                continue
            try:
                device.grab()  # its keystrokes go to us alone, not to a console or a login prompt
                self._report("online")
                self.state = "online"
                self._read(device)
            except OSError as exc:
                self.log.warning("%s: %s", self.path, exc)
                if self.state == "online":
                    self.state = "offline"
                    self._report("offline", reason="device gone")
            finally:
                device.close()
            stopping.wait(RETRY_S)

    def _read(self, device: Device) -> None:
        while not self.owner.stopping.is_set():
            ready, _, _ = select.select([device.fd], [], [], READ_TIMEOUT_S)
            if ready:
                for event in device.read():
                    self.handle(event)
            self.reporter.flush()

    def _report(self, state: str, **extra: Any) -> None:
        try:
            self.owner.emit(unit_event(state, self.window, self.path, self.path, **extra))
        except Exception:
            self.log.exception("could not record that %s is %s", self.path, state)


class EvdevInputs:
    """Every window's keypad and card reader."""

    def __init__(
        self,
        config: WindowsConfig,
        emit: Emit,
        *,
        on_key: OnKey | None = None,
        open_device: OpenDevice = evdev.InputDevice,
    ) -> None:
        self.config = config
        self.emit = emit
        self.on_key = on_key or record_keys(emit)
        self.open_device = open_device
        self.stopping = threading.Event()
        self.failure: str | None = None
        self.log = logging.getLogger("yimen.evdev")
        self.sources: list[InputSource] = []

    def start(self) -> None:
        """Start a reader per device; a bad keymap fails this driver alone, naming the window."""
        try:
            for window in self.config.with_input_devices:
                if window.keypad:
                    keypad = Keypad(dict(window.keymap) or DEFAULT_KEYMAP)
                    self.sources.append(InputSource(self, window.number, window.keypad, keypad))
                if window.card_reader:
                    self.sources.append(InputSource(self, window.number, window.card_reader, None))
        except ValueError as exc:
            self.failure = f"window {window.number}: {exc}"
            self.log.error("%s", self.failure)
            self.sources.clear()
            return
        for source in self.sources:
            source.start()

    def stop(self) -> None:
        self.stopping.set()
        for source in self.sources:
            source.join(5)

    def status(self) -> dict[str, Any]:
        return {"failure": self.failure, "devices": [s.status() for s in self.sources]}
