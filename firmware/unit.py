"""What the window unit does, with no hardware: presses and received bytes in, bytes and LEDs out.

The main loop (app.py) reads pins and the serial port and calls into a `Unit`; everything that
decides (sessions, which frame to send next, the press queue, LED feedback) is here, so it runs
the same on the board, under MicroPython unix in CI, and in CPython tests.
"""

import link
from link import WIRE_PERIOD, ticks_diff
from pressqueue import PressQueue

THANKS_MS = 1500  # local "thank you" after a rating, whether or not the gateway is there
HELLO_PAUSE_MS = 1000  # after a HELLO went unanswered, wait this long before the next one

# LED state -> (period ms, green on ms, red on ms) within each period.
PATTERNS = {
    "off": (1000, 0, 0),
    "idle": (2000, 100, 0),  # a heartbeat: the unit is alive
    "ready": (1000, 1000, 0),  # steady green: please rate
    "thanks": (250, 125, 0),  # quick green blink
    "error": (1000, 0, 1000),  # steady red: gateway away or unit refused
}


class Unit:
    """One window unit's session with the gateway.

    Without a session the unit sends HELLO (each with its retransmissions, then a pause) until
    one is acknowledged. In a session it answers PINGs with PONGs and sends queued presses one at
    a time. A frame that goes unacknowledged through all its retransmissions means the gateway
    has gone or forgotten us: the session ends and HELLO starts over, presses kept.
    """

    def __init__(self, uid, fw, model, keys, now, seq=0, queue_size=32, on_file=None):
        self.keys = keys
        hello = {"proto": link.PROTO, "uid": uid, "fw": fw, "model": model, "keys": keys}
        if on_file is not None:
            hello["files"] = 1  # takes firmware updates over the link (FILE frames)
        self.hello = link.dumps(hello)
        self._on_file = on_file
        self.reboot_wanted = False  # a firmware update was committed
        self.queue = PressQueue(queue_size)
        self.link = link.Link(seq)
        self.decoder = link.Decoder()
        self.session = False
        self.away = False  # a HELLO went unanswered: show the error LED
        self.led = "idle"  # as the gateway last set it
        self.misdirected = 0  # well-formed frames of a type only a unit sends
        self._boot = now
        self._hello_from = now
        self._hello_wait = 0
        self._thanks_from = None
        self._pong_due = False
        self._out = []

    def press(self, key, now):
        """A debounced press of `key`: queue it, and thank a citizen who rated."""
        self.queue.add(key, self.uptime(now))
        if key in link.RATING_KEYS:
            self._thanks_from = now

    def receive(self, data, now):
        """Bytes from the gateway."""
        for ftype, seq, payload in self.decoder.feed(data):
            if ftype == link.ACK:
                self._acked(seq)
            elif ftype in (link.SET, link.PING) or (ftype == link.FILE and self._on_file is not None):
                self._out.append(link.ack(seq))
                if not self.link.is_dup(seq):
                    self.link.accept(seq)
                    self._act(ftype, payload)
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
        if self._thanks_from is not None and ticks_diff(now, self._thanks_from) < THANKS_MS:
            return "thanks"
        if self.away:
            return "error"
        return self.led

    def leds(self, now):
        """(green, red): whether each LED is lit at `now`."""
        period, green, red = PATTERNS[self.led_state(now)]
        phase = ticks_diff(now, self._boot) % period
        return phase < green, phase < red

    def _acked(self, seq):
        kind = self.link.in_flight()
        if not self.link.acked(seq):
            return
        if kind == link.HELLO:
            self.session = True
            self.away = False
            self.led = "idle"
        elif kind == link.KEY:
            self.queue.acked()

    def may_reboot(self):
        """A committed update may restart the unit: no press is waiting for its ACK."""
        return self.reboot_wanted and len(self.queue) == 0 and not self.link.busy()

    def _act(self, ftype, payload):
        if ftype == link.FILE:
            if self._on_file(payload):
                self.reboot_wanted = True
        elif ftype == link.PING:
            self._pong_due = True
        elif payload.get("led") in PATTERNS:
            self.led = payload["led"]
        else:
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
                self._out.append(self.link.send(link.HELLO, self.hello, now))
            return
        if self._pong_due:
            self._pong_due = False
            pong = {"up_ms": self.uptime(now), "n": self.queue.count, "dropped": self.queue.dropped}
            self._out.append(self.link.send(link.PONG, link.dumps(pong), now))
            return
        press = self.queue.send()
        if press is not None:
            n, key, ms = press
            payload = link.dumps({"key": key, "n": n, "ms": ms})
            self._out.append(self.link.send(link.KEY, payload, now))
