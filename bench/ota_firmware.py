"""Window-unit firmware update: bytes on the serial line, and time to a unit back on the new version.

The unit is the real firmware under the MicroPython unix port on a pty (as in
tests/peripherals/window_unit/test_firmware_update.py); the gateway's real driver sends the
firmware this checkout carries. Bytes are counted as encoded frames (link.py): every FILE frame
the gateway sends and the unit's ACK for each, on a line that loses nothing. Baseline in the same
run: the firmware files' own bytes, and for time, the unit's reboot alone (power-up to HELLO).

    .venv/bin/python bench/ota_firmware.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from _common import report

from firmware import link
from peripherals.window_unit import WindowConfig, WindowsConfig
from peripherals.window_unit.driver import WindowUnits
from peripherals.window_unit.fwupdate import Bundle, Updates
from tests.peripherals.window_unit.conftest import FAST
from tests.peripherals.window_unit.rig import Line, Recorder
from tests.peripherals.window_unit.test_firmware_update import MicroPythonUnit, firmware_dir, firmware_events


def wire_bytes(bundle: Bundle) -> tuple[int, int]:
    """(frames, bytes) of an update on a lossless line: FILE frames and their ACKs, encoded."""
    frames = total = 0
    for seq, step in enumerate(bundle.frames()):
        frame = link.encode_frame(link.FILE, seq & 0xFF, link.dumps(step))
        total += len(frame) + len(link.ack(seq & 0xFF))
        frames += 1
    return frames, total


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="yimen-bench-fw-"))
    bundle = Bundle.from_directory(firmware_dir(tmp / "new", "9.9.9"))
    frames, wire = wire_bytes(bundle)
    recorder = Recorder(tmp / "rec")
    line = Line(tmp, "unit")
    unit = MicroPythonUnit(firmware_dir(tmp / "flash", "1.0.9"), line.unit_fd)
    gw = WindowUnits(WindowsConfig((WindowConfig(number=1, unit=line.path),), FAST), recorder,
                     firmware=Updates(bundle))  # fmt: skip
    gw.start()
    try:
        deadline = time.monotonic() + 60
        while not gw.status()["units"] or gw.status()["units"][0]["state"] != "online":
            assert time.monotonic() < deadline, "the unit never came online"
            time.sleep(0.01)
        t0 = time.monotonic()
        while not firmware_events(recorder):
            assert time.monotonic() < deadline + 120, "no outcome"
            time.sleep(0.01)
        update_s = time.monotonic() - t0
        result = firmware_events(recorder)[0]["result"]
        # Baseline: a power cycle alone, power-up to the unit online again.
        t1 = time.monotonic()
        unit.power_cycle()
        time.sleep(0.3)
        while gw.status()["units"][0]["state"] != "online" or gw.status()["units"][0]["unit_up_ms"] > 5000:
            time.sleep(0.01)
        reboot_s = time.monotonic() - t1
    finally:
        gw.stop()
        unit.stop()
        line.close()
    doc = {"result": result, "firmware_bytes": bundle.size, "files": len(bundle.files), "frames": frames,
           "wire_bytes": wire, "wire_per_firmware_byte": round(wire / bundle.size, 3),
           "update_to_online_s": round(update_s, 2), "reboot_baseline_s": round(reboot_s, 2)}  # fmt: skip
    report("ota_firmware", doc, f"{result}: {bundle.size} bytes of firmware in {frames} frames, {wire} bytes on "
           f"the line ({doc['wire_per_firmware_byte']}x); {update_s:.1f} s from HELLO to back online on the new "
           f"version (a reboot alone: {reboot_s:.1f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
