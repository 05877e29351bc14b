"""The serial window-unit driver: one reader thread per port, speaking firmware/link.py.

Each port has one owner thread (`window-unit:<path>`) that reads, decodes, emits, acknowledges,
retransmits and pings; nothing else touches the port. Other threads only hand LED requests over
through a queue. For a KEY the thread calls `on_key()`, which returns once what it caused is in the
outbox on disk, and only then writes the ACK: a press the unit saw acknowledged survives the Pi
losing power the next instant. A HELLO from an unknown uid is reported, not acknowledged.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from edge.events import Emit
from firmware import link
from peripherals.keyevents import KeyPress, OnKey, record_keys, unit_event
from peripherals.window_unit import AUTO, WindowsConfig, fwupdate
from peripherals.window_unit.port import PortError, SerialPort, find_units

FLASH_S = 1.5  # as the firmware's FLASH_MS
SHOW_FIELDS = ("name", "no", "ticket")  # as the firmware's unit.SHOW_FIELDS
SHOW_MAX = 16
CODED = ("code", "card")  # keys whose KEY frame carries what was typed or read, under the key's name


class Port(Protocol):
    path: str

    def read(self) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


OpenPort = Callable[[str, int], Port]
FindPorts = Callable[[], list[str]]


class Widener:
    """Widens a counter that wraps at 2**29 on the wire (unit uptime, press count) within a session.

    Steps are taken as signed, so a press queued before the last PONG (an older uptime) does not
    look like a jump of six days forward.
    """

    def __init__(self) -> None:
        self._raw: int | None = None
        self.value = 0

    def widen(self, raw: int) -> int:
        if self._raw is None:
            self.value = raw
        else:
            self.value += ((raw - self._raw + link.WIRE_HALF) % link.WIRE_PERIOD) - link.WIRE_HALF
        self._raw = raw
        return self.value


def _wire(payload: dict[str, Any], key: str) -> int | None:
    """A counter as the unit sends it: an integer in 0..WIRE_PERIOD-1 (it wraps there), else None."""
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < link.WIRE_PERIOD:
        return None
    return value


@dataclass
class Session:
    """What a HELLO told us, and the widened counters since."""

    uid: str
    fw: str
    model: str
    keys: list[str]
    window: int
    uptime: Widener
    presses: Widener
    proto: int = link.PROTO
    nkeys: int = 0  # keys the HELLO announced; the rest of `keys` come in KEYS frames

    def fields(self, update: dict[str, Any]) -> dict[str, Any]:
        """What of a SET a unit of this session's protocol understands: version 1 only `led`, so
        a flash becomes that state (the driver sets the window's own state again after FLASH_S)."""
        if self.proto >= 2:
            return update
        fields = {k: v for k, v in update.items() if k == "led"}
        if "flash" in update:
            fields["led"] = update["flash"]
        return fields


class BadFrame(ValueError):
    """A well-formed frame whose payload does not say what its type requires."""


def _key_list(payload: dict[str, Any], kind: str) -> list[str]:
    keys = payload.get("keys")
    if not isinstance(keys, list) or len(keys) > link.MAX_KEYS or not all(link.is_key(k) for k in keys):
        raise BadFrame(f"{kind} keys is not a list of at most {link.MAX_KEYS} key names: {payload!r}")
    return keys


def _hello_fields(payload: dict[str, Any]) -> tuple[int, str, str, str, list[str], int]:
    proto, uid, fw, model = (payload.get(k) for k in ("proto", "uid", "fw", "model"))
    if not isinstance(proto, int) or not isinstance(uid, str) or not uid:
        raise BadFrame(f"HELLO without proto and uid: {payload!r}")
    keys = _key_list(payload, "HELLO")
    nkeys = payload.get("nkeys", len(keys))  # version 1 lists every key in its HELLO
    if not isinstance(nkeys, int) or not len(keys) <= nkeys <= link.MAX_KEYS:
        raise BadFrame(f"HELLO nkeys {nkeys!r} is not {len(keys)}..{link.MAX_KEYS}")
    return proto, uid, str(fw), str(model), keys, nkeys


class UnitConnection:
    """One port and whatever unit is on it, served by one named thread."""

    def __init__(
        self,
        owner: WindowUnits,
        path: str,
        window: int | None,
        *,
        reopen: bool,
        on_exit: Callable[[str], None],
    ) -> None:
        self.owner = owner
        self.path = path
        self.fixed_window = window  # a unit on a named path belongs to that window
        self.reopen = reopen  # named paths are retried; auto-found ones end and are found again
        self._on_exit = on_exit
        self.log = logging.getLogger(f"yimen.window_unit.{path.rsplit('/', 1)[-1]}")
        self.commands: queue.Queue[dict[str, Any]] = queue.Queue()  # SET fields to send
        self.state = "absent"
        self.session: Session | None = None
        self.link = link.Link(os.urandom(1)[0])
        self.decoder = link.Decoder()
        self.counts = {
            "presses": 0,
            "refused_keys": 0,
            "bad_frames": 0,
            "no_session": 0,
            "refused": 0,
            "emit_failures": 0,
        }
        self.pong: dict[str, int] = {}
        self.reported_uid: str | None = None  # unknown or refused uid, reported once per connection
        self._set: dict[str, Any] = {}  # SET fields to send once the link is free
        self._unflash_at = 0.0  # a version 1 unit shows a flash as its LED state until then
        self._last_ping = 0.0
        # A firmware update (fwupdate.py): FILE payloads still to send, then (target, from, deadline).
        self._fw_frames: Iterator[dict[str, Any]] | None = None
        self._fw_awaiting: tuple[str, str, float] | None = None
        self._thread = threading.Thread(target=self._run, name=f"window-unit:{path}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        session = self.session
        return {
            "port": self.path,
            "state": self.state,
            "window": session.window if session else self.fixed_window,
            "uid": session.uid if session else self.reported_uid,
            "fw": session.fw if session else None,
            "model": session.model if session else None,
            "proto": session.proto if session else None,
            "keys": list(session.keys) if session else [],
            "frames": self.decoder.frames,
            "errors": dict(self.decoder.errors),
            "resends": self.link.resends,
            **self.counts,
            **{f"unit_{k}": v for k, v in self.pong.items()},
        }

    # The owner thread from here on.

    def _run(self) -> None:
        stopping = self.owner.stopping
        try:
            while not stopping.is_set():
                try:
                    port = self.owner.open_port(self.path, self.owner.config.options.baud)
                except PortError as exc:
                    self.state = "absent"
                    self.log.debug("%s", exc)
                else:
                    self._serve(port)
                if not self.reopen:
                    return
                stopping.wait(self.owner.config.options.scan_s)
        finally:
            self._on_exit(self.path)

    def _serve(self, port: Port) -> None:
        self.log.info("opened %s", self.path)
        self.state = "connecting"
        self.session = None
        self.reported_uid = None
        self.link.reset()
        self._last_ping = 0.0
        try:
            port.write(b"\x00")  # flush whatever half frame the unit has buffered
            while not self.owner.stopping.is_set():
                data = port.read()
                if data:
                    for ftype, seq, payload in self.decoder.feed(data):
                        self._frame(port, ftype, seq, payload)
                self._tick(port)
        except PortError as exc:
            self.log.warning("%s", exc)
            self._went_offline("port closed")
        finally:
            port.close()
        if self.state != "offline":
            self.state = "absent"

    def _tick(self, port: Port) -> None:
        while not self.commands.empty():
            self._set.update(self.commands.get_nowait())
        now = link.ticks_ms()
        due = self.link.due(now)
        if due == link.RESEND:
            port.write(self.link.resend(now))
        elif due == link.GIVE_UP:
            self._went_offline("silent")
        if self.link.busy():
            return
        if self._fw_awaiting is not None and time.monotonic() > self._fw_awaiting[2]:
            self._firmware_result(
                "no-return", "no HELLO in time; the unit restores its previous firmware at its next start"
            )
        update = self._next_set()
        if update:
            try:
                payload = link.dumps(update)
            except link.FrameError:  # cannot happen with SHOW_MAX; never take the port down for it
                self.log.error("SET %r does not fit a frame: sent without the display fields", update)
                payload = link.dumps({k: v for k, v in update.items() if k != "show"})
            port.write(self.link.send(link.SET, payload, now))
        elif self._fw_frames is not None and self.session is not None:
            step = next(self._fw_frames, None)
            if step is not None:
                port.write(self.link.send(link.FILE, link.dumps(step), now))
            else:  # the commit was acknowledged: the unit reboots once its presses are acknowledged
                self._fw_frames = None
                updates = self.owner.firmware
                assert updates is not None
                self._fw_awaiting = (updates.bundle.version, self.session.fw, time.monotonic() + updates.return_s)
        elif time.monotonic() - self._last_ping >= self.owner.config.options.ping_s:
            # Also without a session: an unanswered PONG is what makes a unit say HELLO again.
            self._last_ping = time.monotonic()
            port.write(self.link.send(link.PING, b"{}", now))

    def _next_set(self) -> dict[str, Any]:
        """The SET fields to send now, as this session's unit understands them."""
        session, wanted, self._set = self.session, self._set, {}
        if session is None:
            return {}
        if session.proto < 2:  # a flash is the error state for a while, then the window's own again
            if "flash" in wanted:
                self._unflash_at = time.monotonic() + FLASH_S
            elif self._unflash_at and time.monotonic() >= self._unflash_at:
                self._unflash_at = 0.0
                wanted.setdefault("led", self.owner.shown_for(session.window)["led"])
        return session.fields(wanted)

    def _frame(self, port: Port, ftype: int, seq: int, payload: dict[str, Any]) -> None:
        if ftype == link.ACK:
            self.link.acked(seq)
            return
        if ftype in (link.SET, link.PING):
            self.counts["bad_frames"] += 1  # only a gateway sends these
            return
        try:
            if ftype == link.HELLO:
                self._hello(port, seq, payload)
            elif self.session is None:
                self.counts["no_session"] += 1  # unacknowledged, so the unit starts a session
            elif self.link.is_dup(seq):
                port.write(link.ack(seq))
            else:
                if ftype == link.KEY:
                    self._key(self.session, payload)
                elif ftype == link.KEYS:
                    self._keys(self.session, payload)
                else:
                    self._pong(self.session, payload)
                self.link.accept(seq)
                port.write(link.ack(seq))
        except BadFrame as exc:
            # Acknowledged all the same: a frame that can never be used must not block the queue.
            self.counts["bad_frames"] += 1
            self.log.warning("dropped from unit: %s", exc)
            self.link.accept(seq)
            port.write(link.ack(seq))
        except Exception:
            # The outbox refused (disk full, closed): no ACK, so the unit keeps the press and resends.
            self.counts["emit_failures"] += 1
            self.log.exception("could not record frame %s from %s", link.NAMES[ftype], self.path)

    def _hello(self, port: Port, seq: int, payload: dict[str, Any]) -> None:
        if self.session is not None and self.link.is_dup(seq):
            port.write(link.ack(seq))
            return
        proto, uid, fw, model, keys, nkeys = _hello_fields(payload)
        if proto not in link.PROTOS:
            self.state = "refused"
            self.counts["refused"] += 1
            if self.reported_uid != uid:
                self.reported_uid = uid
                self.log.error(
                    "window unit %s on %s speaks link protocol %d; this gateway speaks %s: "
                    "update the unit's firmware (firmware/README.md)",
                    uid,
                    self.path,
                    proto,
                    " and ".join(str(p) for p in link.PROTOS),
                )
            return
        window = self.owner.window_for(self.fixed_window, uid)
        if window is None:
            # Not acknowledged: the unit keeps its presses and shows its error LED until it is known.
            self.state = "unknown"
            if self.reported_uid != uid:
                self.owner.report_unit("unknown", self.fixed_window, uid, self.path, fw=fw, model=model)
                self.reported_uid = uid
                self.log.warning("unit %s on %s is no window's: put its uid in [[windows]]", uid, self.path)
            return
        self.owner.report_unit("online", window, uid, self.path, fw=fw, model=model, keys=keys)
        self.link.reset()
        self.link.accept(seq)
        port.write(link.ack(seq))
        self.session = Session(uid, fw, model, keys, window, Widener(), Widener(), proto, nkeys)
        self.state = "online"
        self._set = self.owner.shown_for(window)
        self.log.info("unit %s (fw %s, %s, protocol %d) online for window %d", uid, fw, model, proto, window)
        self._check_keys(self.session)
        self._firmware_hello(uid, fw, payload)

    def _keys(self, session: Session, payload: dict[str, Any]) -> None:
        """The rest of a HELLO's key list; `at` must continue where the list stands."""
        keys = _key_list(payload, "KEYS")
        if payload.get("at") != len(session.keys) or len(session.keys) + len(keys) > session.nkeys:
            raise BadFrame(f"KEYS at {payload.get('at')!r} does not continue {len(session.keys)} of {session.nkeys}")
        session.keys += keys
        self._check_keys(session)

    def _check_keys(self, session: Session) -> None:
        """Once a unit has announced all its keys: warn about any the station does not know (a
        reason key named differently on the unit and in [ratings] reasons): each press of one is
        refused."""
        if len(session.keys) < session.nkeys:
            return
        unknown = [key for key in session.keys if not self.owner.known_key(key)]
        if unknown:
            self.log.warning(
                "unit %s of window %d has keys this station does not know, which it will refuse: %s "
                "(rename them in the unit's settings.py, or add them to [ratings] reasons)",
                session.uid,
                session.window,
                ", ".join(unknown),
            )

    def _firmware_hello(self, uid: str, fw: str, hello: dict[str, Any]) -> None:
        """A unit back after an update says how it went; one on another version is updated."""
        updates = self.owner.firmware
        if self._fw_awaiting is not None:
            target, _before, _deadline = self._fw_awaiting
            if fw == target:
                self._firmware_result("updated", None)
            else:
                why = f"the unit came back with {fw}, not {target}: that did not start; the unit put back its files"
                self._firmware_result("rolled-back", why)
        if updates is not None and self._fw_frames is None and updates.wanted(uid, fw, hello):
            self.log.info("updating unit %s from firmware %s to %s", uid, fw, updates.bundle.version)
            self._fw_frames = updates.bundle.frames()
            self._fw_awaiting = None

    def _firmware_result(self, result: str, reason: str | None) -> None:
        assert self._fw_awaiting is not None
        target, before, _deadline = self._fw_awaiting
        self._fw_awaiting = None
        session = self.session
        window = session.window if session else self.fixed_window
        uid = session.uid if session else (self.reported_uid or "?")
        log = self.log.info if result == "updated" else self.log.error
        log("unit %s firmware update %s -> %s: %s%s", uid, before, target, result, f" ({reason})" if reason else "")
        if result != "updated" and self.owner.firmware is not None:
            self.owner.firmware.gave_up(uid)  # not offered again: the county decides what comes next
        self.owner.report_unit("firmware", window, uid, self.path, result=result, fw_from=before, fw_to=target,
                               reason=reason)  # fmt: skip

    def _key(self, session: Session, payload: dict[str, Any]) -> None:
        key, n, ms = payload.get("key"), _wire(payload, "n"), _wire(payload, "ms")
        if n is None or ms is None:
            raise BadFrame(f"KEY payload {payload!r}")
        extra = {key: payload.get(key)} if key in CODED else {}
        if not link.is_key(key) or not all(link.is_code(value) for value in extra.values()):
            # Acknowledged (resending it cannot help) and shown as refused on the unit.
            self.counts["refused_keys"] += 1
            self._set["flash"] = "error"
            self.log.warning("window %d: unit %s sent key %.40r, which no station knows: refused", session.window,
                             session.uid, key)  # fmt: skip
            return
        press = KeyPress(session.window, key, session.uid, session.presses.widen(n), session.uptime.widen(ms), extra)
        if self.owner.on_key(press) == "error":
            self.counts["refused_keys"] += 1
            self._set["flash"] = "error"
        self.counts["presses"] += 1

    def _pong(self, session: Session, payload: dict[str, Any]) -> None:
        up_ms, n, dropped = (_wire(payload, k) for k in ("up_ms", "n", "dropped"))
        if up_ms is None or n is None or dropped is None:
            raise BadFrame(f"PONG payload {payload!r}")
        self.pong = {"up_ms": session.uptime.widen(up_ms), "n": session.presses.widen(n), "dropped": dropped}

    def _went_offline(self, reason: str) -> None:
        session, self.session = self.session, None
        if session is None:
            return
        self.state = "offline"
        self.log.warning("unit %s of window %d offline (%s)", session.uid, session.window, reason)
        try:
            self.owner.report_unit("offline", session.window, session.uid, self.path, reason=reason)
        except Exception:
            self.log.exception("could not record that unit %s went offline", session.uid)


class WindowUnits:
    """All serial window units of the station: named ports, and `auto` ones found by USB id."""

    def __init__(
        self,
        config: WindowsConfig,
        emit: Emit,
        *,
        on_key: OnKey | None = None,
        known_key: Callable[[str], bool] | None = None,
        open_port: OpenPort = SerialPort,
        find_ports: FindPorts | None = None,
        firmware: fwupdate.Updates | None = None,
    ) -> None:
        self.config = config
        self.firmware = firmware  # units on another firmware version are updated to this one
        self.emit = emit
        self.on_key = on_key or record_keys(emit)
        self.known_key = known_key or link.is_builtin  # the station's keys: reason keys are configured
        self.open_port = open_port
        self.find_ports = find_ports or (lambda: find_units(config.options.usb_id_pairs, config.options.ports))
        self.stopping = threading.Event()
        self.log = logging.getLogger("yimen.window_unit")
        self._lock = threading.Lock()  # guards _connections and _shown, touched by every thread
        self._connections: dict[str, UnitConnection] = {}
        self._shown: dict[int, dict[str, Any]] = {}  # window -> SET fields as last set
        self._scanner: threading.Thread | None = None
        self._named = {w.unit: w.number for w in config.with_units if w.unit != AUTO}
        self._auto_uids = {w.uid: w.number for w in config.with_units if w.unit == AUTO}

    def start(self) -> None:
        self.log.info("window units: %s", ", ".join(f"{w.number}={w.unit}" for w in self.config.with_units))
        for path, window in self._named.items():
            self._connect(path, window, reopen=True)
        if self._auto_uids:
            self._scanner = threading.Thread(target=self._scan, name="window-unit-scan", daemon=True)
            self._scanner.start()

    def stop(self) -> None:
        self.stopping.set()
        if self._scanner is not None:
            self._scanner.join(5)
        with self._lock:
            connections = list(self._connections.values())
        for connection in connections:
            connection.join(5)

    def status(self) -> dict[str, Any]:
        with self._lock:
            connections = list(self._connections.values())
        return {"units": sorted((c.status() for c in connections), key=lambda s: s["port"])}

    def set_led(self, window: int, led: str) -> None:
        if led not in link.LEDS:
            raise ValueError(f"led {led!r} is not one of {', '.join(link.LEDS)}")
        self._update(window, {"led": led})

    def set_limit(self, window: int, level: str) -> None:
        """The window's time-limit light: one of firmware.link.LIMITS (version 2 units)."""
        if level not in link.LIMITS:
            raise ValueError(f"time-limit level {level!r} is not one of {', '.join(link.LIMITS)}")
        self._update(window, {"lim": level})

    def show(self, window: int, fields: dict[str, str]) -> None:
        """What the window unit's display shows: clerk `name` and `no`, `ticket` (version 2 units),
        each cut to SHOW_MAX characters: what a unit draws, and a SET that always fits a frame."""
        self._update(window, {"show": {k: str(fields.get(k, ""))[:SHOW_MAX] for k in SHOW_FIELDS}})

    def _update(self, window: int, fields: dict[str, Any]) -> None:
        with self._lock:
            self._shown.setdefault(window, {"led": "idle"}).update(fields)
            targets = [c for c in self._connections.values() if c.session and c.session.window == window]
        for connection in targets:
            connection.commands.put(fields)

    # Called from the connection threads.

    def shown_for(self, window: int) -> dict[str, Any]:
        """Everything a unit coming online at `window` should show."""
        with self._lock:
            return dict(self._shown.get(window, {"led": "idle"}))

    def window_for(self, fixed: int | None, uid: str) -> int | None:
        """A unit's window: its named port's (unless that window names another uid), or by uid."""
        if fixed is not None:
            wanted = next(w.uid for w in self.config.windows if w.number == fixed)
            return fixed if wanted in (None, uid) else None
        return self._auto_uids.get(uid)

    def report_unit(self, state: str, window: int | None, uid: str, port: str, **extra: Any) -> None:
        self.emit(unit_event(state, window, uid, port, **extra))

    def _connect(self, path: str, window: int | None, *, reopen: bool) -> None:
        connection = UnitConnection(self, path, window, reopen=reopen, on_exit=self._forget)
        with self._lock:
            self._connections[path] = connection
        connection.start()

    def _forget(self, path: str) -> None:
        if self.stopping.is_set():
            return  # keep the last status for whoever asks during shutdown
        with self._lock:
            self._connections.pop(path, None)

    def _scan(self) -> None:
        while not self.stopping.is_set():
            try:
                found = self.find_ports()
            except OSError as exc:
                self.log.warning("cannot list serial ports: %s", exc)
                found = []
            for path in found:
                with self._lock:
                    known = path in self._connections or path in self._named
                if not known:
                    self._connect(path, None, reopen=False)
            self.stopping.wait(self.config.options.scan_s)
