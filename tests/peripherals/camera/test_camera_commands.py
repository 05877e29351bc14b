"""The `snapshot` command on a running gateway with a synthetic camera."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import GatewayProcess, station_config, wait_until
from tests.mqtt.test_commands import Requester

CAMERA = '\n[[cameras]]\nwindow = 2\nbackend = "sim"\nwidth = 320\nheight = 240\nfps = 2\nsnapshot_interval_s = 0\n'


def test_snapshot_on_request_travels_as_a_media_event(tmp_path: Path, broker, subscriber, gateways) -> None:
    gw = GatewayProcess(station_config(tmp_path, broker.port, extra=CAMERA)).start()
    gateways.append(gw)
    wait_until(lambda: gw.status()["broker"]["connection"] == "connected", 15, "the gateway to connect")
    req = Requester(broker.port)
    try:
        _msg, reply = req.request("snapshot", b"{}")
        assert reply["ok"] is True and reply["result"]["window"] == 2
        seq = int(reply["result"]["event"].rsplit("-", 1)[1])
        _msg, refused = req.request("snapshot", b'{"window": 1}')
        assert refused["ok"] is False and "cameras: [2]" in refused["error"]["message"]
    finally:
        req.close()
    wait_until(lambda: seq in subscriber.events(), 10, "the snapshot's media event at the county")
    event = json.loads(subscriber.events()[seq][0])
    assert event["kind"] == "media" and event["data"]["media_id"] == reply["result"]["media_id"]
    assert event["data"]["sha256"] == reply["result"]["sha256"]
