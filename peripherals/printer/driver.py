"""An ESC/POS thermal printer on a serial port (RS-232, or USB through a CH340/PL2303 adapter or
CDC-ACM: /dev/ttyUSB0, /dev/ttyACM0), through python-escpos's `Serial` printer.

One thread, `printer`, owns the port: it polls the real-time status every `poll_s` and prints
the tickets that `print_ticket` hands it through a queue, so a status query and a ticket never
interleave on the wire and no lock is held across I/O. A state is reported once two polls in a
row agree: a poll asks four questions, and a cover closed between them, or the FEED button held
(offline while feeding), would otherwise be reported as a state the printer was never really in.

Every wait is bounded by `timeout_s`; a printer that is unplugged, silent or out of paper is a
state to report, never an exception that escapes to the queue.
"""

from __future__ import annotations

import logging
import queue
import termios
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

import serial
from escpos.exceptions import DeviceNotFoundError
from escpos.printer import Serial

from edge.events import Emit
from peripherals.printer.status import ABSENT, PRINTER, Reading, StatusTracker, decode, is_status_byte
from peripherals.printer.ticket import OutcomeCount, PrintOutcome, Ticket, compose, refused

if TYPE_CHECKING:
    from peripherals.printer import PrinterConfig

T = TypeVar("T")
DLE_EOT = b"\x10\x04"
# What a port whose device vanished raises: pyserial wraps reads and writes in SerialException,
# but its buffer resets (tcflush) let termios.error through, which is not an OSError.
PORT_ERRORS = (serial.SerialException, OSError, termios.error)
_STOP = None


class SerialPrinter:
    """The real printer. Construct, `start()`, hand it tickets, `stop()`."""

    def __init__(self, cfg: PrinterConfig, *, station_name: str, emit: Emit) -> None:
        assert cfg.port is not None, "a printer without a port is a NoPrinter (see build)"
        self._cfg = cfg
        self._port_path = cfg.port
        self._station_name = station_name
        self._log = logging.getLogger("yimen.printer")
        self._tracker = StatusTracker(emit, cfg.port, self._log)
        self._outcomes = OutcomeCount()
        self._jobs: queue.Queue[tuple[Future[PrintOutcome], Ticket] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._printer: Serial | None = None  # open port; touched only by the printer thread
        self._polls = 0
        self._last: frozenset[str] | None = None  # the previous poll's conditions
        # A poll asks four questions and waits at most 2 x timeout_s for each (see _ask). A ticket
        # waits for the poll under way, then for its own; if the thread has not taken it by then,
        # it is withdrawn. Once taken, its poll and write are bounded by the port's timeouts.
        self._wait_s = 2 * (4 * 2 * cfg.timeout_s) + cfg.timeout_s

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        cfg = self._cfg
        self._log.info(
            "printer on %s: %d baud, %d mm (%d chars), poll every %.1fs, timeout %.2fs",
            cfg.port, cfg.baudrate, cfg.width, cfg.chars_per_line, cfg.poll_s, cfg.timeout_s,
        )  # fmt: skip
        self._thread = threading.Thread(target=self._run, name="printer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling, close the port; tickets still queued are refused, not lost silently."""
        if self._thread is None:
            return
        self._jobs.put(_STOP)
        self._thread.join(timeout=self._wait_s)
        if self._thread.is_alive():
            self._log.error("printer thread did not stop within %.1fs", self._wait_s)
        self._thread = None

    def status(self) -> dict[str, Any]:
        return {**self._tracker.snapshot(), "polls": self._polls, "tickets": self._outcomes.snapshot()}

    # -- the caller's side ----------------------------------------------------------------------

    def print_ticket(self, ticket: Ticket) -> PrintOutcome:
        """Print one ticket, or say why not. Returns in milliseconds when the printer answers or
        is known to be out, within about 26 x timeout_s (13 s by default) at the very worst: a
        device that dribbles garbage slower than the timeout, on every question.

        A printer already known to be out is answered at once from the last poll. Otherwise the
        ticket goes to the printer thread, which re-checks the status first (paper may have run
        out since the last poll, and a ticket sent then would come out whenever a new roll goes
        in, long after its number was called).
        """
        return self._outcomes.add(self._hand_over(ticket))

    def read_once(self) -> Reading:
        """One status reading on a port opened for it and closed again, without the thread and
        without reporting: for `yimen doctor`, only while no gateway owns the port."""
        try:
            return self._read_status()
        finally:
            self._close(discard=True)

    def _hand_over(self, ticket: Ticket) -> PrintOutcome:
        if self._thread is None:
            return PrintOutcome.declined("stopped", "the printer is not started")
        reading = self._tracker.current
        if reading is not None and (outcome := refused(reading, self._port_path)) is not None:
            return outcome
        job: Future[PrintOutcome] = Future()
        self._jobs.put((job, ticket))
        try:
            return job.result(timeout=self._wait_s)
        except TimeoutError:
            if job.cancel():
                return PrintOutcome.declined("busy", "the printer thread did not get to it")
            # Already being printed: that is bounded by the port's own timeouts.
            return job.result()

    # -- the printer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        next_poll = time.monotonic()
        while True:
            try:
                item = self._jobs.get(timeout=max(0.0, next_poll - time.monotonic()))
            except queue.Empty:
                self._guarded(self._poll)
                next_poll = time.monotonic() + self._cfg.poll_s
                continue
            if item is _STOP:
                break
            job, ticket = item
            if job.set_running_or_notify_cancel():
                outcome = self._guarded(lambda ticket=ticket: self._print(ticket))
                job.set_result(outcome or PrintOutcome.declined("error", "see the log"))
        self._close(discard=False)
        self._refuse_queued()

    def _guarded(self, work: Callable[[], T]) -> T | None:
        """Run one poll or print; a bug in it is logged and the thread goes on, so the printer
        fails alone instead of silently never polling again."""
        try:
            return work()
        except Exception:  # noqa: BLE001 - the printer fails alone; the thread must go on
            self._log.exception("printer %s: unexpected failure", self._port_path)
            self._close(discard=True)
            return None

    def _refuse_queued(self) -> None:
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP and item[0].set_running_or_notify_cancel():
                item[0].set_result(PrintOutcome.declined("stopped", "the printer stopped"))

    def _poll(self) -> Reading:
        self._polls += 1
        reading = self._read_status()
        if reading.conditions == self._last:
            self._tracker.update(reading)
        self._last = reading.conditions
        return reading

    def _read_status(self) -> Reading:
        printer = self._open()
        if isinstance(printer, Reading):
            return printer
        try:
            printer.device.reset_input_buffer()
            answers: dict[int, int] = {}
            for n in (1, 2, 3, 4):
                answer = self._ask(printer, n)
                if answer is not None:
                    answers[n] = answer
                elif n == PRINTER:
                    break  # a printer that does not answer the first question answers none
            return Reading(decode(answers))
        except PORT_ERRORS as exc:
            return self._lost(exc)

    def _ask(self, printer: Serial, n: int) -> int | None:
        """Send DLE EOT n and wait for a byte with the status layout. Other bytes (XON/XOFF, the
        tail of an automatic status packet) are skipped for up to timeout_s; each read waits at
        most timeout_s, so the whole wait is under 2 x timeout_s."""
        printer._raw(DLE_EOT + bytes([n]))
        deadline = time.monotonic() + self._cfg.timeout_s
        while True:
            got = printer.device.read(1)  # not printer._read(): that waits for 16 bytes
            if not got:
                return None
            if is_status_byte(got[0]):
                return got[0]
            if time.monotonic() > deadline:
                return None

    def _print(self, ticket: Ticket) -> PrintOutcome:
        reading = self._poll()
        outcome = refused(reading, self._port_path)
        if outcome is not None:
            return outcome
        assert self._printer is not None, "a printable reading means the port is open"
        data = compose(ticket, self._station_name, self._cfg.chars_per_line)
        device = self._printer.device
        try:
            device.write_timeout = self._cfg.timeout_s + len(data) * 10 / self._cfg.baudrate
            self._printer._raw(data)
        except serial.SerialTimeoutException:
            # The printer holds the line (flow control). Close the port, discarding what it has
            # not taken, so the rest of this ticket does not come out later glued to the next
            # one; the next poll reopens it and says what state the printer is in.
            self._close(discard=True)
            return PrintOutcome.declined("write_failed", f"printer {self._port_path} took no data")
        except PORT_ERRORS as exc:
            self._tracker.update(self._lost(exc))
            return PrintOutcome.declined("write_failed", str(exc))
        return PrintOutcome(printed=True, reason="printed")

    def _open(self) -> Serial | Reading:
        """The open port, opening it if needed; a Reading saying `absent` when it cannot be.
        Retried at every poll, so a printer plugged in later is found."""
        if self._printer is not None:
            return self._printer
        printer = Serial(devfile=self._port_path, baudrate=self._cfg.baudrate, timeout=self._cfg.timeout_s)
        try:
            printer.open()
        except DeviceNotFoundError as exc:
            return Reading(frozenset({ABSENT}), detail=str(exc).replace("\n", " "))
        self._printer = printer
        self._log.info("printer port %s open", self._port_path)
        return printer

    def _lost(self, exc: BaseException) -> Reading:
        self._log.warning("printer port %s failed: %s", self._port_path, exc)
        self._close(discard=True)
        return Reading(frozenset({ABSENT}), detail=str(exc))

    def _close(self, *, discard: bool) -> None:
        """Close the port without python-escpos's `close()`, whose flush() (tcdrain) waits
        forever for a printer that holds the line. After a failure, unsent bytes are discarded
        too, since a tty's close would otherwise wait for them to drain."""
        printer, self._printer = self._printer, None
        if printer is None:
            return
        device = printer.device
        printer.device = False  # escpos's close(), also run by its __del__, then does nothing
        try:
            if discard:
                device.reset_output_buffer()
            device.close()
        except PORT_ERRORS as exc:
            self._log.debug("closing printer port %s: %s", self._port_path, exc)
