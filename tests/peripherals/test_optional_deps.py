"""The gateway runs on a machine without evdev or Blinka (a laptop, CI on macOS): only the driver
that needs one imports it, and only when a window is configured for it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
for name in ("evdev", "board", "digitalio", "gpiod"):
    sys.modules[name] = None  # import fails, as where the package is not installed
from peripherals.evdev_input import evdev_inputs
from peripherals.gpio_buttons import gpio_buttons
from peripherals.window_unit import WindowConfig, WindowsConfig, window_units
config = WindowsConfig((WindowConfig(1, unit="/dev/ttyACM0"),))
window_units(config, print)
driver = gpio_buttons(config, print)
driver.start()  # no window has gpio buttons: nothing to open
driver.stop()
print("ok")
"""


def test_drivers_import_without_evdev_or_blinka() -> None:
    run = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "ok", run.stderr
