"""Appends events as fast as it can and prints each seq only after `append` returned.

Usage: python -m tests.support.appender STORAGE_DIR
What it printed is what a driver would have acknowledged to a window unit: after kill -9,
every printed seq must still be in the outbox.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from edge.clock import ClockSource
from edge.config import ClockConfig
from edge.events import NewEvent, Priority
from edge.outbox import Outbox


def main() -> None:
    box = Outbox(
        Path(sys.argv[1]) / "outbox.db", "st-0001", clock=ClockSource(ClockConfig(sync="assume")), max_bytes=64 << 20
    )
    lock = threading.Lock()

    def producer(name: str) -> None:
        n = 0
        while True:
            event = box.append(NewEvent("key", Priority.CRITICAL, {"producer": name, "n": n}))
            with lock:
                sys.stdout.write(f"{event.seq}\n")
                sys.stdout.flush()
            n += 1

    threads = [threading.Thread(target=producer, args=(f"p{i}",), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
