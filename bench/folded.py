"""Summarise a py-spy `--format raw` (folded stacks) file: where the samples went.

    python bench/folded.py PROFILE.txt [--thread Uplink._run] [--top 25]

Prints, for the samples whose stack contains `--thread` (default: all), the share of samples
in which each function appears (inclusive) and is on top of the stack (self). Lines are
collapsed to functions (file:line is dropped) so a function counts once per sample.
"""

from __future__ import annotations

import argparse
import re
import signal
from collections import Counter

_FRAME = re.compile(r"^(.*) \(([^()]*?)(?::\d+)?\)$")


def frames(stack: str) -> list[str]:
    out = []
    for frame in stack.split(";"):
        m = _FRAME.match(frame.strip())
        out.append(f"{m.group(1)} ({m.group(2)})" if m else frame.strip())
    return out


def main() -> None:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet when piped into head
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--thread", default="", help="keep stacks containing this text (e.g. Uplink._run)")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    roots: Counter[str] = Counter()
    total = 0
    with open(args.path) as fh:
        for line in fh:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or args.thread not in stack:
                continue
            n = int(count)
            fs = frames(stack)
            total += n
            for f in set(fs):
                inclusive[f] += n
            own[fs[-1]] += n
            roots[next((f for f in fs if "_run" in f or "loop" in f or "main" in f), fs[0])] += n
    print(f"{total} samples" + (f" in stacks containing {args.thread!r}" if args.thread else ""))
    print("\nby thread entry:")
    for f, n in roots.most_common(8):
        print(f"  {n / total:6.1%}  {f}")
    print("\ninclusive:")
    for f, n in inclusive.most_common(args.top):
        print(f"  {n / total:6.1%}  {f}")
    print("\nself:")
    for f, n in own.most_common(args.top):
        print(f"  {n / total:6.1%}  {f}")


if __name__ == "__main__":
    main()
