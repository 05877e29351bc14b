"""The `[link]` section: how the station uses a slow or metered line.

`batch`: a backlog of at least `batch_min` waiting events goes in compressed batches
(mqtt/batch.py); false sends every event alone (the wire format before batches, for a county
that cannot read them yet, and the benchmark's "today"). `topic_aliases`: MQTT 5 topic aliases
for event topics where the broker offers them. `budget_mb`: the month's data budget
for a metered line (0: unmetered), counted from `budget_day` of each month (edge/budget.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.configfile import Section
from mqtt.batch import Batches, BatchLimits


@dataclass(frozen=True)
class LinkConfig:
    batch: bool = True
    batch_min: int = 8
    batch_events: int = BatchLimits.max_events
    batch_kb: int = BatchLimits.max_body // 1024
    batches_inflight: int = 4
    topic_aliases: bool = True
    budget_mb: float = 0.0
    budget_day: int = 1

    def batches(self) -> Batches | None:
        if not self.batch:
            return None
        return Batches(BatchLimits(self.batch_events, self.batch_kb * 1024), self.batches_inflight)


def parse_link(section: Section) -> LinkConfig:
    cfg = LinkConfig(
        batch=section.get_bool("batch", LinkConfig.batch),
        batch_min=section.get_int("batch_min", LinkConfig.batch_min, minval=2, maxval=10_000),
        batch_events=section.get_int("batch_events", LinkConfig.batch_events, minval=2, maxval=1000),
        batch_kb=section.get_int("batch_kb", LinkConfig.batch_kb, minval=1, maxval=1024),
        batches_inflight=section.get_int("batches_inflight", LinkConfig.batches_inflight, minval=1, maxval=64),
        topic_aliases=section.get_bool("topic_aliases", LinkConfig.topic_aliases),
        budget_mb=section.get_float("budget_mb", LinkConfig.budget_mb, minval=0.0, maxval=10_000_000.0),
        budget_day=section.get_int("budget_day", LinkConfig.budget_day, minval=1, maxval=28),
    )
    section.done()
    return cfg
