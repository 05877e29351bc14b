"""A simulated day at a village station: 3 windows, 2 categories, 200 citizens.

The script drives the station only through its public API (keys, card swipes, commands) on a
hand-moved clock, keeps its own account of what should happen to every citizen, and at the end
reconciles that account with the events in the outbox: every ticket issued is served, skipped,
expired or still waiting, each exactly once; every rating is linked to the right ticket and
clerk; wait and service times are the script's clock differences. A restart (station and
outbox closed and reopened on the same files) comes in the middle of the day, with services
in progress.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from tests.edge.station.station_support import CONFIG, FakeClock, Harness, morning, settings

DAY_CONFIG = (
    CONFIG
    + """
[[clerks]]
id = "c04"
name = "赵敏"
cards = ["0001000004"]
"""
)
CITIZENS = 200
STEP_S = 30
WALK_S = 30  # window 3's clerk presses `start` once the citizen has walked up
CARD = {"c01": "0001000001", "c02": "0001000002", "c04": "0001000004"}
WINDOWS_OF = {"A": (1, 2), "B": (2, 3)}
OPEN = {"A": (("08:30", "12:00"), ("14:00", "17:30")), "B": (("08:30", "17:30"),)}


def at(hhmm: str) -> datetime:
    hh, mm = map(int, hhmm.split(":"))
    return morning(hh, mm)


def is_open(category: str, moment: datetime) -> bool:
    return any(at(a) <= moment < at(b) for a, b in OPEN[category])


@dataclass
class Citizen:
    category: str
    arrive: datetime
    green: bool
    service_s: int
    noshow: bool
    returns: bool  # a no-show who turns up later and is put back
    transfer: bool
    rating: str | None  # the key pressed at the end, None: leaves without rating
    reason: str | None  # after a bad rating at window 2
    double: bool  # presses the rating key twice
    number: str = ""
    order: int = 0
    requeued: bool = False
    issued: datetime | None = None
    queued: datetime | None = None
    fate: str = "waiting"
    window: int | None = None
    clerk: str | None = None
    called: datetime | None = None
    started: datetime | None = None
    ended: datetime | None = None
    back_at: datetime | None = None


@dataclass
class Desk:
    number: int
    clerk: str | None = None
    paused: bool = False
    current: Citizen | None = None
    recalls: int = 0
    next_at: datetime | None = None
    last_end: datetime | None = None
    last_rating: datetime | None = None


@dataclass
class Script:
    harness: Harness
    clock: FakeClock
    rng: random.Random
    citizens: list[Citizen] = field(default_factory=list)
    desks: dict[int, Desk] = field(default_factory=dict)
    taken: Counter[str] = field(default_factory=Counter)
    order: int = 0
    ratings: dict[str, dict] = field(default_factory=dict)  # ticket number -> expected rating
    unlinked: int = 0
    repeats: int = 0
    abuse: int = 0
    refused: int = 0  # presses and commands the station must refuse
    pause_wanted: dict[int, bool] = field(default_factory=dict)

    @property
    def now(self) -> datetime:
        return self.clock.now

    def press(self, window: int, key: str) -> str:
        return self.harness.station.press(window, key, source="window-unit")

    # -- citizens --------------------------------------------------------------------------

    def arrivals(self) -> None:
        rng = self.rng
        for _ in range(CITIZENS):
            category = "A" if rng.random() < 0.55 else "B"
            spans = OPEN[category]
            a, b = spans[rng.randrange(len(spans))]
            # A minute clear of closing: the script issues tickets at its 30-second steps.
            start, end = at(a), min(at(b) - timedelta(minutes=1), at("16:45"))
            arrive = start + timedelta(seconds=rng.randrange(int((end - start).total_seconds())))
            noshow = rng.random() < 0.06
            rating = rng.choice(["good", "good", "r5", "r4", "r3", "bad", "r2", None])
            self.citizens.append(
                Citizen(
                    category=category,
                    arrive=arrive,
                    green=rng.random() < 0.1,
                    service_s=rng.randrange(150, 600),
                    noshow=noshow,
                    returns=noshow and rng.random() < 0.5,
                    transfer=not noshow and category == "A" and rng.random() < 0.06,
                    rating=rating,
                    reason=rng.choice(["slow", "attitude", None]) if rating in ("bad", "r2") else None,
                    double=rng.random() < 0.1,
                )
            )
        self.citizens.sort(key=lambda c: c.arrive)

    def issue(self, citizen: Citizen) -> None:
        if citizen.green:
            outcome = self.harness.station.command("issue", category=citizen.category, green=True, source="kiosk")
            assert outcome.ok, outcome
            got = outcome.ticket
        else:
            # Window 1 serves A only, window 3 B only: their plain `ticket` key means that category.
            assert self.press(1 if citizen.category == "A" else 3, "ticket") == "thanks"
            got = None
        self.taken[citizen.category] += 1
        citizen.number = f"{citizen.category}{self.taken[citizen.category]:03d}"
        assert got in (None, citizen.number)
        self.order += 1
        citizen.order, citizen.issued, citizen.queued = self.order, self.now, self.now

    def requeue(self, citizen: Citizen, category: str) -> None:
        self.order += 1
        citizen.category, citizen.order, citizen.requeued, citizen.queued = category, self.order, True, self.now
        citizen.fate, citizen.window, citizen.clerk, citizen.called, citizen.started = "waiting", None, None, None, None

    def expected_next(self, window: int) -> Citizen | None:
        waiting = [c for c in self.citizens if c.fate == "waiting" and c.number and window in WINDOWS_OF[c.category]]
        return min(waiting, key=lambda c: (not c.green, not c.requeued, c.order), default=None)

    # -- windows ---------------------------------------------------------------------------

    def call_next(self, desk: Desk) -> None:
        expected = self.expected_next(desk.number)
        self.press(desk.number, "next")
        shown = self.harness.station.snapshot()["windows"][str(desk.number)]["ticket"]
        assert shown == (expected.number if expected else None), f"window {desk.number} at {self.now:%H:%M:%S}"
        desk.current, desk.recalls = expected, 0
        if expected is not None:
            expected.fate, expected.window, expected.clerk, expected.called = (
                "called",
                desk.number,
                desk.clerk,
                self.now,
            )
            desk.next_at = self.now + timedelta(seconds=30)

    def finish(self, desk: Desk, citizen: Citizen) -> None:
        citizen.fate, citizen.ended = "served", self.now
        desk.current, desk.last_end = None, self.now

    def rate(self, desk: Desk, citizen: Citizen) -> None:
        assert citizen.rating is not None
        self.finish(desk, citizen)
        waits_for_reason = citizen.rating in ("bad", "r1", "r2") and desk.number == 2
        assert self.press(desk.number, citizen.rating) == ("ready" if waits_for_reason else "thanks")
        level = int(citizen.rating[1]) if citizen.rating.startswith("r") else None
        start = citizen.started or citizen.called
        assert citizen.queued and citizen.called and start
        self.ratings[citizen.number] = {
            "verdict": "good" if citizen.rating == "good" or (level or 0) >= 3 else "bad",
            "level": level,
            "window": desk.number,
            "clerk": citizen.clerk,
            "ticket": citizen.number,
            "category": citizen.category,
            "wait_s": (citizen.called - citizen.queued).total_seconds(),
            "service_s": (self.now - start).total_seconds(),
            "reason": citizen.reason if waits_for_reason else None,
            "linked": True,
        }
        desk.last_rating = self.now
        if citizen.double:
            self.clock.advance(1)
            self.press(desk.number, citizen.rating)
            self.repeats += 1
        if waits_for_reason and citizen.reason:
            self.clock.advance(2)
            assert self.press(desk.number, citizen.reason) == "thanks"

    def serve(self, desk: Desk) -> None:
        citizen = desk.current
        if citizen is None:
            if self.pause_wanted.get(desk.number) is not None:
                self.set_paused(desk, self.pause_wanted.pop(desk.number))
            if not desk.paused:
                self.call_next(desk)
            return
        if citizen.noshow and citizen.fate == "called":
            if self.now < (desk.next_at or self.now):
                return
            if desk.recalls < 2:
                self.press(desk.number, "recall")
                desk.recalls += 1
                desk.next_at = self.now + timedelta(seconds=30)
                return
            self.press(desk.number, "skip")
            citizen.fate, desk.current = "skipped", None
            if citizen.returns:
                citizen.back_at = self.now + timedelta(minutes=5)
                citizen.noshow = False
            return
        assert citizen.called is not None
        if desk.number == 3 and citizen.started is None and self.now >= citizen.called + timedelta(seconds=WALK_S):
            self.press(3, "start")
            citizen.started = self.now
        start = citizen.started or citizen.called
        if self.now < start + timedelta(seconds=citizen.service_s):
            return
        other = "B" if citizen.category == "A" else "A"
        if citizen.transfer and is_open(other, self.now):
            outcome = self.harness.station.command("transfer", window=desk.number, category=other)
            assert outcome.ok and outcome.ticket == citizen.number, outcome
            citizen.transfer = False
            desk.current = None
            self.requeue(citizen, other)
        elif citizen.rating is not None:
            self.rate(desk, citizen)
        elif desk.paused or self.pause_wanted.get(desk.number) is not None:
            self.press(desk.number, "done")
            self.finish(desk, citizen)
        else:
            self.finish(desk, citizen)  # leaves without rating: the clerk's `next` ends the service
            self.call_next(desk)

    def set_paused(self, desk: Desk, paused: bool) -> None:
        if desk.paused != paused:
            assert self.press(desk.number, "pause") == ("off" if paused else "idle")
            desk.paused = paused

    def swipe(self, window: int, clerk: str) -> None:
        self.harness.station.swipe(window, CARD[clerk], source="card-reader")

    def child_at_window_1(self) -> bool:
        """A child hammers window 1's good key while nobody is being served there: the first
        press is an unlinked rating, the rest abuse."""
        desk = self.desks[1]
        if not desk.paused or desk.last_end is None or self.now < desk.last_end + timedelta(seconds=125):
            return False
        if desk.last_rating and self.now < desk.last_rating + timedelta(seconds=25):
            return False
        for i in range(5):
            self.press(1, "good")
            self.clock.advance(0.5)
            if i:
                self.abuse += 1
        self.unlinked += 1
        return True


def test_a_simulated_day_reconciles(tmp_path: Path) -> None:
    clock = FakeClock(morning(8, 20))
    harness = Harness(tmp_path, clock, config=settings(DAY_CONFIG))
    script = Script(harness, clock, random.Random(20260126))
    script.arrivals()
    script.desks = {n: Desk(n) for n in (1, 2, 3)}
    try:
        run_day(script)
        reconcile(script)
    finally:
        harness.close()


def run_day(script: Script) -> None:
    clock, station = script.clock, script.harness
    for window, clerk in ((1, "c01"), (2, "c02")):
        script.swipe(window, clerk)
        script.desks[window].clerk = clerk
    assert station.station.keypad_code(3, "3333", source="keypad") in ("idle", "ready")
    script.desks[3].clerk = "c03"
    arrivals = iter(script.citizens)
    upcoming = next(arrivals, None)
    restarted = child = lunch_ticket = False
    clock.at(8, 30)
    while clock.now < at("17:35"):
        now = clock.now
        while upcoming is not None and upcoming.arrive <= now:
            script.issue(upcoming)
            upcoming = next(arrivals, None)
        for citizen in script.citizens:
            if citizen.back_at is not None and citizen.back_at <= now:
                citizen.back_at = None
                outcome = station.station.command("put-back", ticket=citizen.number)
                if is_open(citizen.category, now):
                    assert outcome.ok, outcome
                    script.requeue(citizen, citizen.category)
                else:
                    assert not outcome.ok and "closed" in outcome.detail
                    script.refused += 1
        # Clerks' day: window 1 pauses for a break and for lunch (signing out), window 2
        # changes clerk in the afternoon, window 3 pauses by command from a panel.
        if now == at("10:00"):
            script.pause_wanted[1] = True
        if now == at("10:20"):
            script.pause_wanted[1] = False
        if now == at("12:00"):
            script.pause_wanted[1] = True
        if now == at("12:10") and not lunch_ticket:
            assert script.press(1, "ticket") == "error"  # category A is closed for lunch
            script.refused += 1
            lunch_ticket = True
        if now == at("13:55"):
            script.swipe(1, "c01")  # signs out
            script.desks[1].clerk = None
        if now == at("14:00"):
            script.swipe(1, "c01")
            script.desks[1].clerk = "c01"
            script.pause_wanted[1] = False
        if now == at("15:00"):
            script.swipe(2, "c04")  # replaces c02
            script.desks[2].clerk = "c04"
        if now == at("15:30"):
            assert station.station.command("pause", window=3).ok
            script.desks[3].paused = True
        if now == at("15:40"):
            assert station.station.command("resume", window=3).ok
            script.desks[3].paused = False
        if not child and now >= at("10:05"):
            child = script.child_at_window_1()
        if now == at("12:30") and not restarted:
            busy = [d.number for d in script.desks.values() if d.current is not None]
            assert busy, "the restart should come while someone is being served"
            station.restart()
            restarted = True
        for desk in script.desks.values():
            if clock.now < at("17:30") or desk.current is not None:
                script.serve(desk)
        clock.advance(STEP_S - (clock.now - now).total_seconds())  # the desks may have moved it a little
    station.station.tick()
    assert restarted and child and lunch_ticket
    for citizen in script.citizens:
        if citizen.fate == "waiting" and citizen.number:
            citizen.fate = "expired"  # both categories close at 17:30


def reconcile(script: Script) -> None:
    harness = script.harness
    queue = harness.data("queue")
    issued = Counter(e["ticket"] for e in queue if e["action"] == "issue")
    numbers = {c.number for c in script.citizens if c.number}
    assert len(numbers) == CITIZENS and set(issued) == numbers and set(issued.values()) == {1}

    # Each ticket's last word in the queue events is its fate: end (served), skip, expire.
    last: dict[str, dict] = {}
    for e in queue:
        if e.get("ticket") and e["action"] in ("end", "skip", "expire", "put-back", "transfer", "call", "issue"):
            last[e["ticket"]] = e
    fates = {"end": "served", "skip": "skipped", "expire": "expired"}
    for citizen in script.citizens:
        event = last[citizen.number]
        assert fates.get(event["action"], "waiting") == citizen.fate, (citizen, event)
        if citizen.fate == "served":
            assert event["window"] == citizen.window and event["clerk"] == citizen.clerk
            assert event["wait_s"] == (citizen.called - citizen.queued).total_seconds()
            assert event["ended"] == citizen.ended.isoformat(timespec="seconds")
            if citizen.started is not None:
                assert event["walk_s"] == (citizen.started - citizen.called).total_seconds()
    assert sum(c.fate == "served" for c in script.citizens) > 150

    # Ratings: one per rated service, linked to the ticket and the clerk who served it.
    ratings = harness.data("rating")
    linked = [r for r in ratings if r["linked"]]
    assert {r["ticket"] for r in linked} == set(script.ratings) and len(linked) == len(script.ratings)
    for rating in linked:
        expected = script.ratings[rating["ticket"]]
        assert {k: rating[k] for k in expected if k != "reason"} == {k: v for k, v in expected.items() if k != "reason"}
        assert (rating["reason"] or {}).get("key") == expected["reason"]
        assert rating["camera"] == (expected["verdict"] == "bad") and rating["channel"] == "window-unit"
        category = "11430000-SB-001" if rating["category"] == "A" else "11430000-MZ-002"
        assert rating["item"]["code"] == category
    unlinked = [r for r in ratings if not r["linked"]]
    assert len(unlinked) == script.unlinked and all(r["ticket"] is None for r in unlinked)
    counts = harness.station.snapshot()["counts"]
    assert counts.get("repeat", 0) == script.repeats and counts.get("abuse", 0) == script.abuse
    assert counts.get("refused", 0) == script.refused

    # Calls carry the clerk signed in at the time; clerk events carry clerk ids.
    calls = [e for e in queue if e["action"] == "call"]
    assert {e["clerk"] for e in calls if e["window"] == 2} == {"c02", "c04"}
    clerk_events = harness.data("clerk")
    assert [e["action"] for e in clerk_events if e["clerk"] == "c02"] == ["sign-in", "sign-out"]
    assert harness.data("clerk", clerk="c02", action="sign-out")[0]["by"] == "replaced"

    # No station event was appended twice across the restart: ops are unique and gapless.
    ops = [e.data["op"] for e in harness.events() if "op" in e.data]
    assert ops == list(range(1, len(ops) + 1))
