"""Which seqs of one station the county holds, which are missing, and which are known lost.

A station numbers its events 1, 2, 3... and never reuses a number, so the county can tell
what it lacks. `floor` is the highest seq below which everything is accounted for (received,
or reported lost); only what lies above it is kept, so memory stays small however long a
station has been reporting. Pure: no I/O, no clock of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SeqTracker:
    floor: int = 0
    above: set[int] = field(default_factory=set)
    lost: int = 0  # seqs closed as known losses (eviction, an exhausted replay)
    gap_since: float | None = None  # when the current gaps were first seen

    def add(self, seq: int, now: float) -> None:
        """Account for a received seq."""
        if seq > self.floor:
            self.above.add(seq)
            self._settle(now)

    def lose(self, first: int, last: int, now: float) -> int:
        """Close first..last as known losses; returns how many of them were still missing."""
        closed = 0
        for seq in range(max(first, self.floor + 1), last + 1):
            if seq not in self.above:
                self.above.add(seq)
                closed += 1
        self.lost += closed
        self._settle(now)
        return closed

    def _settle(self, now: float) -> None:
        while self.floor + 1 in self.above:
            self.floor += 1
            self.above.discard(self.floor)
        if not self.above:
            self.gap_since = None
        elif self.gap_since is None:
            self.gap_since = now

    @property
    def top(self) -> int:
        """The highest seq accounted for."""
        return max(self.above, default=self.floor)

    def missing(self, limit: int = 100) -> list[tuple[int, int]]:
        """The missing seqs as [first, last] ranges, lowest first, at most `limit` ranges."""
        ranges: list[tuple[int, int]] = []
        expected = self.floor + 1
        for seq in sorted(self.above):
            if seq > expected:
                ranges.append((expected, seq - 1))
                if len(ranges) >= limit:
                    break
            expected = seq + 1
        return ranges

    def missing_count(self) -> int:
        return sum(last - first + 1 for first, last in self.missing(limit=1_000_000))
