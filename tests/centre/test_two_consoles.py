"""Two console processes on one PostgreSQL store and one media directory, splitting the
county's events and uploads between them (shared subscriptions): both pages show the same day
figures and the same media, and a restarted console shows the day so far."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.conftest import wait_until

pytestmark = pytest.mark.slow

IDS = [f"st-{n:02d}" for n in range(8)]


def test_two_consoles_on_one_postgresql_show_the_same(
    tmp_path: Path, broker, console_factory, fleet_factory, postgres_dsn
) -> None:
    schema = f"yimen_two_{uuid.uuid4().hex[:10]}"
    media = tmp_path / "shared-media"
    consoles = []
    for name in ("a", "b"):
        console = console_factory(broker.port, name, extra=f'\n[store]\ndsn = "{postgres_dsn}"\nschema = "{schema}"\n')
        text = console.config.read_text().replace('dir = "media"', f'dir = "{media}"')
        console.config.write_text(text.replace("[ingest]", "[ingest]\nworkers = 2"))
        consoles.append(console.start())
    a, b = consoles
    fleet = fleet_factory(broker.port, IDS, rate=4.0, telemetry_s=60.0, snapshot_s=2.0)
    for sid in IDS:
        fleet.station(sid).clips = True
    ratings = [fleet.call(lambda sid=sid: fleet.station(sid).rating("bad", 1)) for sid in IDS for _ in range(2)]
    wait_until(lambda: fleet.sent >= 300, 30, "300 events sent")
    fleet.stop()
    sent = {sid: st.seq for sid, st in fleet.stations.items()}

    def behind(console) -> dict[str, dict]:
        """The stations whose floor is not yet the last seq sent, with the console's seq view:
        a timeout then says which seqs are missing where (a gap, or a tail nobody holds)."""
        views = {s: (n, console.station(s)["seq"]) for s, n in sent.items()}
        keys = ("floor", "top", "missing", "lost", "replay")
        return {s: {"sent": n, **{k: v[k] for k in keys}} for s, (n, v) in views.items() if v["floor"] != n}

    for console in consoles:  # each accounts for the seqs the other stored
        try:
            wait_until(lambda c=console: not behind(c), 30, "every seq stored")
        except AssertionError as exc:
            raise AssertionError(f"{exc} by {console.directory.name}: {behind(console)}; see {console.log}") from None
    assert all(c.get("/api/metrics")["ingest"]["stored"] > 20 for c in consoles), "both consoles took a share"

    def figures(console) -> dict:
        summary = console.get("/api/summary")
        return {
            "totals": {k: summary["totals"][k] for k in ("good", "bad", "waiting")},
            "stations": {s["id"]: (s["good"], s["bad"]) for s in summary["stations"]},
            "detail": {sid: {k: console.station(sid)[k] for k in ("ratings", "by_window", "by_clerk")} for sid in IDS},
        }

    def complete_clips(console) -> dict:
        return {
            sid: {r: m["url"] for r, m in console.get(f"/api/station/{sid}/media")["clips"].items() if "url" in m}
            for sid in IDS
        }

    wait_until(lambda: figures(a) == figures(b), 10, "the same figures on both pages")
    assert figures(a)["totals"]["bad"] >= len(ratings)
    wanted = {(r.station, r.id) for r in ratings}
    wait_until(
        lambda: wanted <= {(s, r) for s, clips in complete_clips(a).items() for r in clips}, 30, "every clip complete"
    )
    assert complete_clips(a) == complete_clips(b)
    for clips in complete_clips(b).values():
        for url in clips.values():
            assert (media / url.removeprefix("/media/")).is_file()
    before = figures(a)
    assert a.stop() == 0
    a.start()
    assert figures(a) == before, "a restarted console shows the day so far"
