"""Ratings: one per service (一次一评), tied to the ticket, clerk and service item it rates.

A rating key press is, in this order of checks:
- a repeat, counted and not published, when a bad rating is still waiting for its reason, or
  the service it would rate was rated already (until that service's rating window ends);
- linked: queue mode, a service is in progress (the rating ends it) or ended less than
  `window_s` ago unrated; no-queue mode, a clerk is signed in at the window;
- abuse, counted and not published: unlinked, and less than `abuse_interval_s` after the
  previous press on that window (a child hammering the buttons);
- a repeat, when it rates no service and the window's last rating is less than `repeat_s` old;
- otherwise unlinked: published with `linked: false`, for the county to weigh.

A bad rating on a unit with reason keys waits `reason_wait_s` for one. The wait is held in
the window's state (committed before the press is acknowledged), so a restart during it loses
nothing: the rating is published when the reason comes or the wait ends, reason null if none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from edge.events import Priority
from edge.station.config import StationSettings
from edge.station.queue import Queue, Refused, active_ticket
from edge.station.state import Change, Feedback, State, Status, Ticket, Window, seconds

KIND = "rating"
CHANNEL = "window-unit"  # rated on site, at the window: the national record's 评价渠道


class _Repeat(Exception):
    """The press rates a service that has its one rating already."""


@dataclass(frozen=True)
class Verdict:
    verdict: str  # "good" | "bad"
    level: int | None  # 1..5 from a five-key unit; on the national scale 1 and 2 are bad


def parse_rating_key(key: str) -> Verdict | None:
    if key in ("good", "bad"):
        return Verdict(key, None)
    if len(key) == 2 and key[0] == "r" and key[1] in "12345":
        level = int(key[1])
        return Verdict("good" if level >= 3 else "bad", level)
    return None


class Ratings:
    def __init__(self, settings: StationSettings, queue: Queue) -> None:
        self._settings = settings
        self._cfg = settings.ratings
        self._queue = queue

    def _later(self, now: datetime, after_s: float) -> datetime:
        return now + timedelta(seconds=after_s)

    def _target(self, state: State, change: Change, now: datetime, window: Window, source: str) -> Ticket | None:
        """The service a rating press at the window rates (ending it if still in progress), or
        None when it rates none. Raises _Repeat when that service has its rating already."""
        if window.pending_bad is not None:
            raise _Repeat
        if not self._settings.queue:
            return None
        active = active_ticket(state, window)
        last = state.tickets.get(window.last_ended) if window.last_ended else None
        recent = last is not None and window.rating_until is not None and now < window.rating_until
        # While the next citizen is only called (not yet marked started), a press still belongs
        # to the service that just ended: its citizen is the one standing at the unit.
        if recent and (active is None or active.status == Status.CALLED):
            assert last is not None
            if last.rated:
                raise _Repeat
            return last
        if active is not None:
            return self._queue.end_service(state, change, now, window, "rating", source)
        return None

    def rate(
        self, state: State, change: Change, now: datetime, window: Window, verdict: Verdict, source: str
    ) -> Feedback | None:
        """Handle one rating key press; returns the unit's feedback, None for "as it was"."""
        previous, window.last_press = window.last_press, now
        change.window(window)
        try:
            ticket = self._target(state, change, now, window, source)
            linked = ticket is not None if self._settings.queue else window.clerk is not None
            if not linked and previous is not None and now < self._later(previous, self._cfg.abuse_interval_s):
                state.counts["abuse"] += 1
                change.day_state = True
                return None
            # Without a service to tie it to, a press soon after a rating is taken as more of it.
            last = window.last_rating
            if ticket is None and last is not None and now < self._later(last, self._cfg.repeat_s):
                raise _Repeat
        except _Repeat:
            state.counts["repeat"] += 1
            change.day_state = True
            return Feedback.READY if window.pending_bad is not None else Feedback.THANKS
        data = self._record(window, ticket, verdict, linked, now, source)
        if ticket is not None:
            ticket.rated = True
            change.ticket(ticket)
        window.last_rating = now
        window_cfg = self._settings.window(window.number)
        if verdict.verdict == "bad" and window_cfg is not None and window_cfg.reason_keys:
            window.pending_bad = data
            window.reason_until = self._later(now, self._cfg.reason_wait_s)
            return Feedback.READY
        return self._publish(change, now, window, data, None)

    def reason(self, change: Change, now: datetime, window: Window, key: str) -> Feedback:
        if window.pending_bad is None:
            raise Refused(f"window {window.number}: no bad rating is waiting for a reason")
        return self._publish(change, now, window, window.pending_bad, key)

    def expire_reasons(self, state: State, change: Change, now: datetime) -> None:
        """Publish bad ratings whose reason wait is over, with no reason: never invented."""
        for window in state.windows.values():
            if window.pending_bad is not None and window.reason_until is not None and now >= window.reason_until:
                self._publish(change, now, window, window.pending_bad, None)

    def _publish(
        self, change: Change, now: datetime, window: Window, data: dict[str, Any], reason: str | None
    ) -> Feedback:
        named = None if reason is None else {"key": reason, "name": self._cfg.reason_name(reason)}
        change.emit(KIND, Priority.CRITICAL, {**data, "reason": named})
        window.pending_bad = window.reason_until = None
        window.thanks_until = self._later(now, self._cfg.thanks_s)
        change.window(window)
        return Feedback.THANKS

    def _record(
        self, window: Window, ticket: Ticket | None, verdict: Verdict, linked: bool, now: datetime, source: str
    ) -> dict[str, Any]:
        """The rating as published: the service it rates, and nothing about the citizen."""
        if ticket is not None:
            category = self._settings.category(ticket.category)
        else:
            served = self._settings.categories_of(window.number)
            category = served[0] if len(served) == 1 else None
        return {
            "verdict": verdict.verdict,
            "level": verdict.level,
            "window": window.number,
            "clerk": ticket.clerk if ticket is not None else window.clerk,
            "ticket": ticket.number if ticket else None,
            "ticket_id": ticket.id if ticket else None,
            "item": {"code": category.item, "name": category.item_name} if category else None,
            "category": category.code if category else None,
            "wait_s": seconds(ticket.queued, ticket.called) if ticket else None,
            "service_s": seconds(ticket.started or ticket.called, ticket.ended) if ticket else None,
            "channel": CHANNEL,
            "source": source,
            "linked": linked,
            "camera": verdict.verdict == "bad",  # a later issue attaches a clip to bad ratings
            # Milliseconds, like the envelope's ts: the national record's time of the rating is exact.
            "at": now.isoformat(timespec="milliseconds"),
        }
