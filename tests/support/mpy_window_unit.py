"""A window unit for tests, run under the MicroPython unix port: the firmware's own `Unit` and
stdio stream (as on a board, where the link shares USB CDC with the REPL), on the pty that is
this process's stdin and stdout. Only the keys are faked: it presses `key` every `period_ms`
until the file `stop_file` exists, then keeps serving the link until it is killed.

Reports on stderr, one line each: `press <n>` when a press is queued, `ack <n>` when the gateway
acknowledged it, `drop <count>` when the full queue dropped one, `queue <len>` once a second.

    micropython mpy_window_unit.py FIRMWARE_DIR UID KEY PERIOD_MS STOP_FILE
"""

import os
import sys
import time

sys.path.append(sys.argv[1])

import hw
import link
import micropython
from unit import Unit

LOOP_MS = 5


def report(line):
    sys.stderr.write(line + "\n")


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def main():
    uid, key, period_ms, stop_file = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    micropython.kbd_intr(-1)  # as the firmware does: 0x03 in a frame is data, not Ctrl-C
    now = link.ticks_ms()
    unit = Unit(uid, "1.0.0-test", "unix", [key], now, now & 0xFF)
    queue = unit.queue
    plain_acked = queue.acked

    def acked():
        if queue._sending:
            report(f"ack {queue._items[0][0]}")
        plain_acked()

    queue.acked = acked
    stream = hw.StdioStream()
    pressing = True
    next_press = now
    next_report = now
    dropped = 0
    while True:
        now = link.ticks_ms()
        if pressing and link.ticks_diff(now, next_press) >= 0:
            unit.press(key, now)
            report(f"press {queue.count}")
            next_press = now + period_ms
        if queue.dropped != dropped:
            dropped = queue.dropped
            report(f"drop {dropped}")
        data = stream.read()
        if data:
            unit.receive(data, now)
        out = unit.poll(now)
        if out:
            stream.write(out)
        if link.ticks_diff(now, next_report) >= 0:
            pressing = pressing and not _exists(stop_file)
            report(f"queue {len(queue)} {'pressing' if pressing else 'stopped'}")
            next_report = now + 1000
        time.sleep_ms(LOOP_MS)


main()
