"""Time-limit lights (the yellow light and the red light of a hall's 限时办结): per category a wait
limit and a service limit, each with a warning and an overrun level.

Checked on the owner thread with the rest of what the clock makes due (every tick). When a
ticket's wait or service reaches a level it had not reached, that is a `limit` event (normal),
so the county can count warnings and overruns per category, window and clerk; the ticket keeps
the level it reached (`wait_light`, `service_light`, persisted with it), so a restart does not
report it again. A new wait (transfer, put-back) starts its lights again.

What the lights show, computed from the tickets as they are now: a window's light is the
service light of the citizen at it (the unit's yellow and red LEDs); a category's is the worst
wait light among its waiting tickets (the calling screen's colours, the telemetry snapshot).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from edge.events import Priority
from edge.station.config import CategoryConfig, Limit, StationSettings
from edge.station.queue import active_ticket, event
from edge.station.state import Change, State, Status, Ticket

KIND = "limit"
LEVELS = ("ok", "warn", "over")
_LIT = (Status.WAITING, Status.CALLED, Status.SERVING)


def worst(levels: list[str]) -> str:
    return max(levels, key=LEVELS.index, default="ok")


def _elapsed(since: datetime | None, now: datetime) -> float:
    return 0.0 if since is None else (now - since).total_seconds()


class Limits:
    def __init__(self, settings: StationSettings) -> None:
        self._settings = settings

    def _category(self, ticket: Ticket) -> CategoryConfig | None:
        return self._settings.category(ticket.category)

    def wait_light(self, ticket: Ticket, now: datetime) -> str:
        category = self._category(ticket)
        if category is None or category.wait is None or ticket.status != Status.WAITING:
            return "ok"
        return category.wait.level(_elapsed(ticket.queued, now))

    def service_light(self, ticket: Ticket, now: datetime) -> str:
        category = self._category(ticket)
        if category is None or category.service is None or ticket.status not in (Status.CALLED, Status.SERVING):
            return "ok"
        return category.service.level(_elapsed(ticket.started or ticket.called, now))

    def check(self, state: State, change: Change, now: datetime) -> None:
        """Report each wait and service that reached a new level since the last check. Only a
        waiting, called or served ticket has a light that can move: the day's ended tickets,
        most of them by evening, are passed over without a look at their category."""
        live = [t for t in state.tickets.values() if t.status in _LIT]
        for ticket in sorted(live, key=lambda t: t.order):
            category = self._category(ticket)
            if category is None:
                continue
            # A level passed between two checks (a restart, a long stall) is still reported.
            for level in LEVELS[LEVELS.index(ticket.wait_light) + 1 : LEVELS.index(self.wait_light(ticket, now)) + 1]:
                ticket.wait_light = level
                self._report(change, now, ticket, "wait", level, category.wait)
            reached = LEVELS.index(self.service_light(ticket, now))
            for level in LEVELS[LEVELS.index(ticket.service_light) + 1 : reached + 1]:
                ticket.service_light = level
                self._report(change, now, ticket, "service", level, category.service)

    def _report(
        self, change: Change, now: datetime, ticket: Ticket, what: str, level: str, limit: Limit | None
    ) -> None:
        """A `limit` event: `action` the level reached, `what` (wait or service), `limit_s` its
        threshold, and the ticket's fields as in `queue` events."""
        assert limit is not None
        change.ticket(ticket)
        threshold = limit.warn_s if level == "warn" else limit.over_s
        change.emit(KIND, Priority.NORMAL, event(level, now, "station", ticket, what=what, limit_s=threshold))

    def window_light(self, state: State, number: int, now: datetime) -> str:
        window = state.windows.get(number)
        ticket = active_ticket(state, window) if window is not None else None
        return self.service_light(ticket, now) if ticket is not None else "ok"

    def snapshot(self, state: State, now: datetime) -> dict[str, Any]:
        """The lights now: per category the worst wait light and how many waits are at each level,
        per window its service light."""
        waiting: dict[str, list[str]] = {c.code: [] for c in self._settings.categories}
        for ticket in state.tickets.values():
            if ticket.status == Status.WAITING and ticket.category in waiting:
                waiting[ticket.category].append(self.wait_light(ticket, now))
        categories: dict[str, Any] = {}
        for category in self._settings.categories:
            lights = waiting[category.code]
            categories[category.code] = {
                "light": worst(lights),
                "warn": lights.count("warn"),
                "over": lights.count("over"),
                "wait_limits_s": [category.wait.warn_s, category.wait.over_s] if category.wait else None,
                "service_limits_s": [category.service.warn_s, category.service.over_s] if category.service else None,
            }
        windows = {str(n): self.window_light(state, n, now) for n in sorted(state.windows)}
        return {"categories": categories, "windows": windows}
