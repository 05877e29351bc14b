"""The station service: one owner thread ("yimen-station") for the queue, ratings and clerks.

Drivers call `press`, `swipe`, `keypad_code` and `command` from their own threads; each call
only hands a request to the owner thread and waits for its answer. The owner handles one
request at a time: it applies what is due by the clock (reason waits, closings, a new day),
runs the request, commits the resulting state with its events to the outbox in one durable
transaction (edge/station/store.py), and only then answers. So when `press` returns, its events
are on disk: a window-unit driver may acknowledge the press to the unit.

Printing and announcing run on their own threads and report back as requests, so neither a
slow printer nor a speech engine ever holds up a press at another window. A ticket is
`issuing` (numbered, durable, not yet callable) until the printer answers; its `issue` event
then carries the printer's outcome, and the press that asked for it is answered.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from edge.station import clerks, limits, ratings
from edge.station import queue as queue_mod
from edge.station.announce import STOP_S, Announcer, Worker
from edge.station.clerks import Clerks
from edge.station.config import StationSettings
from edge.station.limits import Limits
from edge.station.queue import Queue, Refused
from edge.station.ratings import Ratings, parse_rating_key
from edge.station.state import Change, Feedback, State, Status, Ticket, Window, iso
from edge.station.store import EventLog, StationStore
from firmware import link
from peripherals.printer import NoPrinter, Printer, PrintOutcome
from peripherals.printer import Ticket as PrintedTicket

log = logging.getLogger("yimen.station")

STATION_KINDS = (queue_mod.KIND, ratings.KIND, clerks.KIND, limits.KIND)
QUEUE_KEYS = ("next", "recall", "skip", "start", "done")
PRINT_QUEUE = 32  # tickets waiting for the printer beyond this are issued unprinted ("busy")
CALLS_KEPT = 8  # the latest calls a calling screen shows
LIMITS_EVERY = timedelta(seconds=1)  # time limits are checked this often between ticks
VIEW_WAIT_S = 1.0  # a reader of the queue's view waits this long for a request under way


def local_now() -> datetime:
    return datetime.now().astimezone()


class NotRecorded(RuntimeError):
    """A request that left nothing on disk (the station is stopping, its commit failed): the
    caller must not tell anyone it was taken; a window unit, unanswered, sends the press again."""


@dataclass(frozen=True)
class Outcome:
    """The answer to a press or command: the unit's feedback, and for a person, what happened."""

    feedback: Feedback
    ok: bool = True
    detail: str = ""
    ticket: str | None = None  # the number issued, called or acted on


# A handler's answer: an Outcome, a Feedback alone, None for "the window's light as it now is",
# or _DEFERRED when another request will answer (a ticket waiting for the printer).
Answer = Outcome | Feedback | None
_DEFERRED = object()


class _Reply:
    """A request's one answer, handed from the owner thread to the caller waiting for it: a lock
    released once. Lighter than a Future (no condition, no callbacks), and made for every press."""

    __slots__ = ("_answered", "_error", "_outcome")

    def __init__(self) -> None:
        self._answered = threading.Lock()
        self._answered.acquire()
        self._outcome: Outcome | None = None
        self._error: BaseException | None = None

    def set_result(self, outcome: Outcome) -> None:
        self._outcome = outcome
        self._answered.release()  # a second answer raises RuntimeError: a bug, never a lost one

    def set_exception(self, error: BaseException) -> None:
        self._error = error
        self._answered.release()

    def result(self) -> Outcome:
        self._answered.acquire()
        if self._error is not None:
            raise self._error
        assert self._outcome is not None
        return self._outcome


@dataclass
class _Request:
    run: Callable[[datetime, Change], Any]
    window: int | None = None  # whose light a None answer means
    tick: bool = False  # the clock's turn: everything due is applied, the time limits too
    reply: _Reply = field(default_factory=_Reply)


@dataclass(frozen=True)
class _PrintJob:
    ticket_id: str
    ticket: PrintedTicket
    source: str  # who asked for the ticket, for its issue event


class Station:
    def __init__(
        self,
        settings: StationSettings,
        station_id: str,
        outbox: EventLog,
        *,
        printer: Printer,
        announcer: Announcer | None = None,
        now: Callable[[], datetime] = local_now,
        day_known: Callable[[], bool] = lambda: True,
        tick_s: float = 1.0,
    ) -> None:
        self._settings = settings
        self._outbox = outbox
        self._printer = printer
        self._announcer = announcer
        self._now = now
        # False while the clock is not synced: then the day goes on (edge/clock.py), its ticket
        # numbers too, rather than a new day begun on a clock that cannot know the date.
        self._day_known = day_known
        self._tick_s = tick_s
        self._limits_at: datetime | None = None  # when the time limits were last checked
        self._queue = Queue(settings, station_id)
        self._ratings = Ratings(settings, self._queue)
        self._clerks = Clerks(settings.clerks)
        self._limits = Limits(settings)
        self._store = StationStore(outbox, STATION_KINDS)
        self._state = self._load()
        self._requests: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._printing = Worker("yimen-station-print", self._print, PRINT_QUEUE)
        self._thread = threading.Thread(target=self._run, name="yimen-station", daemon=True)
        self._awaiting: dict[str, _Request] = {}  # ticket id -> the request waiting for its print
        self._after: list[Callable[[], None]] = []  # what to do once the current change is committed
        self._current: _Request | None = None  # the request being handled
        self._leds: dict[int, Feedback] = {}
        self._led_listeners: list[Callable[[int, Feedback], None]] = []
        self._shown: dict[int, dict[str, Any]] = {}  # window -> time-limit light and display, as last told
        self._window_listeners: list[Callable[[int, dict[str, Any]], None]] = []
        self._view_listeners: list[Callable[[], None]] = []
        self._calls: deque[dict[str, Any]] = deque(maxlen=CALLS_KEPT)
        self._called = 0  # calls (and recalls) since start: lets a calling screen tell a new one
        # The owner holds this while a request changes the state; a reader of the views takes it.
        self._state_lock = threading.Lock()
        self._view_now = now()  # the moment of the last request or tick: what the views are as of
        self._views = self._make_views(self._view_now)  # (snapshot, hall) as last made
        self._views_stale = False  # a request or tick came since they were made
        self._stopping = False

    # -- lifecycle --------------------------------------------------------------------------------

    def _load(self) -> State:
        state = self._store.load(self._now().date().isoformat())
        for cfg in self._settings.windows:
            state.windows.setdefault(cfg.number, Window(cfg.number))
        return state

    def start(self) -> None:
        """Finish tickets a restart caught at the printer, then serve requests."""
        interrupted = PrintOutcome.declined("interrupted", "the gateway restarted before the printer answered")
        for ticket in self._state.tickets.values():
            if ticket.status == Status.ISSUING:
                self._requests.put(self._printed_request(ticket.id, "station", interrupted))
        self._printing.start()
        if self._announcer is not None:
            self._announcer.start()
        self._thread.start()

    def stop(self) -> None:
        """Stop taking requests; requests already handed over are answered first."""
        self._stopping = True
        if self._thread.is_alive():
            self._requests.put(None)
            self._thread.join()
        # A ticket still at the printer stays `issuing` on disk; the next start issues
        # it as "interrupted", so a printer that hangs cannot hold up the shutdown.
        self._printing.stop(STOP_S)
        if self._announcer is not None:
            self._announcer.stop()
        for request in self._awaiting.values():  # their tickets are `issuing` on disk: recorded
            request.reply.set_result(Outcome(Feedback.ERROR, ok=False, detail="the station stopped"))

    # -- the input API: any thread ---------------------------------------------------------------

    def key(self, window: int, key: str, *, source: str) -> Outcome:
        """As `press`, with the whole outcome: whether it was refused and why, the ticket acted on."""
        return self._call(lambda now, change: self._on_key(now, change, window, key, source), window)

    def knows(self, key: str) -> bool:
        """Whether a key means something here: the built-in ones and this station's reason keys."""
        return link.is_builtin(key) or self._settings.ratings.reason_name(key) is not None or key in ("code", "card")

    def press(self, window: int, key: str, *, source: str) -> Feedback:
        """A key pressed at a window: `good`, `bad`, `r1`..`r5`, a reason key, `next`, `recall`,
        `skip`, `start`, `done`, `pause` (toggles), `resume`, `ticket`, `ticket:<code>`, `green`,
        `green:<code>`, `transfer:<code>`, `put-back` (the window's last skipped ticket). Blocks
        until its events are on disk (with the station's state, in the outbox) and returns the
        unit's feedback (`error` for a press the station refused: that refusal is recorded too);
        raises NotRecorded when nothing could be recorded."""
        return self.key(window, key, source=source).feedback

    def swipe(self, window: int, card: str, *, source: str) -> Feedback:
        """A card read at a window: the clerk holding it signs in there (or out, if already in)."""
        return self._call(lambda now, change: self._sign(now, change, window, "card", card, source), window).feedback

    def keypad_code(self, window: int, code: str, *, source: str) -> Feedback:
        """A clerk's sign-in code typed at a window's keypad: as `swipe`."""
        return self._call(lambda now, change: self._sign(now, change, window, "code", code, source), window).feedback

    def command(
        self,
        action: str,
        *,
        window: int | None = None,
        category: str | None = None,
        ticket: str | None = None,
        green: bool = False,
        source: str = "command",
    ) -> Outcome:
        """What a ticket machine, display panel or the county asks for: `issue` (category, green),
        `put-back` (ticket), `transfer` (window, category), `pause`, `resume`, `sign-out`
        (window). Refusals come back as `ok=False` with the reason in `detail`."""
        handlers: dict[str, Callable[[datetime, Change], Answer]] = {
            "issue": lambda now, change: self._issue(now, change, None, category, green, source),
            "put-back": lambda now, change: self._put_back(now, change, ticket, source),
            "transfer": lambda now, change: self._transfer(now, change, window, category, source),
            "pause": lambda now, change: self._pause(now, change, window, True, source),
            "resume": lambda now, change: self._pause(now, change, window, False, source),
            "sign-out": lambda now, change: self._clerks.sign_out(change, now, self._window(window), "command", source),
        }
        if action not in handlers:
            return Outcome(Feedback.ERROR, ok=False, detail=f"unknown command {action!r}: one of {', '.join(handlers)}")
        return self._call(handlers[action], window)

    def tick(self) -> None:
        """Apply what the clock has made due now (the owner also does this every `tick_s`)."""
        self._call(lambda now, change: None, None, tick=True)

    def on_led(self, listener: Callable[[int, Feedback], None]) -> None:
        """`listener(window, feedback)` is called on the owner thread whenever a window's light
        should change (a service ended, a wait ran out); it must only hand over."""
        self._led_listeners.append(listener)

    def on_window(self, listener: Callable[[int, dict[str, Any]], None]) -> None:
        """`listener(window, {"lim": light, "show": {name, no, ticket}})` on the owner thread
        whenever a window's time-limit light or what its unit's display shows changes."""
        self._window_listeners.append(listener)

    def on_view(self, listener: Callable[[], None]) -> None:
        """`listener()` on the owner thread after every request and tick: `hall()` may have changed."""
        self._view_listeners.append(listener)

    def snapshot(self) -> dict[str, Any]:
        """The queue for telemetry, as of the owner's last request or tick; any thread."""
        return self._current_views()[0]

    def hall(self) -> dict[str, Any]:
        """What a calling screen shows: the queue snapshot, the latest calls (newest first, each
        with its number `n` since start) and the categories' names; any thread."""
        return self._current_views()[1]

    def _current_views(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The views, made on the first read after a request: most requests are never looked at
        (telemetry reads once a minute; a calling screen, when it has a viewer), and a view walks
        every ticket of the day. Waits for a request under way, up to VIEW_WAIT_S: past that (a
        commit stuck on a dying SD card) the last views made, so `yimen status` still answers."""
        if self._state_lock.acquire(timeout=VIEW_WAIT_S):
            try:
                if self._views_stale:
                    self._views = self._make_views(self._view_now)
                    self._views_stale = False
            finally:
                self._state_lock.release()
        return self._views

    def _make_views(self, now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
        view = self._queue.snapshot(self._state, now)
        view["limits"] = self._limits.snapshot(self._state, now)
        hall = {
            "queue": view,
            "calls": list(reversed(self._calls)),
            "categories": {c.code: c.name for c in self._settings.categories},
        }
        return view, hall

    def status(self) -> dict[str, Any]:
        return {
            "queue": self.snapshot(),
            "printing": self._printing.status(),
            "announce": self._announcer.status() if self._announcer is not None else None,
        }

    def _call(self, run: Callable[[datetime, Change], Any], window: int | None, *, tick: bool = False) -> Outcome:
        if self._stopping:
            raise NotRecorded("the station is stopping: nothing was recorded; try again after the restart")
        request = _Request(run, window, tick=tick)
        self._requests.put(request)
        return request.reply.result()

    # -- the owner thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                request = self._requests.get(timeout=self._tick_s)
            except queue.Empty:
                request = _Request(lambda now, change: None, tick=True)
            if request is None:
                return
            self._handle(request)

    def _handle(self, request: _Request) -> None:
        with self._state_lock:
            outcome = self._apply(request)
        for listener in self._view_listeners:
            listener()
        if outcome is not None:
            request.reply.set_result(outcome)

    def _apply(self, request: _Request) -> Outcome | None:
        """Run a request and commit what it changed (under the state lock); its outcome, or None
        when it is answered already (it failed) or later (its ticket is at the printer)."""
        now = self._now()
        change = Change()
        self._after = []
        self._current = request
        try:
            self._due(now, change, request.tick)
            try:
                answer = request.run(now, change)
            except Refused as exc:
                log.info("refused: %s", exc)
                self._state.counts["refused"] += 1
                change.day_state = True
                answer = Outcome(Feedback.ERROR, ok=False, detail=str(exc))
            if change:
                self._store.commit(self._state, change)
        except Exception as exc:
            # A bug or a failing disk: memory may be ahead of what was committed, so take the
            # state back from the store, and say the request failed.
            log.exception("station request failed")
            self._state = self._load()
            # A ticket this request left waiting for the printer was not committed either.
            self._awaiting = {tid: r for tid, r in self._awaiting.items() if r is not request}
            request.reply.set_exception(NotRecorded(f"nothing was recorded: {exc}"))
            return None
        finally:
            self._view_now, self._views_stale = now, True
        for action in self._after:
            action()
        self._lights(now)
        return None if answer is _DEFERRED else self._outcome(answer, request.window, now)

    def _outcome(self, answer: Answer, window: int | None, now: datetime) -> Outcome:
        if isinstance(answer, Outcome):
            return answer
        if answer is None:
            state = self._state.windows.get(window) if window is not None else None
            answer = self._light(state, now) if state is not None else Feedback.IDLE
        return Outcome(answer)

    def _due(self, now: datetime, change: Change, tick: bool) -> None:
        today = now.date().isoformat()
        self._ratings.expire_reasons(self._state, change, now)
        if self._state.day != today and self._day_known():
            self._queue.end_day(self._state, change, now)
            self._clerks.end_day(self._state, change, now)
        self._queue.close_categories(self._state, change, now)
        # Time limits move only with the clock, a second at a time: checked at most once a second
        # between ticks, not at every press (a check looks at every live ticket). A clock set
        # back checks at once.
        at = self._limits_at
        if tick or at is None or not at <= now < at + LIMITS_EVERY:
            self._limits.check(self._state, change, now)
            self._limits_at = now

    # -- lights -----------------------------------------------------------------------------------

    def _light(self, window: Window, now: datetime) -> Feedback:
        if window.paused:
            return Feedback.OFF
        if window.thanks_until is not None and now < window.thanks_until:
            return Feedback.THANKS
        if window.pending_bad is not None:
            return Feedback.READY
        if not self._settings.queue:
            return Feedback.READY if window.clerk is not None else Feedback.IDLE
        last = self._state.tickets.get(window.last_ended) if window.last_ended else None
        if last is not None and not last.rated and window.rating_until is not None and now < window.rating_until:
            return Feedback.READY
        return Feedback.IDLE

    def _lights(self, now: datetime) -> None:
        for number, window in self._state.windows.items():
            light = self._light(window, now)
            if self._leds.get(number) != light:
                self._leds[number] = light
                for listener in self._led_listeners:
                    listener(number, light)
            shown = {"lim": self._limits.window_light(self._state, number, now), "show": self._display(window)}
            if self._shown.get(number) != shown:
                self._shown[number] = shown
                for window_listener in self._window_listeners:
                    window_listener(number, shown)

    def _display(self, window: Window) -> dict[str, str]:
        """亮身份: the clerk signed in (name, and id as the clerk's number) and the ticket served."""
        clerk = next((c for c in self._settings.clerks if c.id == window.clerk), None)
        active = queue_mod.active_ticket(self._state, window)
        return {
            "name": clerk.name if clerk is not None else "",
            "no": clerk.id if clerk is not None else "",
            "ticket": active.number if active is not None else "",
        }

    # -- handlers (owner thread) ------------------------------------------------------------------

    def _window(self, number: int | None) -> Window:
        window = self._state.windows.get(number) if number is not None else None
        if window is None:
            self._state.counts["unknown_window"] += 1
            raise Refused(f"window {number} is not in the config ([[windows]] or a category's windows)")
        return window

    def _on_key(self, now: datetime, change: Change, number: int, key: str, source: str) -> Answer:
        window = self._window(number)
        verdict = parse_rating_key(key)
        if verdict is not None:
            return self._ratings.rate(self._state, change, now, window, verdict, source)
        if self._settings.ratings.reason_name(key) is not None:
            return self._ratings.reason(change, now, window, key)
        if key in ("pause", "resume"):
            return self._pause(now, change, number, key == "pause" and not window.paused, source)
        kind, _, code = key.partition(":")
        if kind in ("ticket", "green"):
            return self._issue(now, change, number, code or None, kind == "green", source)
        if kind == "transfer" and code:
            return self._transfer(now, change, number, code, source)
        if key == "put-back":
            self._require_queue()
            skipped = self._queue.last_skipped(self._state, window)
            return self._put_back(now, change, skipped.number if skipped is not None else None, source)
        if key in QUEUE_KEYS:
            self._require_queue()
            return self._queue_key(now, change, window, key, source)
        self._state.counts["unknown_key"] += 1
        change.day_state = True
        log.warning("window %d: key %r from %s is not a key this station knows: refused", number, key, source)
        raise Refused(f"window {number}: unknown key {key!r}")

    def _require_queue(self) -> None:
        if not self._settings.queue:
            raise Refused("this station runs no queue ([queue] enabled = false)")

    def _queue_key(self, now: datetime, change: Change, window: Window, key: str, source: str) -> Answer:
        q, state = self._queue, self._state
        if key == "next":
            ticket = q.call_next(state, change, now, window, source)
            if ticket is not None:
                self._announce(ticket, window.number, now)
                return Outcome(self._light(window, now), ticket=ticket.number)
            return None
        if key == "recall":
            ticket = q.recall(state, change, now, window, source)
            self._announce(ticket, window.number, now)
            return Outcome(self._light(window, now), ticket=ticket.number)
        {"skip": q.skip, "start": q.start, "done": q.done}[key](state, change, now, window, source)
        return None

    def _announce(self, ticket: Ticket, window: int, now: datetime) -> None:
        category = self._settings.category(ticket.category)
        name = category.name if category is not None else ticket.category
        self._called += 1
        call = {"n": self._called, "ticket": ticket.number, "window": window, "category": name, "at": iso(now)}
        self._calls.append(call | {"green": ticket.green, "recall": ticket.recalls})
        announcer = self._announcer
        if announcer is not None:
            self._after.append(lambda: announcer.call(ticket.number, window, name, now))

    def _sign(self, now: datetime, change: Change, number: int, how: str, credential: str, source: str) -> Answer:
        self._clerks.sign(self._state, change, now, self._window(number), how, credential, source)
        return None

    def _pause(self, now: datetime, change: Change, number: int | None, paused: bool, source: str) -> Answer:
        self._queue.pause(change, now, self._window(number), paused, source)
        return None

    def _issue(
        self, now: datetime, change: Change, window: int | None, code: str | None, green: bool, source: str
    ) -> Any:
        self._require_queue()
        if window is not None:
            self._window(window)
        category = self._queue.category_for(window, code)
        ticket = self._queue.issue(self._state, change, now, category, green)
        if isinstance(self._printer, NoPrinter):
            # No paper will exist: nothing to make durable before it, so the ticket is issued in
            # this one commit (one fsync) rather than `issuing` first and issued after the answer.
            return self._join_queue(now, change, ticket, source, NoPrinter.outcome)
        printed = PrintedTicket(
            id=ticket.id,
            number=ticket.number,
            category=category.name,
            ahead=self._queue.ahead(self._state, ticket),
            issued_at=now,
            priority=green,
        )
        self._after.append(lambda: self._to_printer(_PrintJob(ticket.id, printed, source)))
        # The press is answered once the printer has answered and the issue event is committed.
        assert self._current is not None
        self._awaiting[ticket.id] = self._current
        return _DEFERRED

    def _to_printer(self, job: _PrintJob) -> None:
        if not self._printing.offer(job):
            outcome = PrintOutcome.declined("busy", f"more than {PRINT_QUEUE} tickets are waiting for the printer")
            self._requests.put(self._printed_request(job.ticket_id, job.source, outcome))

    def _print(self, job: _PrintJob) -> None:
        """On the print thread: print, then hand the outcome back to the owner."""
        outcome = self._printer.print_ticket(job.ticket)
        self._requests.put(self._printed_request(job.ticket_id, job.source, outcome))

    def _printed_request(self, ticket_id: str, source: str, outcome: PrintOutcome) -> _Request:
        return _Request(lambda now, change: self._printed(now, change, ticket_id, source, outcome))

    def _printed(self, now: datetime, change: Change, ticket_id: str, source: str, outcome: PrintOutcome) -> Answer:
        """The printer is done with a ticket: it joins the queue, and its press is answered."""
        ticket = self._state.tickets.get(ticket_id)
        if ticket is not None and ticket.status == Status.ISSUING:
            answer = self._join_queue(now, change, ticket, source, outcome)
        else:
            log.warning("printer answered for ticket %s, which was closed out meanwhile", ticket_id)
            answer = Outcome(Feedback.ERROR, ok=False, detail="the ticket was closed out before it was printed")
        # Answered once committed: if the commit fails (a full disk), the press stays waiting with
        # its ticket `issuing` on disk, and is answered at the latest when the station stops.
        self._after.append(lambda: self._answer_waiting(ticket_id, answer))
        return None

    def _join_queue(self, now: datetime, change: Change, ticket: Ticket, source: str, outcome: PrintOutcome) -> Outcome:
        print_ = {"printed": outcome.printed, "reason": outcome.reason, "detail": outcome.detail}
        self._queue.issued(self._state, change, now, ticket, source, print=print_)
        return Outcome(Feedback.THANKS, detail=outcome.detail, ticket=ticket.number)

    def _answer_waiting(self, ticket_id: str, answer: Outcome) -> None:
        waiting = self._awaiting.pop(ticket_id, None)
        if waiting is not None:
            waiting.reply.set_result(answer)

    def _put_back(self, now: datetime, change: Change, number: str | None, source: str) -> Answer:
        self._require_queue()
        if number is None:
            raise Refused("no skipped ticket to put back here")
        ticket = self._queue.put_back(self._state, change, now, number or "", source)
        return Outcome(Feedback.IDLE, ticket=ticket.number)

    def _transfer(self, now: datetime, change: Change, number: int | None, code: str | None, source: str) -> Answer:
        self._require_queue()
        window = self._window(number)
        ticket = self._queue.transfer(self._state, change, now, window, code or "", source)
        return Outcome(self._light(window, now), ticket=ticket.number)
