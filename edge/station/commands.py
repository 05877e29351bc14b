"""The hall's functions as commands: what a window unit's keys do, for the county over MQTT and
for `yimen hall` on the Pi (through edge/control.py), with one schema and one handler each.

A supervisor can issue a ticket, call, recall, start, end, skip, put back or transfer a
citizen, pause or resume a window and sign a clerk out, as the window's keys would; each goes
through the station's owner thread like a press, and its events are in the outbox before the
reply. A press the station refuses comes back as the error `refused` with the station's reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edge.station.service import Outcome, Station
from mqtt.commands import Arg, Command, CommandError

PREFIX = "hall-"  # hall-call, hall-issue, ...: the station's other commands are about the gateway
WINDOW = Arg("int", required=True, min=1, max=999)
CATEGORY = Arg("str", required=True, min=1, max=8)  # a category code is one letter
TICKET = Arg("str", required=True, min=1, max=16)  # a ticket number, e.g. A012
# Window keys a command may press: the clerk's keys; ratings and codes are the citizen's and
# the clerk's own, at the window, never remote.
KEYS = {"call": "next", "recall": "recall", "start": "start", "done": "done", "skip": "skip", "put-back": "put-back"}


def _answer(outcome: Outcome) -> dict[str, Any]:
    if not outcome.ok:
        raise CommandError("refused", outcome.detail)
    return {"ticket": outcome.ticket, "light": outcome.feedback.value, "detail": outcome.detail}


def _key(station: Station, key: str, source: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda args: _answer(station.key(args["window"], key, source=source))


def _action(station: Station, action: str, source: str, *names: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def run(args: dict[str, Any]) -> dict[str, Any]:
        given = {name: args[name] for name in names if name in args}
        return _answer(station.command(action, source=source, **given))

    return run


def hall_commands(station: Station, source: str) -> list[Command]:
    """Every hall command; `source` names the transport in the events (`county`, `cli`)."""
    commands = [
        Command(PREFIX + name, _key(station, key, source), {"window": WINDOW}, doc=f"press `{key}` at the window")
        for name, key in KEYS.items()
    ]
    commands += [
        Command(
            PREFIX + "issue",
            _action(station, "issue", source, "category", "green"),
            {"category": CATEGORY, "green": Arg("bool")},
            doc="take a ticket in a category (green: the green channel, called first)",
        ),
        Command(
            PREFIX + "transfer",
            _action(station, "transfer", source, "window", "category"),
            {"window": WINDOW, "category": CATEGORY},
            doc="send the citizen at the window to another category's queue",
        ),
        Command(
            PREFIX + "put-back-ticket",
            _action(station, "put-back", source, "ticket"),
            {"ticket": TICKET},
            doc="put a skipped ticket (by number, e.g. A012) back into its queue",
        ),
    ]
    commands += [
        Command(PREFIX + name, _action(station, name, source, "window"), {"window": WINDOW}, doc=f"{name} the window")
        for name in ("pause", "resume", "sign-out")
    ]
    return commands
