"""The window unit's hardware seam, kept thin: key and LED pins, the serial stream, the unit id.

Pins go through the CircuitPython API (`board`, `digitalio`, and `keypad` where present), which
CircuitPython boards and, through Blinka, a Raspberry Pi provide; on MicroPython, where they are
absent, the same few calls go to `machine.Pin`. Tests fake `board` and `digitalio` here.
"""

import sys

from debounce import Debouncer

try:
    import board
    import digitalio
except ImportError:  # MicroPython
    board = None
    digitalio = None

keypad = None
if sys.implementation.name == "circuitpython":
    # CircuitPython scans and debounces keys in the background. Blinka's emulation of keypad is
    # left alone: it polls on a thread of its own, and its deinit() can hang a shutdown.
    import keypad


def board_name():
    """The board's own name, for boards.model_for()."""
    if board is not None and hasattr(board, "board_id"):
        return board.board_id
    return getattr(sys.implementation, "_machine", "")


def unique_id():
    """The chip's unique id as hex: the uid a gateway binds to a window."""
    import binascii

    try:
        import microcontroller

        raw = microcontroller.cpu.uid
    except ImportError:
        import machine

        raw = machine.unique_id()
    return binascii.hexlify(raw).decode()


def contact(name):
    """A function that is True while the key on pin `name` is pressed (contact closed to GND)."""
    return _pin(name, False)


def _pin(name, output):
    if digitalio is None:
        from machine import Pin

        number = int(name.lstrip("GPD"))
        if output:
            pin = Pin(number, Pin.OUT)
            return pin.value
        pin = Pin(number, Pin.IN, Pin.PULL_UP)
        return lambda: not pin.value()
    pin = digitalio.DigitalInOut(getattr(board, name))
    if output:
        pin.direction = digitalio.Direction.OUTPUT

        def drive(on):
            pin.value = bool(on)

        return drive
    pin.direction = digitalio.Direction.INPUT
    pin.pull = digitalio.Pull.UP
    return lambda: not pin.value  # closed contact pulls the pin low


def led(name):
    """A function that lights (True) or darkens (False) the LED on pin `name`."""
    return _pin(name, True)


class PolledKeys:
    """Keys read with digitalio on every loop and debounced in software."""

    def __init__(self, pin_names):
        self._closed = [contact(name) for name in pin_names]
        self._debouncers = [Debouncer() for _ in pin_names]

    def presses(self, now):
        """Indexes of the keys whose press began since the last call."""
        return [i for i, closed in enumerate(self._closed) if self._debouncers[i].update(closed(), now)]


class KeypadKeys:
    """Keys scanned and debounced by CircuitPython's keypad module."""

    def __init__(self, pin_names):
        pins = tuple(getattr(board, name) for name in pin_names)
        self._keys = keypad.Keys(pins, value_when_pressed=False, pull=True)

    def presses(self, now):
        found = []
        event = self._keys.events.get()
        while event is not None:
            if event.pressed:
                found.append(event.key_number)
            event = self._keys.events.get()
        return found


def keys(pin_names):
    return KeypadKeys(pin_names) if keypad is not None else PolledKeys(pin_names)


class StdioStream:
    """MicroPython's USB CDC port, shared with the REPL (hence kbd_intr(-1) in app.run)."""

    def __init__(self):
        import select

        self._poll = select.poll()
        self._poll.register(sys.stdin, select.POLLIN)
        self._in = sys.stdin.buffer
        self._out = sys.stdout.buffer

    def read(self):
        data = b""
        while len(data) < 64 and self._poll.poll(0):
            data += self._in.read(1)
        return data

    def write(self, data):
        self._out.write(data)


class CdcStream:
    """CircuitPython's second USB CDC interface, `usb_cdc.data` (enabled in boot.py)."""

    def __init__(self, port):
        port.timeout = 0
        self._port = port

    def read(self):
        waiting = self._port.in_waiting
        return self._port.read(waiting) if waiting else b""

    def write(self, data):
        self._port.write(data)


class FdStream:
    """A tty's file descriptor, for the firmware running under CPython (a Pi through Blinka, tests)."""

    def __init__(self, fd):
        import os

        os.set_blocking(fd, False)
        self._fd = fd
        self._os = os

    def read(self):
        try:
            return self._os.read(self._fd, 256)
        except OSError:  # nothing waiting, or the far end of a pty is closed: both mean no bytes
            return b""

    def write(self, data):
        view = memoryview(data)
        while view:
            try:
                view = view[self._os.write(self._fd, view) :]
            except BlockingIOError:
                self._os.sched_yield()
            except OSError:  # nobody listening: the gateway retransmits what matters
                return


def reset():
    """Restart the board (a committed firmware update); under CPython or the unix port, exit and
    let whatever runs the firmware start it again."""
    try:
        import machine

        machine.reset()
    except (ImportError, AttributeError):
        pass
    try:
        import microcontroller

        microcontroller.reset()
    except (ImportError, AttributeError):
        pass
    raise SystemExit(0)


def ssd1306(sda, scl):
    """The SSD1306 display on I2C (MicroPython's machine.I2C; pins named as in boards.py)."""
    import ssd1306 as driver
    from machine import I2C, Pin

    return driver.SSD1306(I2C(0, sda=Pin(int(sda.lstrip("GP"))), scl=Pin(int(scl.lstrip("GP"))), freq=400000))


class UartStream:
    """A UART's received bytes without waiting: MicroPython's machine.UART or CircuitPython's busio.UART."""

    def __init__(self, uart):
        self._uart = uart

    def read(self):
        return self._uart.read() or b""


def uart_rx(name, baudrate=9600):
    """Receive-only UART on pin `name` (boards.py's card_rx), e.g. for a card reader."""
    if board is not None:
        import busio

        return UartStream(busio.UART(None, getattr(board, name), baudrate=baudrate, timeout=0))
    from machine import UART, Pin

    # The rp2 port gives UART1 its default TX pin (GP4) too; made before the keys (app.main), the
    # key on GP4 then takes that pin back as an input, and nothing is ever transmitted anyway.
    return UartStream(UART(1, baudrate=baudrate, rx=Pin(int(name.lstrip("GPD"))), timeout=0))


def open_stream():
    """The serial stream to the gateway on this board."""
    try:
        import usb_cdc

        return CdcStream(usb_cdc.data)
    except ImportError:
        return StdioStream()
