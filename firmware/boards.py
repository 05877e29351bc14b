"""Pin map per board model: the one place that says which pin each key and LED is wired to.

Pin names are the board's own (`board.GP2` on a Pico under CircuitPython, `board.D17` for a
Raspberry Pi under Blinka); keys are wired between the pin and GND (internal pull-up), LEDs
from the pin through a resistor to GND. A layout uses the keys it needs and ignores the rest.
"""

_PICO = {
    "good": "GP2",
    "bad": "GP3",
    "r5": "GP2",
    "r4": "GP3",
    "r3": "GP4",
    "r2": "GP5",
    "r1": "GP6",
    "next": "GP10",
    "recall": "GP11",
    "skip": "GP12",
    "pause": "GP13",
    "ticket": "GP14",
    "led_green": "GP16",
    "led_red": "GP17",
}

BOARDS = {
    "raspberry_pi_pico": _PICO,
    "raspberry_pi_pico_w": _PICO,
    "raspberry_pi_pico2": _PICO,
    # A Raspberry Pi running this firmware through Blinka (BCM numbering).
    "raspberry_pi": {
        "good": "D5",
        "bad": "D6",
        "r5": "D5",
        "r4": "D6",
        "r3": "D13",
        "r2": "D19",
        "r1": "D26",
        "next": "D17",
        "recall": "D27",
        "skip": "D22",
        "pause": "D23",
        "ticket": "D24",
        "led_green": "D20",
        "led_red": "D21",
    },
}

# Rating layouts: 2 buttons, or the national scale's five (r5 very satisfied .. r1 very dissatisfied).
LAYOUTS = {
    "2": ["good", "bad"],
    "5": ["r5", "r4", "r3", "r2", "r1"],
}
CLERK_KEYS = ["next", "recall", "skip", "pause"]


def keys_for(layout, clerk, ticket):
    """The key names a unit reports, in HELLO order; `ticket` is "", "ticket" or "ticket:<cat>"."""
    keys = list(LAYOUTS[layout])
    if clerk:
        keys += CLERK_KEYS
    if ticket:
        keys.append(ticket)
    return keys


def pin_for(pins, key):
    """The pin name of a key; every `ticket:<category>` uses the board's ticket pin."""
    return pins["ticket" if key.startswith("ticket") else key]


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
