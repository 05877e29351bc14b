"""From evdev key events to what a window's keys mean: a keypad's keymap, a card reader's digits."""

from __future__ import annotations

from evdev import InputEvent, ecodes

# A numeric USB keypad, as sold for cash registers: + and - rate, 1..5 rate on the national
# scale, and the clerk's keys on Enter, ., 0 and *.
DEFAULT_KEYMAP = {
    "KEY_KPPLUS": "good",
    "KEY_KPMINUS": "bad",
    "KEY_KP1": "r1",
    "KEY_KP2": "r2",
    "KEY_KP3": "r3",
    "KEY_KP4": "r4",
    "KEY_KP5": "r5",
    "KEY_KPENTER": "next",
    "KEY_KPDOT": "recall",
    "KEY_KP0": "skip",
    "KEY_KPASTERISK": "pause",
}

DIGITS = {getattr(ecodes, f"KEY_{d}"): str(d) for d in range(10)} | {
    getattr(ecodes, f"KEY_KP{d}"): str(d) for d in range(10)
}
ENTER = {ecodes.KEY_ENTER, ecodes.KEY_KPENTER}
CARD_MAX = 32  # digits; a longer run is noise (someone leaning on a key), not a card


def key_down(event: InputEvent) -> bool:
    """A key going down; releases (0) and autorepeats (2) are not presses."""
    return event.type == ecodes.EV_KEY and event.value == 1


class Keypad:
    """A keypad's key codes mapped to window keys."""

    def __init__(self, keymap: dict[str, str]) -> None:
        unknown = [name for name in keymap if not isinstance(ecodes.ecodes.get(name), int)]
        if unknown:
            raise ValueError(f"keymap: {', '.join(unknown)} is not an evdev key name (e.g. KEY_KP1)")
        self._keys = {ecodes.ecodes[name]: key for name, key in keymap.items()}

    def key(self, event: InputEvent) -> str | None:
        """The window key this event presses, or None."""
        return self._keys.get(event.code) if key_down(event) else None


class CardReader:
    """Collects the digits a card reader types; Enter ends a card number."""

    def __init__(self) -> None:
        self._digits: list[str] = []
        self.rejected = 0

    def feed(self, event: InputEvent) -> str | None:
        """The card number this event completes, or None."""
        if not key_down(event):
            return None
        if event.code in ENTER:
            card, self._digits = "".join(self._digits), []
            return card or None
        digit = DIGITS.get(event.code)
        if digit is None or len(self._digits) >= CARD_MAX:
            self.rejected += 1
            self._digits = []
            return None
        self._digits.append(digit)
        return None
