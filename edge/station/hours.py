"""Opening hours of a service category: when tickets may be issued, and when the day closes.

Pure values, no clock: the owner thread asks with its own (injectable) `now`, so a test can
walk a whole day without sleeping.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import date, datetime, time, tzinfo

_SPAN = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class Hours:
    """Spans of a day, e.g. 08:30-12:00 and 14:00-17:30; no spans means open all day."""

    spans: tuple[tuple[time, time], ...] = ()

    def is_open(self, moment: datetime) -> bool:
        if not self.spans:
            return True
        now = moment.time()
        return any(start <= now < end for start, end in self.spans)

    def closing(self, day: date, tz: tzinfo | None) -> datetime | None:
        """When the day's last span ends: the moment waiting tickets expire. None: never closes."""
        if not self.spans:
            return None
        return datetime.combine(day, max(end for _, end in self.spans), tzinfo=tz)


def parse_hours(values: list[object]) -> Hours:
    """["08:30-12:00", "14:00-17:30"] -> Hours; raises ValueError saying which span is wrong."""
    spans = []
    for value in values:
        match = _SPAN.match(value) if isinstance(value, str) else None
        if match is None:
            raise ValueError(f'{value!r} is not a span like "08:30-12:00"')
        start = time(int(match[1]), int(match[2]))
        end = time(int(match[3]), int(match[4]))
        if end <= start:
            raise ValueError(f"{value!r} ends before it starts")
        spans.append((start, end))
    spans.sort()
    for (_, end), (start, _) in itertools.pairwise(spans):
        if start < end:
            raise ValueError(f"spans overlap at {start:%H:%M}")
    return Hours(tuple(spans))
