"""The window-unit link protocol: COBS framing, CRC-16, frame types, acknowledgement and seq.

This one module is the contract between the window unit and the gateway. It runs unchanged on
the unit (MicroPython or CircuitPython) and in the gateway driver (CPython), so it holds no I/O
and only the MicroPython subset of Python: no typing at runtime, no dataclasses, no f-strings
with `=`. Bytes go in, frames come out; the caller owns the port and the clock (see PROTOCOL.md).
"""

import json

# Uptimes and press counts on the wire wrap at 2**29, the shortest tick period of the boards
# (CircuitPython's supervisor.ticks_ms), so the unit never needs a big integer; the gateway widens
# them. Every native period (2**29, MicroPython's 2**30, the unix port's 2**62) is a multiple.
WIRE_PERIOD = 1 << 29
WIRE_HALF = WIRE_PERIOD >> 1

try:
    from time import ticks_diff, ticks_ms  # MicroPython
except ImportError:
    try:
        from supervisor import ticks_ms  # CircuitPython
    except ImportError:  # CPython
        import time

        def ticks_ms():
            return int(time.monotonic() * 1000) & (WIRE_PERIOD - 1)

    def ticks_diff(a, b):
        return ((a - b + WIRE_HALF) & (WIRE_PERIOD - 1)) - WIRE_HALF


PROTO = 2  # major version this firmware speaks
PROTOS = (1, 2)  # what a gateway accepts: a version 1 unit keeps working, without the version 2 extras

HELLO = 0x01
KEY = 0x02
ACK = 0x03
SET = 0x04
PING = 0x05
PONG = 0x06
FILE = 0x07  # gateway -> unit: a firmware file transfer step (fwfiles.py)
KEYS = 0x08  # version 2: the rest of a HELLO's key list, for units with more keys than one frame holds
NAMES = {HELLO: "HELLO", KEY: "KEY", ACK: "ACK", SET: "SET", PING: "PING", PONG: "PONG", FILE: "FILE", KEYS: "KEYS"}

LEDS = ("idle", "ready", "thanks", "error", "off")
LIMITS = ("ok", "warn", "over")  # version 2: the window's time-limit light (SET "lim")
RATING_KEYS = ("good", "bad", "r1", "r2", "r3", "r4", "r5")
CLERK_KEYS = ("next", "recall", "skip", "start", "done", "pause", "resume", "put-back")
# Keys that take an argument after a colon: a category code (ticket:A, green:A, transfer:B).
ARG_KEYS = ("ticket", "green", "transfer")
# A keypad unit's digits, collected on the unit and sent as one `code` KEY when `enter` is pressed.
DIGITS = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9")
ENTRY_KEYS = ("enter", "clear")
MAX_KEYS = 64  # keys a unit may announce; the gateway refuses a longer list
MAX_KEY_LEN = 32
MAX_CODE_LEN = 16  # a sign-in code or card number in a KEY frame

MAX_PAYLOAD = 240
# type + seq + payload + CRC, then COBS adds one byte per 254 and the first code byte.
MAX_BODY = 2 + MAX_PAYLOAD + 2
MAX_ENCODED = MAX_BODY + MAX_BODY // 254 + 1

RETRY_MS = 250  # an unacknowledged frame is sent again this often
RETRIES = 8  # ... this many times, then the peer is taken to be gone

# What Link.due() tells the sender to do.
IDLE = 0
RESEND = 1
GIVE_UP = 2

# The reasons a received frame is dropped; Decoder.errors counts each.
ERRORS = ("cobs", "short", "crc", "type", "json", "size")


class FrameError(ValueError):
    """A frame that must be dropped; args[0] is one of ERRORS."""


_NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-"
_ARG_CHARS = _NAME_CHARS + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _chars_in(text, allowed):
    return all(ch in allowed for ch in text)


def is_key(name):
    """True for a well-formed key name: `[a-z0-9-]+`, optionally `:` and an argument of letters,
    digits and `-`, at most MAX_KEY_LEN in all. Whether the station knows it is the station's
    question (reason keys are configured there); this only keeps junk off the wire."""
    if not isinstance(name, str) or not 0 < len(name) <= MAX_KEY_LEN:
        return False
    head, sep, arg = name.partition(":")
    if not head or not _chars_in(head, _NAME_CHARS):
        return False
    return not sep or (len(arg) > 0 and _chars_in(arg, _ARG_CHARS))


def is_builtin(name):
    """True for the keys every station knows (reason keys are the station's own, configured)."""
    if name in RATING_KEYS or name in CLERK_KEYS or name in DIGITS or name in ENTRY_KEYS or name in ("ticket", "green"):
        return True
    head, sep, _ = name.partition(":")
    return bool(sep) and head in ARG_KEYS and is_key(name)


def is_code(text):
    """A sign-in code or card number as a KEY frame carries it: 1..MAX_CODE_LEN digits."""
    return isinstance(text, str) and 0 < len(text) <= MAX_CODE_LEN and _chars_in(text, DIGITS)


def announce(uid, fw, model, keys, extra=None):
    """The payloads a version 2 unit says HELLO with: the HELLO (`nkeys`, and as many keys as fit),
    then KEYS payloads (`at`: index of the first key in it) for the rest, each under MAX_PAYLOAD.
    `extra`: more HELLO fields (`files`: the unit takes firmware updates)."""
    hello = {"proto": PROTO, "uid": uid, "fw": fw, "model": model, "nkeys": len(keys), "keys": []}
    if extra:
        hello.update(extra)
    payloads = []
    current = hello
    at = 0
    while True:
        while at < len(keys):
            current["keys"].append(keys[at])
            if len(json.dumps(current, separators=(",", ":"))) > MAX_PAYLOAD:
                current["keys"].pop()
                break
            at += 1
        payloads.append(dumps(current))
        if at >= len(keys):
            return payloads
        if not current["keys"]:
            raise FrameError("size")  # one key name longer than a frame: cannot happen with MAX_KEY_LEN
        current = {"at": at, "keys": []}


def crc16(data, crc=0xFFFF):
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ (0x1021 if crc & 0x8000 else 0)) & 0xFFFF
    return crc


def cobs_encode(data):
    """Consistent overhead byte stuffing: the result holds no 0x00, so 0x00 can end a frame."""
    out = bytearray(b"\x00")
    code_at = 0  # where the current block's code byte goes; -1: data ended on a full block
    code = 1
    last = len(data) - 1
    for i, byte in enumerate(data):
        if byte:
            out.append(byte)
            code += 1
        if not byte or code == 0xFF:
            out[code_at] = code
            code = 1
            code_at = -1
            if not byte or i < last:
                code_at = len(out)
                out.append(0)
    if code_at >= 0:
        out[code_at] = code
    return bytes(out)


def cobs_decode(data):
    """Undo cobs_encode; raises FrameError("cobs") for a zero byte or a code past the end."""
    out = bytearray()
    i = 0
    end = len(data)
    while i < end:
        code = data[i]
        if code == 0 or i + code > end:
            raise FrameError("cobs")
        out += data[i + 1 : i + code]
        i += code
        if code < 0xFF and i < end:
            out.append(0)
    return bytes(out)


def dumps(obj):
    """Compact JSON bytes for a payload; raises FrameError("size") if it would not fit a frame."""
    data = json.dumps(obj, separators=(",", ":")).encode()
    if len(data) > MAX_PAYLOAD:
        raise FrameError("size")
    return data


def encode_frame(ftype, seq, payload=b""):
    """One frame on the wire: COBS(type | seq | payload | CRC big-endian) then 0x00."""
    if len(payload) > MAX_PAYLOAD:
        raise FrameError("size")
    body = bytearray((ftype, seq & 0xFF))
    body += payload
    crc = crc16(body)
    body.append(crc >> 8)
    body.append(crc & 0xFF)
    return cobs_encode(body) + b"\x00"


def parse_frame(body):
    """A COBS-decoded frame as (type, seq, payload dict); raises FrameError naming the fault."""
    if len(body) < 4:
        raise FrameError("short")
    if crc16(body[:-2]) != (body[-2] << 8 | body[-1]):
        raise FrameError("crc")
    ftype = body[0]
    if ftype not in NAMES:
        raise FrameError("type")
    payload = body[2:-2]
    if not payload:
        return ftype, body[1], {}
    try:
        obj = json.loads(payload.decode())
    except ValueError:  # bad JSON, and on both Pythons UnicodeError is a ValueError
        raise FrameError("json") from None
    if not isinstance(obj, dict):
        raise FrameError("json")
    return ftype, body[1], obj


class Decoder:
    """Turns a byte stream into frames, counting and dropping the bad ones.

    The buffer never holds more than one maximal encoded frame: a longer run without 0x00 is
    dropped whole (counted as "size") and decoding starts again after the next 0x00, so line
    noise can neither crash the receiver nor make it allocate without bound.
    """

    def __init__(self, limit=MAX_ENCODED):
        self.limit = limit
        self.errors = {}
        for name in ERRORS:
            self.errors[name] = 0
        self.frames = 0
        self._buf = bytearray()
        self._skipping = False

    def dropped(self):
        total = 0
        for name in ERRORS:
            total += self.errors[name]
        return total

    def buffered(self):
        return len(self._buf)

    def feed(self, data):
        """Take received bytes; returns the list of good frames they completed."""
        data = bytes(data)
        frames = []
        start = 0
        while True:
            end = data.find(b"\x00", start)
            if end < 0:
                self._take(data[start:])
                return frames
            self._take(data[start:end])
            frame = self._finish()
            if frame is not None:
                frames.append(frame)
            start = end + 1

    def _take(self, part):
        if self._skipping or not part:
            return
        if len(self._buf) + len(part) > self.limit:
            self._buf = bytearray()
            self._skipping = True
            self.errors["size"] += 1
            return
        self._buf += part

    def _finish(self):
        raw = self._buf
        self._buf = bytearray()
        if self._skipping:
            self._skipping = False
            return None
        if not raw:  # 0x00 runs are idle fill, e.g. the flush a gateway sends on opening a port
            return None
        try:
            frame = parse_frame(cobs_decode(raw))
        except FrameError as exc:
            self.errors[exc.args[0]] += 1
            return None
        self.frames += 1
        return frame


class Link:
    """One end's seq bookkeeping: stop-and-wait sending with retransmission, and duplicate checks.

    At most one frame (other than ACK) is in flight; the next is sent once it is acknowledged or
    given up. With one frame in flight an 8-bit seq is enough to tell a retransmission from a
    new frame: the receiver acts on a seq once and acknowledges every copy. `now` is ticks_ms().
    """

    def __init__(self, seq=0):
        self.seq = seq & 0xFF  # seq of the frame sent last
        self.rx_seq = -1  # seq of the frame received and acted on last; -1: none this session
        self.resends = 0
        self.give_ups = 0
        self._frame = None
        self._type = 0
        self._sent_at = 0
        self._tries = 0

    def busy(self):
        return self._frame is not None

    def in_flight(self):
        """Type of the frame awaiting its ACK, or 0."""
        return self._type if self._frame is not None else 0

    def send(self, ftype, payload, now):
        """Encode the next frame and keep it for retransmission; returns the bytes to write."""
        self.seq = (self.seq + 1) & 0xFF
        self._frame = encode_frame(ftype, self.seq, payload)
        self._type = ftype
        self._sent_at = now
        self._tries = 0
        return self._frame

    def acked(self, seq):
        """An ACK arrived; True if it was for the frame in flight, which is then done."""
        if self._frame is None or seq != self.seq:
            return False
        self.forget()
        return True

    def forget(self):
        """Stop retransmitting the frame in flight, e.g. once its peer has gone."""
        self._frame = None
        self._type = 0

    def due(self, now):
        """IDLE, RESEND (then write resend()) or GIVE_UP (RETRIES resends went unanswered)."""
        if self._frame is None or ticks_diff(now, self._sent_at) < RETRY_MS:
            return IDLE
        if self._tries >= RETRIES:
            self.give_ups += 1
            self.forget()
            return GIVE_UP
        return RESEND

    def resend(self, now):
        self._tries += 1
        self.resends += 1
        self._sent_at = now
        return self._frame

    def is_dup(self, seq):
        """True if this seq was acted on already: acknowledge it again, do nothing else."""
        return seq == self.rx_seq

    def accept(self, seq):
        """Record that the frame with this seq has been acted on."""
        self.rx_seq = seq

    def reset(self):
        """A new session: forget what was received and what was in flight."""
        self.rx_seq = -1
        self.forget()


def ack(seq):
    """The ACK frame for a received frame's seq."""
    return encode_frame(ACK, seq)
