"""`yimen run` with one fault to inject: SIGUSR1 wedges the outbox commit thread.

Usage: python -m tests.support.wedgeable_gateway run --config FILE
After SIGUSR1 the outbox lock is held forever and an append is under way, so the commit
thread blocks inside a commit, as it would on an SD card that stopped answering. Everything
else is the real gateway; only SIGKILL stops it once wedged.
"""

from __future__ import annotations

import signal
import sys
import threading

from edge import app, cli
from edge.events import NewEvent, Priority

_start = app.Gateway.start


def _start_wedgeable(self: app.Gateway) -> None:
    def wedge(*_: object) -> None:
        self.outbox._lock.acquire()
        threading.Thread(
            target=self.outbox.append, args=(NewEvent("telemetry", Priority.BULK, {}),), daemon=True
        ).start()

    signal.signal(signal.SIGUSR1, wedge)
    _start(self)


if __name__ == "__main__":
    app.Gateway.start = _start_wedgeable  # type: ignore[method-assign]
    sys.exit(cli.main(sys.argv[1:]))
