"""What a queue ticket is, what printing it came to, and the ESC/POS bytes that print it.

The bytes are composed whole before any reaches the port (python-escpos's `Dummy` printer
records them), so a ticket is one write: it cannot interleave with a status query, and a write
that times out is one clear failure rather than half a ticket followed by more commands.

Chinese text: Chinese thermal printers print double-byte GB18030 (older ones GBK, its subset)
once in Chinese character mode, which `FS &` selects. We encode every line ourselves instead of
using `text()`: python-escpos's MagicEncode switches to GB18030 only for a line with a character
in U+4E00..U+9FA5 and otherwise maps through single-byte code pages, where full-width punctuation
such as "：" or "【" becomes "?", and it sends `ESC t` code-page switches a Chinese-mode printer
does not need. GB18030 encodes every Unicode character, so no station or category name can fail
to encode; a character outside GBK (rare, e.g. in some village names) needs a GB18030 font.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from peripherals.printer.status import Reading, refusal

FS_CHINESE_MODE = b"\x1c&"
ESC_INIT = b"\x1b@"
TEXT_ENCODING = "gb18030"
NUMBER_SCALE = 4  # the ticket number is printed 4x wide and 4x high: readable at arm's length
QR_MODULE_DOTS = 6


@dataclass(frozen=True)
class Ticket:
    """A ticket as the queue issues it; everything printed on it comes from here or the config."""

    id: str  # the QR payload: the queue's unique id, e.g. "s1-20260125-A001"
    number: str  # what the citizen is called by, e.g. "A001"
    category: str  # the service category's name, e.g. "社会保障"
    ahead: int  # people waiting before this ticket in its category
    issued_at: datetime  # local time
    priority: bool = False  # green channel (elderly, disabled): served first


@dataclass(frozen=True)
class PrintOutcome:
    """What became of a ticket. Not printed is an ordinary outcome, not an exception: the queue
    issues the number anyway and may show `detail` on screen."""

    printed: bool
    reason: str  # "printed", "disabled", "busy", "write_failed", or the condition that refused it
    detail: str = ""

    @classmethod
    def declined(cls, reason: str, detail: str) -> PrintOutcome:
        return cls(printed=False, reason=reason, detail=detail)


def refused(reading: Reading, port: str | None) -> PrintOutcome | None:
    """The outcome for a ticket the printer's last reading says it cannot print, else None."""
    reason = refusal(reading.conditions)
    if reason is None:
        return None
    conditions = ", ".join(sorted(reading.conditions))
    return PrintOutcome.declined(reason, f"printer {port} is {reading.state}: {conditions}")


class OutcomeCount:
    """How many tickets came to what, for `status()`; print_ticket may be called from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, outcome: PrintOutcome) -> PrintOutcome:
        with self._lock:
            self._counts[outcome.reason] += 1
        return outcome

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


def lines(ticket: Ticket, station_name: str) -> list[str]:
    """The ticket's text, top to bottom, as a person reads it (the simulator keeps this)."""
    text = [station_name, ticket.category, ticket.number]
    if ticket.priority:
        text.append("【绿色通道】")
    text += [
        f"您前面还有 {ticket.ahead} 人等候",
        f"取号时间：{ticket.issued_at:%Y-%m-%d %H:%M:%S}",
        "请留意叫号",
    ]
    return text


def compose(ticket: Ticket, station_name: str, chars_per_line: int) -> bytes:
    """The ESC/POS bytes of one ticket, from init to cut."""
    # Imported here so that a station without a printer never loads python-escpos (and Pillow).
    from escpos.printer import Dummy

    out = Dummy()
    station, category, number, *rest = lines(ticket, station_name)
    footer = rest.pop()

    def line(text: str) -> None:
        out._raw(text.encode(TEXT_ENCODING) + b"\n")

    out._raw(ESC_INIT + FS_CHINESE_MODE)
    out.set(align="center", bold=True, double_height=True)
    line(station)
    out.set(bold=False, normal_textsize=True)
    line("-" * chars_per_line)
    out.set(double_height=True, double_width=True)
    line(category)
    out.set(custom_size=True, width=NUMBER_SCALE, height=NUMBER_SCALE)
    line(number)
    out.set(normal_textsize=True)
    for text in rest:
        line(text)
    out.qr(ticket.id, size=QR_MODULE_DOTS, native=True)
    line(footer)
    out.cut()
    return out.output
