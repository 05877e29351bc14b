"""The uplink: outbox to county broker, at QoS 1, until each event's PUBACK says it arrived.

One named thread ("yimen-uplink") owns all state: the connection, the in-flight map
(mid -> seq), the window and the backoff. It also runs paho's network loop (paho's "external
event loop": select, `loop_read`, `loop_write`, `loop_misc`), so there is no paho thread: a
publish is written to the socket by the call that makes it, and a PUBACK is read by the thread
that acts on it. A thread of paho's own cost a socket-pair wake and two thread hand-offs per
event, about a tenth of the station's CPU at 20 events a second. paho's callbacks therefore run
on this thread, inside paho's calls; they only put tuples on this thread's queue, acted on once
paho has returned. Other threads put on the same queue and wake the loop through a socket pair.

Delivery is the PUBACK, matched by mid, with a reason code below 0x80 (0x10 "no matching
subscribers" is delivered). A reason code >= 0x80 parks the event with its reason. The
client session lives only in memory: on any disconnect the in-flight map is dropped and
every unacknowledged event is sent again from the outbox. paho's own reconnect is off
(it has no jitter); we reconnect with capped exponential backoff and jitter, and after a
refused login with a slower one of its own ([broker] refused_retry_s, refused_retry_max_s).

Media files (mqtt/media_upload.py) ride the same connection and window: when a `media` event
is acknowledged, its upload job is registered; chunks fill the window only when the outbox has
nothing left to send, and their PUBACKs are matched by mid like events. Live-view frames go
at QoS 0, one at a time: a frame still in paho's buffer makes the next one be skipped.

A backlog (at least `[link] batch_min` events waiting) goes in compressed batches
(mqtt/batch.py: packing, and splitting a refused batch), each matched by its mid like an event;
live events go one by one. Event topics use MQTT 5 topic aliases where the broker offers them
(mqtt/aliases.py).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import random
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from edge import __version__
from edge.events import NewEvent, Priority
from edge.outbox import Committed, Outbox, Pending, send_order
from mqtt import codec, topics
from mqtt.aliases import TopicAliases
from mqtt.batch import groups, pack
from mqtt.client import make_client, session_args
from mqtt.commands import Arg, Command, CommandError
from mqtt.config import BrokerConfig
from mqtt.link import LinkConfig
from mqtt.media_upload import Key, MediaUploader, publish_size

log = logging.getLogger("yimen.uplink")

# CONNACK reasons that no amount of retrying will fix: the station must be (re-)enrolled.
# MQTT 5: 0x86 bad user name or password, 0x87 not authorized, 0x8C bad authentication method;
# MQTT 3.1.1 return codes 4 and 5 mean the same and paho maps them onto those.
_CREDENTIAL_REFUSALS = {0x86, 0x87, 0x8C, 4, 5}
MAX_REPLAY = 10_000
# Delivery marks are written once this many have gathered, or as soon as nothing is in flight
# (a lone press is marked at once; a backlog's marks cost one transaction per this many events).
MARK_BATCH = 100
# Events read from the outbox at a time while draining a backlog.
READ_AHEAD = 200
SHUTDOWN_DRAIN_S = 3.0
# The longest the loop waits on the socket while connected: paho's keepalive (PINGREQ, and
# noticing a silent broker) is checked this often.
NETWORK_TICK_S = 1.0
# Counted for the data budget: a PUBACK without properties; CONNECT and CONNACK, about.
PUBACK_BYTES = 4
CONNECT_BYTES = 200
CONNACK_BYTES = 20


def _props_bytes(props: Any) -> int:
    """What MQTT 5 properties add to a PUBLISH: a topic alias (3 bytes), replay=1 (13 bytes)."""
    if props is None:
        return 0
    return (3 if getattr(props, "TopicAlias", None) else 0) + (13 if getattr(props, "UserProperty", None) else 0)


class Backoff:
    """Capped exponential backoff with equal jitter: a delay in [d/2, d], d doubling to the cap.

    Jitter spreads 3,000 stations that lost the county together across the cap instead of
    letting them reconnect in lock-step; the cap bounds how long a station stays away after
    the broker returns."""

    def __init__(self, min_s: float, max_s: float, rand: Callable[[], float] = random.random) -> None:
        self._min = min_s
        self._max = max_s
        self._rand = rand
        self._attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self._max, self._min * (2**self._attempt))
        self._attempt += 1
        return ceiling / 2 + self._rand() * ceiling / 2

    def reset(self) -> None:
        self._attempt = 0


class Uplink:
    def __init__(
        self,
        config: BrokerConfig,
        county: str,
        station: str,
        outbox: Outbox,
        *,
        status_fields: Callable[[], dict[str, Any]] = dict,
        subscriptions: list[tuple[str, int]] = (),  # type: ignore[assignment]
        on_message: Callable[[str, bytes, Any], None] | None = None,
        media: MediaUploader | None = None,
        link: LinkConfig | None = None,
        meter: Callable[[int, int], None] | None = None,
    ) -> None:
        link = link or LinkConfig()
        # Bytes sent and received, MQTT packets as they go (the month's data budget counts them).
        self._meter = meter or (lambda _sent, _received: None)
        self._config = config
        self._county = county
        self._station = station
        self._outbox = outbox
        self._status_fields = status_fields
        self._subscriptions = list(subscriptions)
        self._on_message = on_message
        self._media = media
        self._batches = link.batches()  # None: every event goes alone (as before batches existed)
        self._batch_min = link.batch_min
        self._aliases = TopicAliases() if link.topic_aliases and config.protocol == "5" else None
        self._queue: queue.SimpleQueue[tuple] = queue.SimpleQueue()
        # Other threads' puts wake the loop: a byte on a socket pair (paho's own way, kept by us).
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="yimen-uplink", daemon=True)
        self._backoff = Backoff(config.reconnect_min_s, config.reconnect_max_s)
        self._refused_backoff = Backoff(config.refused_retry_s, config.refused_retry_max_s)
        self._client: paho.Client | None = None
        self._gen = 0  # which connection a callback belongs to; stale ones are ignored
        self._session = 0
        self._state = "disconnected"
        self._state_since = time.time()
        self._cause = "not yet connected"
        self._window = config.inflight
        self._inflight: dict[int, Pending] = {}
        self._unmarked: list[Pending] = []  # acknowledged, delivery mark not yet written
        self._ready: collections.deque[Pending] = collections.deque()  # read ahead, not yet sent
        self._ready_at = -1  # the outbox's commit count when _ready was read
        self._ready_more = False  # whether that read was cut short by its limit
        self._control_mids: set[int] = set()  # birth/offline publishes, not outbox events
        # Births, replies and replays waiting for room in the window: (topic, payload, properties, retain).
        self._controls: collections.deque[tuple[str, bytes, Any, bool]] = collections.deque()
        self._media_mids: dict[int, Key] = {}  # mid -> media manifest or chunk in flight
        self._live_mids: set[int] = set()  # live-view frames not yet written to the socket
        self._live_skipped = 0
        self._attempted: set[int] = set()  # seqs published by this process and not yet acked
        self._first_live_seq = outbox.last_seq + 1
        self._topics: dict[str, str] = {}  # event kind -> its topic
        self._next_attempt = 0.0
        self._stopping = False
        self._delivered = 0
        self._parked = 0
        outbox.subscribe(self._committed)

    # ----- public, any thread ----------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def _committed(self, committed: Committed) -> None:
        """On the committing thread: hand over what a commit made sendable (and wake the loop)."""
        self._post(("committed", committed))

    def publish_control(self, topic: str, payload: bytes, properties: Any = None) -> None:
        """Publish a message that is not an outbox event (a command reply) on the current
        connection, QoS 1; while disconnected it is dropped and logged: replies are transient."""
        self._post(("control", topic, payload, properties))

    def publish_live(self, topic: str, payload: bytes) -> None:
        """Publish a live-view frame at QoS 0 if the link keeps up; otherwise it is skipped.
        Never queued for later: a late live frame is worth nothing."""
        self._post(("live", topic, payload))

    def rebirth(self) -> None:
        """Publish the retained online status again (the county asked for a fresh picture)."""
        self._post(("rebirth",))

    def _post(self, item: tuple) -> None:
        """Hand an item to the uplink thread from another thread, waking its loop."""
        self._queue.put(item)
        # Full: a wake is already waiting. Closed: the uplink has stopped and acts on nothing more.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def replay(self, first: int, last: int) -> int:
        """Send again the retained events first..last, stored bytes, marked replay=1.
        Returns how many the outbox still holds; those are queued for sending."""
        if last < first or last - first >= MAX_REPLAY:
            raise CommandError("bad-request", f"replay range {first}..{last}: give first <= last, at most {MAX_REPLAY}")
        items = self._outbox.replay(first, last)
        props = codec.replay_properties() if self._config.protocol == "5" else None
        for item in items:
            self.publish_control(topics.event_topic(self._county, self._station, item.kind), item.payload, props)
        return len(items)

    def commands(self) -> list[Command]:
        """The commands this part answers, for the downlink."""
        return [
            Command(
                "replay",
                lambda a: {"first": a["first"], "last": a["last"], "count": self.replay(a["first"], a["last"])},
                args={"first": Arg("int", required=True, min=1), "last": Arg("int", required=True, min=1)},
                doc="send retained events first..last again (at most 10,000 at a time)",
            ),
            Command("rebirth", lambda _a: (self.rebirth(), {"session": self._session})[1], doc="publish status again"),
        ]

    def alive(self) -> bool:
        """Whether the uplink thread is running (for the systemd watchdog)."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        self._post(("stop",))
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._wake_r.close()
            self._wake_w.close()

    def status(self) -> dict[str, Any]:
        return {
            "state": self._state,
            "since": self._state_since,
            "cause": self._cause,
            "session": self._session,
            "broker": f"{self._config.host}:{self._config.port}",
            "window": self._window,
            "inflight": len(self._inflight),
            "delivered": self._delivered,
            "parked": self._parked,
            "live_skipped": self._live_skipped,
            **({"batches": self._batches.status()} if self._batches is not None else {}),
            **({"media": self._media.status()} if self._media is not None else {}),
        }

    # ----- the uplink thread -------------------------------------------------------------------

    def _set_state(self, state: str, cause: str) -> None:
        if state != self._state:
            log.info("broker %s:%d: %s (%s)", self._config.host, self._config.port, state, cause)
            self._state_since = time.time()
        self._state = state
        self._cause = cause
        self._outbox.set_meta("connection", f"{state}|{self._state_since}|{cause}")

    def _run(self) -> None:
        self._set_state("disconnected", "not yet connected")
        while True:
            if self._client is None and time.monotonic() >= self._next_attempt:
                self._connect()
            timeout = None
            if self._client is None:
                timeout = max(0.0, self._next_attempt - time.monotonic())
            elif self._state == "connected" and self._media is not None:
                # When the upload pace next allows a chunk; 0 or None: an ack or a wake will do.
                timeout = self._media.wait_s() or None
            items = self._next_items(timeout)
            if not items:
                if self._state == "connected":
                    self._fill()
                continue
            if any(i[0] == "stop" for i in items):
                # What was queued before the stop (a command's reply, say) still goes out first.
                self._handle([i for i in items if i[0] != "stop"])
                self._shutdown()
                return
            self._handle(items)
            if self._state == "connected":
                # Refill the window before writing the marks: the slots PUBACKs freed carry the
                # next events while SQLite writes, instead of standing empty.
                self._fill()
            if len(self._unmarked) >= MARK_BATCH or not self._inflight:
                self._flush_marks()

    def _next_items(self, timeout: float | None) -> list[tuple]:
        """Wait up to `timeout` s (None: until something happens) for the socket or a wake, let
        paho read, write and keep alive (its callbacks queue what they saw), and return every
        queued item."""
        if not self._queue.empty():
            timeout = 0.0
        client = self._client
        sock = client.socket() if client is not None else None
        if client is None or sock is None:  # no connection (a lost one's disconnect is queued)
            readable, _, _ = select.select([self._wake_r], [], [], timeout)
        else:
            if timeout is None or timeout > NETWORK_TICK_S:
                timeout = NETWORK_TICK_S
            decrypted = getattr(sock, "pending", lambda: 0)() > 0  # TLS: read, not yet taken by paho
            readable, writable, _ = select.select(
                [sock, self._wake_r], [sock] if client.want_write() else [], [], 0.0 if decrypted else timeout
            )
            if sock in readable or decrypted:
                client.loop_read()
            if sock in writable and client.socket() is not None:
                client.loop_write()
            if client.socket() is not None:
                client.loop_misc()
        if self._wake_r in readable:  # a wake byte left unread only wakes the next select at once
            with contextlib.suppress(BlockingIOError):
                self._wake_r.recv(4096)
        items = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def _handle(self, items: list[tuple]) -> None:
        """Act on what the queue brought; acknowledged events join `_unmarked`."""
        for item in items:
            what = item[0]
            if what == "puback":  # by far the most frequent: first
                if item[1] == self._gen:
                    self._on_ack(item[2], item[3])
                continue
            if what == "committed":
                self._add_ready(item[1])
                continue
            if what == "control":
                self._publish_control(*item[1:])
                continue
            if what == "live":
                self._publish_live(*item[1:])
                continue
            if what == "rebirth":
                if self._state == "connected":
                    self._publish_birth()
                continue
            if item[1] != self._gen:
                continue  # from a connection that is already gone
            if what == "connack":
                self._on_connack(item[2], item[3])
            elif what == "disconnect":
                self._flush_marks()
                self._on_lost(item[2])

    def _flush_marks(self) -> None:
        """Write the delivery marks gathered so far, in one relaxed transaction."""
        items, self._unmarked = self._unmarked, []
        self._mark(items)
        if self._state == "connected" and any(item.kind == "media" for item in items):
            self._fill()  # the mark started these files' uploads: their chunks may go now

    def _mark(self, items: list[Pending]) -> None:
        if items:
            if self._media is not None:
                self._media.delivered(items)  # durably, before the mark: no media event without its job
            seqs = [item.seq for item in items]
            self._outbox.mark_delivered(seqs)
            self._delivered += len(seqs)
            self._attempted.difference_update(seqs)

    def _on_ack(self, mid: int, reason: ReasonCode | int) -> None:
        code = reason.value if isinstance(reason, ReasonCode) else int(reason)
        self._meter(0, PUBACK_BYTES)
        if mid in self._control_mids:
            self._control_mids.discard(mid)
            return
        if mid in self._live_mids:
            self._live_mids.discard(mid)
            return
        if self._batches is not None and self._batches.owns(mid):
            self._unmarked.extend(self._batches.acked(mid, code))  # refused: its halves go again
            return
        if self._media is not None and mid in self._media_mids:
            self._media.acked(self._media_mids.pop(mid), code)
            return
        item = self._inflight.pop(mid, None)
        if item is None:
            return
        seq = item.seq
        if code < 0x80:
            self._unmarked.append(item)
            return
        why = f"0x{code:02X} {reason}"
        log.error("broker refused event seq %d: %s; parked (see `yimen status`)", seq, why)
        self._outbox.park(seq, why)
        self._attempted.discard(seq)
        self._parked += 1
        self._report_parked(seq, why)

    def _report_parked(self, seq: int, why: str) -> None:
        """Tell the county, on another topic, that an event was refused: never a silent drop."""
        kinds = [p.kind for p in self._outbox.replay(seq, seq)]
        if kinds and kinds[0] == "parked":
            return  # the report itself was refused: logged above, not reported again
        # append() waits only for the commit thread, which never waits for us: no deadlock.
        self._outbox.append(
            NewEvent("parked", Priority.NORMAL, {"seq": seq, "kind": kinds[0] if kinds else None, "reason": why})
        )

    def _connect(self) -> None:
        cfg = self._config
        self._gen += 1
        gen = self._gen
        self._session = self._outbox.next_session()
        v5 = cfg.protocol == "5"
        client = make_client(cfg, f"yimen-{self._county}-{self._station}")
        client.will_set(
            topics.status_topic(self._county, self._station), codec.offline(self._session, "lost"), qos=1, retain=True
        )
        put = self._queue.put
        client.on_connect = lambda _c, _u, _f, rc, props: put(("connack", gen, rc, props))
        client.on_disconnect = lambda _c, _u, _f, rc, _p: put(("disconnect", gen, rc))
        client.on_publish = lambda _c, _u, mid, rc, _p: put(("puback", gen, mid, rc))
        if self._on_message is not None:
            deliver, meter = self._on_message, self._meter

            def on_message(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
                meter(PUBACK_BYTES, publish_size(msg.topic, len(msg.payload), qos=msg.qos, v5=v5))
                deliver(msg.topic, msg.payload, getattr(msg, "properties", None))

            client.on_message = on_message
        # CONNECT (client id, will, login) and CONNACK, roughly: a few per day on a steady link.
        self._meter(CONNECT_BYTES, CONNACK_BYTES)
        self._set_state("connecting", self._cause)
        try:
            # paho's keepalive logic notices silence after 2 x its keepalive; half ours detects
            # a silently dead link within one of ours (+1 s of loop granularity): under 1.5 x.
            client.connect(
                cfg.host,
                cfg.port,
                keepalive=max(1, cfg.keepalive_s // 2),
                **(session_args(cfg.session_expiry_s) if v5 else {}),
            )
        except OSError as exc:
            self._retry_later(f"cannot reach {cfg.host}:{cfg.port}: {exc}")
            return
        self._client = client  # its CONNECT is written; the loop reads the CONNACK

    def _retry_later(self, cause: str) -> None:
        self._outbox.outage_started(cause)
        self._set_state("disconnected", cause)
        delay = self._backoff.next_delay()
        self._next_attempt = time.monotonic() + delay
        log.debug("reconnecting in %.2f s", delay)

    def _on_connack(self, reason: ReasonCode, props: Any) -> None:
        if reason.is_failure:
            code = reason.value
            self._drop_client()
            if code in _CREDENTIAL_REFUSALS:
                # Still needs_enrolment (a new claim is taken up at once), but the same login is
                # tried again, slowly: the broker's auth may only have failed for a while.
                delay = self._refused_backoff.next_delay()
                self._next_attempt = time.monotonic() + delay
                at = time.strftime("%H:%M:%S", time.localtime(time.time() + delay))
                cause = f"broker refused our credentials: {reason} (0x{code:02X}); trying the same login again at {at}"
                self._outbox.outage_started(cause)
                self._set_state("needs_enrolment", cause)
                log.error("%s, or enrol this station again", cause)
            else:
                self._retry_later(f"broker refused the connection: {reason} (0x{code:02X})")
            return
        receive_max = getattr(props, "ReceiveMaximum", None)
        if self._aliases is not None:
            self._aliases.reset(getattr(props, "TopicAliasMaximum", None))
        self._window = min(self._config.inflight, receive_max or self._config.inflight)
        self._backoff.reset()
        self._refused_backoff.reset()
        self._outbox.outage_ended()
        self._set_state("connected", f"session {self._session}")
        assert self._client is not None
        # Subscriptions first, then birth: a county that sees us online can command us at once.
        for topic, qos in self._subscriptions:
            self._client.subscribe(topic, qos=qos)
        self._publish_birth()

    def _publish_birth(self) -> None:
        payload = codec.online(self._session, version=__version__, **self._status_fields())
        self._publish_control(topics.status_topic(self._county, self._station), payload, None, retain=True)

    def _publish_control(self, topic: str, payload: bytes, properties: Any, retain: bool = False) -> None:
        """Queue it for the window (`_fill` sends it ahead of events): like events, births,
        replies and replays never exceed the broker's Receive Maximum."""
        if self._client is None or self._state != "connected":
            log.warning("not connected: dropped a %d-byte message for %s", len(payload), topic)
            return
        self._controls.append((topic, payload, properties, retain))

    def _send_controls(self, room: int) -> int:
        """Send queued control messages into `room` slots of the window; returns the slots used."""
        assert self._client is not None
        used = 0
        v5 = self._config.protocol == "5"
        while self._controls and used < room:
            topic, payload, properties, retain = self._controls[0]
            info = self._client.publish(topic, payload, qos=1, retain=retain, properties=properties)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break  # the connection went away; the disconnect that follows drops the queue
            self._controls.popleft()
            self._control_mids.add(info.mid)
            self._meter(publish_size(topic, len(payload), qos=1, v5=v5), 0)
            used += 1
        return used

    def _publish_live(self, topic: str, payload: bytes) -> None:
        if self._client is None or self._state != "connected" or self._live_mids:
            self._live_skipped += 1
            return
        info = self._client.publish(topic, payload, qos=0)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._live_mids.add(info.mid)
            self._meter(len(payload) + len(topic) + 5, 0)
            if self._media is not None:
                self._media.charge(len(payload) + len(topic) + 5)

    def _on_lost(self, reason: ReasonCode) -> None:
        self._drop_client()
        self._retry_later(f"connection lost: {reason}")

    def _drop_client(self) -> None:
        """Forget the connection: its mids mean nothing to the next one; the outbox resends."""
        sock = self._client.socket() if self._client is not None else None
        if sock is not None:
            sock.close()  # no DISCONNECT: a connection dropped unasked leaves the broker its will
        self._client = None
        self._gen += 1  # whatever this connection's callbacks still say is now stale
        self._inflight.clear()
        self._forget_ready()
        self._control_mids.clear()
        self._controls.clear()  # replies and replays are transient; a birth is sent again at connect
        self._live_mids.clear()
        self._media_mids.clear()
        if self._media is not None:
            self._media.lost()
        if self._batches is not None:
            self._batches.lost()

    def _next_pending(self, room: int) -> list[Pending]:
        """Up to `room` events to send next, priority first, then seq.

        Read ahead from the outbox in blocks: valid only while no append has been committed
        since (a new commit may hold a higher priority, or have evicted what was read), which
        the outbox's commit counter tells without a query, unless the commits since were handed
        over whole (`_add_ready`). A read that came back short held all there was: until the
        next commit, an empty read-ahead means nothing is waiting."""
        if self._ready_at != self._outbox.commits or (self._ready_more and not self._ready):
            exclude = [item.seq for item in self._inflight.values()] + [item.seq for item in self._unmarked]
            if self._batches is not None:
                exclude += self._batches.holds()
            limit = max(room, READ_AHEAD)
            read = self._outbox.read_pending(limit, exclude=exclude)
            self._ready = collections.deque(read.items)
            self._ready_at = read.commit
            self._ready_more = len(self._ready) == limit  # the outbox may hold more than was read
        return [self._ready.popleft() for _ in range(min(room, len(self._ready)))]

    def _add_ready(self, committed: Committed) -> None:
        """A commit's events join a read-ahead that holds everything up to the commit before it,
        sparing a read per event at a steady trickle; otherwise the next fill reads afresh."""
        if not committed.whole or self._ready_at != committed.commit - 1 or self._ready_more:
            return
        new = sorted(committed.sendable, key=send_order)  # seqs above all read: only priority reorders
        if self._ready and new and new[0].priority > self._ready[-1].priority:
            self._ready = collections.deque(sorted([*self._ready, *new], key=send_order))
        else:
            self._ready.extend(new)
        self._ready_at = committed.commit

    def _forget_ready(self) -> None:
        """Drop the read-ahead: what was taken from it and not sent is read again."""
        self._ready.clear()
        self._ready_at = -1

    def _fill(self) -> None:
        """Keep the window full: priority first, then seq; each event's stored bytes. Media
        chunks take what is left only once every pending event is in flight."""
        room = self._window - len(self._inflight) - len(self._media_mids) - len(self._control_mids)
        if room <= 0 or self._client is None:
            return
        room -= self._send_controls(room)
        if self._batches is not None:
            room -= len(self._batches)
            if room > 0:
                room = self._fill_batches(room)
        if room <= 0:
            return
        items = self._next_pending(room)
        for item in items:
            if not self._publish_events([item]):
                return
        if self._media is not None and len(items) < room:
            # Nothing else waits in the outbox: the rest of the window may carry media.
            self._fill_media(room - len(items))

    def _late(self, item: Pending) -> bool:
        """A re-send: from before this process started, or already published once by it."""
        return item.seq < self._first_live_seq or item.seq in self._attempted

    def _publish_events(self, group: list[Pending]) -> bool:
        """Publish one event (its stored bytes) or a batch of one kind; False if the connection
        went away under us (the disconnect item follows and the outbox sends them again)."""
        assert self._client is not None
        first = group[0]
        late = self._late(first)
        topic = self._topics.get(first.kind)
        if topic is None:
            topic = self._topics[first.kind] = topics.event_topic(self._county, self._station, first.kind)
        if len(group) == 1:
            payload = first.payload
        else:
            assert self._batches is not None
            payload = pack((p.payload for p in group), level=self._batches.limits.level)
        props = codec.replay_properties() if (late and self._config.protocol == "5") else None
        if self._aliases is not None:
            topic, props = self._aliases.publish_args(topic, props)
        info = self._client.publish(topic, payload, qos=1, properties=props)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._forget_ready()
            return False
        self._meter(publish_size(topic, len(payload), qos=1, v5=self._config.protocol == "5") + _props_bytes(props), 0)
        if len(group) == 1:
            self._inflight[info.mid] = first
        else:
            self._batches.published(info.mid, group, len(payload))  # type: ignore[union-attr]
        self._attempted.update(p.seq for p in group if p.seq >= self._first_live_seq)  # older: re-sends anyway
        return True

    def _fill_batches(self, room: int) -> int:
        """While a backlog waits, send it in batches (halves of refused ones first); returns the
        window slots left for single events and media."""
        assert self._batches is not None
        batches = self._batches
        while room > 0 and batches.room() > 0:
            group = batches.next_again()
            if group is None:
                if self._ready_more and len(self._ready) < batches.limits.max_events:
                    self._ready.clear()  # read afresh: the read-ahead's tail may hide a backlog
                taken = self._next_pending(batches.limits.max_events)
                if len(taken) < self._batch_min:
                    self._ready.extendleft(reversed(taken))
                    break  # no backlog: events go one by one
                made = groups(taken, self._late, batches.limits)
                group, rest = made[0], [p for g in made[1:] for p in g]
                self._ready.extendleft(reversed(rest))  # the next round packs them
            if not self._publish_events(group):
                return 0
            room -= 1
        # Batches in flight fill their slots: the backlog waits for them rather than going alone.
        return room if batches.room() > 0 else 0

    def _fill_media(self, room: int) -> None:
        assert self._client is not None and self._media is not None
        for message in self._media.take(room):
            info = self._client.publish(message.topic, message.payload, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break  # the disconnect that follows puts it (and the rest) back
            self._media_mids[info.mid] = message.key
            self._meter(message.size, 0)

    def _shutdown(self) -> None:
        """Clean stop: say offline ourselves (a clean DISCONNECT suppresses the will)."""
        deadline = time.monotonic() + SHUTDOWN_DRAIN_S
        # Producers have stopped by now: on a working link, deliver what is left (briefly), so a
        # clean stop leaves nothing behind; whatever does not make it stays in the outbox.
        while self._state == "connected" and time.monotonic() < deadline:
            self._fill()
            if not self._inflight and not self._control_mids and not self._batches:
                break
            # An empty return is the network tick or a stray wake, not the end: the deadline is.
            self._handle(self._next_items(max(0.0, deadline - time.monotonic())))
        client = self._client
        if client is not None and self._state == "connected":
            info = client.publish(
                topics.status_topic(self._county, self._station),
                codec.offline(self._session, "shutdown"),
                qos=1,
                retain=True,
            )
            deadline = time.monotonic() + 2.0
            while not info.is_published() and time.monotonic() < deadline and client.socket() is not None:
                self._handle(self._next_items(deadline - time.monotonic()))  # a late PUBACK still counts
        self._flush_marks()
        if client is not None:
            # Also when the CONNACK is still on its way: a clean DISCONNECT after that CONNECT, or
            # the broker publishes the will and the county reads a clean stop as a lost link.
            client.disconnect()
            while client.want_write() and client.socket() is not None and time.monotonic() < deadline + 1.0:
                self._next_items(0.05)  # a DISCONNECT the socket could not take at once
        self._client = None
        self._outbox.outage_started("gateway stopped")
        self._set_state("stopped", "gateway stopped")
