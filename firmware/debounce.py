"""Key debouncing for the window unit, apart from any pin so it runs and is tested anywhere."""

try:
    from link import ticks_diff  # on the board, where the firmware's modules sit side by side
except ImportError:
    from firmware.link import ticks_diff  # in the gateway, debouncing GPIO buttons

STABLE_MS = 20  # a contact must read the same this long before it counts; buttons bounce ~5 ms


class Debouncer:
    """One key: a press counts once its contact has read closed for `stable_ms` without a bounce.

    Time-based rather than sample-counting, so the result does not depend on how fast the main
    loop happens to run while it is also busy with the serial link.
    """

    def __init__(self, stable_ms=STABLE_MS):
        self.stable_ms = stable_ms
        self.pressed = False  # the debounced state
        self._raw = False
        self._since = 0

    def update(self, raw, now):
        """Feed one reading (True: closed) taken at `now` ms; True exactly when a press begins."""
        if raw != self._raw:
            self._raw = raw
            self._since = now
            return False
        if raw != self.pressed and ticks_diff(now, self._since) >= self.stable_ms:
            self.pressed = raw
            return raw
        return False
