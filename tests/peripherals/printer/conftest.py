"""Fixtures for the printer tests: a fake printer on a pty, an emit that records, a driver."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fake_printer import FakePrinter
from printer_support import POLL_S, STATION, TIMEOUT_S

from peripherals.printer import PrinterConfig
from peripherals.printer.driver import SerialPrinter
from tests.support.recording_outbox import RecordingOutbox


@pytest.fixture
def recorder(tmp_path) -> Iterator[RecordingOutbox]:
    rec = RecordingOutbox(tmp_path / "recorder")
    yield rec
    rec.close()


@pytest.fixture
def fake() -> Iterator[FakePrinter]:
    printer = FakePrinter().start()
    yield printer
    printer.stop()


@pytest.fixture
def make_printer(recorder: RecordingOutbox) -> Iterator[Callable[..., SerialPrinter]]:
    started: list[SerialPrinter] = []

    def make(port: str, **options: Any) -> SerialPrinter:
        cfg = PrinterConfig(port=port, poll_s=POLL_S, timeout_s=TIMEOUT_S, **options)
        printer = SerialPrinter(cfg, station_name=STATION, emit=recorder)
        printer.start()
        started.append(printer)
        return printer

    yield make
    for printer in started:
        printer.stop()
