"""What-if for the drain: the effect of candidate fixes to the uplink's per-event costs,
measured on the same backlog and broker as bench/drain.py, without editing product code.

Each variant patches the product only inside this process (a subclass or a module attribute),
to show what a change to edge/ or mqtt/ would buy before anyone makes it:

  as-is       the product as it is.
  props       mqtt/uplink.py `_fill` calls `codec.replay_properties()` once per publish, and
              each call builds a new paho `Properties` (mqtt/codec.py); here it returns one
              instance built once (paho only reads it when packing, so sharing is safe).
  mark1       `Outbox.mark_delivered` (edge/outbox.py) as ONE transaction on a second
              connection that stays at synchronous=NORMAL, instead of two autocommit
              statements each wrapped in two `PRAGMA synchronous` toggles (6 statements, 2
              commits per PUBACK batch). The meta row `last_delivery` is still written.
  mark1-nometa  as mark1, without the `last_delivery` meta row (status could read
              `max(delivered)` through the existing `delivered_at` index instead).
  fill-first  the uplink refills the window before it marks the acknowledged batch in SQLite
              (excluding acknowledged-but-unmarked seqs from `pending`), so the window is not
              idle while the mark commits.
  all         props + mark1-nometa + fill-first (any other mix: join names with "+", e.g.
              `--variants as-is,props+fill-first,bare`).
  bare        the bare paho loop of bench/drain.py (same user property), for the ratio.

Variants run interleaved, `--rounds` times each; medians are reported, with the CPU time this
process spent per event (all its threads; the broker's CPU is not included), which other load on
the machine disturbs much less than the wall-clock rate.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

import _common as c
import drain
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import mqtt.uplink as uplink_mod
from edge.outbox import _connect
from mqtt import codec, topics


class OneTxnOutbox(drain.CountingOutbox):
    keep_meta = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._relaxed = _connect(self.path)
        self._relaxed.execute("PRAGMA synchronous = NORMAL")

    def mark_delivered(self, seqs) -> None:
        if not seqs:
            return
        now = self._now()
        with self._lock:
            conn = self._relaxed
            conn.execute("BEGIN IMMEDIATE")
            try:
                marks = ",".join("?" * len(seqs))
                conn.execute(f"UPDATE events SET delivered = ? WHERE seq IN ({marks})", (now, *seqs))
                if self.keep_meta:
                    conn.execute("INSERT OR REPLACE INTO meta VALUES ('last_delivery', ?)", (str(now),))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        self.count(seqs)

    def close(self) -> None:
        with self._lock:
            self._relaxed.close()
        super().close()


class NoMetaOutbox(OneTxnOutbox):
    keep_meta = False


class FillFirstUplink(uplink_mod.Uplink):
    """PUBACKs are collected; the window is refilled first, then the batch is marked.

    Done by wrapping, not copying, the product's methods: while connected, `_mark` only
    remembers the seqs; `_fill` asks the outbox (a subclass that honours `extra_exclude`)
    to skip them as well as the in-flight ones, then marks them. (Not for production as it
    stands: marks deferred at a disconnect wait for the next fill.)"""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._deferred: list[int] = []

    def _mark(self, seqs: list[int]) -> None:
        if self._state == "connected":
            self._deferred.extend(seqs)
        else:
            super()._mark(seqs)

    def _fill(self) -> None:
        self._outbox.extra_exclude = [getattr(x, "seq", x) for x in self._deferred]
        try:
            super()._fill()
        finally:
            self._outbox.extra_exclude = ()
        deferred, self._deferred = self._deferred, []
        super()._mark(deferred)


class _ExcludeMixin:
    extra_exclude: tuple[int, ...] | list[int] = ()

    def pending(self, limit, exclude=()):
        return super().pending(limit, [*exclude, *self.extra_exclude])


class FillFirstOutbox(_ExcludeMixin, drain.CountingOutbox):
    pass


class FillFirstNoMetaOutbox(_ExcludeMixin, NoMetaOutbox):
    pass


_REPLAY_ONCE = codec.replay_properties()


@contextlib.contextmanager
def variant(name: str):
    saved = (drain.CountingOutbox, codec.replay_properties, drain.Uplink)
    parts = {"all": {"props", "mark1-nometa", "fill-first"}}.get(name, set(name.split("+")))
    try:
        if "props" in parts:
            codec.replay_properties = lambda: _REPLAY_ONCE
        if "mark1" in parts:
            drain.CountingOutbox = OneTxnOutbox
        if "mark1-nometa" in parts:
            drain.CountingOutbox = NoMetaOutbox
        if "fill-first" in parts:
            drain.Uplink = FillFirstUplink
            drain.CountingOutbox = FillFirstNoMetaOutbox if "mark1-nometa" in parts else FillFirstOutbox
        yield
    finally:
        drain.CountingOutbox, codec.replay_properties, drain.Uplink = saved


VARIANTS = ("as-is", "props", "mark1", "mark1-nometa", "fill-first", "all", "bare")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    names = args.variants.split(",")
    n = args.events
    times: dict[str, list[float]] = {v: [] for v in names}
    cpus: dict[str, list[float]] = {v: [] for v in names}
    others: dict[str, list[float]] = {v: [] for v in names}
    with tempfile.TemporaryDirectory(prefix="yimen-bench-whatif-") as tmp:
        work = Path(tmp)
        template = work / "template"
        c.prefill(template, n)
        msgs = [(topics.event_topic(c.COUNTY, c.STATION, k), p) for k, p in c.stored_messages(template)]
        replay = Properties(PacketTypes.PUBLISH)
        replay.UserProperty = ("replay", "1")
        for r in range(args.rounds):
            for v in names:
                run_dir = work / f"{v}-{r}"
                if v == "bare":
                    res = drain.run_bare(msgs, run_dir, replay, 120)
                else:
                    with variant(v):
                        res = drain.run_gateway(template, run_dir, n, 120)
                s = res["seconds"]
                times[v].append(s)
                cpus[v].append(res["cpu_s"] / n * 1e6)
                others[v].append(res["others_cores"])
                print(
                    f"  round {r + 1} {v:<13} {s:6.2f} s  {n / s:7.0f} ev/s  {cpus[v][-1]:4.0f} us CPU/event "
                    f"(others used {res['others_cores']} cores)",
                    flush=True,
                )
    med = {v: c.median(ts) for v, ts in times.items()}
    base = med.get("bare")
    rows = {
        v: {
            "seconds": [round(t, 3) for t in times[v]],
            "median_s": round(med[v], 3),
            "rate": round(n / med[v]),
            "cpu_us_per_event": round(c.median(cpus[v]), 1),
            "others_cores": others[v],
            **({"ratio_to_bare": round(base / med[v], 3)} if base else {}),
            **({"speedup_vs_as_is": round(med["as-is"] / med[v], 3)} if "as-is" in med else {}),
        }
        for v in names
    }
    human = "; ".join(
        f"{v} {rows[v]['rate']}/s"
        + (f" ({rows[v]['ratio_to_bare']:.2f} of bare)" if base else "")
        + f" {rows[v]['cpu_us_per_event']:.0f} us CPU/event"
        for v in names
    )
    c.report("whatif_drain", {"events": n, "rounds": args.rounds, "variants": rows}, human)


if __name__ == "__main__":
    main()
