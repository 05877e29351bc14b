"""A fake `board` for the firmware under the MicroPython unix port (tests only): pins are names."""

board_id = "raspberry_pi_pico"


def __getattr__(name):
    return name
