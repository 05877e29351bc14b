"""Clerks: who is signed in at which window, by card or keypad code, from the config's roster.

Every sign-in and sign-out is a `clerk` event carrying the clerk id; a card or code nobody in
the roster holds is reported too (the card number masked: a swipe may be a citizen's own card
by mistake), and the unit shows the error light.
"""

from __future__ import annotations

from datetime import datetime

from edge.events import Priority
from edge.station.config import ClerkConfig
from edge.station.queue import Refused
from edge.station.state import Change, State, Window, iso

KIND = "clerk"


def mask(card: str) -> str:
    """Enough of a card number to recognise it on the card, not enough to copy it."""
    return "*" * max(0, len(card) - 4) + card[-4:]


class Clerks:
    def __init__(self, roster: tuple[ClerkConfig, ...]) -> None:
        self._roster = roster

    def by_card(self, card: str) -> ClerkConfig | None:
        return next((c for c in self._roster if card in c.cards), None)

    def by_code(self, code: str) -> ClerkConfig | None:
        return next((c for c in self._roster if c.code == code), None)

    def sign(
        self, state: State, change: Change, now: datetime, window: Window, how: str, credential: str, source: str
    ) -> None:
        """Sign the holder of `credential` in at the window; the same clerk again signs out.
        Whoever held the window, and this clerk's sign-in elsewhere, are signed out first."""
        clerk = self.by_card(credential) if how == "card" else self.by_code(credential)
        if clerk is None:
            shown = mask(credential) if how == "card" else None
            change.emit(
                KIND, Priority.NORMAL, self._event(f"unknown-{how}", now, window.number, None, source, card=shown)
            )
            raise Refused(f"window {window.number}: this {how} is not in the roster")
        if window.clerk == clerk.id:
            self.sign_out(change, now, window, how, source)
            return
        for other in state.windows.values():
            if other.clerk == clerk.id:
                self.sign_out(change, now, other, "moved", source)
        if window.clerk is not None:
            self.sign_out(change, now, window, "replaced", source)
        window.clerk = clerk.id
        change.window(window)
        change.emit(KIND, Priority.NORMAL, self._event("sign-in", now, window.number, clerk.id, source, by=how))

    def sign_out(self, change: Change, now: datetime, window: Window, by: str, source: str) -> None:
        if window.clerk is None:
            raise Refused(f"window {window.number}: nobody is signed in")
        clerk, window.clerk = window.clerk, None
        change.window(window)
        change.emit(KIND, Priority.NORMAL, self._event("sign-out", now, window.number, clerk, source, by=by))

    def end_day(self, state: State, change: Change, now: datetime) -> None:
        """Nobody stays signed in overnight: a forgotten sign-out must not credit tomorrow's
        ratings to yesterday's clerk."""
        for window in state.windows.values():
            if window.clerk is not None:
                self.sign_out(change, now, window, "day-end", "station")

    @staticmethod
    def _event(action: str, now: datetime, window: int, clerk: str | None, source: str, **extra: object) -> dict:
        return {"action": action, "at": iso(now), "window": window, "clerk": clerk, "source": source, **extra}
