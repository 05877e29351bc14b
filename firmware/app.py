"""The window unit's main loop: settings, pins and the serial stream wired to a `Unit`."""

import time

import boards
import cardreader
import hw
import link
import settings
import version
from unit import Unit

LOOP_MS = 5


class App:
    """One window unit: scans keys, talks to the gateway, drives the LEDs, one step at a time."""

    def __init__(self, stream, uid, model, key_names, fw, now, seq=0, reasons=(), display=None, card_stream=None,
                 files=None):
        pins = boards.BOARDS[model]
        self.key_names = key_names
        self.keys = hw.keys([boards.pin_for(pins, key, reasons) for key in key_names])
        self.green = hw.led(pins["led_green"])
        self.red = hw.led(pins["led_red"])
        self.yellow = hw.led(pins["led_yellow"]) if "led_yellow" in pins else None
        self.display = display  # a display.Screen, or None
        self.card_stream = card_stream  # a card reader's UART, or None
        self.cards = cardreader.Rdm6300()
        self.stream = stream
        self.unit = Unit(uid, fw, model, key_names, now, seq, on_file=files.handle if files else None)
        self._confirmed = files is None

    def step(self, now):
        for index in self.keys.presses(now):
            self.unit.press(self.key_names[index], now)
        data = self.stream.read()
        if data:
            self.unit.receive(data, now)
        if self.card_stream is not None:
            for card in self.cards.feed(self.card_stream.read(), now):
                self.unit.card(card, now)
        out = self.unit.poll(now)
        if out:
            self.stream.write(out)
        if not self._confirmed and self.unit.session:
            self._confirmed = True
            import fwfiles

            fwfiles.confirm()  # this firmware reached the gateway: keep it
        if self.unit.may_reboot():
            hw.reset()
        green, red, yellow = self.unit.leds(now)
        self.green(green)
        self.red(red)
        if self.yellow is not None:
            self.yellow(yellow)
        if self.display is not None:
            self.display.show(*self.unit.screen(now))

    def run(self, stopped=lambda: False):
        while not stopped():
            self.step(link.ticks_ms())
            time.sleep(LOOP_MS / 1000)


def _seq0():
    """A random first seq, so that the HELLO after a reboot is not taken for a retransmission."""
    try:
        import random

        return random.getrandbits(8)
    except ImportError:
        return link.ticks_ms() & 0xFF


def _claim_console(first_key_pin):
    """On MicroPython the link shares USB CDC with the REPL: stop 0x03 in a frame raising
    KeyboardInterrupt. Holding the layout's first key at power-up skips this and the firmware,
    leaving the REPL to mpremote for maintenance. False when the firmware should not run."""
    try:
        import micropython
    except ImportError:
        return True
    if not hasattr(micropython, "kbd_intr"):  # CircuitPython: the link has its own usb_cdc.data
        return True
    if hw.contact(first_key_pin)():
        return False
    micropython.kbd_intr(-1)
    return True


def main():
    """Entry point on the board (main.py / code.py)."""
    import fwfiles

    model = settings.MODEL or boards.model_for(hw.board_name())
    if not model:
        raise RuntimeError("unknown board " + hw.board_name() + ": set MODEL in settings.py")
    reasons = settings.REASONS
    keys = boards.keys_for(settings.LAYOUT, settings.CLERK, settings.TICKET, reasons, settings.TRANSFER, settings.GREEN)
    pins = boards.BOARDS[model]
    boards.check_pins(pins, keys, reasons, settings.CARD_READER)
    if not _claim_console(boards.pin_for(pins, keys[0], reasons)):
        return
    screen = None
    if settings.DISPLAY:
        import display

        screen = display.Screen(hw.ssd1306(pins["i2c_sda"], pins["i2c_scl"]))
    cards = hw.uart_rx(pins["card_rx"]) if settings.CARD_READER else None
    app = App(
        hw.open_stream(), hw.unique_id(), model, keys, version.FW, link.ticks_ms(), _seq0(), reasons, screen, cards,
        fwfiles.Staging(),
    )
    app.run()
