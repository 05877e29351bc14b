"""Press-to-event latency through the serial window-unit driver over a pseudo-terminal.

From the moment the firmware's debouncer reports a press (Unit.press, inside the firmware's own
main loop) to the moment the gateway's `emit` is called with the key event: the firmware's loop
and queue, the link framing, the pty, the driver's reader thread and decoding. The debounce time
itself (20 ms, by design) and the outbox commit are not included; the commit is measured by the
spine's own bench.

    python bench/window_unit_latency.py [--presses 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.events import Clock, Event, NewEvent
from peripherals.window_unit import WindowConfig, WindowsConfig, WindowUnitOptions
from peripherals.window_unit.driver import WindowUnits
from tests.peripherals.window_unit.rig import Unit, raw_pty, wait_until


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=300)
    args = parser.parse_args()

    pressed_at: dict[int, float] = {}
    latencies: list[float] = []
    arrived = threading.Event()

    def emit(new: NewEvent) -> Event:
        if new.kind == "key":
            latencies.append(time.perf_counter() - pressed_at[new.data["n"]])
            arrived.set()
        return Event("bench", len(latencies), new.kind, "", Clock.UNSYNCED, new.priority, new.data)

    master, slave = raw_pty()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "unit")
        os.symlink(os.ttyname(slave), path)
        unit = Unit(master, "bench0001")
        firmware = unit.app.unit
        original_press = firmware.press

        def timed_press(key: str, now: int) -> None:
            pressed_at[firmware.queue.count + 1] = time.perf_counter()
            original_press(key, now)

        firmware.press = timed_press
        gateway = WindowUnits(WindowsConfig((WindowConfig(1, path),), WindowUnitOptions()), emit)
        gateway.start()
        wait_until(lambda: gateway.status()["units"][0]["state"] == "online", "the unit to come online")
        for _ in range(args.presses):
            arrived.clear()
            unit.press("good")
            arrived.wait(5)
        resends = gateway.status()["units"][0]["resends"] + firmware.link.resends
        gateway.stop()
        unit.shutdown()
    os.close(master)
    os.close(slave)

    ms = sorted(x * 1000 for x in latencies)
    p50 = statistics.median(ms)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(
        f"presses {len(ms)}/{args.presses}  p50 {p50:.2f} ms  p99 {p99:.2f} ms  max {ms[-1]:.2f} ms"
        f"  retransmissions {resends}"
    )


if __name__ == "__main__":
    main()
