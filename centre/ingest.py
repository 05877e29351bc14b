"""Ingest: the console's MQTT connections, and the one thread that stores what they receive.

paho calls `on_message` on its network thread; it only stamps the message and queues it. The
"centre-ingest" thread takes whatever has queued up (a batch), stores the events in one
transaction, feeds the new ones to the model, then persists status changes, outages and seq
floors in a second transaction, in station order (see `_commit`), and once a second looks for
gaps that have outlasted the grace period and asks those stations for a replay.

Connection 0 takes statuses and command replies, plainly: a broker never sends retained
messages to a shared subscription, every console must see every station's state, and a will
must not wait behind a backlog of events. Events come in on `workers` more connections: one
plain subscription, or with `workers > 1` the shared subscription `$share/<group>/.../events/+`,
so the broker splits the events between them (and between console processes sharing a
PostgreSQL store). With MQTT 5 each event connection keeps a broker session (`clean_start` false,
`[broker] session_expiry_s`) under an id stable across restarts (`yimen-centre-<county>-
<console>-<n>`), so events published while the console restarts wait at the broker for it;
what the broker loses anyway comes back by replay or is reported by the station's `eviction`.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import queue
import secrets
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import date
from functools import partial
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from centre import bounds
from centre.config import CentreConfig
from centre.model import MAX_REPLAY_SEQS, CountyModel, Outage
from centre.store import Incoming, Store
from edge.events import Event
from mqtt import batch as event_batch
from mqtt import topics
from mqtt.client import make_client, session_args

log = logging.getLogger("yimen.centre.ingest")

BATCH = 2000  # messages per transaction at most
COMMAND_TIMEOUT_S = 30.0
FLOORS_READ_S = 5.0  # how often the floors other console processes saved are read back
MAX_STORE_CHECKS_PER_TICK = 200  # stations whose gaps are looked up in the shared store, per second
MAX_REPLAYS_PER_TICK = 50  # replay requests per second, county-wide: a restart must not storm

Message = tuple[str, bytes, Any, float]
# Why a seq an `eviction` lists as delivered is a loss when it is not here (edge/eviction.py).
DELIVERED_EVICTED = "acknowledged by the broker, never received here, then evicted at the station"


class Ingest:
    def __init__(self, config: CentreConfig, model: CountyModel, store: Store) -> None:
        self.config = config
        self.model = model
        self.store = store
        self._queue: queue.SimpleQueue[Message | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="centre-ingest", daemon=True)
        self._client_tag = f"{socket.gethostname()[:16]}-{os.getpid()}".lower()
        self._v5 = config.broker.protocol == "5"
        self._pending: dict[str, tuple[Future[dict[str, Any]], float]] = {}
        self._pending_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._nonce = secrets.token_hex(4)
        self._floors: dict[str, int] = {}  # the floor last saved (or read back) per station
        # Station rows to write at the next commit (see _commit): statuses and outages in the
        # order they happened, per station; the stations whose floor may have risen.
        self._station_writes: dict[str, list[Callable[[], object]]] = {}
        self._floors_due: set[str] = set()
        self._floors_read = 0.0
        self.subscribed = threading.Event()
        self._limit = bounds.RateLimit(config.ingest.station_rate, config.ingest.station_burst)
        self._limit_logged: dict[str, float] = {}
        # Called on the ingest thread with each newly stored event (media announce their files,
        # alerts take theirs), and with each loss the county records (station, seqs): each
        # must only hand over, never block.
        self.on_new_event: list[Callable[[Event], None]] = []
        self.on_loss: list[Callable[[str, int], None]] = []
        self.counters = {
            "messages": 0,
            "stored": 0,
            "duplicates": 0,
            "errors": 0,
            "batches": 0,
            "refused": 0,
            "rate_limited": 0,
            # Batches (mqtt/batch.py): taken apart, refused whole, events in them stored or refused.
            "event_batches": 0,
            "batch_refused": 0,
            "batch_events": 0,
            "batch_events_refused": 0,
        }
        # Connection 0: statuses and replies; 1..workers: events (see _subscriptions).
        self.per_worker = [0] * (config.ingest.workers + 1)  # messages each connection received
        self._subscribed_clients: set[int] = set()
        self.clients = [self._client(i) for i in range(config.ingest.workers + 1)]

    # ----- connections ----------------------------------------------------------------------

    def _client(self, index: int) -> paho.Client:
        cfg = self.config.broker
        # The console reconnects by paho's own loop; its subscriptions are made again in on_connect.
        # An event connection's id is the same each time this console starts (`[centre] console`):
        # its broker session (MQTT 5) holds the events published while the console is down.
        tag = self._client_tag if index == 0 else self.config.console
        client = make_client(cfg, f"yimen-centre-{self.config.county}-{tag}-{index}", reconnect_on_failure=True)
        client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)
        client.on_connect = lambda c, _u, _f, rc, _p: self._on_connect(c, index, rc)
        client.on_subscribe = lambda *_: self._on_subscribe(index)
        client.on_message = lambda c, u, msg: self._on_message(c, u, msg, index)
        return client

    def _subscriptions(self, index: int) -> list[str]:
        """Connection 0 takes statuses and command replies, the others events. A will must not
        queue behind thousands of events at the broker: an offline station turns red at once
        even while the event connections catch up."""
        county = self.config.county
        if index == 0:
            return [topics.county_status_filter(county), topics.county_reply_filter(county)]
        events = topics.county_events_filter(county)
        return [topics.shared(self.config.ingest.group, events) if self.config.ingest.shared else events]

    def _on_subscribe(self, index: int) -> None:
        self._subscribed_clients.add(index)
        if len(self._subscribed_clients) == len(self.clients):
            self.subscribed.set()

    def _on_connect(self, client: paho.Client, index: int, rc: Any) -> None:
        if rc.is_failure:
            log.error("console connection %d refused by the broker: %s", index, rc)
            return
        client.subscribe([(f, 1) for f in self._subscriptions(index)])

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage, index: int) -> None:
        """paho's thread: stamp and hand over, or resolve a waiting command."""
        self.per_worker[index] += 1
        self._queue.put((msg.topic, msg.payload, getattr(msg, "properties", None), time.time()))

    def start(self, timeout: float = 10.0) -> None:
        self._restore()
        self._thread.start()
        cfg = self.config.broker
        for index, client in enumerate(self.clients):
            session = session_args(cfg.session_expiry_s) if self._v5 and index > 0 else {}
            client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s, **session)
            client.loop_start()
        if not self.subscribed.wait(timeout):
            log.warning("not yet subscribed at %s:%d; retrying in the background", cfg.host, cfg.port)

    def stop(self) -> None:
        for client in self.clients:
            client.disconnect()
            client.loop_stop()
        self._queue.put(None)
        self._thread.join(10)

    # ----- commands ----------------------------------------------------------------------------

    def request(self, station: str, name: str, args: dict[str, Any] | None = None) -> Future[dict[str, Any]]:
        """Send a command; the future resolves with the station's reply (or a timeout reply).

        The correlation id travels both ways a station may answer: as MQTT 5 Correlation Data, and
        as the `correlation` argument that a 3.1.1 station echoes. The response topic is the
        station's own `cmd-reply/<name>`: the only place its login may publish a reply."""
        # Unique across restarts too (a pid repeats): a station runs each correlation id once.
        correlation = f"{self._client_tag}-{self._nonce}-{next(self._ids)}"
        future: Future[dict[str, Any]] = Future()
        with self._pending_lock:
            self._pending[correlation] = (future, time.monotonic())
        body = {**(args or {}), "correlation": correlation, "expires_at": time.time() + COMMAND_TIMEOUT_S}
        props = None
        if self._v5:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = topics.reply_topic(self.config.county, station, name)
            props.CorrelationData = correlation.encode()
            # A station away longer than this never gets it from the broker's session for it.
            props.MessageExpiryInterval = int(COMMAND_TIMEOUT_S)
        topic = topics.command_topic(self.config.county, station, name)
        self.clients[0].publish(topic, json.dumps(body).encode(), qos=1, properties=props)
        return future

    def _resolve(self, payload: bytes, correlation: bytes | None) -> None:
        if len(payload) > bounds.MAX_REPLY_BYTES:
            log.warning("a command reply of %d bytes ignored (at most %d)", len(payload), bounds.MAX_REPLY_BYTES)
            return
        try:
            reply = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            log.warning("a command reply that is not JSON: %r", payload[:80])
            return
        if not isinstance(reply, dict):
            return
        key = correlation.decode(errors="replace") if correlation else reply.get("correlation")
        with self._pending_lock:
            entry = self._pending.pop(str(key), None)
        if entry is not None:
            entry[0].set_result(reply)

    def _expire_requests(self) -> None:
        now = time.monotonic()
        with self._pending_lock:
            stale = [k for k, (_f, at) in self._pending.items() if now - at > COMMAND_TIMEOUT_S]
            expired = [self._pending.pop(k)[0] for k in stale]
        for future in expired:
            future.set_result({"ok": False, "error": {"code": "timeout", "message": "no reply from the station"}})

    # ----- the ingest thread ---------------------------------------------------------------------

    def _restore(self) -> None:
        """Pick up where the last run stopped: states, outages, seq floors, today's figures."""
        for sid, state, session, since, cause, floor in self.store.stations():
            self.model.restore_station(sid, state, session, since, cause, floor)
            self._floors[sid] = floor
        for sid, start, end, cause in self.store.outages():
            self.model.restore_outage(sid, Outage(start, end, cause))
        now = time.time()
        for payload, replayed in self.store.events_to_restore(self.model.today.isoformat()):
            self.model.apply_event(Event.from_bytes(payload.encode()), now, replayed=bool(replayed))
        for sid, first, last, _reason in self.store.losses():
            self.model.station(sid).tracker.lose(first, last, now)

    def _run(self) -> None:
        next_tick = time.monotonic()
        while True:
            try:
                first = self._queue.get(timeout=max(0.0, next_tick - time.monotonic()))
            except queue.Empty:
                first = ()
            if first is None:
                break
            batch = [first] if first else []
            while len(batch) < BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            try:
                if batch:
                    self._handle(batch)
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + 1.0
                    self._tick()
            except Exception:
                self.counters["errors"] += 1
                log.exception("ingest batch failed; rolled back, carrying on (a replay brings back what it lost)")
                self._rollback()

    def _rollback(self) -> None:
        """End the failed transaction. Without this, PostgreSQL refuses every later statement
        on the connection ("current transaction is aborted"): the console stored nothing
        more, filled no gap from the store and asked for no replay, for good."""
        try:
            self.store.rollback()
        except Exception:
            log.exception("could not roll back the store's transaction")

    def _handle(self, batch: list[Message]) -> None:
        incoming: list[tuple[Incoming, Event]] = []
        for topic_text, payload, props, received in batch:
            self.counters["messages"] += 1
            try:
                topic = topics.parse(topic_text)
                if topic.channel == "status":
                    self._checked_status(topic.station, payload, received)
                elif topic.channel == "cmd-reply":
                    self._resolve(payload, getattr(props, "CorrelationData", None))
                elif topic.channel == "events" and event_batch.is_batch(payload):
                    incoming.extend(self._batch_rows(topic, payload, props, received))
                elif topic.channel == "events":
                    admitted = self._admit_event(topic, payload, props, received)
                    if admitted is not None:
                        incoming.append(admitted)
            except (ValueError, KeyError, TypeError) as exc:
                self.counters["errors"] += 1
                log.warning("ignoring a message on %s: %s", topic_text, exc)
        if incoming:
            new = self.store.insert_events([row for row, _ in incoming])
            now = time.time()
            touched = set()
            for row, event in incoming:
                if row.id in new:
                    new.discard(row.id)  # a batch may hold the same id twice
                    for first, last in self.model.apply_event(event, now, replayed=row.replayed):
                        self.store.record_loss(event.station, first, last, DELIVERED_EVICTED, now)
                        log.warning("%s: seqs %d..%d lost: %s", event.station, first, last, DELIVERED_EVICTED)
                    for hook in self.on_new_event:
                        hook(event)
                    touched.add(event.station)
                    self.counters["stored"] += 1
                else:
                    self.counters["duplicates"] += 1
                    self.model.held(event.station, event.seq, now)  # stored by another console process
                    touched.add(event.station)  # it may raise the floor: saved below, as for new ones
            self._save_floors(touched)
        self._commit()
        self.counters["batches"] += 1

    def _batch_rows(
        self, topic: topics.Topic, payload: bytes, props: Any, received: float
    ) -> list[tuple[Incoming, Event]]:
        """A station's batch, event by event. The batch is hostile input: mqtt/batch.py bounds
        its count and inflated size before allocating (a bad batch is refused whole and marks
        the station); then each event is checked exactly as a single one (the topic is the
        truth: another station's or another kind's event is refused and counted) and the rest
        stored. A batch counts as one message against the station's rate limit: it is at most
        1000 events, and a backlog drained over a slow line must not be cut off by it."""
        sid = topic.station
        if not self._within_rate(sid, received):
            return []
        try:
            payloads = event_batch.unpack(payload)
        except event_batch.BatchError as exc:
            self.counters["batch_refused"] += 1
            self.counters["refused"] += 1
            self.model.refuse(sid, bounds.Refused("batch", str(exc), hostile=True))
            log.warning("%s: refused a batch on %s: %s", sid, topic.kind, exc)
            return []
        self.counters["event_batches"] += 1
        replayed = ("replay", "1") in (getattr(props, "UserProperty", None) or [])
        rows = []
        for body in payloads:
            row = self._checked_row(topic, body, replayed, received)
            if row is None:
                self.counters["batch_events_refused"] += 1
            else:
                self.counters["batch_events"] += 1
                rows.append(row)
        return rows

    # ----- what one station may make us store (centre/bounds.py) ------------------------------

    def _admit_event(
        self, topic: topics.Topic, payload: bytes, props: Any, received: float
    ) -> tuple[Incoming, Event] | None:
        """The row to store for an event message, or None: over its station's rate limit, or
        refused (the topic's station is counted and, for hostile numbers, marked)."""
        if not self._within_rate(topic.station, received):
            return None
        replayed = ("replay", "1") in (getattr(props, "UserProperty", None) or [])
        return self._checked_row(topic, payload, replayed, received)

    def _checked_row(
        self, topic: topics.Topic, payload: bytes, replayed: bool, received: float
    ) -> tuple[Incoming, Event] | None:
        """One event (alone or out of a batch) checked against its topic and its station's seqs."""
        sid = topic.station
        try:
            event = bounds.check_event(topic, payload, self.model.seq_reference(sid))
            if self.model.would_fragment(sid, event.seq):
                raise bounds.Refused("fragmented", f"seq {event.seq} would open too many seq ranges", hostile=True)
        except bounds.Refused as exc:
            self.counters["refused"] += 1
            self.model.refuse(sid, exc)
            log.warning("%s: refused an event on %s: %s", sid, topic.kind, exc)
            return None
        row = Incoming(event.id, event.station, event.seq, event.kind, event.ts, payload.decode(), replayed, received)
        return row, event

    def _checked_status(self, sid: str, payload: bytes, received: float) -> None:
        try:
            doc = bounds.check_status(payload)
        except bounds.Refused as exc:
            self.counters["refused"] += 1
            self.model.refuse(sid, exc)
            log.warning("%s: refused its status: %s", sid, exc)
            return
        self._status(sid, doc, received)

    def _within_rate(self, sid: str, now: float) -> bool:
        """Per-station rate limit on what is stored; reported (log every 10 s, counts on the page)."""
        if self._limit.admit(sid, now):
            return True
        self.counters["rate_limited"] += 1
        self.model.rate_limited(sid)
        if now - self._limit_logged.get(sid, 0.0) >= 10:
            self._limit_logged[sid] = now
            log.warning(
                "%s: over its limit of %g messages/s stored; dropping (a replay brings back events later)",
                sid,
                self._limit.rate,
            )
        return False

    def _status(self, sid: str, doc: dict[str, Any], now: float) -> None:
        change = self.model.apply_status(sid, doc, now)
        if change == "stale":
            log.info("%s: ignored an offline status of session %s, older than its birth", sid, doc.get("session"))
            return
        view = self.model.stations[sid]
        writes = self._station_writes.setdefault(sid, [])
        writes.append(partial(self.store.save_station, sid, view.state, view.session, view.since, view.cause))
        if change == "offline":
            writes.append(partial(self.store.open_outage, sid, now, view.cause or "lost"))
        elif change == "online":
            writes.append(partial(self.store.close_outage, sid, now))

    def _save_floors(self, stations: set[str]) -> None:
        """These stations' floors may have risen: saved (if they did) at the next commit."""
        self._floors_due |= stations

    def _commit(self) -> None:
        """Commit what was stored (events, losses), then write the station rows that changed
        (statuses, outages, floors) in a transaction of their own, in station order.

        Every console process sharing the store writes the same station rows. Two transactions
        taking them in different orders (a batch's statuses in arrival order, a tick's floors in
        the order of its gaps) deadlock, and PostgreSQL aborts one. With the events inserted in
        id order in one transaction and the station rows written in station order in the next,
        no two ingest transactions wait for each other in a cycle. The events go first, so a
        floor is never saved before the seqs it covers. The writes stay pending until
        committed: after a failure they are made at the next commit."""
        self.store.commit()
        saved: dict[str, int] = {}
        for sid in sorted(self._station_writes.keys() | self._floors_due):
            for write in self._station_writes.get(sid, []):
                write()
            floor = self.model.stations[sid].tracker.floor
            if sid in self._floors_due and self._floors.get(sid) != floor:
                self.store.save_floor(sid, floor)
                saved[sid] = floor
        self.store.commit()
        self._floors.update(saved)
        self._station_writes.clear()
        self._floors_due.clear()

    def _tick(self) -> None:
        now = time.time()
        self.model.roll_day(date.today())
        self._expire_requests()
        ing = self.config.ingest
        for sid, ranges in self.model.exhausted(ing.replay_tries, ing.replay_retry_s, now):
            for first, last in ranges:
                self.store.record_loss(sid, first, last, "not held by the station after replay requests", now)
                for hook in self.on_loss:
                    hook(sid, last - first + 1)
                log.warning("%s: seqs %d..%d recorded as lost: replays did not bring them", sid, first, last)
            self._save_floors({sid})
        for sid, ranges in self.model.gapped(now, ing.gap_grace_s, MAX_STORE_CHECKS_PER_TICK):
            self._fill_from_store(sid, ranges, now)
        if now - self._floors_read >= FLOORS_READ_S:
            self._floors_read = now
            raised = set()
            for sid, floor in self.store.floors():
                if floor > self._floors.get(sid, 0):
                    self.model.accounted(sid, floor, now)
                    self._floors[sid] = floor
                    raised.add(sid)
            # The floor read may join seqs this console holds just above it (the tail of a
            # station that went quiet): the floor that gives must be saved, or the console that
            # saved the lower one has no gap to fill and never learns of those seqs.
            self._save_floors(raised)
        for sid, ranges in self.model.replay_due(now, ing.gap_grace_s, ing.replay_retry_s, ing.replay_tries)[
            :MAX_REPLAYS_PER_TICK
        ]:
            self._ask_replay(sid, ranges, now)
        self._commit()

    def _fill_from_store(self, sid: str, ranges: list[tuple[int, int]], now: float) -> None:
        """Before asking a station again: another console process sharing the store (and the
        events, by shared subscription) may hold what this one lacks. Bounded: 10,000 seqs."""
        held = self.store.seqs_between(sid, ranges[0][0], min(ranges[-1][1], ranges[0][0] + 9_999))
        for seq in held:
            self.model.held(sid, seq, now)
        if held:
            self._save_floors({sid})

    def _ask_replay(self, sid: str, ranges: list[tuple[int, int]], now: float) -> None:
        self.model.replay_sent(sid, ranges, now)
        for first, last in ranges:
            last = min(last, first + MAX_REPLAY_SEQS - 1)  # a station replays at most this many per request
            log.info("%s: asking for a replay of seqs %d..%d", sid, first, last)
            future = self.request(sid, "replay", {"first": first, "last": last})
            future.add_done_callback(lambda f, sid=sid: self.model.replay_answered(sid, f.result()))

    def metrics(self) -> dict[str, Any]:
        return {
            **self.counters,
            "queued": self._queue.qsize(),
            "pending_commands": len(self._pending),
            "subscribed": self.subscribed.is_set(),
            "per_worker": self.per_worker,
        }
