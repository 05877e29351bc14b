"""Wait until the machine is quiet enough to benchmark: exit 0 once the CPU busy over a
`--window`-second window is below `--below` cores, or 1 after `--max-wait` seconds.

    .venv/bin/python bench/quiet.py && .venv/bin/python bench/drain.py

The machine has 2 cores; a test suite or another benchmark running beside a benchmark skews
its figures (each script reports how much CPU others used meanwhile, as `load`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def busy_jiffies() -> int:
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    return sum(f) - f[3] - f[4]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--below", type=float, default=0.25, help="busy cores (default 0.25)")
    ap.add_argument("--window", type=float, default=5.0)
    ap.add_argument("--max-wait", type=float, default=600.0)
    args = ap.parse_args()
    tick = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + args.max_wait
    while True:
        b0, t0 = busy_jiffies(), time.monotonic()
        time.sleep(args.window)
        cores = (busy_jiffies() - b0) / tick / (time.monotonic() - t0)
        if cores < args.below:
            print(f"quiet: {cores:.2f} cores busy over {args.window:.0f} s", file=sys.stderr)
            return 0
        if time.monotonic() > deadline:
            print(f"not quiet after {args.max_wait:.0f} s ({cores:.2f} cores busy)", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
