"""What systemd does for a station, as one small process, for the over-the-air tests.

Usage: python -m tests.support.supervisor ROOT CONFIG STATE WORK LOG -- UPDATER-ARGS...

- yimen.service, Restart=always: runs ROOT/current/bin/yimen run --config CONFIG (the symlink
  read at each start, as ExecStart is), and starts it again 0.5 s after it exits;
  SIGHUP is `systemctl restart yimen`: SIGTERM, wait, start.
- yimen-update.path and yimen-update.service: when STATE/updates/ready.json exists, and once at
  start (boot), runs deploy/yimen-update with UPDATER-ARGS, one at a time, as the unit would;
  its `--restart-cmd` sends this supervisor SIGHUP.
SIGTERM stops the gateway cleanly and then the supervisor. Every start is logged to LOG.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def main() -> None:
    argv = sys.argv[1:]
    sep = argv.index("--")
    root, config, state, work, log_path = (Path(a) for a in argv[:sep])
    # `systemctl restart yimen`, as the updater asks for it: a SIGHUP to this supervisor.
    updater_args = [*argv[sep + 1 :], "--restart-cmd", f"kill -HUP {os.getpid()}"]
    log = open(log_path, "ab", buffering=0)  # noqa: SIM115 - open for the process's life
    stop = threading.Event()
    restart = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: restart.set())
    env = {**os.environ, "YIMEN_ROOT": str(root), "YIMEN_UPDATE_WORK": str(work)}
    env.pop("PYTHONPATH", None)  # each version runs from its own venv, never from the checkout

    def note(text: str) -> None:
        log.write(f"supervisor {time.strftime('%H:%M:%S')}: {text}\n".encode())

    updater: subprocess.Popen | None = None

    def run_updater() -> subprocess.Popen:
        note("starting yimen-update")
        return subprocess.Popen(["sh", str(DEPLOY / "yimen-update"), *updater_args], stdout=log, stderr=log, env=env)

    updater = run_updater()  # at boot
    gateway: subprocess.Popen | None = None
    next_start = 0.0
    while not stop.is_set():
        if updater is not None and updater.poll() is not None:
            note(f"yimen-update exited {updater.returncode}")
            updater = None
        if updater is None and (state / "updates" / "ready.json").exists():
            updater = run_updater()
        if restart.is_set() and gateway is not None:
            restart.clear()
            note("restart requested")
            gateway.terminate()
            gateway.wait(30)
            gateway, next_start = None, 0.0
        if gateway is not None and gateway.poll() is not None:
            note(f"gateway exited {gateway.returncode}; starting it again in 0.5 s")
            gateway, next_start = None, time.monotonic() + 0.5
        if gateway is None and time.monotonic() >= next_start:
            target = os.readlink(root / "current")
            note(f"starting the gateway from {target}")
            gateway = subprocess.Popen(
                [str(root / "current" / "bin" / "yimen"), "run", "--config", str(config)],
                stdout=log,
                stderr=log,
                env=env,
            )
        time.sleep(0.1)
    if gateway is not None:
        gateway.terminate()
        gateway.wait(30)
    if updater is not None:
        updater.wait(60)
    note("stopped")


if __name__ == "__main__":
    main()
