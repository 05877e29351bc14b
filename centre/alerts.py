"""Alerts: conditions a county office must act on, shown on the page and sent to a group chat.

Rules come from the console's config (`[alerts.<rule>]`), each with a `threshold`, an optional
higher `escalate` level and a `holdoff_s`:

| rule          | threshold (escalate)                        | clears when                          |
|---------------|---------------------------------------------|--------------------------------------|
| `offline`     | minutes offline                             | the station is back online           |
| `telemetry`   | minutes an online station sent no telemetry | telemetry arrives                    |
| `paused`      | minutes a window has been paused            | the window resumes                   |
| `printer`     | (none) paper out or cover open              | a printer event without either       |
| `bad_rating`  | bad ratings at a station                    | `holdoff_s` without another          |
| `overrun`     | time-limit overruns (a red one escalates)   | `holdoff_s` without another          |
| `data_lost`   | seqs lost (eviction, incident, no replay)   | `holdoff_s` without another          |

An alert is open from its threshold until it clears, and is shown on the page until it has
cleared and has been acknowledged (who and when are kept, and audited). It goes to the webhook
once when it opens and again when it escalates; a station that flaps is not alerted again for
the same rule within `holdoff_s` of the last alert closing. Events older than an hour (replays,
a backlog after an outage) fill the reports but raise no alert: they are news to nobody.

Threads: ingest only enqueues (`offer`); the "yimen-alerts" thread owns every alert and looks
at the model once a second; the "yimen-webhook" thread posts, retrying with backoff, so a
chat server that is slow or down never delays ingest or the page. Alerts live in memory: a
restarted console raises again what still holds.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import threading
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edge.configfile import Section
from edge.events import Event

log = logging.getLogger("yimen.centre.alerts")

RULES = ("offline", "telemetry", "paused", "printer", "bad_rating", "overrun", "data_lost")
DEFAULTS: dict[str, tuple[float, float | None, float]] = {  # threshold, escalate, holdoff_s
    "offline": (10.0, 60.0, 300.0),
    "telemetry": (10.0, None, 300.0),
    "paused": (30.0, 120.0, 300.0),
    "printer": (0.0, None, 300.0),
    "bad_rating": (1.0, 3.0, 1800.0),
    "overrun": (1.0, 3.0, 1800.0),
    "data_lost": (1.0, None, 3600.0),
}
TITLES = {
    "offline": "站点离线",
    "telemetry": "站点停止上报",
    "paused": "窗口暂停过久",
    "printer": "打印机故障",
    "bad_rating": "差评",
    "overrun": "办理超时",
    "data_lost": "数据丢失",
}
FORMATS = ("wecom", "dingtalk", "feishu")
FRESH_S = 3600.0  # events older than this raise no alert
MAX_SHOWN = 1000
MAX_OUTBOX = 1000


@dataclass(frozen=True)
class Rule:
    threshold: float
    escalate: float | None
    holdoff_s: float


@dataclass(frozen=True)
class AlertsConfig:
    rules: dict[str, Rule]
    webhook: str | None = None
    format: str = "wecom"
    retry_max_s: float = 300.0


def parse_alerts(section: Section) -> AlertsConfig:
    webhook = section.get_str("webhook", None, pattern=r"https?://\S{1,2000}")
    fmt = section.get_str("format", "wecom", choices=FORMATS)
    retry = section.get_float("retry_max_s", 300.0, minval=1.0, maxval=86400.0)
    rules = {}
    for name in RULES:
        sub = section.section(name)
        threshold, escalate, holdoff = DEFAULTS[name]
        if sub.get_bool("enabled", True):
            rules[name] = Rule(
                sub.get_float("threshold", threshold, minval=0.0, maxval=1e6),
                sub.get_float("escalate", escalate, minval=0.0, maxval=1e6),
                sub.get_float("holdoff_s", holdoff, minval=0.0, maxval=86400.0 * 7),
            )
        sub.done()
    section.done()
    return AlertsConfig(rules, webhook, fmt, retry)


@dataclass
class Alert:
    id: str
    rule: str
    station: str
    window: int | None
    opened: float
    text: str
    level: int = 1  # 2 once escalated
    count: int = 1
    last: float = 0.0  # the last event that fed it (event rules)
    closed: float | None = None
    acked: dict[str, Any] | None = None
    key: tuple[str, str, int | None] = field(init=False)

    def __post_init__(self) -> None:
        self.key = (self.rule, self.station, self.window)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.rule,
            "title": TITLES[self.rule] + (" (升级)" if self.level > 1 else ""),
            "station": self.station,
            "window": self.window,
            "opened": self.opened,
            "text": self.text,
            "level": self.level,
            "count": self.count,
            "closed": self.closed,
            "acked": self.acked,
        }


def chat_message(fmt: str, county: str, alert: dict[str, Any], escalated: bool) -> dict[str, Any]:
    """The JSON a group-chat robot takes: WeCom (企业微信) and DingTalk share one shape."""
    text = (
        f"【{'告警升级' if escalated else '告警'}】{county} · {alert['title']} · 站点 {alert['station']}"
        f"{' 窗口 ' + str(alert['window']) if alert['window'] is not None else ''}: {alert['text']}"
        f" ({datetime.fromtimestamp(alert['opened']):%m-%d %H:%M})"
    )
    if fmt == "feishu":
        return {"msg_type": "text", "content": {"text": text}}
    return {"msgtype": "text", "text": {"content": text}}


def _unix(ts: Any) -> float | None:
    try:
        return datetime.fromisoformat(ts).timestamp() if isinstance(ts, str) else None
    except ValueError:
        return None


class Webhook:
    """Posts alerts in order on its own thread; a failed post is retried with doubling waits
    (1 s up to `retry_max_s`) while the rest wait behind it. At most MAX_OUTBOX wait; past
    that the oldest is dropped, and logged."""

    def __init__(self, url: str, retry_max_s: float) -> None:
        self.url = url
        self.retry_max_s = retry_max_s
        self._outbox: deque[dict[str, Any]] = deque()
        self._wake = threading.Condition()
        self._stop = False
        self.sent = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="yimen-webhook", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def send(self, doc: dict[str, Any]) -> None:
        with self._wake:
            self._outbox.append(doc)
            while len(self._outbox) > MAX_OUTBOX:
                log.error("webhook: %d alerts waiting; dropped the oldest", len(self._outbox))
                self._outbox.popleft()
            self._wake.notify()

    def stop(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify()
        self._thread.join(5)

    def _post(self, doc: dict[str, Any]) -> None:
        request = urllib.request.Request(
            self.url,
            data=json.dumps(doc, ensure_ascii=False).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as res:
            res.read(65536)

    def _run(self) -> None:
        wait = 1.0
        while True:
            with self._wake:
                while not self._outbox and not self._stop:
                    self._wake.wait()
                if self._stop:
                    return
                doc = self._outbox[0]
            try:
                self._post(doc)
            except (OSError, ValueError) as exc:
                self.failures += 1
                log.warning("webhook post failed (%s); retrying in %.0f s", exc, wait)
                with self._wake:
                    self._wake.wait_for(lambda: self._stop, timeout=wait)
                wait = min(wait * 2, self.retry_max_s)
                continue
            wait = 1.0
            self.sent += 1
            with self._wake:
                self._outbox.popleft()


class Alerts:
    def __init__(self, config: AlertsConfig, county: str, model: Any) -> None:
        self.config = config
        self.county = county
        self.model = model
        self.webhook = Webhook(config.webhook, config.retry_max_s) if config.webhook else None
        self._inbox: queue.SimpleQueue[Event | tuple[str, int] | None] = queue.SimpleQueue()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # guards `shown` for the page's readers
        self.open: dict[tuple[str, str, int | None], Alert] = {}
        self.shown: dict[str, Alert] = {}  # open, or closed and not yet acknowledged
        self._closed_at: dict[tuple[str, str, int | None], float] = {}
        self._telemetry: dict[str, float] = {}  # station -> last telemetry (arrival)
        self._paused: dict[tuple[str, int], float] = {}  # (station, window) -> paused since
        self._printer: dict[str, list[str]] = {}  # station -> its printer's bad conditions
        self._thread = threading.Thread(target=self._run, name="yimen-alerts", daemon=True)

    # ----- other threads ----------------------------------------------------------------------

    def offer(self, item: Event | tuple[str, int]) -> None:
        """From ingest: an event newly stored, or (station, seqs lost). Only enqueues."""
        self._inbox.put(item)

    def start(self) -> None:
        if self.webhook is not None:
            self.webhook.start()
        self._thread.start()

    def stop(self) -> None:
        self._inbox.put(None)
        self._thread.join(5)
        if self.webhook is not None:
            self.webhook.stop()

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [a.as_dict() for a in sorted(self.shown.values(), key=lambda a: -a.opened)]

    def station_of(self, alert_id: str) -> str | None:
        with self._lock:
            found = self.shown.get(alert_id)
            return found.station if found else None

    def ack(self, alert_id: str, who: str, now: float) -> dict[str, Any] | None:
        with self._lock:
            alert = self.shown.get(alert_id)
            if alert is None:
                return None
            alert.acked = alert.acked or {"by": who, "at": now}
            if alert.closed is not None:
                del self.shown[alert_id]
            return alert.as_dict()

    # ----- the alerts thread -------------------------------------------------------------------

    def _run(self) -> None:
        next_look = time.monotonic()
        while True:
            try:
                item = self._inbox.get(timeout=max(0.0, next_look - time.monotonic()))
            except queue.Empty:
                item = ()
            if item is None:
                return
            now = time.time()
            try:
                if isinstance(item, Event):
                    self._event(item, now)
                elif item:
                    sid, lost = item
                    self._count("data_lost", sid, None, lost, now, f"{lost} 条数据补发失败，已记为丢失")
                if time.monotonic() >= next_look:
                    next_look = time.monotonic() + 1.0
                    self._look(now)
            except Exception:
                log.exception("alerts: failed on %r; carrying on", item)

    def _event(self, event: Event, now: float) -> None:
        data, sid = event.data, event.station
        if event.kind == "telemetry":
            self._telemetry[sid] = now
        at = _unix(event.ts)
        if at is None or now - at > FRESH_S:
            return
        action = data.get("action")
        window = data.get("window") if isinstance(data.get("window"), int) else None
        if event.kind == "rating" and data.get("verdict") == "bad":
            reason = data.get("reason")
            why = reason.get("name") if isinstance(reason, dict) else None
            text = f"窗口 {window} {data.get('clerk') or ''} 差评" + (f": {why}" if why else "")
            self._count("bad_rating", sid, None, 1, now, text)
        elif event.kind == "queue" and action == "pause" and window is not None:
            self._paused[(sid, window)] = at
        elif event.kind == "queue" and action == "resume" and window is not None:
            self._paused.pop((sid, window), None)
            self._close(("paused", sid, window), now)
        elif event.kind == "limit" and action in ("warn", "over"):
            red = action == "over"  # the red light escalates; the yellow one warns
            what = "办理" if data.get("what") == "service" else "等候"
            where = f"窗口 {window} " if window is not None else ""
            light = "红灯" if red else "黄灯"
            self._count("overrun", sid, None, 1, now, f"{where}{what}超时 ({light})", escalate=red)
        elif event.kind == "printer":
            bad = [c for c in data.get("conditions") or [] if c in ("paper_out", "cover_open")]
            self._printer[sid] = bad
            if bad:
                self._raise("printer", sid, None, now, "缺纸" if "paper_out" in bad else "纸仓盖打开")
            else:
                self._close(("printer", sid, None), now)
        elif event.kind == "eviction":
            self._count("data_lost", sid, None, int(data.get("count") or 0), now, "站点磁盘不足，删除了未上传的数据")
        elif event.kind == "incident" and data.get("possibly_lost"):
            first, last = data["possibly_lost"]
            self._count("data_lost", sid, None, int(last) - int(first) + 1, now, "站点数据库损坏，数据可能丢失")

    def _look(self, now: float) -> None:
        """The state rules, against the model and what the events told."""
        with self.model.lock:
            states = [(sid, v.state, v.since) for sid, v in self.model.stations.items()]
        for sid, state, since in states:
            offline_s = now - since if state == "offline" and since else 0.0
            self._level("offline", sid, None, offline_s / 60, now, f"离线 {offline_s / 60:.0f} 分钟")
            quiet = now - self._telemetry.get(sid, since or now) if state == "online" else 0.0
            self._level("telemetry", sid, None, quiet / 60, now, f"{quiet / 60:.0f} 分钟未上报运行数据")
        for (sid, window), since in list(self._paused.items()):
            minutes = (now - since) / 60
            self._level("paused", sid, window, minutes, now, f"窗口 {window} 已暂停 {minutes:.0f} 分钟")
        for key, alert in list(self.open.items()):
            rule = self.config.rules.get(alert.rule)
            if alert.rule in ("bad_rating", "overrun", "data_lost") and rule and now - alert.last >= rule.holdoff_s:
                self._close(key, now)

    # ----- opening, escalating, closing -------------------------------------------------------

    def _level(self, name: str, sid: str, window: int | None, value: float, now: float, text: str) -> None:
        """A state rule: open at its threshold, escalate at `escalate`, close below threshold."""
        rule = self.config.rules.get(name)
        if rule is None:
            return
        key = (name, sid, window)
        if value <= 0 or value < rule.threshold:
            self._close(key, now)
            return
        alert = self._raise(name, sid, window, now, text)
        if alert is not None:
            alert.text = text
            if rule.escalate is not None and value >= rule.escalate:
                self._escalate(alert)

    def _count(
        self, name: str, sid: str, window: int | None, n: int, now: float, text: str, escalate: bool = False
    ) -> None:
        """An event rule: counts add up while the alert is open."""
        rule = self.config.rules.get(name)
        if rule is None or n <= 0:
            return
        key = (name, sid, window)
        alert = self.open.get(key)
        if alert is None:
            if n < rule.threshold:
                return
            alert = self._raise(name, sid, window, now, text)
            if alert is None:
                return
            alert.count = n
        else:
            alert.count += n
            alert.text = text
        alert.last = now
        if escalate or (rule.escalate is not None and alert.count >= rule.escalate):
            self._escalate(alert)

    def _raise(self, name: str, sid: str, window: int | None, now: float, text: str) -> Alert | None:
        key = (name, sid, window)
        if key in self.open:
            return self.open[key]
        rule = self.config.rules[name]
        if now - self._closed_at.get(key, -1e18) < rule.holdoff_s:
            return None  # flapping: held off
        alert = Alert(f"a{next(self._ids)}", name, sid, window, now, text, last=now)
        self.open[key] = alert
        with self._lock:
            self.shown[alert.id] = alert
            while len(self.shown) > MAX_SHOWN:
                self.shown.pop(next(iter(self.shown)))
        log.warning("alert %s: %s %s %s", alert.id, name, sid, text)
        self._notify(alert, escalated=False)
        return alert

    def _escalate(self, alert: Alert) -> None:
        if alert.level < 2:
            alert.level = 2
            log.warning("alert %s escalated: %s %s", alert.id, alert.rule, alert.station)
            self._notify(alert, escalated=True)

    def _close(self, key: tuple[str, str, int | None], now: float) -> None:
        alert = self.open.pop(key, None)
        if alert is None:
            return
        self._closed_at[key] = now
        with self._lock:
            alert.closed = now
            if alert.acked is not None:
                self.shown.pop(alert.id, None)
        log.info("alert %s cleared: %s %s", alert.id, alert.rule, alert.station)

    def _notify(self, alert: Alert, escalated: bool) -> None:
        if self.webhook is not None:
            self.webhook.send(chat_message(self.config.format, self.county, alert.as_dict(), escalated))
