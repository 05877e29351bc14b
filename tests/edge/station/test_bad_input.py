"""Bad input and failing parts: clear events or errors, nothing lost, the queue keeps going."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.events import Event, NewEvent
from edge.outbox import OutboxError
from edge.station.store import NAME, StationStore
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


class FailingOutbox:
    """An outbox whose appends fail while `broken` is set (a full or failing disk)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.broken = True

    @property
    def last_seq(self) -> int:
        return self.inner.last_seq  # type: ignore[attr-defined]

    def append(self, new: NewEvent) -> Event:
        if self.broken:
            raise OutboxError("disk on fire")
        return self.inner.append(new)  # type: ignore[attr-defined]

    def replay(self, first: int, last: int) -> list:
        return self.inner.replay(first, last)  # type: ignore[attr-defined]


def test_events_the_outbox_refused_are_kept_and_sent_later(station: Harness) -> None:
    st = station.station
    failing = FailingOutbox(station.outbox)
    st._outbox = failing  # the outbox starts failing under a running station
    assert st.press(1, "ticket", source="window-unit") == "thanks"  # durable in station.db
    assert station.data("queue") == [] and st.status()["journal"] == 1
    failing.broken = False
    st.press(1, "next", source="window-unit")
    assert [e["action"] for e in station.data("queue")] == ["issue", "call"]


def test_a_crash_between_the_two_commits_loses_and_duplicates_nothing(station: Harness, tmp_path: Path) -> None:
    st = station.station
    st.press(1, "ticket", source="window-unit")
    st.press(1, "next", source="window-unit")
    call = station.data("queue")[1]
    last_seq = station.outbox.last_seq

    def crash() -> None:
        # As if the power went after the outbox took op 2 but before station.db forgot its
        # journal row, and after station.db committed op 3 but before the outbox took it.
        store = StationStore(tmp_path / NAME)
        store._conn.execute("INSERT INTO journal VALUES (2, ?, 'queue', 1, ?)", (last_seq - 1, json.dumps(call)))
        store._conn.execute("INSERT INTO journal VALUES (3, ?, 'queue', 1, ?)", (last_seq, '{"op": 3}'))
        store._conn.execute("UPDATE meta SET value = '3' WHERE key = 'op'")
        store.close()

    station.restart(crash)
    station.station.press(1, "ticket", source="window-unit")
    assert [e["op"] for e in station.data("queue")] == [1, 2, 3, 4]
    assert station.station.status()["journal"] == 0
