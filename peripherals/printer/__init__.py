"""The ticket printer: `[printer]` config, the shape every printer has, and the factory.

A station may have no printer, a real ESC/POS thermal printer (driver.py) or a simulated one
(sim.py); the queue sees the same `Printer` shape in each case and never has to ask which. A
printer that is out of paper, unplugged or silent refuses tickets with a `PrintOutcome` instead
of raising or hanging, because the queue must keep issuing numbers (on screen, by voice) while
someone fetches a new roll.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from edge.configfile import Section
from edge.events import Emit
from peripherals.printer.ticket import PrintOutcome, Ticket

__all__ = ["PrintOutcome", "Printer", "PrinterConfig", "Ticket", "build", "parse_printer"]

# Font A is 12 dots wide; a 58 mm head has 384 dots, an 80 mm head 576.
CHARS_PER_LINE = {58: 32, 80: 48}
BAUDRATES = (9600, 19200, 38400, 57600, 115200)


@dataclass(frozen=True)
class PrinterConfig:
    """The `[printer]` section. No `port` means the station has no printer."""

    enabled: bool = True
    port: str | None = None
    # 9600 8N1 is what the common Chinese 58/80 mm serial printers ship with (Xprinter, Gprinter,
    # Zjiang); USB-serial models often run faster, so the rate is configurable.
    baudrate: int = 9600
    poll_s: float = 3.0
    # How long one status answer may take; also the write timeout. Printers answer DLE EOT in
    # milliseconds, so half a second only ever expires on a printer that is not there.
    timeout_s: float = 0.5
    width: int = 58

    @property
    def chars_per_line(self) -> int:
        return CHARS_PER_LINE[self.width]

    @property
    def present(self) -> bool:
        return self.enabled and self.port is not None


def parse_printer(section: Section) -> PrinterConfig:
    """Read `[printer]`; raises ConfigError naming the bad key."""
    cfg = PrinterConfig(
        enabled=section.get_bool("enabled", PrinterConfig.enabled),
        port=section.get_str("port", None, pattern=r"/\S+"),
        baudrate=section.get_int("baudrate", PrinterConfig.baudrate),
        poll_s=section.get_float("poll_s", PrinterConfig.poll_s, minval=0.01, maxval=3600),
        timeout_s=section.get_float("timeout_s", PrinterConfig.timeout_s, minval=0.01, maxval=30),
        width=section.get_int("width", PrinterConfig.width),
    )
    section.done()
    if cfg.baudrate not in BAUDRATES:
        raise section.error("baudrate", f"{cfg.baudrate} is not one of {', '.join(map(str, BAUDRATES))}")
    if cfg.width not in CHARS_PER_LINE:
        raise section.error("width", f"{cfg.width} mm is not a paper width: use 58 or 80")
    return cfg


@runtime_checkable
class Printer(Protocol):
    """What the queue holds: a driver, a simulator, or the stand-in for no printer at all."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def status(self) -> dict[str, Any]: ...

    def print_ticket(self, ticket: Ticket) -> PrintOutcome: ...


class NoPrinter:
    """The station has no printer (no `port`, or `enabled = false`): every ticket is declined.

    This is configuration, not a fault, so it reports `disabled` and emits nothing; a printer
    that is configured but missing is the driver's business and reports `failed`.
    """

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {"state": "disabled", "conditions": [], "port": None, "detail": None}

    outcome = PrintOutcome.declined("disabled", "this station has no ticket printer")

    def print_ticket(self, ticket: Ticket) -> PrintOutcome:
        return self.outcome


def build(cfg: PrinterConfig, *, station_name: str, emit: Emit, simulate: bool = False) -> Printer:
    """The printer the config asks for. Drivers are imported here, not at the top, so a station
    without a printer never loads python-escpos and its imaging dependencies."""
    if simulate:
        from peripherals.printer.sim import SimPrinter

        return SimPrinter(cfg, station_name=station_name, emit=emit)
    if not cfg.present:
        return NoPrinter()
    from peripherals.printer.driver import SerialPrinter

    return SerialPrinter(cfg, station_name=station_name, emit=emit)
