"""The county in the fault tests: a separate process that records every message it receives.

Usage: python -m tests.support.subscriber HOST PORT COUNTY OUTFILE
Writes one JSON line per message (topic, payload as base64, replay flag) and a line
{"subscribed": n} after each SUBACK; an event batch is written as one line per event it
carries (unpacked with the contract's own reader, mqtt/batch.py), marked `"batch": true`,
flushing each line, until SIGTERM. It reconnects quickly by itself so that a broker restart
costs it as little as possible.
"""

from __future__ import annotations

import base64
import json
import signal
import sys
import threading

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from mqtt import batch


def main() -> None:
    host, port, county, outfile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    out = open(outfile, "a", encoding="utf-8")  # noqa: SIM115 - open for the process's life
    lock = threading.Lock()
    subscribed = 0

    def write(doc: dict) -> None:
        with lock:
            out.write(json.dumps(doc) + "\n")
            out.flush()

    def on_connect(client: paho.Client, *_: object) -> None:
        client.subscribe(f"yimen/v1/{county}/#", qos=1)

    def on_subscribe(*_: object) -> None:
        nonlocal subscribed
        subscribed += 1
        write({"subscribed": subscribed})

    def on_message(_c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        replay = ("replay", "1") in (getattr(props, "UserProperty", None) or [])
        packed = "/events/" in msg.topic and batch.is_batch(msg.payload)
        for payload in batch.unpack(msg.payload) if packed else [msg.payload]:
            write(
                {
                    "topic": msg.topic,
                    "payload": base64.b64encode(payload).decode(),
                    "replay": replay,
                    "retain": bool(msg.retain),
                    "batch": packed,
                }
            )

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-county-{county}", protocol=paho.MQTTv5)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.reconnect_delay_set(0.05, 0.2)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    client.connect_async(host, port, keepalive=5)
    client.loop_start()
    stop.wait()
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    main()
