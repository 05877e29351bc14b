"""The queue: numbering, calling order, and every ticket action as a `queue` event.

Functions over the owner thread's `State`, recording what they touch in a `Change`. Each
checks before it changes anything and raises `Refused` (a press the station cannot act on),
so a refused press leaves the state as it was.

Times each `queue` event carries, per wait (a transfer or put-back starts a new one):
`queued` (issued, transferred or put back), `called` (first call), `started` (the clerk's
`start` key: the citizen is at the window), `ended`; `wait_s` = called - queued,
`walk_s` = started - called (null without a `start` press), `service_s` = ended - started,
or ended - called without a `start` press.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from edge.events import Priority
from edge.station.config import CategoryConfig, StationSettings
from edge.station.state import ACTIVE, QUEUED, Change, State, Status, Ticket, Window, iso, seconds

KIND = "queue"


class Refused(Exception):
    """A press or command the station cannot act on; the message says why, for a person."""


def sort_key(ticket: Ticket) -> tuple[bool, bool, int]:
    """Calling order: green channel first, then tickets that already waited once, then in turn."""
    return (not ticket.green, not ticket.requeued, ticket.order)


def active_ticket(state: State, window: Window) -> Ticket | None:
    ticket = state.tickets.get(window.current) if window.current else None
    return ticket if ticket is not None and ticket.status in ACTIVE else None


def event(action: str, now: datetime, source: str, ticket: Ticket | None = None, **extra: Any) -> dict[str, Any]:
    """The data of one `queue` event."""
    data: dict[str, Any] = {"action": action, "at": iso(now), "source": source}
    if ticket is not None:
        start = ticket.started or ticket.called
        data |= {
            "ticket": ticket.number,
            "ticket_id": ticket.id,
            "category": ticket.category,
            "green": ticket.green,
            "window": ticket.window,
            "clerk": ticket.clerk,
            "issued": iso(ticket.issued),
            "queued": iso(ticket.queued),
            "called": iso(ticket.called),
            "started": iso(ticket.started),
            "ended": iso(ticket.ended),
            "recalls": ticket.recalls,
            "wait_s": seconds(ticket.queued, ticket.called),
            "walk_s": seconds(ticket.called, ticket.started),
            "service_s": seconds(start, ticket.ended),
        }
    return data | extra


class Queue:
    def __init__(self, settings: StationSettings, station_id: str) -> None:
        self._settings = settings
        self._station_id = station_id

    def category_for(self, window: int | None, code: str | None) -> CategoryConfig:
        """The category a ticket key means: `ticket:<code>`, or plain `ticket` at a window that
        serves exactly one."""
        if code is not None:
            category = self._settings.category(code)
            if category is None:
                raise Refused(f"no service category {code!r}")
            return category
        served = self._settings.categories_of(window) if window is not None else ()
        if len(served) != 1:
            raise Refused(f"window {window} serves {len(served)} categories: the key must name one (ticket:<code>)")
        return served[0]

    def _check_open(self, state: State, category: CategoryConfig, now: datetime) -> None:
        if category.code in state.closed or not category.hours.is_open(now):
            raise Refused(f"category {category.code} is closed now")

    # -- tickets ----------------------------------------------------------------------------------

    def issue(self, state: State, change: Change, now: datetime, category: CategoryConfig, green: bool) -> Ticket:
        """Take the next number. The ticket is `issuing` until the printer is done with it."""
        self._check_open(state, category, now)
        taken = [t for t in state.tickets.values() if t.number.startswith(category.code) and t.day == state.day]
        number = f"{category.code}{len(taken) + 1:03d}"
        ticket = Ticket(
            id=f"{self._station_id}-{state.day.replace('-', '')}-{number}",
            day=state.day,
            number=number,
            category=category.code,
            green=green,
            order=state.next_order(),
            status=Status.ISSUING,
            issued=now,
            queued=now,
        )
        state.tickets[ticket.id] = change.ticket(ticket)
        return ticket

    def ahead(self, state: State, ticket: Ticket) -> int:
        """How many will be called before this ticket in its category, as things stand."""
        return sum(
            1
            for t in state.tickets.values()
            if t.category == ticket.category and t.status in QUEUED and sort_key(t) < sort_key(ticket)
        )

    def issued(self, state: State, change: Change, now: datetime, ticket: Ticket, source: str, **print_: Any) -> None:
        """The printer is done (or gave up): the ticket joins the queue and the issue is reported
        with the printer's outcome. A category that closed meanwhile expires it at once."""
        ticket.status = Status.WAITING
        change.ticket(ticket)
        change.emit(
            KIND, Priority.NORMAL, event("issue", now, source, ticket, ahead=self.ahead(state, ticket), **print_)
        )
        if ticket.category in state.closed:
            self._expire(change, now, ticket, "closing")

    def call_next(self, state: State, change: Change, now: datetime, window: Window, source: str) -> Ticket | None:
        """End the service in progress at the window, then call the first waiting ticket of the
        window's categories. None when nobody is waiting."""
        served = {c.code for c in self._settings.categories_of(window.number)}
        if not served:
            raise Refused(f"window {window.number} serves no category")
        if window.paused:
            raise Refused(f"window {window.number} is paused")
        self.end_service(state, change, now, window, "next", source)
        waiting = [t for t in state.tickets.values() if t.status == Status.WAITING and t.category in served]
        if not waiting:
            return None
        ticket = min(waiting, key=sort_key)
        ticket.status = Status.CALLED
        ticket.window, ticket.clerk, ticket.called = window.number, window.clerk, now
        window.current = ticket.id
        change.ticket(ticket)
        change.window(window)
        change.emit(KIND, Priority.NORMAL, event("call", now, source, ticket))
        return ticket

    def _active(self, state: State, window: Window, action: str) -> Ticket:
        ticket = active_ticket(state, window)
        if ticket is None:
            raise Refused(f"window {window.number}: nobody called to {action}")
        return ticket

    def recall(self, state: State, change: Change, now: datetime, window: Window, source: str) -> Ticket:
        ticket = self._active(state, window, "recall")
        if ticket.status != Status.CALLED:
            raise Refused(f"{ticket.number} is already being served")
        if ticket.recalls >= self._settings.recall_max:
            raise Refused(f"{ticket.number} was recalled {ticket.recalls} times: skip it")
        ticket.recalls += 1
        change.ticket(ticket)
        change.emit(KIND, Priority.NORMAL, event("recall", now, source, ticket))
        return ticket

    def start(self, state: State, change: Change, now: datetime, window: Window, source: str) -> None:
        ticket = self._active(state, window, "start")
        if ticket.status != Status.CALLED:
            raise Refused(f"{ticket.number} is already being served")
        ticket.status, ticket.started = Status.SERVING, now
        # The next citizen is at the window: a press now is theirs, not the previous citizen's.
        if window.rating_until is not None and window.rating_until > now:
            window.rating_until = now
            change.window(window)
        change.ticket(ticket)
        change.emit(KIND, Priority.NORMAL, event("start", now, source, ticket))

    def end_service(
        self, state: State, change: Change, now: datetime, window: Window, by: str, source: str
    ) -> Ticket | None:
        """Finish what the window is doing; the service may then be rated for a while."""
        ticket = active_ticket(state, window)
        if ticket is None:
            return None
        ticket.status, ticket.ended = Status.DONE, now
        window.current = None
        window.last_ended = ticket.id
        window.rating_until = now + timedelta(seconds=self._settings.ratings.window_s)
        change.ticket(ticket)
        change.window(window)
        change.emit(KIND, Priority.NORMAL, event("end", now, source, ticket, by=by))
        return ticket

    def done(self, state: State, change: Change, now: datetime, window: Window, source: str) -> None:
        if self.end_service(state, change, now, window, "done", source) is None:
            raise Refused(f"window {window.number}: no service to end")

    def skip(self, state: State, change: Change, now: datetime, window: Window, source: str) -> None:
        ticket = self._active(state, window, "skip")
        if ticket.status != Status.CALLED:
            raise Refused(f"{ticket.number} came and is being served: end the service instead")
        ticket.status = Status.SKIPPED
        window.current = None
        change.ticket(ticket)
        change.window(window)
        change.emit(KIND, Priority.NORMAL, event("skip", now, source, ticket))

    def _requeue(self, state: State, change: Change, now: datetime, ticket: Ticket, category: str) -> None:
        ticket.status, ticket.category, ticket.requeued = Status.WAITING, category, True
        ticket.order, ticket.queued = state.next_order(), now
        ticket.window = ticket.clerk = ticket.called = ticket.started = ticket.ended = None
        ticket.recalls = 0
        ticket.wait_light = ticket.service_light = "ok"  # a new wait, a new service: their lights start again
        change.ticket(ticket)

    def put_back(self, state: State, change: Change, now: datetime, number: str, source: str) -> Ticket:
        """A skipped citizen turned up: back into the queue, ahead of those who never waited."""
        ticket = next((t for t in state.tickets.values() if t.number == number and t.day == state.day), None)
        if ticket is None:
            raise Refused(f"no ticket {number!r} today")
        if ticket.status != Status.SKIPPED:
            raise Refused(f"{number} is {ticket.status}, not skipped")
        category = self._settings.category(ticket.category)
        assert category is not None, "tickets are only issued in configured categories"
        self._check_open(state, category, now)
        self._requeue(state, change, now, ticket, ticket.category)
        change.emit(KIND, Priority.NORMAL, event("put-back", now, source, ticket))
        return ticket

    def last_skipped(self, state: State, window: Window) -> Ticket | None:
        """The ticket skipped last at the window today: what its `put-back` key brings back."""
        skipped = [t for t in state.tickets.values() if t.status == Status.SKIPPED and t.window == window.number]
        return max(skipped, key=lambda t: t.called or t.queued, default=None)

    def transfer(self, state: State, change: Change, now: datetime, window: Window, code: str, source: str) -> Ticket:
        """Send the citizen at the window to another category's queue. The event carries the
        service just ended here; the ticket keeps its number and waits again, ahead of others."""
        ticket = self._active(state, window, "transfer")
        target = self.category_for(None, code)
        if target.code == ticket.category:
            raise Refused(f"{ticket.number} is already in category {code}")
        self._check_open(state, target, now)
        ticket.ended = now
        change.emit(KIND, Priority.NORMAL, event("transfer", now, source, ticket, to=target.code))
        window.current = None
        change.window(window)
        self._requeue(state, change, now, ticket, target.code)
        return ticket

    def _expire(self, change: Change, now: datetime, ticket: Ticket, reason: str) -> None:
        ticket.status = Status.EXPIRED
        change.ticket(ticket)
        change.emit(KIND, Priority.NORMAL, event("expire", now, "station", ticket, reason=reason))

    # -- windows ----------------------------------------------------------------------------------

    def pause(self, change: Change, now: datetime, window: Window, paused: bool, source: str) -> None:
        """Stop (or resume) calling at the window; a service under way goes on until it ends."""
        if window.paused == paused:
            raise Refused(f"window {window.number} is already {'paused' if paused else 'open'}")
        window.paused = paused
        change.window(window)
        change.emit(
            KIND,
            Priority.NORMAL,
            event("pause" if paused else "resume", now, source, window=window.number, clerk=window.clerk),
        )

    # -- the clock --------------------------------------------------------------------------------

    def close_categories(self, state: State, change: Change, now: datetime) -> None:
        """At each category's closing time, tickets still waiting are closed out as expired."""
        for category in self._settings.categories:
            closing = category.hours.closing(now.date(), now.tzinfo)
            if category.code in state.closed or closing is None or now < closing:
                continue
            for ticket in sorted(state.tickets.values(), key=sort_key):
                if ticket.category == category.code and ticket.status == Status.WAITING:
                    self._expire(change, now, ticket, "closing")
            state.closed.add(category.code)
            change.day_state = True

    def end_day(self, state: State, change: Change, now: datetime) -> None:
        """A new local day: what the old one left open is closed out, numbers restart at 001."""
        for window in state.windows.values():
            self.end_service(state, change, now, window, "day-end", "station")
            window.last_ended = window.rating_until = None
            change.window(window)
        for ticket in sorted(state.tickets.values(), key=sort_key):
            if ticket.status in QUEUED:
                self._expire(change, now, ticket, "day-end")
        state.day = now.date().isoformat()
        state.tickets = {}
        state.closed = set()
        state.counts.clear()
        change.day_state = True
        change.purge_before = state.day

    def snapshot(self, state: State, now: datetime) -> dict[str, Any]:
        """The queue as telemetry reports it: nothing in it identifies a citizen."""
        waiting: dict[str, list[Ticket]] = {c.code: [] for c in self._settings.categories}
        totals: dict[str, int] = {}
        for ticket in state.tickets.values():  # one pass: this runs after every request
            totals[ticket.status] = totals.get(ticket.status, 0) + 1
            if ticket.status == Status.WAITING and ticket.category in waiting:
                waiting[ticket.category].append(ticket)
        windows = {}
        for number, window in sorted(state.windows.items()):
            active = active_ticket(state, window)
            windows[str(number)] = {
                "state": "paused" if window.paused else "open",
                "clerk": window.clerk,
                "ticket": active.number if active is not None else None,
            }
        return {
            "day": state.day,
            "enabled": self._settings.queue,
            "waiting": {code: len(ts) for code, ts in waiting.items()},
            "longest_wait_s": {
                code: max((seconds(t.queued, now) or 0.0 for t in ts), default=None) for code, ts in waiting.items()
            },
            "windows": windows,
            "open": sorted(int(n) for n, w in windows.items() if w["state"] == "open"),
            "paused": sorted(int(n) for n, w in windows.items() if w["state"] == "paused"),
            "tickets": totals,
            "counts": dict(state.counts),
        }
