"""What the window unit does, with no hardware: presses and received bytes in, bytes and LEDs out.

The main loop (app.py) reads pins and the serial port and calls into a `Unit`; everything that
decides (sessions, which frame to send next, the press queue, LED feedback) is here, so it runs
the same on the board, under MicroPython unix in CI, and in CPython tests.
"""

import link
from link import WIRE_PERIOD, ticks_diff
from pressqueue import PressQueue

THANKS_MS = 1500  # local "thank you" after a rating, whether or not the gateway is there
FLASH_MS = 1500  # how long a SET "flash" (e.g. the gateway refused a key) shows
HELLO_PAUSE_MS = 1000  # after a HELLO went unanswered, wait this long before the next one

# LED state -> (period ms, green on ms, red on ms) within each period.
PATTERNS = {
    "off": (1000, 0, 0),
    "idle": (2000, 100, 0),  # a heartbeat: the unit is alive
    "ready": (1000, 1000, 0),  # steady green: please rate
    "thanks": (250, 125, 0),  # quick green blink
    "error": (1000, 0, 1000),  # steady red: gateway away or unit refused
}
OVER_BLINK_MS = 500  # a time limit overrun: the red LED blinks, on this long per second
SHOW_FIELDS = ("name", "no", "ticket")  # what a SET "show" may put on the display


class Unit:
    """One window unit's session with the gateway.

    Without a session the unit sends HELLO (each with its retransmissions, then a pause) until
    one is acknowledged. In a session it answers PINGs with PONGs and sends queued presses one at
    a time. A frame that goes unacknowledged through all its retransmissions means the gateway
    has gone or forgotten us: the session ends and HELLO starts over, presses kept.
    """

    def __init__(self, uid, fw, model, keys, now, seq=0, queue_size=32, on_file=None):
        self.keys = keys
        # HELLO, then KEYS frames with the keys that did not fit in it, acknowledged one by one.
        # `files`: this unit takes firmware updates over the link (FILE frames, fwfiles.py).
        self.announce = link.announce(uid, fw, model, keys, {"files": 1} if on_file is not None else None)
        self._announced = 0  # announce payloads acknowledged this session
        self._on_file = on_file
        self.reboot_wanted = False  # a firmware update was committed
        self.queue = PressQueue(queue_size)
        self.link = link.Link(seq)
        self.decoder = link.Decoder()
        self.session = False
        self.away = False  # a HELLO went unanswered: show the error LED
        self.led = "idle"  # as the gateway last set it
        self.limit = "ok"  # the window's time-limit light, as the gateway last set it
        self.shown = {}  # clerk name and number, ticket: what the gateway last asked to show
        self.entry = ""  # digits typed on a keypad unit, sent as one `code` press on `enter`
        self.misdirected = 0  # well-formed frames of a type only a unit sends
        self._boot = now
        self._hello_from = now
        self._hello_wait = 0
        self._thanks_from = None
        self._flash = None  # (LED state, since) while a SET "flash" shows
        self._pong_due = False
        self._out = []

    def press(self, key, now):
        """A debounced press of `key`: queue it, and thank a citizen who rated. Digits build a
        code on the unit itself, sent as one `code` press on `enter` (`clear` starts again)."""
        if key in link.DIGITS:
            if len(self.entry) < link.MAX_CODE_LEN:
                self.entry += key
            return
        if key in link.ENTRY_KEYS:
            code, self.entry = self.entry, ""
            if key == "enter" and code:
                self.queue.add("code", self.uptime(now), code)
            return
        self.queue.add(key, self.uptime(now))
        if key in link.RATING_KEYS:
            self._thanks_from = now

    def card(self, number, now):
        """A clerk's card read by the unit's reader: sent as a `card` press."""
        if link.is_code(number):
            self.queue.add("card", self.uptime(now), number)

    def receive(self, data, now):
        """Bytes from the gateway."""
        for ftype, seq, payload in self.decoder.feed(data):
            if ftype == link.ACK:
                self._acked(seq)
            elif ftype in (link.SET, link.PING) or (ftype == link.FILE and self._on_file is not None):
                self._out.append(link.ack(seq))
                if not self.link.is_dup(seq):
                    self.link.accept(seq)
                    self._act(ftype, payload, now)
            else:
                self.misdirected += 1

    def poll(self, now):
        """Bytes to write now: acknowledgements, retransmissions, the next frame."""
        due = self.link.due(now)
        if due == link.RESEND:
            self._out.append(self.link.resend(now))
        elif due == link.GIVE_UP:
            self._lost(now)
        if not self.link.busy():
            self._send_next(now)
        out = b"".join(self._out)
        self._out = []
        return out

    def uptime(self, now):
        """Milliseconds since boot, wrapped as on the wire."""
        return ticks_diff(now, self._boot) % WIRE_PERIOD

    def led_state(self, now):
        if self._flash is not None and ticks_diff(now, self._flash[1]) < FLASH_MS:
            return self._flash[0]
        if self._thanks_from is not None and ticks_diff(now, self._thanks_from) < THANKS_MS:
            return "thanks"
        if self.away:
            return "error"
        return self.led

    def leds(self, now):
        """(green, red, yellow): whether each LED is lit at `now`. Yellow is the time-limit
        warning; an overrun blinks the red LED (an error keeps it steady)."""
        period, green, red = PATTERNS[self.led_state(now)]
        since = ticks_diff(now, self._boot)
        lit_red = since % period < red
        if self.limit == "over":
            lit_red = lit_red or since % 1000 < OVER_BLINK_MS
        return since % period < green, lit_red, self.limit == "warn"

    def screen(self, now):
        """What the display shows: (clerk line, ticket line, prompt), the prompt a key of
        display.PROMPTS or the code being typed as stars."""
        state = self.led_state(now)
        if self.entry:
            prompt = "*" * len(self.entry)
        elif state in ("ready", "thanks", "error", "off"):
            prompt = state
        else:
            prompt = ""
        name = self.shown.get("name", "")
        number = self.shown.get("no", "")
        return (name + " " + number).strip(), self.shown.get("ticket", ""), prompt

    def _acked(self, seq):
        kind = self.link.in_flight()
        if not self.link.acked(seq):
            return
        if kind == link.HELLO:
            self.session = True
            self.away = False
            self.led = "idle"
            self._announced = 1
        elif kind == link.KEYS:
            self._announced += 1
        elif kind == link.KEY:
            self.queue.acked()

    def may_reboot(self):
        """A committed update may restart the unit: no press is waiting for its ACK."""
        return self.reboot_wanted and len(self.queue) == 0 and not self.link.busy()

    def _act(self, ftype, payload, now):
        if ftype == link.FILE:
            if self._on_file(payload):
                self.reboot_wanted = True
        elif ftype == link.PING:
            self._pong_due = True
            return
        used = False
        if payload.get("led") in PATTERNS:
            self.led = payload["led"]
            used = True
        if payload.get("flash") in PATTERNS:
            self._flash = (payload["flash"], now)
            used = True
        if payload.get("lim") in link.LIMITS:
            self.limit = payload["lim"]
            used = True
        show = payload.get("show")
        if isinstance(show, dict):
            self.shown = {}
            for name in SHOW_FIELDS:
                value = show.get(name)
                if isinstance(value, str) and len(value) <= 16:
                    self.shown[name] = value
            used = True
        if not used:
            self.decoder.errors["json"] += 1

    def _lost(self, now):
        self.queue.failed()
        self.session = False
        self.away = True
        self._pong_due = False
        self._hello_from = now
        self._hello_wait = HELLO_PAUSE_MS

    def _send_next(self, now):
        if not self.session:
            if ticks_diff(now, self._hello_from) >= self._hello_wait:
                self._out.append(self.link.send(link.HELLO, self.announce[0], now))
            return
        if self._announced < len(self.announce):
            self._out.append(self.link.send(link.KEYS, self.announce[self._announced], now))
            return
        if self._pong_due:
            self._pong_due = False
            pong = {"up_ms": self.uptime(now), "n": self.queue.count, "dropped": self.queue.dropped}
            self._out.append(self.link.send(link.PONG, link.dumps(pong), now))
            return
        press = self.queue.send()
        if press is not None:
            n, key, ms, value = press
            fields = {"key": key, "n": n, "ms": ms}
            if value is not None:
                fields[key] = value  # "code" or "card"
            payload = link.dumps(fields)
            self._out.append(self.link.send(link.KEY, payload, now))
