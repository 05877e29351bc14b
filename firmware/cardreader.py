"""A clerk's card read at the window unit: the frames of an RDM6300-class 125 kHz reader.

The reader sends, at 9600 baud, while a card is held to it: STX (0x02), ten ASCII hex digits
(a version byte and the card's 4-byte id), two ASCII hex digits of checksum (the xor of those 5
bytes), ETX (0x03). The number printed on such cards is the 4-byte id in decimal, ten digits;
that is what the unit sends (a `card` press) and what the station's roster holds. A card held
for a while is read again and again: the same card within HOLD_MS counts once. Bytes that do not
make a frame (noise, a half frame at power-up) are dropped, each run of them counted in `errors`.
"""

from link import ticks_diff

FRAME = 14
HOLD_MS = 2000


class Rdm6300:
    def __init__(self):
        self._buf = bytearray()
        self.errors = 0
        self._last = None
        self._last_at = 0

    def feed(self, data, now):
        """Bytes from the reader's UART; the card numbers they complete (new reads only)."""
        cards = []
        self._buf += data
        while True:
            start = self._buf.find(b"\x02")
            if start < 0:
                self.errors += 1 if self._buf else 0
                self._buf = bytearray()
                return cards
            if start:
                self.errors += 1
                self._buf = self._buf[start:]
            if len(self._buf) < FRAME:
                return cards
            frame, self._buf = bytes(self._buf[:FRAME]), self._buf[FRAME:]
            number = self._number(frame)
            if number is None:
                self.errors += 1
                self._buf = bytearray(frame[1:]) + self._buf  # a new STX may start inside it
            elif number != self._last or ticks_diff(now, self._last_at) >= HOLD_MS:
                cards.append(number)
                self._last = number
                self._last_at = now
            else:
                self._last_at = now  # still held: the hold starts again

    def _number(self, frame):
        if frame[13] != 0x03:
            return None
        try:
            raw = bytes.fromhex(frame[1:13].decode())
        except (ValueError, UnicodeError):
            return None
        check = 0
        for byte in raw[:5]:
            check ^= byte
        if check != raw[5]:
            return None
        value = raw[1] << 24 | raw[2] << 16 | raw[3] << 8 | raw[4]
        text = str(value)
        return "0" * (10 - len(text)) + text


def frame_for(card):
    """The frame a reader sends for a card number (tests, and checking a reader by hand)."""
    value = int(card)
    raw = bytes((0x0A, value >> 24 & 0xFF, value >> 16 & 0xFF, value >> 8 & 0xFF, value & 0xFF))
    check = 0
    for byte in raw:
        check ^= byte
    digits = "".join(f"{b:02X}" for b in raw + bytes((check,)))
    return b"\x02" + digits.encode() + b"\x03"
