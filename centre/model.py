"""The county's picture of its stations: what the web page shows, kept up to date by ingest.

One writer (the ingest thread) and many readers (the web page's requests), so every method
takes the one lock and readers get plain dicts, never live objects. The day's figures (ratings,
queue, snapshots) are for the local calendar day: they start afresh at midnight, as a county's
daily report does. Pure apart from the lock: no MQTT, no database, no clock of its own.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import date
from pathlib import PurePosixPath
from typing import Any

from centre import bounds
from centre.tracker import SeqTracker, TooFragmented
from edge.events import Event

MAX_OUTAGES = 50  # per station, newest kept: the page shows history, the store keeps all
MAX_CLIPS = 1000  # clip events remembered per station and day (the store keeps all)
MAX_REPLAY_SEQS = 10_000  # seqs one replay request may name (a station refuses more)


@dataclass
class Outage:
    start: float
    end: float | None
    cause: str

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "cause": self.cause}


@dataclass
class Day:
    """One station's figures for one calendar day."""

    events: int = 0
    clips: dict[str, dict[str, Any]] = field(default_factory=dict)  # rating id -> its clip's event
    snapshots: dict[int, dict[str, Any]] = field(default_factory=dict)  # window -> latest snapshot event


@dataclass
class StationView:
    id: str
    state: str = "unknown"
    session: int = -1  # session of the latest online status seen
    since: float | None = None
    cause: str | None = None
    version: str | None = None
    last_event: float | None = None
    outages: deque[Outage] = field(default_factory=lambda: deque(maxlen=MAX_OUTAGES))
    tracker: SeqTracker = field(default_factory=SeqTracker)
    replay_tries: int = 0
    replay_at: float = 0.0
    replay_floor: int = 0  # the seq floor when the last replay was asked for
    replay_last: dict[str, Any] | None = None
    replayed: int = 0  # events that arrived as answers to our replay requests (or re-sends)
    day: Day = field(default_factory=Day)
    claimed_last_seq: int = 0  # from its birth: where a seq jump is measured from
    refused: dict[str, int] = field(default_factory=dict)  # reason -> messages refused
    hostile: dict[str, str] = field(default_factory=dict)  # reason -> what it sent, last time
    limited: int = 0  # messages not stored: over the station's rate limit
    link: dict[str, Any] | None = None  # the month's bytes on its line, from its latest telemetry


def media_info(station: str, event: Event) -> dict[str, Any]:
    data = event.data
    name = PurePosixPath(str(data.get("path") or f"{data.get('media_id')}")).name
    return {
        "id": event.id,
        "media_id": data.get("media_id"),
        "type": data.get("type"),
        "window": data.get("window"),
        "ts": event.ts,
        "started": data.get("started"),
        "size": data.get("size"),
        "file": name,
        "url": f"/media/{station}/{name}",
    }


LINK_STAGES = ("normal", "thrift", "media-deferred", "events-only")


def link_month(doc: dict[str, Any], ts: str) -> dict[str, Any]:
    """A station's month on its line (telemetry `link`), checked: only the known fields, in range."""

    def count(key: str) -> int | None:
        value = doc.get(key)
        return value if isinstance(value, int) and 0 <= value < 1 << 53 else None

    month = doc.get("month")
    return {
        "month": month if isinstance(month, str) and re.fullmatch(r"\d{4}-\d{2}", month) else None,
        "sent_bytes": count("sent_bytes"),
        "received_bytes": count("received_bytes"),
        "budget_bytes": count("budget_bytes"),
        "stage": doc.get("stage") if doc.get("stage") in LINK_STAGES else None,
        "at": ts,
    }


class CountyModel:
    def __init__(self, county: str, name: str) -> None:
        self.county = county
        self.name = name
        self.stations: dict[str, StationView] = {}
        self.version = 0  # +1 per change: lets the page skip a fetch when nothing changed
        self.today = date.today()
        self.lock = threading.RLock()

    def station(self, sid: str) -> StationView:
        view = self.stations.get(sid)
        if view is None:
            view = self.stations[sid] = StationView(sid)
        return view

    def _touch(self) -> None:
        self.version += 1

    def roll_day(self, today: date) -> None:
        """At midnight the day's figures start afresh; states, outages and seqs carry on."""
        with self.lock:
            if today != self.today:
                self.today = today
                for view in self.stations.values():
                    view.day = Day()
                self._touch()

    # ----- status ---------------------------------------------------------------------------

    def apply_status(self, sid: str, doc: dict[str, Any], now: float) -> str:
        """A retained status (birth or will): returns `stale` when it was ignored (a will from an
        older session than the last birth, which the broker may deliver late), `unchanged`, or
        the new state (`online`, `offline`)."""
        with self.lock:
            view = self.station(sid)
            session = int(doc.get("session", -1))
            state = doc["state"]
            if state == "offline" and session < view.session:
                return "stale"
            if state == "offline" and view.state == "offline" and session <= view.session:
                # The will of a connection that already said goodbye (cause `shutdown`): the
                # station's own word stands.
                return "unchanged"
            changed = state != view.state
            if state == "online":
                view.session = max(view.session, session)
                view.version = doc.get("version", view.version)
                last_seq = doc.get("last_seq")
                if isinstance(last_seq, int) and 0 <= last_seq <= bounds.MAX_SEQ:
                    view.claimed_last_seq = last_seq
            if state != view.state:
                if state == "offline":
                    view.outages.append(Outage(now, None, str(doc.get("cause", "lost"))))
                elif view.outages and view.outages[-1].end is None:
                    view.outages[-1].end = now
                view.state, view.since = state, now
            view.cause = doc.get("cause") if state == "offline" else None
            self._touch()
            return state if changed else "unchanged"

    def restore_station(
        self, sid: str, state: str, session: int, since: float | None, cause: str | None, floor: int
    ) -> None:
        """What the store remembers from before a restart: `since` and the seq floor survive it."""
        with self.lock:
            view = self.station(sid)
            view.state, view.session, view.since, view.cause = state, session, since, cause
            view.tracker.floor = floor

    def restore_outage(self, sid: str, outage: Outage) -> None:
        with self.lock:
            self.station(sid).outages.append(outage)

    # ----- events -----------------------------------------------------------------------------

    def apply_event(self, event: Event, now: float, *, replayed: bool = False) -> list[tuple[int, int]]:
        """A newly stored event (each id once): seqs, and the day's figures if it is today's.
        Returns the seq ranges an eviction's `delivered` list closed as lost: those not held here."""
        closed: list[tuple[int, int]] = []
        with self.lock:
            view = self.station(event.station)
            view.tracker.add(event.seq, now)
            view.last_event = now
            view.replayed += replayed
            ranges, problem = bounds.loss_ranges(event)
            delivered, delivered_problem = bounds.delivered_ranges(event)
            problem = problem or delivered_problem
            try:
                for first, last in ranges:
                    view.tracker.lose(first, last, now)
                for first, last in delivered:
                    closed += view.tracker.lose_missing(first, last, now)
            except TooFragmented as exc:
                problem = f"{event.id}: {exc}"
            if problem:
                self._mark(view, bounds.Refused("loss-ranges", problem, hostile=True), counted=False)
            if event.kind == "telemetry" and isinstance(event.data.get("link"), dict):
                view.link = link_month(event.data["link"], event.ts)
            if event.ts[:10] == self.today.isoformat():
                self._apply_day(view, event)
            self._touch()
        return closed

    def _apply_day(self, view: StationView, event: Event) -> None:
        """Today's media events, for the page's "not uploaded yet" until the county holds the file.
        The day's figures (ratings, queue) are read from the store (centre/figures.py)."""
        day, data = view.day, event.data
        day.events += 1
        if event.kind != "media":
            return
        info = media_info(view.id, event)
        if data.get("caused_by") and len(day.clips) < MAX_CLIPS:
            day.clips[str(data["caused_by"])] = info
        elif data.get("type") == "snapshot":
            window = data.get("window") if isinstance(data.get("window"), int) else 0
            if window not in day.snapshots or day.snapshots[window]["ts"] <= event.ts:
                day.snapshots[window] = info

    # ----- what one bad station sent (centre/bounds.py) ----------------------------------------

    def seq_reference(self, sid: str) -> int:
        """The highest seq a station's next event may be measured against for a jump."""
        with self.lock:
            view = self.station(sid)
            return max(view.tracker.top, view.claimed_last_seq)

    def would_fragment(self, sid: str, seq: int) -> bool:
        with self.lock:
            return self.station(sid).tracker.would_fragment(seq)

    def held(self, sid: str, seq: int, now: float) -> None:
        """A seq the store holds, stored by another console process: no longer a gap here."""
        with self.lock:
            view = self.station(sid)
            if not view.tracker.would_fragment(seq):
                view.tracker.add(seq, now)
                self._touch()

    def accounted(self, sid: str, floor: int, now: float) -> None:
        """Every seq up to `floor` is in the shared store or recorded lost (another console said so)."""
        with self.lock:
            view = self.station(sid)
            view.tracker.account(view.tracker.floor + 1, floor, now)
            self._touch()

    def gapped(self, now: float, grace: float, limit: int) -> list[tuple[str, list[tuple[int, int]]]]:
        """Stations (online or not) whose gaps have outlasted the grace period, oldest gap first."""
        with self.lock:
            views = [v for v in self.stations.values() if v.tracker.gap_since is not None]
            views = sorted(
                (v for v in views if now - (v.tracker.gap_since or now) >= grace),
                key=lambda v: v.tracker.gap_since or 0,
            )
            return [(v.id, v.tracker.missing(limit=5)) for v in views[:limit]]

    def refuse(self, sid: str, refused: bounds.Refused) -> None:
        """A message from `sid` (the topic's station) was refused: count it, mark if hostile."""
        with self.lock:
            self._mark(self.station(sid), refused, counted=True)

    def _mark(self, view: StationView, refused: bounds.Refused, *, counted: bool) -> None:
        if counted:
            view.refused[refused.reason] = view.refused.get(refused.reason, 0) + 1
        if refused.hostile:
            view.hostile[refused.reason] = refused.detail[:200]
        self._touch()

    def rate_limited(self, sid: str) -> None:
        with self.lock:
            self.station(sid).limited += 1
            self._touch()

    # ----- replay bookkeeping (ingest decides; the page shows) ---------------------------------

    def replay_due(self, now: float, grace: float, retry: float, tries: int) -> list[tuple[str, list[tuple[int, int]]]]:
        """Online stations whose gaps have outlasted the grace period and are due a (re)request."""
        due = []
        with self.lock:
            for view in self.stations.values():
                since = view.tracker.gap_since
                if since is None:
                    view.replay_tries = 0
                    continue
                if view.state != "online" or now - since < grace or now - view.replay_at < retry:
                    continue
                self._progressed(view)
                if view.replay_tries >= tries:
                    continue
                due.append((view.id, view.tracker.missing(limit=5)))
        return due

    def replay_sent(self, sid: str, ranges: list[tuple[int, int]], now: float) -> None:
        with self.lock:
            view = self.station(sid)
            view.replay_tries += 1
            view.replay_at = now
            view.replay_floor = view.tracker.floor
            view.replay_last = {"ranges": ranges, "at": now, "answer": None}
            self._touch()

    def replay_answered(self, sid: str, answer: dict[str, Any]) -> None:
        with self.lock:
            view = self.station(sid)
            if view.replay_last is not None:
                view.replay_last["answer"] = bounds.replay_answer(answer)
            self._touch()

    @staticmethod
    def _progressed(view: StationView) -> None:
        """A request names only the lowest gaps (`missing(limit=5)`). If the floor has risen
        since, it brought back what it asked for first: that was no failed try, and the gaps
        above get tries of their own. Otherwise a backlog thinned out into more than
        5 x `tries` gaps would have its upper gaps given up without ever being asked for."""
        if view.replay_tries and view.tracker.floor > view.replay_floor:
            view.replay_tries = 0

    def exhausted(self, tries: int, retry: float, now: float) -> list[tuple[str, list[tuple[int, int]]]]:
        """Gaps asked for `tries` times without the floor moving, still open a retry period
        after the last request: the station no longer holds them (past its retention). Closes
        as lost only what those requests named and is still missing (never a gap not asked
        for) and returns it so ingest can record it."""
        out = []
        with self.lock:
            for view in self.stations.values():
                if view.tracker.gap_since is None or now - view.replay_at < retry:
                    continue
                self._progressed(view)
                if view.replay_tries < tries:
                    continue
                ranges = []
                for first, last in (view.replay_last or {}).get("ranges", []):
                    ranges += view.tracker.lose_missing(first, min(last, first + MAX_REPLAY_SEQS - 1), now)
                view.replay_tries = 0
                if ranges:
                    out.append((view.id, ranges))
                self._touch()
        return out

    # ----- what the page reads ------------------------------------------------------------------

    def summary(self, now: float) -> dict[str, Any]:
        """Every station in one line each: the overview the page draws as tiles (the day's figures
        are added from the store, centre/figures.py)."""
        with self.lock:
            stations = []
            totals = {"stations": 0, "online": 0, "offline": 0, "gaps": 0}
            for sid in sorted(self.stations):
                view = self.stations[sid]
                gaps = view.tracker.missing_count() if view.tracker.gap_since is not None else 0
                stations.append(
                    {
                        "id": sid,
                        "state": view.state,
                        "since": view.since,
                        "cause": view.cause,
                        "gaps": gaps,
                        "hostile": bool(view.hostile),
                    }
                )
                totals["stations"] += 1
                totals[view.state] = totals.get(view.state, 0) + 1
                totals["gaps"] += gaps
            return {
                "county": self.county,
                "name": self.name,
                "version": self.version,
                "day": self.today.isoformat(),
                "now": now,
                "totals": totals,
                "stations": stations,
            }

    def detail(self, sid: str, now: float) -> dict[str, Any] | None:
        """One station in full: outages, today's media events (clips by rating, snapshots), seqs,
        what it was refused (the day's figures are added from the store, centre/figures.py)."""
        with self.lock:
            view = self.stations.get(sid)
            if view is None:
                return None
            day = view.day
            tracker = view.tracker
            return {
                "id": sid,
                "state": view.state,
                "since": view.since,
                "cause": view.cause,
                "session": view.session,
                "version": view.version,
                "last_event": view.last_event,
                "outages": [o.as_dict() for o in reversed(view.outages)],
                "events_today": day.events,
                "clips": dict(day.clips),
                "snapshots": {str(w): s for w, s in sorted(day.snapshots.items())},
                "seq": {
                    "floor": tracker.floor,
                    "top": tracker.top,
                    "missing": tracker.missing(limit=20),
                    "missing_count": tracker.missing_count(),
                    "lost": tracker.lost,
                    "replayed": view.replayed,
                    "replay": view.replay_last,
                },
                "guard": {"refused": dict(view.refused), "hostile": dict(view.hostile), "rate_limited": view.limited},
                "link": view.link,
            }
