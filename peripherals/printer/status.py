"""Real-time printer status: the DLE EOT bytes decoded, and the one place that reports changes.

Pure bytes-in, values-out (no port here), so the decoding is tested with bytes, and the driver
and the simulator share one change tracker: both emit the same `printer` events.

ESC/POS `DLE EOT n` answers one byte whose bits 0, 1, 4 and 7 are fixed at 0, 1, 1, 0 (0x12);
that lets us tell a status answer from line noise or a stray byte. The other bits:

- n=1 printer:      bit 3 offline
- n=2 offline cause: bit 2 cover open, bit 5 stopped at paper end, bit 6 error occurred
- n=3 error cause:   bit 2 recoverable, bit 3 autocutter, bit 5 unrecoverable,
                     bit 6 auto-recoverable (print head temperature or voltage)
- n=4 paper sensor:  bits 2-3 roll near end, bits 5-6 roll end (both bits set when detected)

python-escpos has `is_online()`/`paper_status()`, but they read through `_read()`, which waits for
16 bytes (so always the whole timeout), and treat no answer as "paper adequate"; hence our own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from edge.events import Emit, NewEvent, Priority

FIXED_MASK = 0x93
FIXED_BITS = 0x12

# Queries, in the order the driver sends them.
PRINTER, OFFLINE_CAUSE, ERROR_CAUSE, PAPER = 1, 2, 3, 4

# Conditions, each a word the county can filter on. `absent` and `no_answer` are ours, the
# rest come from the printer.
ABSENT = "absent"  # the port cannot be opened or failed under us: unplugged, wrong path
NO_ANSWER = "no_answer"  # the port is open but the printer does not answer DLE EOT 1
OFFLINE = "offline"  # offline for a reason the printer does not give
COVER_OPEN = "cover_open"
PAPER_OUT = "paper_out"
PAPER_NEAR_END = "paper_near_end"
ERROR = "error"  # the printer says an error occurred but not which
AUTOCUTTER_ERROR = "autocutter_error"
UNRECOVERABLE_ERROR = "unrecoverable_error"
RECOVERABLE_ERROR = "recoverable_error"
HEAD_ERROR = "head_error"  # auto-recoverable: head too hot or supply voltage out of range

_ERRORS = (ERROR, AUTOCUTTER_ERROR, UNRECOVERABLE_ERROR, RECOVERABLE_ERROR, HEAD_ERROR)
# The order in which a refused ticket names its reason: the cause a clerk can fix first.
_REFUSAL_ORDER = (ABSENT, NO_ANSWER, PAPER_OUT, COVER_OPEN, *_ERRORS, OFFLINE)

# States, coarsest first: what a dashboard colours.
OK = "ok"  # prints
WARNING = "warning"  # prints, but the roll is near its end
OFFLINE_STATE = "offline"  # cannot print now; `conditions` say why
FAILED = "failed"  # no printer on the configured port


def is_status_byte(value: int) -> bool:
    """True when the fixed bits are where ESC/POS puts them."""
    return value & FIXED_MASK == FIXED_BITS


def decode(answers: dict[int, int]) -> frozenset[str]:
    """Conditions from the answers to DLE EOT 1..4 (keyed by n); a missing key was not answered.

    Conditions another one implies are left out: `paper_near_end` when the paper is out (the
    near-end sensor sees no paper either), and a bare `offline` when the printer names its cause.
    """
    if PRINTER not in answers:
        return frozenset({NO_ANSWER})
    found: set[str] = set()
    offline_cause = answers.get(OFFLINE_CAUSE, 0)
    if offline_cause & 0x04:
        found.add(COVER_OPEN)
    if offline_cause & 0x20:
        found.add(PAPER_OUT)
    error_cause = answers.get(ERROR_CAUSE, 0)
    for bit, condition in (
        (0x04, RECOVERABLE_ERROR),
        (0x08, AUTOCUTTER_ERROR),
        (0x20, UNRECOVERABLE_ERROR),
        (0x40, HEAD_ERROR),
    ):
        if error_cause & bit:
            found.add(condition)
    if offline_cause & 0x40 and not found & set(_ERRORS):
        found.add(ERROR)
    paper = answers.get(PAPER, 0)
    if paper & 0x60:
        found.add(PAPER_OUT)
    elif paper & 0x0C:
        found.add(PAPER_NEAR_END)
    if answers[PRINTER] & 0x08 and not found - {PAPER_NEAR_END}:
        found.add(OFFLINE)
    return frozenset(found)


def state_of(conditions: Iterable[str]) -> str:
    conditions = set(conditions)
    if ABSENT in conditions:
        return FAILED
    if conditions - {PAPER_NEAR_END}:
        return OFFLINE_STATE
    return WARNING if conditions else OK


def refusal(conditions: frozenset[str]) -> str | None:
    """Why a ticket cannot be printed now, or None when it can."""
    if state_of(conditions) in (OK, WARNING):
        return None
    return next(c for c in _REFUSAL_ORDER if c in conditions)


@dataclass(frozen=True)
class Reading:
    conditions: frozenset[str]
    detail: str | None = None  # what the OS said when the port failed

    @property
    def state(self) -> str:
        return state_of(self.conditions)


class StatusTracker:
    """Holds the last reading and emits one `printer` event per change, never on a repeat.

    The first reading after start is a change (from nothing), so the county learns the printer's
    state at every boot. The lock keeps two updaters (the simulator has no thread of its own)
    from reporting one change twice or out of order; `current` may be read from any thread
    without it (one reference, swapped whole).
    """

    def __init__(self, emit: Emit, port: str | None, log: logging.Logger) -> None:
        self._emit = emit
        self._port = port
        self._log = log
        self._lock = threading.Lock()
        self.current: Reading | None = None

    def update(self, reading: Reading) -> None:
        with self._lock:
            previous = self.current
            if previous is not None and previous.conditions == reading.conditions:
                return
            self.current = reading
            before = previous.conditions if previous else frozenset()
            data = {
                "state": reading.state,
                "previous": previous.state if previous else None,
                "conditions": sorted(reading.conditions),
                "raised": sorted(reading.conditions - before),
                "cleared": sorted(before - reading.conditions),
                "port": self._port,
                "detail": reading.detail,
            }
            self._log.info("printer %s: %s %s", self._port, reading.state, data["conditions"])
            self._emit(NewEvent(kind="printer", priority=Priority.NORMAL, data=data))

    def snapshot(self) -> dict[str, object]:
        """The part of `status()` both printers share."""
        reading = self.current
        if reading is None:
            return {"state": "starting", "conditions": [], "port": self._port, "detail": None}
        return {
            "state": reading.state,
            "conditions": sorted(reading.conditions),
            "port": self._port,
            "detail": reading.detail,
        }
