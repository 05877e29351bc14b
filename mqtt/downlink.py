"""The command downlink: requests in on `.../cmd/<name>`, replies out, one at a time.

paho delivers requests on its network thread; `on_message` only enqueues them, and the
"yimen-commands" thread checks each against its command's schema, runs the handler and
publishes the reply through the uplink's connection. MQTT 5 replies go to the request's
Response Topic with its Correlation Data; without one (MQTT 3.1.1), to `.../cmd-reply/<name>`
with the request's `correlation` argument echoed in the payload. A request already carried
out (the same Correlation Data or `correlation`, delivered again) gets its first reply again
and is not run twice (RunOnce, stored in the outbox's meta).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge import __version__
from mqtt import topics
from mqtt.commands import Command, CommandError, RunOnce, parse_request, response

log = logging.getLogger("yimen.commands")

Publish = Callable[[str, bytes, Properties | None], None]


class Downlink:
    def __init__(
        self,
        county: str,
        station: str,
        *,
        load: Callable[[], str | None] = lambda: None,
        save: Callable[[str], None] = lambda _doc: None,
    ) -> None:
        self._county = county
        self._station = station
        self._load = load  # the replies of commands already run (RunOnce), kept across restarts
        self._save = save
        self._run_once: RunOnce | None = None  # loaded on the commands thread
        self._commands: dict[str, Command] = {}
        self._publish: Publish | None = None
        self._queue: queue.SimpleQueue[tuple[str, bytes, Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="yimen-commands", daemon=True)
        self.handled = 0
        self.refused = 0
        self.register(
            Command("ping", lambda _args: {"pong": time.time(), "version": __version__}, doc="liveness and version")
        )

    def register(self, command: Command) -> None:
        if command.name in self._commands:
            raise ValueError(f"command {command.name!r} registered twice")
        self._commands[command.name] = command

    def bind(self, publish: Publish) -> None:
        """How replies leave: the uplink's publish, which owns the one connection."""
        self._publish = publish

    def subscriptions(self) -> list[tuple[str, int]]:
        return [(topics.command_filter(self._county, self._station), 1)]

    def on_message(self, topic: str, payload: bytes, properties: Any) -> None:
        """Called on paho's thread: hand over, nothing more."""
        self._queue.put((topic, payload, properties))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(5)

    def status(self) -> dict[str, Any]:
        return {"commands": sorted(self._commands), "handled": self.handled, "refused": self.refused}

    def _run(self) -> None:
        self._run_once = RunOnce(self._load())
        while (item := self._queue.get()) is not None:
            self._handle(*item)

    def _handle(self, topic: str, payload: bytes, props: Any) -> None:
        try:
            name = topics.parse(topic).kind or ""
        except ValueError:
            log.warning("ignoring a message on %s: not a command topic", topic)
            return
        correlation = None
        after = None
        command_id = _command_id(props, payload)
        try:
            args = parse_request(self._commands.get(name), name, payload)
            correlation = args.get("correlation")
            earlier = self._run_once.reply_to(command_id) if self._run_once and command_id else None
            if earlier is not None:
                log.info("command %s %s was carried out already: its first reply is sent again", name, command_id)
                reply = earlier
            else:
                reply = response(self._commands[name].handler(args), correlation=correlation)
                after = self._commands[name].after
                self.handled += 1
                if self._run_once is not None and command_id:
                    self._save(self._run_once.ran(command_id, args.get("expires_at"), reply))
        except CommandError as exc:
            reply = response(error=exc, correlation=correlation or _correlation(payload))
            self.refused += 1
            log.warning("command %s refused: %s (%s)", name, exc.message, exc.code)
        except Exception as exc:
            log.exception("command %s failed", name)
            reply = response(error=CommandError("failed", f"{type(exc).__name__}: {exc}"), correlation=correlation)
            self.refused += 1
        reply_to = getattr(props, "ResponseTopic", None) or topics.reply_topic(self._county, self._station, name)
        out = None
        if getattr(props, "CorrelationData", None) is not None:
            out = Properties(PacketTypes.PUBLISH)
            out.CorrelationData = props.CorrelationData
        if self._publish is not None:
            self._publish(reply_to, reply, out)
        if after is not None:
            after()


def _command_id(props: Any, payload: bytes) -> str | None:
    """What names one request, for running it once: its MQTT 5 Correlation Data, else the
    `correlation` argument (longer than 256 characters as hex or text: not remembered)."""
    data = getattr(props, "CorrelationData", None)
    found = data.hex() if isinstance(data, bytes) else _correlation(payload)
    return found if found and len(found) <= 256 else None


def _correlation(payload: bytes) -> str | None:
    """The 3.1.1 correlation id of a request that failed its checks, if one can be read at all."""
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    value = doc.get("correlation") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None
