"""The station logic's config: `[queue]`, `[ratings]`, `[announce]`, `[[categories]]`,
`[[clerks]]` and this module's keys of `[[windows]]`.

`[[windows]]` is shared: the window-unit driver reads its own keys (`unit`, `uid`) from the same
tables. So `parse_station` reads only `number` and `reason_keys` and leaves the final
unknown-key check to edge/config.py, which calls `done()` once every owner has read its keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge.configfile import ConfigError, Section
from edge.station.hours import Hours, parse_hours

CLERK_ID = r"[A-Za-z0-9-]{1,32}"
CATEGORY_CODE = r"[A-Z]"
KEY_NAME = r"[a-z][a-z0-9-]{0,15}"
# Keys the station itself understands; a reason key must not shadow one of them.
BUILTIN_KEYS = frozenset(
    {"good", "bad", "r1", "r2", "r3", "r4", "r5", "next", "recall", "skip", "pause", "resume", "start", "done"}
    | {"put-back", "ticket", "green", "transfer", "code", "card", "enter", "clear", "signin"}
)
# What the issue names as typical reasons for a bad rating; a station may configure its own.
DEFAULT_REASONS = (
    ("slow", "办理时间长"),
    ("attitude", "服务态度不好"),
    ("come-back", "让我多次跑"),
    ("unclear", "没有讲解清楚"),
)


@dataclass(frozen=True)
class Limit:
    """A time limit's two lights: the yellow one at `warn_s`, the red one at `over_s`."""

    warn_s: float
    over_s: float

    def level(self, elapsed_s: float) -> str:
        return "over" if elapsed_s >= self.over_s else "warn" if elapsed_s >= self.warn_s else "ok"


@dataclass(frozen=True)
class CategoryConfig:
    code: str  # the ticket letter, e.g. "A"
    name: str  # e.g. "社会保障"
    item: str  # the service item code the rating record carries
    item_name: str
    windows: tuple[int, ...]
    hours: Hours = field(default_factory=Hours)
    wait: Limit | None = None  # from taking a number (or a transfer, a put-back) to being called
    service: Limit | None = None  # from the start of the service (or the call, without `start`) to its end


@dataclass(frozen=True)
class ClerkConfig:
    id: str
    name: str
    cards: tuple[str, ...] = ()
    code: str | None = None  # keypad sign-in code


@dataclass(frozen=True)
class WindowConfig:
    number: int
    # The unit at this window has reason keys: after a bad rating it waits for one.
    reason_keys: bool = False


@dataclass(frozen=True)
class RatingsConfig:
    # A rating is linked to a service that ended at most this long ago.
    window_s: float = 120.0
    # After a rating, more presses at the window this soon are repeats (counted, not published).
    repeat_s: float = 30.0
    # Unlinked presses closer together than this are a child at the buttons: abuse, not ratings.
    abuse_interval_s: float = 2.0
    # How long a unit with reason keys waits for a reason after a bad rating.
    reason_wait_s: float = 5.0
    # How long the unit shows "thanks" after a rating.
    thanks_s: float = 3.0
    reasons: tuple[tuple[str, str], ...] = DEFAULT_REASONS  # (key, what the national record shows)

    def reason_name(self, key: str) -> str | None:
        return dict(self.reasons).get(key)


@dataclass(frozen=True)
class AnnounceConfig:
    voice: bool = False  # speak calls through the Pi's audio output
    display: bool = False  # publish a `call` event for station displays
    # espeak-ng's Mandarin voice is `cmn` (older releases call it `zh`); the text is appended.
    command: tuple[str, ...] = ("espeak-ng", "-v", "cmn", "-s", "150")
    template: str = "请{number}号到{window}号窗口办理"
    max_pending: int = 4  # calls waiting to be spoken beyond this are dropped and counted
    timeout_s: float = 20.0  # a speech process running longer than this is killed


@dataclass(frozen=True)
class StationSettings:
    """Everything the station logic needs from the config, checked together."""

    queue: bool  # false: no queue; ratings link to the clerk signed in at the window
    recall_max: int
    categories: tuple[CategoryConfig, ...]
    windows: tuple[WindowConfig, ...]
    clerks: tuple[ClerkConfig, ...]
    ratings: RatingsConfig = RatingsConfig()
    announce: AnnounceConfig = AnnounceConfig()
    # By code: the time-limit check looks a category up for every live ticket on every request.
    _by_code: dict[str, CategoryConfig] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_code", {c.code: c for c in self.categories})

    def category(self, code: str) -> CategoryConfig | None:
        return self._by_code.get(code)

    def window(self, number: int) -> WindowConfig | None:
        return next((w for w in self.windows if w.number == number), None)

    def categories_of(self, window: int) -> tuple[CategoryConfig, ...]:
        return tuple(c for c in self.categories if window in c.windows)


def _category(section: Section) -> CategoryConfig:
    name = section.get_str("name")
    try:
        hours = parse_hours(section.get_list("hours", []))
    except ValueError as exc:
        raise section.error("hours", str(exc)) from None
    windows = section.get_list("windows")
    if not windows or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in windows):
        raise section.error("windows", f"{windows!r}: give the numbers of the windows that serve it, e.g. [1, 2]")
    cfg = CategoryConfig(
        code=section.get_str("code", pattern=CATEGORY_CODE),
        name=name,
        item=section.get_str("item"),
        item_name=section.get_str("item_name", name),
        windows=tuple(sorted(set(windows))),
        hours=hours,
        wait=_limit(section, "wait"),
        service=_limit(section, "service"),
    )
    section.done()
    return cfg


def _limit(section: Section, what: str) -> Limit | None:
    """`<what>_warn_min` and `<what>_over_min` (minutes), both or neither."""
    warn = section.get_float(f"{what}_warn_min", None, minval=0.1, maxval=24 * 60)
    over = section.get_float(f"{what}_over_min", None, minval=0.1, maxval=24 * 60)
    if (warn is None) != (over is None):
        missing = f"{what}_over_min" if over is None else f"{what}_warn_min"
        raise section.error(missing, f"give both {what}_warn_min (yellow light) and {what}_over_min (red light)")
    if warn is None:
        return None
    if over <= warn:
        raise section.error(f"{what}_over_min", f"{over} is not after {what}_warn_min = {warn}")
    return Limit(warn * 60, over * 60)


def _clerk(section: Section) -> ClerkConfig:
    cards = section.get_list("cards", [])
    if not all(isinstance(c, str) and c for c in cards):
        raise section.error("cards", 'give card numbers as strings, e.g. ["0012345678"]')
    cfg = ClerkConfig(
        id=section.get_str("id", pattern=CLERK_ID),
        name=section.get_str("name"),
        cards=tuple(cards),
        code=section.get_str("code", None, pattern=r"[0-9]{4,8}"),
    )
    section.done()
    return cfg


def _window(section: Section) -> WindowConfig:
    """Only this module's keys; edge/config.py checks for unknown ones after every owner read."""
    return WindowConfig(
        number=section.get_int("number", minval=1, maxval=99),
        reason_keys=section.get_bool("reason_keys", WindowConfig.reason_keys),
    )


def _reasons(section: Section) -> tuple[tuple[str, str], ...]:
    if not section.has("reasons"):
        return DEFAULT_REASONS
    reasons = []
    for entry in section.tables("reasons"):
        key = entry.get_str("key", pattern=KEY_NAME)
        if key in BUILTIN_KEYS:
            raise entry.error("key", f"{key!r} is already a key of the window unit; choose another name")
        reasons.append((key, entry.get_str("name")))
        entry.done()
    return tuple(reasons)


def _ratings(section: Section) -> RatingsConfig:
    d = RatingsConfig
    cfg = RatingsConfig(
        window_s=section.get_float("window_s", d.window_s, minval=1),
        repeat_s=section.get_float("repeat_s", d.repeat_s, minval=0),
        abuse_interval_s=section.get_float("abuse_interval_s", d.abuse_interval_s, minval=0),
        reason_wait_s=section.get_float("reason_wait_s", d.reason_wait_s, minval=0.5, maxval=60),
        thanks_s=section.get_float("thanks_s", d.thanks_s, minval=0, maxval=60),
        reasons=_reasons(section),
    )
    section.done()
    return cfg


def _announce(section: Section) -> AnnounceConfig:
    d = AnnounceConfig
    command = section.get_list("command", list(d.command))
    if not command or not all(isinstance(part, str) for part in command):
        raise section.error("command", 'give the speech command as a list of strings, e.g. ["espeak-ng", "-v", "cmn"]')
    template = section.get_str("template", d.template)
    try:
        template.format(number="A001", window=1, category="")
    except (KeyError, IndexError, ValueError) as exc:
        raise section.error(
            "template", f"{template!r}: only {{number}}, {{window}} and {{category}} may appear ({exc})"
        ) from None
    cfg = AnnounceConfig(
        voice=section.get_bool("voice", d.voice),
        display=section.get_bool("display", d.display),
        command=tuple(command),
        template=template,
        max_pending=section.get_int("max_pending", d.max_pending, minval=1, maxval=100),
        timeout_s=section.get_float("timeout_s", d.timeout_s, minval=1),
    )
    section.done()
    return cfg


def _unique(sections: list[Section], values: list[tuple[str, object]], what: str) -> None:
    """Fail naming both tables when two claim the same value (ESPHome's pin check)."""
    seen: dict[object, Section] = {}
    for section, (key, value) in zip(sections, values, strict=True):
        if value in seen:
            raise section.error(key, f"{what} {value!r} is already given in [{seen[value].name}]")
        seen[value] = section


def parse_station(top: Section, windows: list[Section]) -> StationSettings | None:
    """The station logic's settings, or None when the config has no station sections at all
    (a gateway that only relays, or the spine's own tests)."""
    category_tables = top.tables("categories")
    clerk_tables = top.tables("clerks")
    if not any(top.has(key) for key in ("queue", "ratings", "announce", "categories", "clerks", "windows")):
        return None
    categories = [_category(s) for s in category_tables]
    clerks = [_clerk(s) for s in clerk_tables]
    window_cfgs = [_window(s) for s in windows]
    _unique(category_tables, [("code", c.code) for c in categories], "category")
    _unique(clerk_tables, [("id", c.id) for c in clerks], "clerk id")
    _unique(windows, [("number", w.number) for w in window_cfgs], "window")
    card_owners = [(s, ("cards", card)) for s, c in zip(clerk_tables, clerks, strict=True) for card in c.cards]
    _unique([s for s, _ in card_owners], [v for _, v in card_owners], "card")
    coded = [(s, c) for s, c in zip(clerk_tables, clerks, strict=True) if c.code is not None]
    _unique([s for s, _ in coded], [("code", c.code) for _, c in coded], "keypad code")

    queue_section = top.section("queue")
    enabled = queue_section.get_bool("enabled", bool(categories))
    recall_max = queue_section.get_int("recall_max", 3, minval=0, maxval=20)
    queue_section.done()
    if enabled and not categories:
        raise queue_section.error("enabled", "the queue needs at least one [[categories]] (or set enabled = false)")
    # A window a category names but no [[windows]] table describes gets the defaults.
    numbers = {w.number for w in window_cfgs}
    window_cfgs += [WindowConfig(n) for n in sorted({n for c in categories for n in c.windows} - numbers)]
    if not window_cfgs:
        raise ConfigError(f"{top.source}: the station has no windows: add [[windows]] tables or [[categories]] windows")
    return StationSettings(
        queue=enabled,
        recall_max=recall_max,
        categories=tuple(categories),
        windows=tuple(sorted(window_cfgs, key=lambda w: w.number)),
        clerks=tuple(clerks),
        ratings=_ratings(top.section("ratings")),
        announce=_announce(top.section("announce")),
    )
