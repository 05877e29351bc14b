"""The serial driver against a fake ESC/POS printer on a pseudo-terminal."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from fake_printer import FakePrinter
from printer_support import STATION, settle, wait_until

from peripherals.printer import Printer, Ticket
from peripherals.printer.driver import SerialPrinter
from tests.support.recording_outbox import RecordingOutbox

MakePrinter = Callable[..., SerialPrinter]

TICKET = Ticket(
    id="s1-20260125-A007",
    number="A007",
    category="社会保障",
    ahead=3,
    issued_at=datetime(2026, 1, 25, 9, 30, 5),
)


def started(make_printer: MakePrinter, recorder: RecordingOutbox, fake: FakePrinter) -> SerialPrinter:
    """A driver on the fake, past its first event (the state at start)."""
    printer = make_printer(fake.path)
    first = recorder.next()
    assert first.kind == "printer"
    assert first.data["state"] == "ok"
    assert first.data["previous"] is None
    return printer


@pytest.mark.parametrize("width,chars", [(58, 32), (80, 48)])
def test_ticket_text_as_the_printer_decodes_it(
    make_printer: MakePrinter, recorder: RecordingOutbox, fake: FakePrinter, width: int, chars: int
) -> None:
    printer = make_printer(fake.path, width=width)
    recorder.next()
    outcome = printer.print_ticket(TICKET)
    assert outcome.printed, outcome
    wait_until(lambda: fake.pages, "the ticket to be cut")
    (page,) = fake.pages
    assert page.text == [
        STATION,
        "-" * chars,
        "社会保障",
        "A007",
        "您前面还有 3 人等候",
        "取号时间：2026-01-25 09:30:05",
        "请留意叫号",
    ]
    number = page.lines[3]
    assert (number.width, number.height) == (4, 4), "the number is printed big"
    assert page.qr == ["s1-20260125-A007"]
    assert fake.unknown == []
    assert printer.status()["tickets"] == {"printed": 1}


def test_green_channel_ticket_says_so(make_printer: MakePrinter, recorder: RecordingOutbox, fake: FakePrinter) -> None:
    printer = started(make_printer, recorder, fake)
    ticket = Ticket(id="s1-P001", number="P001", category="民政", ahead=0, issued_at=TICKET.issued_at, priority=True)
    assert printer.print_ticket(ticket).printed
    wait_until(lambda: fake.pages, "the ticket to be cut")
    assert "【绿色通道】" in fake.pages[0].text
    assert "您前面还有 0 人等候" in fake.pages[0].text


# Each step: what changes on the fake, then the event it must give: state, conditions, raised, cleared.
TRANSITIONS = [
    ({"paper": "near_end"}, "warning", ["paper_near_end"], ["paper_near_end"], []),
    ({"paper": "out"}, "offline", ["paper_out"], ["paper_out"], ["paper_near_end"]),
    ({"paper": "ok"}, "ok", [], [], ["paper_out"]),
    ({"cover_open": True}, "offline", ["cover_open"], ["cover_open"], []),
    ({"paper": "near_end"}, "offline", ["cover_open", "paper_near_end"], ["paper_near_end"], []),
    ({"cover_open": False}, "warning", ["paper_near_end"], [], ["cover_open"]),
    ({"paper": "ok", "offline": True}, "offline", ["offline"], ["offline"], ["paper_near_end"]),
    (
        {"offline": False, "autocutter_error": True},
        "offline",
        ["autocutter_error"],
        ["autocutter_error"],
        ["offline"],
    ),
    ({"autocutter_error": False}, "ok", [], [], ["autocutter_error"]),
    ({"mute": True}, "offline", ["no_answer"], ["no_answer"], []),
    ({"mute": False}, "ok", [], [], ["no_answer"]),
]


def test_every_status_transition_is_one_event(
    make_printer: MakePrinter, recorder: RecordingOutbox, fake: FakePrinter
) -> None:
    printer = started(make_printer, recorder, fake)
    settle(printer)
    assert recorder.pending() == [], "no event while nothing changes"
    previous = "ok"
    for change, state, conditions, raised, cleared in TRANSITIONS:
        fake.set(**change)
        event = recorder.next()
        assert event.kind == "printer"
        assert event.priority.label == "normal"
        assert event.data == {
            "state": state,
            "previous": previous,
            "conditions": conditions,
            "raised": raised,
            "cleared": cleared,
            "port": fake.path,
            "detail": None,
        }, change
        assert printer.status()["state"] == state
        settle(printer)
        assert recorder.pending() == [], f"exactly one event for {change}"
        previous = state
    assert set(fake.queries) == {1, 2, 3, 4}


def test_a_printer_that_never_answers(make_printer: MakePrinter, recorder: RecordingOutbox, fake: FakePrinter) -> None:
    fake.mute = True
    printer = make_printer(fake.path)
    event = recorder.next()
    assert event.data["state"] == "offline"
    assert event.data["conditions"] == ["no_answer"]
    outcome = printer.print_ticket(TICKET)
    assert not outcome.printed
    assert outcome.reason == "no_answer"
    assert fake.path in outcome.detail
    assert fake.pages == []
    assert printer.status() | {"polls": 0} == {
        "state": "offline",
        "conditions": ["no_answer"],
        "port": fake.path,
        "detail": None,
        "polls": 0,
        "tickets": {"no_answer": 1},
    }


def test_first_ticket_before_the_first_answer(make_printer: MakePrinter, fake: FakePrinter) -> None:
    """A ticket handed over before any poll finished is checked by a fresh poll, not printed blind."""
    fake.mute = True
    printer = make_printer(fake.path)
    outcome = printer.print_ticket(TICKET)
    assert (outcome.printed, outcome.reason) == (False, "no_answer")


def test_out_of_paper_declines_with_a_clear_outcome(
    make_printer: MakePrinter, recorder: RecordingOutbox, fake: FakePrinter
) -> None:
    printer = started(make_printer, recorder, fake)
    fake.paper = "out"
    # No waiting for the poll: either the last poll or the fresh check before writing catches it.
    outcome = printer.print_ticket(TICKET)
    assert (outcome.printed, outcome.reason) == (False, "paper_out")
    assert "paper_out" in outcome.detail
    assert recorder.next().data["state"] == "offline"
    assert printer.print_ticket(TICKET).reason == "paper_out"
    assert fake.pages == [], "nothing is sent to a printer without paper"

    fake.paper = "ok"
    assert recorder.next().data["state"] == "ok"
    assert printer.print_ticket(TICKET).printed
    wait_until(lambda: fake.pages, "the ticket after a new roll")
    assert printer.status()["tickets"] == {"paper_out": 2, "printed": 1}


def test_absent_printer_is_failed_until_plugged_in(
    make_printer: MakePrinter, recorder: RecordingOutbox, fake: FakePrinter, tmp_path: Path
) -> None:
    port = tmp_path / "ttyUSB0"
    printer = make_printer(str(port))
    event = recorder.next()
    assert event.data["state"] == "failed"
    assert event.data["conditions"] == ["absent"]
    assert str(port) in event.data["detail"]
    assert printer.status()["state"] == "failed"
    outcome = printer.print_ticket(TICKET)
    assert (outcome.printed, outcome.reason) == (False, "absent")

    port.symlink_to(fake.path)  # plugged in: udev makes the link
    event = recorder.next()
    assert (event.data["previous"], event.data["state"]) == ("failed", "ok")
    assert event.data["cleared"] == ["absent"]
    assert printer.print_ticket(TICKET).printed


def test_unplugged_while_running(make_printer: MakePrinter, recorder: RecordingOutbox, fake: FakePrinter) -> None:
    printer = started(make_printer, recorder, fake)
    fake.stop()
    event = recorder.next()
    assert event.data["state"] == "failed"
    assert event.data["detail"]
    assert printer.print_ticket(TICKET).reason == "absent"


def test_stopped_printer_declines(make_printer: MakePrinter, recorder: RecordingOutbox, fake: FakePrinter) -> None:
    printer = started(make_printer, recorder, fake)
    assert isinstance(printer, Printer)
    printer.stop()
    assert printer.print_ticket(TICKET).reason == "stopped"
