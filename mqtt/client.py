"""A paho client set up from a `[broker]` section: protocol, session, credentials, TLS.

The station's uplink, `yimen doctor` and the county console all connect as the config says;
this is the one place that says how.
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mqtt.config import BrokerConfig


def make_client(broker: BrokerConfig, client_id: str, *, reconnect_on_failure: bool = False) -> paho.Client:
    """A client with no broker-side session of ours: the outbox (or the store) is the truth."""
    v5 = broker.protocol == "5"
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        clean_session=None if v5 else True,
        reconnect_on_failure=reconnect_on_failure,
    )
    client.connect_timeout = broker.connect_timeout_s
    if broker.username is not None:
        client.username_pw_set(broker.username, broker.password)
    if broker.tls:
        client.tls_set(
            ca_certs=str(broker.ca_file) if broker.ca_file else None,
            certfile=str(broker.cert_file) if broker.cert_file else None,
            keyfile=str(broker.key_file) if broker.key_file else None,
        )
    return client


def session_args(expiry_s: int) -> dict[str, Any]:
    """MQTT 5 CONNECT arguments that resume the session the broker kept for this client id and
    ask it to keep the session `expiry_s` after we go (its subscriptions, and the QoS 1 messages
    that matched them meanwhile); 0 means no session. For `connect`/`connect_async`."""
    if expiry_s == 0:
        return {"clean_start": True}
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = expiry_s
    return {"clean_start": False, "properties": props}
