"""MQTT 5 topic aliases for the station's per-event topics.

An event topic (`yimen/v1/<county>/<station>/events/<kind>`) is 30-60 bytes; a live press is
one message, so the topic is a large share of its bytes on a metered line. With an alias the
topic is sent once per connection and then replaced by a two-byte number. Aliases live for one
connection: `reset` at every CONNACK with the broker's Topic Alias Maximum (none under
MQTT 3.1.1, or when the broker offers none: topics go in full).
"""

from __future__ import annotations

from paho.mqtt.properties import Properties

from mqtt.codec import FrozenProperties


class TopicAliases:
    """Topic -> alias for one connection; owned by the uplink thread."""

    def __init__(self) -> None:
        self._maximum = 0
        self._aliases: dict[str, int] = {}
        self._props: dict[tuple[int, bool], Properties] = {}

    def reset(self, maximum: int | None) -> None:
        """A new connection: no alias is known to the broker yet."""
        self._maximum = max(0, int(maximum or 0))
        self._aliases.clear()

    def publish_args(self, topic: str, replay: Properties | None) -> tuple[str, Properties | None]:
        """The topic and properties to publish with: the full topic with a new alias the first
        time, the empty topic and the alias afterwards, the full topic when aliases ran out."""
        alias = self._aliases.get(topic)
        first = alias is None
        if first:
            if len(self._aliases) >= self._maximum:
                return topic, replay
            alias = self._aliases[topic] = len(self._aliases) + 1
        return (topic if first else ""), self._properties(alias, replay)

    def _properties(self, alias: int, replay: Properties | None) -> Properties:
        """Built (and packed) once per alias and replay flag: paho only reads a publish's properties."""
        key = (alias, replay is not None)
        props = self._props.get(key)
        if props is None:
            props = FrozenProperties()
            props.TopicAlias = alias
            if replay is not None:
                props.UserProperty = replay.UserProperty
            props = self._props[key] = props
        return props
