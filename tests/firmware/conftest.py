"""Firmware modules import each other by bare name, as they do on the board's filesystem.

Appended, not prepended: the board's code.py must not shadow the standard library's `code`.
"""

import sys
from pathlib import Path

FIRMWARE = str(Path(__file__).resolve().parents[2] / "firmware")
if FIRMWARE not in sys.path:
    sys.path.append(FIRMWARE)
