"""Tests of the window-unit firmware."""

import sys
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"


def use_firmware_path() -> None:
    """Let firmware modules import each other by bare name, as they do on the board's filesystem.

    Appended, not prepended: the board's code.py must not shadow the standard library's `code`.
    """
    if str(FIRMWARE) not in sys.path:
        sys.path.append(str(FIRMWARE))
