"""Remote commands: how one is declared, checked against its schema, and answered.

A command is a name, a schema for its JSON arguments and a handler that lives with the part
that owns the state it touches (the outbox answers `replay`, the uplink `rebirth`). This
module is pure: no MQTT, no threads, so every malformed input can be tested directly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

MAX_REQUEST_BYTES = 64 * 1024

_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "number": (int, float),
    "str": (str,),
    "bool": (bool,),
    "object": (dict,),
    "list": (list,),
}


class CommandError(Exception):
    """A command that cannot be carried out; `code` is machine-readable, the message is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Arg:
    """One argument of a command's schema; for a string, `min` and `max` bound its length."""

    type: str
    required: bool = False
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] = ()

    def check(self, name: str, value: Any) -> None:
        kinds = _TYPES[self.type]
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise CommandError("bad-request", f"argument {name!r} must be of type {self.type}, got {value!r}")
        if isinstance(value, str):  # a string's bounds are on its length
            low, high = self.min or 0, self.max if self.max is not None else len(value)
            if not low <= len(value) <= high:
                size = len(value)
                raise CommandError("bad-request", f"argument {name!r} must be {low}..{high} characters, got {size}")
        elif self.min is not None and value < self.min:
            raise CommandError("bad-request", f"argument {name!r} is {value}, below the minimum {self.min}")
        elif self.max is not None and value > self.max:
            raise CommandError("bad-request", f"argument {name!r} is {value}, above the maximum {self.max}")
        if self.choices and value not in self.choices:
            raise CommandError("bad-request", f"argument {name!r} must be one of {list(self.choices)}")


# Arguments any command may carry: when the request stops being worth carrying out, and,
# for MQTT 3.1.1 (no correlation data property), the id to echo in the reply.
COMMON_ARGS = {"expires_at": Arg("number", min=0), "correlation": Arg("str")}

Handler = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Command:
    name: str
    handler: Handler
    args: dict[str, Arg] = field(default_factory=dict)
    doc: str = ""
    # Run once the reply is on its way (e.g. `restart`, which would otherwise cut it off).
    after: Callable[[], None] | None = None


def parse_request(command: Command | None, name: str, payload: bytes, now: float | None = None) -> dict[str, Any]:
    """Decode and check a request's payload; raises CommandError saying exactly what is wrong."""
    if len(payload) > MAX_REQUEST_BYTES:
        raise CommandError("too-large", f"request is {len(payload)} bytes; the limit is {MAX_REQUEST_BYTES}")
    try:
        args = json.loads(payload) if payload.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommandError("bad-request", f"payload is not UTF-8 JSON: {exc}") from None
    if not isinstance(args, dict):
        raise CommandError("bad-request", "payload must be a JSON object")
    if command is None:
        raise CommandError("unknown-command", f"no command {name!r} here")
    schema = {**COMMON_ARGS, **command.args}
    unknown = sorted(set(args) - set(schema))
    if unknown:
        raise CommandError("bad-request", f"unknown argument {unknown[0]!r}; {name} takes {sorted(command.args)}")
    for arg_name, arg in schema.items():
        if arg_name in args:
            arg.check(arg_name, args[arg_name])
        elif arg.required:
            raise CommandError("bad-request", f"argument {arg_name!r} is required")
    expires = args.get("expires_at")
    if expires is not None and (now if now is not None else time.time()) > expires:
        when = datetime.fromtimestamp(expires).astimezone().isoformat(timespec="seconds")
        raise CommandError("expired", f"request expired at {when}; not carried out")
    return args


RUN_ONCE_MAX = 256  # command ids remembered; the oldest expiring go first
RUN_ONCE_KEEP_S = 7 * 86400.0  # how long an id without expires_at is remembered


class RunOnce:
    """The replies to commands already carried out, by command id, until each request expires.

    QoS 1 may deliver a command twice (a PUBACK lost, a session resumed), and a console re-sends
    until answered: a request whose id was seen is answered with the first reply and not run
    again. Kept as JSON that the caller stores (the outbox's meta), so a restart remembers."""

    def __init__(self, saved: str | None, now: float | None = None) -> None:
        self._replies: dict[str, tuple[float, str]] = {}
        try:
            doc = json.loads(saved) if saved else {}
        except json.JSONDecodeError:
            doc = {}
        if isinstance(doc, dict):
            for key, value in doc.items():
                well_formed = isinstance(value, list) and len(value) == 2
                if well_formed and isinstance(value[0], int | float) and isinstance(value[1], str):
                    self._replies[str(key)] = (float(value[0]), value[1])
        self._forget_expired(time.time() if now is None else now)

    def reply_to(self, command_id: str) -> bytes | None:
        found = self._replies.get(command_id)
        return None if found is None else found[1].encode()

    def ran(self, command_id: str, expires_at: float | None, reply: bytes, now: float | None = None) -> str:
        """Remember a command carried out; returns the JSON to store."""
        now = time.time() if now is None else now
        self._replies[command_id] = (expires_at if expires_at is not None else now + RUN_ONCE_KEEP_S, reply.decode())
        self._forget_expired(now)
        while len(self._replies) > RUN_ONCE_MAX:
            del self._replies[min(self._replies, key=lambda k: self._replies[k][0])]
        return json.dumps({k: list(v) for k, v in self._replies.items()}, ensure_ascii=False)

    def _forget_expired(self, now: float) -> None:
        # An expired request is refused before its id is looked at: its reply is needed no longer.
        for key in [k for k, (until, _r) in self._replies.items() if until < now]:
            del self._replies[key]


def response(
    result: dict[str, Any] | None = None, error: CommandError | None = None, correlation: str | None = None
) -> bytes:
    """The reply payload: {"ok", "result"} or {"ok", "error": {"code", "message"}}, plus the
    3.1.1 `correlation` when the request carried one."""
    doc: dict[str, Any] = {"ok": error is None}
    if correlation is not None:
        doc["correlation"] = correlation
    if error is None:
        doc["result"] = result or {}
    else:
        doc["error"] = {"code": error.code, "message": error.message}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
