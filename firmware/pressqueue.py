"""The window unit's bounded queue of presses that the gateway has not acknowledged yet."""

from link import WIRE_PERIOD

QUEUE_SIZE = 32  # a busy morning's worth of presses while the gateway reboots


class PressQueue:
    """Presses, oldest first, each kept until the gateway acknowledges it.

    When full the oldest press is dropped and counted (the count goes to the gateway in PONG),
    except the one whose frame is in flight: that one may already be on the gateway's disk.
    """

    def __init__(self, size=QUEUE_SIZE):
        if size < 2:
            raise ValueError("a press queue needs room for the press in flight and one more")
        self.size = size
        self.count = 0  # presses since boot, wrapping like every counter on the wire
        self.dropped = 0
        self._items = []  # (n, key, ms, value): value is a code or card number, or None
        self._sending = False

    def __len__(self):
        return len(self._items)

    def add(self, key, ms, value=None):
        """Record a press made `ms` after boot (`value`: the code typed, the card read); returns
        its number n."""
        self.count = (self.count + 1) % WIRE_PERIOD
        if len(self._items) >= self.size:
            self._items.pop(1 if self._sending else 0)
            self.dropped += 1
        self._items.append((self.count, key, ms, value))
        return self.count

    def send(self):
        """The oldest press, now in flight; None if the queue is empty."""
        if not self._items:
            return None
        self._sending = True
        return self._items[0]

    def acked(self):
        """The press in flight was acknowledged: it is the gateway's now."""
        if self._sending:
            self._items.pop(0)
            self._sending = False

    def failed(self):
        """The press in flight was not acknowledged; it stays first in line."""
        self._sending = False

    def pending(self):
        return list(self._items)
