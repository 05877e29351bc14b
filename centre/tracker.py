"""Which seqs of one station the county holds, which are missing, and which are known lost.

A station numbers its events 1, 2, 3... and never reuses a number, so the county can tell
what it lacks. `floor` is the highest seq below which everything is accounted for (received,
or reported lost); above it the tracker keeps what it holds as ranges, never as single seqs,
so one hostile number (a seq of 10^9, an eviction of [1, 10^10]) costs one range, not a
billion entries, and every operation is bounded by the number of ranges. That number is capped
(MAX_RANGES): a station that fragments its seqs further is refused (TooFragmented) and marked.
Pure: no I/O, no clock of its own.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

# Separate runs of held seqs above the floor. A real station's gaps are a handful (priorities
# overtaking each other, an outage); ten thousand is far beyond any honest pattern.
MAX_RANGES = 10_000


class TooFragmented(ValueError):
    """Holding this seq would need more than MAX_RANGES separate ranges."""


@dataclass
class SeqTracker:
    floor: int = 0
    held: list[tuple[int, int]] = field(default_factory=list)  # sorted, disjoint, all above floor + 1
    lost: int = 0  # seqs closed as known losses (eviction, an exhausted replay)
    gap_since: float | None = None  # when the current gaps were first seen

    def add(self, seq: int, now: float) -> None:
        """Account for a received seq."""
        self._cover(seq, seq, now)

    def lose(self, first: int, last: int, now: float) -> int:
        """Close first..last as known losses; returns how many of them were still missing."""
        closed = self._cover(first, last, now)
        self.lost += closed
        return closed

    def lose_missing(self, first: int, last: int, now: float) -> list[tuple[int, int]]:
        """Close as known losses only the seqs of first..last not held, as ranges; returns them.
        Bounded by the number of held ranges, whatever the span."""
        first = max(first, self.floor + 1)
        gaps: list[tuple[int, int]] = []
        expected = first
        for a, b in self.held[bisect_left(self.held, first, key=lambda r: r[1]) :]:
            if a > last:
                break
            if a > expected:
                gaps.append((expected, a - 1))
            expected = max(expected, b + 1)
        if expected <= last:
            gaps.append((expected, last))
        for a, b in gaps:
            self.lose(a, b, now)
        return gaps

    def account(self, first: int, last: int, now: float) -> None:
        """first..last are accounted for elsewhere (a shared store), neither received here nor lost."""
        self._cover(first, last, now)

    def would_fragment(self, seq: int) -> bool:
        """Whether holding `seq` would open a new range beyond MAX_RANGES."""
        if seq <= self.floor + 1 or len(self.held) < MAX_RANGES:
            return False
        i = bisect_left(self.held, seq - 1, key=lambda r: r[1])
        return i == len(self.held) or self.held[i][0] > seq + 1

    def _cover(self, first: int, last: int, now: float) -> int:
        first = max(first, self.floor + 1)
        if last < first:
            return 0
        # The ranges that overlap or touch first..last merge with it into one.
        i = bisect_left(self.held, first - 1, key=lambda r: r[1])
        j = bisect_right(self.held, last + 1, key=lambda r: r[0])
        if i == j and first > self.floor + 1 and len(self.held) >= MAX_RANGES:
            raise TooFragmented(f"more than {MAX_RANGES} separate seq ranges")
        touched = self.held[i:j]
        already = sum(min(last, b) - max(first, a) + 1 for a, b in touched if min(last, b) >= max(first, a))
        merged = (min(first, touched[0][0]), max(last, touched[-1][1])) if touched else (first, last)
        self.held[i:j] = [merged]
        if self.held[0][0] == self.floor + 1:
            self.floor = self.held.pop(0)[1]
        if not self.held:
            self.gap_since = None
        elif self.gap_since is None:
            self.gap_since = now
        return last - first + 1 - already

    @property
    def top(self) -> int:
        """The highest seq accounted for."""
        return self.held[-1][1] if self.held else self.floor

    def missing(self, limit: int = 100) -> list[tuple[int, int]]:
        """The missing seqs as [first, last] ranges, lowest first, at most `limit` ranges."""
        ranges: list[tuple[int, int]] = []
        expected = self.floor + 1
        for first, last in self.held[:limit]:
            ranges.append((expected, first - 1))
            expected = last + 1
        return ranges

    def missing_count(self) -> int:
        return self.top - self.floor - sum(last - first + 1 for first, last in self.held)
