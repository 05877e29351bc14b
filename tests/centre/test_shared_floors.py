"""Console processes sharing a store learn each other's progress only from the floors they save:
a floor this console reaches by reading another's must be saved too, or the other never learns
of the seqs this one holds just above it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from centre import config as centre_config
from centre.ingest import Ingest
from centre.model import CountyModel
from centre.store import SqliteStore
from edge.events import Event, Priority, format_ts
from mqtt import topics

ST = "st-03"


def test_a_floor_raised_by_the_one_read_back_is_saved_for_the_others(tmp_path: Path) -> None:
    doc = {"centre": {"county": "c1"}, "store": {"path": str(tmp_path / "centre.db")}}
    config = centre_config.parse(doc, str(tmp_path / "c.toml"))
    store = SqliteStore(tmp_path / "centre.db")
    ingest = Ingest(config, CountyModel("c1", "C"), store)
    now = datetime.now().astimezone()
    # This console got the tail 34..38 (the shared subscription gave 1..33 to the other one)...
    batch = []
    for seq in range(34, 39):
        payload = Event(ST, seq, "queue", format_ts(now), "synced", Priority.NORMAL, {}).to_bytes()
        batch.append((topics.event_topic("c1", ST, "queue"), payload, None, now.timestamp()))
    ingest._handle(batch)
    # ...and the other console then saved its floor, 33: the first tick reads it back.
    store.save_floor(ST, 33)
    store.commit()
    ingest._tick()
    assert ingest.model.stations[ST].tracker.floor == 38
    assert dict(store.floors())[ST] == 38, "the other console would wait for 34..38 forever"
