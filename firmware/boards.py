"""Pin maps per board model and the unit layouts: which key and LED is wired to which pin.

Pin names are the board's own (`board.GP2` on a Pico under CircuitPython, `board.D17` for a
Raspberry Pi under Blinka); keys are wired between the pin and GND (internal pull-up), LEDs
from the pin through a resistor to GND. A layout uses the keys it needs and ignores the rest.

Three layouts are built here (README.md has their wiring): the citizen's 2-key rating pad
(`"2"`), the 5-key pad of the national scale with up to four reason keys (`"5"` with `REASONS`),
and the clerk's keypad (`"keypad"`: digits, enter, clear, with the clerk's keys). A keypad has no
rating keys, so its digits reuse the rating and reason pins.
"""

_PICO = {
    "good": "GP2",
    "bad": "GP3",
    "r5": "GP2",
    "r4": "GP3",
    "r3": "GP4",
    "r2": "GP5",
    "r1": "GP6",
    "reasons": ["GP7", "GP8", "GP9", "GP15"],
    "next": "GP10",
    "recall": "GP11",
    "skip": "GP12",
    "pause": "GP13",
    "start": "GP26",
    "done": "GP27",
    "put-back": "GP28",
    "resume": "GP22",
    "ticket": "GP14",
    "green": "GP19",
    "transfer": "GP1",
    # The keypad layout: digits 0..9, then enter and clear, on the rating and reason pins.
    "digits": ["GP2", "GP3", "GP4", "GP5", "GP6", "GP7", "GP8", "GP9", "GP15", "GP0"],
    "enter": "GP14",  # the ticket and green pins: a keypad has no ticket keys
    "clear": "GP19",
    "led_green": "GP16",
    "led_red": "GP17",
    "led_yellow": "GP18",
    "i2c_sda": "GP20",  # the SSD1306 display, I2C0
    "i2c_scl": "GP21",
    "card_rx": "GP9",  # a card reader's TX (UART1 RX): the 3rd reason key's pin, keypad digit 7
}

BOARDS = {
    "raspberry_pi_pico": _PICO,
    "raspberry_pi_pico_w": _PICO,
    "raspberry_pi_pico2": _PICO,
    # A Raspberry Pi running this firmware through Blinka (BCM numbering): the 2- and 5-key pads.
    "raspberry_pi": {
        "good": "D5",
        "bad": "D6",
        "r5": "D5",
        "r4": "D6",
        "r3": "D13",
        "r2": "D19",
        "r1": "D26",
        "reasons": ["D12", "D16", "D25", "D7"],
        "next": "D17",
        "recall": "D27",
        "skip": "D22",
        "pause": "D23",
        "ticket": "D24",
        "led_green": "D20",
        "led_red": "D21",
        "led_yellow": "D18",
    },
}

# Rating layouts: 2 buttons, or the national scale's five (r5 very satisfied .. r1 very dissatisfied).
LAYOUTS = {
    "2": ["good", "bad"],
    "5": ["r5", "r4", "r3", "r2", "r1"],
    "keypad": ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "enter", "clear"],
}
CLERK_KEYS = ["next", "recall", "skip", "pause", "start", "done", "put-back", "resume"]
MAX_REASONS = 4


def keys_for(layout, clerk, ticket, reasons=(), transfer="", green=""):
    """The key names a unit reports, in HELLO order. `ticket`: "", "ticket" or "ticket:<cat>";
    `reasons`: reason key names (layout "5" only); `transfer`: "" or "transfer:<cat>"; `green`:
    "" or "green:<cat>" (the green-channel ticket key)."""
    if layout not in LAYOUTS:
        raise ValueError("LAYOUT " + repr(layout) + " is not one of " + ", ".join(LAYOUTS))
    if reasons and layout != "5":
        raise ValueError("reason keys need the 5-key layout (their pins are the keypad's digits)")
    if len(reasons) > MAX_REASONS:
        raise ValueError("at most " + str(MAX_REASONS) + " reason keys")
    keys = list(LAYOUTS[layout]) + list(reasons)
    if clerk:
        keys += CLERK_KEYS
    if layout == "keypad" and (ticket or green):
        raise ValueError("a keypad's enter and clear keys use the ticket and green pins: no ticket keys on it")
    for extra in (ticket, transfer, green):
        if extra:
            keys.append(extra)
    return keys


def check_pins(pins, keys, reasons=(), card_reader=False):
    """Raise ValueError naming two keys (or a key and the card reader) wired to one pin."""
    owners = {}
    named = [(key, pin_for(pins, key, reasons)) for key in keys]
    if card_reader:
        if "card_rx" not in pins:
            raise ValueError("this board has no card reader pin (card_rx in boards.py)")
        named.append(("the card reader", pins["card_rx"]))
    for key, pin in named:
        if pin in owners:
            raise ValueError(key + " and " + owners[pin] + " are both on " + pin + ": see boards.py")
        owners[pin] = key


def pin_for(pins, key, reasons=()):
    """The pin name of a key: digits and reason keys by position, every `ticket:<cat>`,
    `green:<cat>`, `transfer:<cat>` on its kind's pin."""
    if len(key) == 1 and key in "0123456789":
        return pins["digits"][int(key)]
    if key in reasons:
        return pins["reasons"][list(reasons).index(key)]
    name = key.split(":")[0]
    if name not in pins:
        raise ValueError("key " + key + " has no pin on this board: see boards.py")
    return pins[name]


def model_for(name):
    """A BOARDS key for a board's own name: CircuitPython's or Blinka's board_id, or MicroPython's
    machine string ("Raspberry Pi Pico W with RP2040"); "" if no pin map fits it."""
    name = name.split(" with ")[0].strip().lower().replace(" ", "_")
    if name == "raspberry_pi_pico_2":
        name = "raspberry_pi_pico2"
    if name in BOARDS:
        return name
    if name.startswith("raspberry_pi_") and "pico" not in name:
        return "raspberry_pi"
    return ""
