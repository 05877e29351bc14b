"""The [printer] section, the factory, the no-printer stand-in and the simulator."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from printer_support import STATION

from edge.configfile import ConfigError, Section
from peripherals.printer import NoPrinter, Printer, PrinterConfig, Ticket, build, parse_printer
from peripherals.printer.sim import SimPrinter
from tests.support.recording_outbox import RecordingOutbox

TICKET = Ticket(id="s1-B012", number="B012", category="民政事务", ahead=5, issued_at=datetime(2026, 3, 2, 14, 5))


def parse(raw: dict[str, Any]) -> PrinterConfig:
    return parse_printer(Section("printer", raw, source="yimen.toml"))


def test_defaults() -> None:
    cfg = parse({"port": "/dev/ttyUSB0"})
    assert cfg == PrinterConfig(port="/dev/ttyUSB0")
    assert (cfg.baudrate, cfg.width, cfg.chars_per_line, cfg.present) == (9600, 58, 32, True)


def test_all_options() -> None:
    raw = {"port": "/dev/ttyACM0", "baudrate": 115200, "poll_s": 5, "timeout_s": 1.5, "width": 80}
    cfg = parse({**raw, "enabled": True})
    assert (cfg.baudrate, cfg.poll_s, cfg.timeout_s, cfg.chars_per_line) == (115200, 5.0, 1.5, 48)


def test_no_port_or_disabled_means_no_printer() -> None:
    assert not parse({}).present
    assert not parse({"port": "/dev/ttyUSB0", "enabled": False}).present


@pytest.mark.parametrize(
    "raw,message",
    [
        ({"prot": "/dev/ttyUSB0"}, "[printer] prot: unknown key"),
        ({"port": "ttyUSB0"}, "[printer] port: 'ttyUSB0' does not match"),
        ({"port": "/dev/ttyUSB0", "baudrate": 9601}, "[printer] baudrate: 9601 is not one of 9600, 19200"),
        ({"port": "/dev/ttyUSB0", "width": 57}, "[printer] width: 57 mm is not a paper width"),
        ({"port": "/dev/ttyUSB0", "poll_s": 0}, "[printer] poll_s: 0.0 is below the minimum"),
        ({"port": "/dev/ttyUSB0", "timeout_s": "1"}, "[printer] timeout_s: expected a number"),
        ({"enabled": "yes"}, "[printer] enabled: expected true or false"),
    ],
)
def test_bad_config_is_an_error_naming_the_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(raw)
    assert str(caught.value).startswith(f"yimen.toml: {message}")


def test_build_without_a_printer(recorder: RecordingOutbox) -> None:
    printer = build(parse({}), station_name=STATION, emit=recorder)
    assert isinstance(printer, NoPrinter)
    assert isinstance(printer, Printer)
    printer.start()
    outcome = printer.print_ticket(TICKET)
    assert (outcome.printed, outcome.reason) == (False, "disabled")
    assert printer.status()["state"] == "disabled"
    printer.stop()
    assert recorder.pending() == [], "no printer configured is not a fault to report"


def test_build_a_driver_that_is_not_started_yet(recorder: RecordingOutbox) -> None:
    printer = build(parse({"port": "/dev/ttyUSB0"}), station_name=STATION, emit=recorder)
    assert isinstance(printer, Printer)
    assert printer.status()["state"] == "starting"
    assert printer.print_ticket(TICKET).reason == "stopped"


def test_simulator(recorder: RecordingOutbox) -> None:
    printer = build(parse({}), station_name=STATION, emit=recorder, simulate=True)
    assert isinstance(printer, SimPrinter)
    assert isinstance(printer, Printer)
    assert printer.print_ticket(TICKET).reason == "stopped"
    printer.start()
    assert recorder.next().data["state"] == "ok"
    assert printer.print_ticket(TICKET).printed
    assert printer.printed == [
        [STATION, "民政事务", "B012", "您前面还有 5 人等候", "取号时间：2026-03-02 14:05:00", "请留意叫号"]
    ]

    printer.set_conditions("paper_out")
    event = recorder.next()
    assert (event.data["state"], event.data["raised"]) == ("offline", ["paper_out"])
    assert event.data["port"] == "sim"
    printer.set_conditions("paper_out")
    assert recorder.pending() == [], "no event without a change"
    outcome = printer.print_ticket(TICKET)
    assert (outcome.printed, outcome.reason) == (False, "paper_out")
    assert printer.status()["tickets"] == {"stopped": 1, "printed": 1, "paper_out": 1}
