"""`config-set`, `bind-unit` and `restart`: a new config from the county, applied by a restart, undone if it fails.

The new text becomes the station's own file (`<storage>/local.toml`, laid over the installer's
read-only file: edge/configlayers.py); it is checked with the same parser the gateway starts
with, merged as it will be, and must keep the station's identity and storage. The old station
file is kept beside it (`local.toml.previous`) and a small state file (`local.toml.pending.json`)
says a change is on trial. At every start with a change on trial:

- the config does not load, or this is the third start in a row with it: roll back now;
- the gateway reaches the broker: the change is confirmed, the state file removed;
- `confirm_s` passes without reaching the broker: roll back and restart.

Each outcome is reported to the county as a `config` event. Where they all are comes from the
installer's file alone, which no command changes: a bad station file cannot hide them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge import config as config_mod
from edge.configfile import ConfigError
from edge.configlayers import LOCAL_NAME, atomic_write, local_for
from edge.configlayers import read as read_layers
from edge.events import NewEvent, Priority
from mqtt.commands import Arg, Command, CommandError
from peripherals.window_unit import binding

log = logging.getLogger("yimen.config")

MAX_TRIAL_STARTS = 3
DEFAULT_CONFIRM_S = 60.0


def _pending_path(config: Path) -> Path:
    return config.with_name(config.name + ".pending.json")


def _previous_path(config: Path) -> Path:
    return config.with_name(config.name + ".previous")


def _outcome_path(config: Path) -> Path:
    """What became of the last change, until the gateway has reported it."""
    return config.with_name(config.name + ".outcome.json")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def rollback(config: Path, reason: str) -> None:
    """Put the previous station file back and note why; the caller starts (or restarts) with it."""
    previous = _previous_path(config)
    log.error("config change rolled back: %s", reason)
    atomic_write(config, previous.read_bytes())
    atomic_write(_outcome_path(config), json.dumps({"result": "rolled-back", "reason": reason}).encode())
    _pending_path(config).unlink(missing_ok=True)
    previous.unlink(missing_ok=True)


def check_at_start(base: Path) -> None:
    """Before the config is loaded: count this start against a change on trial; roll back a bad one."""
    config = local_for(base)
    pending = None if config is None else _read_json(_pending_path(config))
    if config is None or pending is None:
        return
    pending["starts"] = pending.get("starts", 0) + 1
    atomic_write(_pending_path(config), json.dumps(pending).encode())
    if pending["starts"] > MAX_TRIAL_STARTS:
        rollback(config, f"the gateway did not come back after {MAX_TRIAL_STARTS} starts with the new config")
        return
    try:
        config_mod.load(base)
    except ConfigError as exc:
        rollback(config, f"the new config does not load: {exc}")


class ConfigChanges:
    """The commands, and the watch that confirms or undoes a change on trial."""

    def __init__(self, config: config_mod.Config, emit: Callable[[NewEvent], Any], restart: Callable[[], None]) -> None:
        self.config = config
        self._emit = emit
        self._restart = restart
        self._started = time.monotonic()
        # The station's own file, which these commands write; its state files sit beside it.
        self.local = config.storage.path / LOCAL_NAME

    def commands(self) -> list[Command]:
        return [
            Command(
                "config-set",
                self._set,
                args={"toml": Arg("str", required=True), "confirm_s": Arg("number", min=5, max=3600)},
                doc="replace the config file; applied by a restart, rolled back if the gateway does not come back",
                after=self._restart,
            ),
            Command(
                "bind-unit",
                self._bind_unit,
                args={
                    "uid": Arg("str", required=True),
                    "window": Arg("int", required=True, min=1, max=999),
                    "confirm_s": Arg("number", min=5, max=3600),
                },
                doc='bind a window unit (by uid) to a window, unit = "auto"; applied and rolled back as config-set',
                after=self._restart,
            ),
            Command("restart", lambda _a: {"restarting": True}, doc="restart the gateway", after=self._restart),
        ]

    def _set(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._apply(args["toml"], args.get("confirm_s"))

    def _bind_unit(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            text, replaced = binding.bind(config_mod.effective_text(self.config), args["uid"], args["window"])
        except binding.BindError as exc:
            raise CommandError("bad-request", f"{exc}; nothing changed") from None
        log.info("bind-unit: unit %s to window %d", args["uid"], args["window"])
        return {**self._apply(text, args.get("confirm_s")), "replaced": replaced}

    def _apply(self, text: str, confirm_s: float | None) -> dict[str, Any]:
        """Check a new config as the gateway would load it, keep the old one, write it; the
        command's `after` restarts the gateway, and the trial decides whether it stays."""
        local = self.local
        if _pending_path(local).exists():
            raise CommandError("bad-request", "a config change is still on trial; wait for its `config` event")
        try:
            new = config_mod.parse(read_layers(self.config.source, local_text=text).doc, str(self.config.source))
        except ConfigError as exc:
            raise CommandError("bad-request", f"config refused, nothing changed: {exc}") from None
        old = self.config
        for what, before, after in [
            ("[station] id", old.station.id, new.station.id),
            ("[station] county", old.station.county, new.station.county),
            ("[storage] path", old.storage.path, new.storage.path),
        ]:
            if before != after:
                raise CommandError("bad-request", f"{what} cannot be changed remotely ({before} -> {after})")
        confirm_s = float(DEFAULT_CONFIRM_S if confirm_s is None else confirm_s)
        # No station file yet: the previous one is an empty one, which lays nothing over the installer's.
        atomic_write(_previous_path(local), local.read_bytes() if local.exists() else b"")
        atomic_write(_pending_path(local), json.dumps({"confirm_s": confirm_s, "starts": 0}).encode())
        atomic_write(local, text.encode())
        log.info("new config written to %s; restarting to apply it", local)
        return {"restarting": True, "confirm_s": confirm_s}

    def report_outcome(self) -> None:
        """At start: tell the county what became of the last change, once."""
        outcome = _read_json(_outcome_path(self.local))
        if outcome is not None:
            self._emit(NewEvent("config", Priority.NORMAL, outcome))
            _outcome_path(self.local).unlink(missing_ok=True)

    def watch(self, connected: bool) -> None:
        """Called periodically: confirm a change on trial once connected, undo it past its deadline."""
        source = self.local
        pending = _read_json(_pending_path(source))
        if pending is None or not pending.get("starts"):
            return  # no change on trial, or this process wrote it and has yet to restart onto it
        if connected:
            _pending_path(source).unlink(missing_ok=True)
            _previous_path(source).unlink(missing_ok=True)
            log.info("config change confirmed: the gateway is back and connected")
            self._emit(NewEvent("config", Priority.NORMAL, {"result": "applied"}))
        elif time.monotonic() - self._started > pending.get("confirm_s", DEFAULT_CONFIRM_S):
            rollback(source, f"not connected to the broker within {pending['confirm_s']:g} s of the restart")
            self._restart()
