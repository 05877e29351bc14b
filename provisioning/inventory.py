"""What is plugged into this station: reported when it enrols, at every boot and on hotplug.

Device nodes are looked up by their stable names where udev makes them (`/dev/serial/by-id`,
`/dev/input/by-id`), so the county sees "usb-FTDI_FT232R_A10K5B2C-if00-port0", not a ttyUSB
number that changes with plugging order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from peripherals.camera import CameraConfig

_KINDS = {
    "serial_ports": ("serial/by-id/*", "ttyUSB*", "ttyACM*"),
    "input_devices": ("input/by-id/*",),
    "printers": ("usb/lp*",),
    "video_devices": ("video*",),
}


def scan(dev: Path = Path("/dev"), cameras: tuple[CameraConfig, ...] = ()) -> dict[str, Any]:
    """Device nodes by kind (stable names first), and the cameras the config uses."""
    found: dict[str, Any] = {}
    for kind, patterns in _KINDS.items():
        names: list[str] = []
        for pattern in patterns:
            names += sorted(str(p.relative_to(dev)) for p in dev.glob(pattern))
        found[kind] = names
    found["cameras"] = [{"window": c.window, "backend": c.backend, "camera": c.camera} for c in cameras]
    return found
