"""The gateway's side of an update's trial, and the report of how each update ended.

After the root updater switched versions it writes `trial.json` naming the new version. The
new gateway proves itself by writing `health.json` once all of these hold: its birth went out
(connected to the broker), a first PUBACK came back for one of its events, and every window unit
it is configured for answers. Until then it writes what it has so far, so that a rollback can
say which check failed. The updater, not this code, decides: a version that cannot even run
this cannot talk its way out of a rollback.

Whatever the updater decided is in `outcome.json`; the version running then reports it as an
`update` event (through the outbox, so the county gets it after any outage) and removes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge import __version__
from edge.events import NewEvent, Priority
from ota.paths import Updates, read_json, write_json

log = logging.getLogger("yimen.ota.trial")


class Trial:
    def __init__(
        self,
        storage: Path,
        emit: Callable[[NewEvent], object],
        checks: dict[str, Callable[[], bool]],
        version: str = __version__,
    ) -> None:
        self.updates = Updates.of(storage)
        self._emit = emit
        self._checks = checks
        self._version = version
        self._passed: dict[str, bool] = {}
        self._reported_start = False

    def tick(self) -> None:
        """Every second, on its own thread: report an outcome, answer a trial."""
        outcome = read_json(self.updates.outcome)
        if outcome is not None:
            self._emit(NewEvent("update", Priority.NORMAL, {**outcome, "running": self._version}))
            self.updates.outcome.unlink(missing_ok=True)
        trial = read_json(self.updates.trial)
        if trial is None or trial.get("version") != self._version:
            return
        if not self._reported_start:
            self._reported_start = True
            self._emit(NewEvent("update", Priority.NORMAL, {"state": "installed", **_public(trial)}))
        health = read_json(self.updates.health) or {}
        if health.get("healthy") and health.get("version") == self._version:
            return
        for name, check in self._checks.items():
            if not self._passed.get(name):
                self._passed[name] = bool(check())
        healthy = all(self._passed.values())
        doc: dict[str, Any] = {"version": self._version, "release": trial.get("release"), "healthy": healthy,
                               "checks": self._passed}  # fmt: skip
        if doc != health:
            write_json(self.updates.health, doc)
            if healthy:
                log.info("update trial of %s: every check passed", self._version)


def _public(trial: dict[str, Any]) -> dict[str, Any]:
    return {k: trial[k] for k in ("release", "version", "from") if k in trial}
