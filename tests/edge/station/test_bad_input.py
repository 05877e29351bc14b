"""Bad input and failing parts: clear events or errors, nothing lost, the queue keeps going."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.events import NewEvent
from edge.outbox import OutboxError
from edge.station.service import NotRecorded
from peripherals.printer import PrinterConfig, PrintOutcome, Ticket
from peripherals.printer.driver import SerialPrinter
from peripherals.printer.sim import SimPrinter
from tests.edge.station.station_support import FakeClock, Harness
from tests.peripherals.printer.fake_printer import FakePrinter


def test_unknown_category_window_and_key(station: Harness) -> None:
    st = station.station
    assert st.press(1, "ticket:Z", source="window-unit") == "error"
    assert st.command("issue", category="Z").detail == "no service category 'Z'"
    assert st.press(2, "ticket", source="window-unit") == "error"  # window 2 serves A and B: name one
    assert st.press(7, "next", source="window-unit") == "error"
    assert st.swipe(7, "0001000001", source="card-reader") == "error"
    assert st.press(1, "launch", source="window-unit") == "error"
    assert st.command("teleport").detail.startswith("unknown command 'teleport'")
    assert st.snapshot()["counts"] == {"unknown_window": 2, "unknown_key": 1, "refused": 6}
    # The queue goes on.
    assert st.press(2, "ticket:B", source="window-unit") == "thanks"
    assert st.press(3, "next", source="window-unit") == "idle"
    assert [e["action"] for e in station.data("queue")] == ["issue", "call"]


def test_transfer_to_a_closed_category_leaves_the_ticket_where_it_was(station: Harness, clock: FakeClock) -> None:
    st = station.station
    st.press(3, "ticket", source="window-unit")
    clock.at(12, 10)
    st.press(2, "next", source="window-unit")
    outcome = st.command("transfer", window=2, category="A")
    assert not outcome.ok and outcome.detail == "category A is closed now"
    assert not st.command("transfer", window=2, category="Q").ok
    assert not st.command("transfer", window=1, category="B").ok  # nobody at window 1
    assert st.snapshot()["windows"]["2"]["ticket"] == "B001"
    assert [e["action"] for e in station.data("queue")] == ["issue", "call"]


class SilentPrinter:
    """A printer whose print_ticket does not return until the test lets it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.asked = threading.Event()

    def start(self) -> None: ...

    def stop(self) -> None:
        self.release.set()

    def status(self) -> dict:
        return {}

    def print_ticket(self, ticket: Ticket) -> PrintOutcome:
        self.asked.set()
        self.release.wait()
        return PrintOutcome.declined("no_answer", "the printer did not answer")


def test_a_printer_that_hangs_holds_up_only_its_own_ticket(make_station: Callable[..., Harness]) -> None:
    printer = SilentPrinter()
    station = make_station(printer=printer)
    st = station.station
    answers: list[str] = []
    taker = threading.Thread(target=lambda: answers.append(st.press(1, "ticket", source="window-unit")))
    taker.start()
    assert printer.asked.wait(10)
    # Meanwhile the other windows are served, and the number is taken but not yet callable.
    assert st.swipe(3, "0001000003", source="card-reader") == "idle"
    assert st.press(1, "next", source="window-unit") == "idle"
    assert st.snapshot()["windows"]["1"]["ticket"] is None
    printer.release.set()
    taker.join(10)
    assert answers == ["thanks"]
    issue = station.data("queue", action="issue")[0]
    assert issue["ticket"] == "A001" and issue["print"]["reason"] == "no_answer"
    st.press(1, "next", source="window-unit")
    assert st.snapshot()["windows"]["1"]["ticket"] == "A001"


@pytest.fixture
def mute_printer() -> Iterator[FakePrinter]:
    fake = FakePrinter().start()
    fake.set(mute=True)
    yield fake
    fake.stop()


def test_a_real_printer_that_never_answers(make_station: Callable[..., Harness], mute_printer: FakePrinter) -> None:
    cfg = PrinterConfig(port=mute_printer.path, poll_s=0.05, timeout_s=0.05)
    events: list[NewEvent] = []
    printer = SerialPrinter(cfg, station_name="青山村", emit=lambda new: events.append(new))  # type: ignore[arg-type,return-value]
    printer.start()
    try:
        station = make_station(printer=printer)
        for _ in range(3):
            assert station.station.press(1, "ticket", source="window-unit") == "thanks"
        issued = station.data("queue", action="issue")
        assert [e["ticket"] for e in issued] == ["A001", "A002", "A003"]
        assert {e["print"]["printed"] for e in issued} == {False}
        assert {e["print"]["reason"] for e in issued} <= {"no_answer", "busy"}
    finally:
        printer.stop()


def test_tickets_print_on_a_working_printer_and_not_when_out_of_paper(make_station: Callable[..., Harness]) -> None:
    printer = SimPrinter(PrinterConfig(), station_name="青山村便民服务站", emit=lambda new: None)  # type: ignore[arg-type,return-value]
    printer.start()
    station = make_station(printer=printer)
    st = station.station
    st.press(1, "ticket", source="window-unit")
    printer.set_conditions("paper_out")
    st.command("issue", category="A", green=True, source="kiosk")
    (page,) = printer.printed
    assert page[:3] == ["青山村便民服务站", "社会保障", "A001"] and "您前面还有 0 人等候" in page
    issued = station.data("queue", action="issue")
    assert [(e["ticket"], e["print"]["printed"], e["print"]["reason"]) for e in issued] == [
        ("A001", True, "printed"),
        ("A002", False, "paper_out"),
    ]


def test_a_press_the_outbox_cannot_commit_is_not_recorded(station: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """State and events commit together or not at all: a failing disk leaves neither, the press
    is not acknowledged (the unit sends it again), and the station takes it when it can."""
    st = station.station
    healthy = station.outbox.append_all

    def disk_on_fire(*_args: object) -> None:
        raise OutboxError("disk on fire")

    monkeypatch.setattr(station.outbox, "append_all", disk_on_fire)
    with pytest.raises(NotRecorded, match="disk on fire"):
        st.press(1, "ticket", source="window-unit")
    assert station.data("queue") == [] and not any(st.snapshot()["waiting"].values())
    monkeypatch.setattr(station.outbox, "append_all", healthy)
    assert st.press(1, "ticket", source="window-unit") == "thanks"  # sent again by the unit
    st.press(1, "next", source="window-unit")
    assert [(e["action"], e["ticket"], e["op"]) for e in station.data("queue")] == [
        ("issue", "A001", 1),
        ("call", "A001", 2),
    ]


def test_a_station_db_of_the_previous_version_is_taken_in_once(station: Harness, tmp_path: Path) -> None:
    """Until this version the state had a file of its own with a journal: an update takes it in,
    with the journal's events the outbox lacks (a crash between that version's two commits)."""
    st = station.station
    st.press(1, "ticket", source="window-unit")
    st.press(1, "next", source="window-unit")
    call = station.data("queue")[1]
    last_seq = station.outbox.last_seq

    def as_the_previous_version_left_it() -> None:
        box = sqlite3.connect(tmp_path / "outbox.db")
        old = sqlite3.connect(tmp_path / "station.db")
        old.executescript(LEGACY_SCHEMA)
        old.executemany("INSERT INTO tickets VALUES (?, ?, ?)", box.execute("SELECT * FROM station_tickets"))
        records = dict(box.execute("SELECT key, body FROM station_records").fetchall())
        day = json.loads(records.pop(0))
        old.executemany("INSERT INTO windows VALUES (?, ?)", records.items())
        meta = {"day": day["day"], "op": "3", "closed": json.dumps(day["closed"]), "counts": json.dumps(day["counts"])}
        old.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        box.executescript("DROP TABLE station_tickets; DROP TABLE station_records;")
        # The power went after the outbox took op 2 but before station.db forgot its journal
        # row, and after station.db committed op 3 (a recall) but before the outbox took it.
        recall = {**call, "action": "recall", "op": 3}
        old.execute("INSERT INTO journal VALUES (2, ?, 'queue', 1, ?)", (last_seq - 1, json.dumps(call)))
        old.execute("INSERT INTO journal VALUES (3, ?, 'queue', 1, ?)", (last_seq, json.dumps(recall)))
        for conn in (old, box):
            conn.commit()
            conn.close()

    station.restart(as_the_previous_version_left_it)
    assert not (tmp_path / "station.db").exists() and (tmp_path / "station.db.taken-in").exists()
    assert station.station.press(1, "ticket", source="window-unit") == "thanks"
    assert [(e["action"], e["ticket"], e["op"]) for e in station.data("queue")] == [
        ("issue", "A001", 1),
        ("call", "A001", 2),
        ("recall", "A001", 3),
        ("issue", "A002", 4),  # the day's numbers go on: the state was taken in
    ]
    station.restart()  # taken in once: nothing appended twice
    assert [e["op"] for e in station.data("queue")] == [1, 2, 3, 4]


LEGACY_SCHEMA = """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE tickets (id TEXT PRIMARY KEY, day TEXT NOT NULL, body TEXT NOT NULL);
    CREATE TABLE windows (number INTEGER PRIMARY KEY, body TEXT NOT NULL);
    CREATE TABLE journal (op INTEGER PRIMARY KEY, after_seq INTEGER NOT NULL,
        kind TEXT NOT NULL, priority INTEGER NOT NULL, data TEXT NOT NULL);
"""


def _overwrite_page(path: Path, table: str) -> None:
    """Garbage over the root page of `table`: the database fails quick_check, other tables read."""
    conn = sqlite3.connect(path)
    (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(path, "r+b") as fh:
        fh.seek((root - 1) * size)
        fh.write(b"\xa5" * size)


def test_an_outbox_renamed_aside_as_corrupt_gives_back_the_stations_state(station: Harness, tmp_path: Path) -> None:
    st = station.station
    st.press(1, "ticket", source="window-unit")
    station.restart(lambda: _overwrite_page(tmp_path / "outbox.db", "events"))
    assert station.outbox.incident is not None and station.outbox.incident.what == "outbox-corrupt"
    (salvaged,) = [e for e in station.data("incident") if e["what"] == "station-state-salvaged"]
    assert salvaged["op"] == 1
    st = station.station
    assert st.press(1, "next", source="window-unit") == "idle"
    assert [(e["action"], e["ticket"], e["op"]) for e in station.data("queue")] == [("call", "A001", 2)]


def test_an_outbox_renamed_aside_with_unreadable_state_says_the_day_starts_again(
    station: Harness, tmp_path: Path
) -> None:
    station.station.press(1, "ticket", source="window-unit")
    station.restart(lambda: (tmp_path / "outbox.db").write_bytes(b"\0" * 4096))
    (lost,) = [e for e in station.data("incident") if e["what"] == "station-state-lost"]
    assert lost["from"].startswith("outbox.db.corrupt-") and lost["day"] == station.station.snapshot()["day"]
    assert station.station.press(1, "ticket", source="window-unit") == "thanks"
    assert [e["ticket"] for e in station.data("queue")] == ["A001"]


def test_the_queue_view_answers_while_a_commit_is_stuck(station: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A view is made when read, under the lock a request holds: a reader sees no half-made
    change, and a commit stuck on a dying SD card costs `yimen status` a second, not its answer."""
    st = station.station
    assert st.snapshot()["waiting"]["A"] == 0
    st.press(1, "ticket", source="window-unit")  # committed; no view is made of it until read
    stuck, release = threading.Event(), threading.Event()
    healthy = station.outbox.append_all

    def slow_disk(*args: object, **kwargs: object) -> object:
        stuck.set()
        release.wait(10)
        return healthy(*args, **kwargs)

    monkeypatch.setattr(station.outbox, "append_all", slow_disk)
    monkeypatch.setattr("edge.station.service.VIEW_WAIT_S", 0.2)
    pressing = threading.Thread(target=st.press, args=(1, "ticket"), kwargs={"source": "window-unit"})
    pressing.start()
    assert stuck.wait(5)
    # The last view made, from before the stuck request: never one of its uncommitted ticket.
    assert st.snapshot()["waiting"]["A"] == 0 and st.status()["queue"]["waiting"]["A"] == 0
    release.set()
    pressing.join(5)
    assert st.snapshot()["waiting"]["A"] == 2 and st.hall()["queue"]["waiting"]["A"] == 2
