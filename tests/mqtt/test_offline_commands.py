"""Commands to a station that is away: the broker keeps them in the station's MQTT 5 session and
delivers them when it returns; an expired one is never run; one delivered twice runs once."""

from __future__ import annotations

import json
import time

import paho.mqtt.publish as publish
from paho.mqtt.client import MQTTv5

from mqtt import topics
from tests.conftest import COUNTY, STATION, GatewayProcess, message_doc, station_config, wait_until


def send(port: int, name: str, **args: object) -> None:
    topic = topics.command_topic(COUNTY, STATION, name)
    publish.single(topic, json.dumps(args), qos=1, hostname="127.0.0.1", port=port, protocol=MQTTv5)


def test_a_command_sent_while_away_arrives_once_and_an_expired_one_never_runs(
    tmp_path, broker, subscriber, gateways
) -> None:
    config = station_config(tmp_path, broker.port)
    gw = GatewayProcess(config).start()
    gateways.append(gw)
    wait_until(lambda: gw.status()["broker"]["connection"] == "connected", 15, "the station online")
    assert gw.stop() == 0  # away: powered off, or its link down

    send(broker.port, "ping", correlation="kept", expires_at=time.time() + 300)
    send(broker.port, "ping", correlation="stale", expires_at=time.time() + 1)
    send(broker.port, "ping", correlation="kept", expires_at=time.time() + 300)  # the console sent it again
    time.sleep(1.5)  # "stale" expires while the station is away

    def replies() -> list[dict]:
        return [message_doc(m) for m in subscriber.messages("cmd-reply")]

    again = GatewayProcess(config).start()
    gateways.append(again)
    wait_until(lambda: len(replies()) >= 3, 20, "the station to answer what was sent while it was away")
    assert again.stop() == 0
    by_id: dict[str, list[dict]] = {}
    for reply in replies():
        by_id.setdefault(reply["correlation"], []).append(reply)
    assert [r["ok"] for r in by_id["kept"]] == [True, True]
    assert by_id["kept"][0] == by_id["kept"][1], "run twice: the second reply differs from the first"
    assert [r["error"]["code"] for r in by_id["stale"]] == ["expired"], "an expired command was run"
    assert "carried out already" in again.logs()
