"""A printer with no hardware, for running a station (or the simulated day) on a laptop.

It keeps the text of every ticket it "prints" and takes its conditions from whoever drives the
simulation (`set_conditions("paper_out")`), and it reports through the same `StatusTracker`
and refuses tickets by the same rule as the driver, so the queue cannot tell the two apart.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from edge.events import Emit
from peripherals.printer.status import Reading, StatusTracker
from peripherals.printer.ticket import OutcomeCount, PrintOutcome, Ticket, lines, refused

if TYPE_CHECKING:
    from peripherals.printer import PrinterConfig

SIM_PORT = "sim"


class SimPrinter:
    def __init__(self, cfg: PrinterConfig, *, station_name: str, emit: Emit) -> None:
        self._station_name = station_name
        self._tracker = StatusTracker(emit, SIM_PORT, logging.getLogger("yimen.printer"))
        self._outcomes = OutcomeCount()
        self._conditions: frozenset[str] = frozenset()
        self._started = False
        self.printed: list[list[str]] = []  # each ticket's lines, oldest first

    def start(self) -> None:
        self._started = True
        self._tracker.update(Reading(self._conditions))

    def stop(self) -> None:
        self._started = False

    def status(self) -> dict[str, Any]:
        return {**self._tracker.snapshot(), "tickets": self._outcomes.snapshot()}

    def set_conditions(self, *conditions: str) -> None:
        """What the simulated printer reports from now on, e.g. `"paper_near_end"`; none is ok."""
        self._conditions = frozenset(conditions)
        if self._started:
            self._tracker.update(Reading(self._conditions))

    def print_ticket(self, ticket: Ticket) -> PrintOutcome:
        reading = self._tracker.current
        if not self._started or reading is None:
            return self._outcomes.add(PrintOutcome.declined("stopped", "the printer is not started"))
        outcome = refused(reading, SIM_PORT)
        if outcome is None:
            self.printed.append(lines(ticket, self._station_name))
            outcome = PrintOutcome(printed=True, reason="printed")
        return self._outcomes.add(outcome)
