"""Alert rules against real events and a real webhook receiver on loopback: sent once, again on
escalation, retried when the chat server fails, never raised by old events, closed when cleared."""

from __future__ import annotations

import http.server
import itertools
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from centre.alerts import Alerts, parse_alerts
from centre.model import CountyModel
from edge.configfile import Section
from edge.events import Event, Priority, format_ts
from mqtt.broker import free_port
from tests.conftest import wait_until

SEQ = itertools.count(1)


class FlakyReceiver:
    """Answers 500 to the first `fail` posts, then 200; records what it accepted."""

    def __init__(self, fail: int) -> None:
        self.port = free_port()
        self.accepted: list[dict[str, Any]] = []
        self.refused = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if outer.refused < fail:
                    outer.refused += 1
                    self.send_response(500)
                else:
                    outer.accepted.append(body)
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def texts(self) -> list[str]:
        return [m["text"]["content"] for m in self.accepted]


@pytest.fixture
def receiver() -> Iterator[FlakyReceiver]:
    hook = FlakyReceiver(fail=2)
    yield hook
    hook.server.shutdown()


@pytest.fixture
def alerts(receiver: FlakyReceiver) -> Iterator[Alerts]:
    config = parse_alerts(
        Section(
            "alerts",
            {
                "webhook": f"http://127.0.0.1:{receiver.port}/hook",
                "retry_max_s": 1,
                "bad_rating": {"threshold": 1, "escalate": 2, "holdoff_s": 1},
                "paused": {"threshold": 0.001, "escalate": 1000, "holdoff_s": 0},
            },
        )
    )
    engine = Alerts(config, "test-county", CountyModel("test-county", "测试县"))
    engine.start()
    yield engine
    engine.stop()


def event(kind: str, data: dict[str, Any], age_s: float = 0.0, station: str = "st-a") -> Event:
    ts = format_ts((datetime.now() - timedelta(seconds=age_s)).astimezone())
    return Event(station, next(SEQ), kind, ts, "synced", Priority.NORMAL, data)


def rules(engine: Alerts) -> list[tuple[str, str, int, bool]]:
    return [(a["rule"], a["station"], a["level"], a["closed"] is not None) for a in engine.list()]


def test_sent_once_again_on_escalation_retried_and_closed(alerts: Alerts, receiver: FlakyReceiver) -> None:
    alerts.offer(event("rating", {"verdict": "bad", "window": 2, "clerk": "王芳", "reason": {"name": "态度不好"}}))
    alerts.offer(event("rating", {"verdict": "bad", "window": 1, "clerk": "李强", "reason": None}, age_s=7200))
    wait_until(lambda: rules(alerts) == [("bad_rating", "st-a", 1, False)], 5, "a bad-rating alert")
    alerts.offer(event("rating", {"verdict": "bad", "window": 2, "clerk": "王芳", "reason": None}))
    wait_until(lambda: len(receiver.accepted) == 2, 10, "both posts through the failures")
    assert receiver.refused == 2  # the first post failed twice and was retried, in order
    first, escalated = receiver.texts()
    assert first.startswith("【告警】test-county · 差评 · 站点 st-a") and "态度不好" in first
    assert escalated.startswith("【告警升级】")
    # No new bad rating for holdoff_s: the condition clears; shown until acknowledged.
    wait_until(lambda: rules(alerts) == [("bad_rating", "st-a", 2, True)], 5, "the alert to clear")
    (shown,) = alerts.list()
    assert alerts.ack(shown["id"], "county-boss", 1.0)["acked"] == {"by": "county-boss", "at": 1.0}
    assert alerts.list() == []
    assert len(receiver.accepted) == 2  # the old (2 h) rating raised nothing


def test_state_rules_open_and_close(alerts: Alerts, receiver: FlakyReceiver) -> None:
    alerts.offer(event("printer", {"conditions": ["paper_out"], "state": "error"}, station="st-b"))
    alerts.offer(event("queue", {"action": "pause", "window": 3}, station="st-c"))
    wait_until(lambda: {r[0] for r in rules(alerts)} == {"printer", "paused"}, 5, "printer and paused alerts")
    texts = dict((a["rule"], a["text"]) for a in alerts.list())
    assert texts["printer"] == "缺纸" and texts["paused"].startswith("窗口 3 已暂停")
    for shown in alerts.list():
        alerts.ack(shown["id"], "admin", 2.0)
    assert len(alerts.list()) == 2  # acknowledged, still open: still shown
    alerts.offer(event("printer", {"conditions": [], "state": "ok"}, station="st-b"))
    alerts.offer(event("queue", {"action": "resume", "window": 3}, station="st-c"))
    wait_until(lambda: alerts.list() == [], 5, "both cleared")
    wait_until(lambda: len(receiver.accepted) == 2, 10, "one post each")


def test_a_stations_time_limit_lights_raise_and_escalate_the_overrun_alert(alerts: Alerts) -> None:
    """The overrun rule reads what stations send: `limit` events (mqtt/TOPICS.md), the yellow
    light raising the alert and the red one escalating it."""
    alerts.offer(event("limit", {"action": "warn", "what": "service", "window": 3, "ticket": "A007"}))
    wait_until(lambda: rules(alerts) == [("overrun", "st-a", 1, False)], 5, "an overrun alert on the yellow light")
    alerts.offer(event("limit", {"action": "over", "what": "service", "window": 3, "ticket": "A007"}))
    wait_until(lambda: rules(alerts)[0][2] == 2, 5, "the red light escalating it")
    assert "窗口 3 办理超时 (红灯)" in alerts.list()[0]["text"]
