"""DLE EOT answers decoded from bytes, without a port."""

from __future__ import annotations

import pytest

from peripherals.printer.status import decode, is_status_byte, refusal, state_of

OK_BYTE = 0x12  # the fixed bits alone: nothing to report


@pytest.mark.parametrize(
    "answers,conditions",
    [
        ({1: OK_BYTE, 2: OK_BYTE, 3: OK_BYTE, 4: OK_BYTE}, set()),
        ({1: OK_BYTE, 4: 0x1E}, {"paper_near_end"}),
        # Out of paper as a real printer says it: offline, stopped at paper end, both sensors.
        ({1: 0x1A, 2: 0x32, 3: OK_BYTE, 4: 0x7E}, {"paper_out"}),
        ({1: 0x1A, 2: 0x16, 3: OK_BYTE, 4: OK_BYTE}, {"cover_open"}),
        ({1: 0x1A, 2: 0x16, 3: OK_BYTE, 4: 0x1E}, {"cover_open", "paper_near_end"}),
        ({1: 0x1A, 2: OK_BYTE, 3: OK_BYTE, 4: OK_BYTE}, {"offline"}),
        ({1: 0x1A, 2: 0x52, 3: 0x1A, 4: OK_BYTE}, {"autocutter_error"}),
        ({1: 0x1A, 2: 0x52, 3: 0x32, 4: OK_BYTE}, {"unrecoverable_error"}),
        ({1: 0x1A, 2: 0x52, 3: 0x52, 4: OK_BYTE}, {"head_error"}),
        ({1: 0x1A, 2: 0x52, 3: 0x16, 4: OK_BYTE}, {"recoverable_error"}),
        ({1: 0x1A, 2: 0x52, 3: OK_BYTE, 4: OK_BYTE}, {"error"}),
        ({1: 0x1A, 2: 0x52, 4: OK_BYTE}, {"error"}),  # no answer to n=3: the cause stays unnamed
        ({}, {"no_answer"}),
        ({2: 0x32, 4: 0x7E}, {"no_answer"}),  # without n=1 the rest cannot be trusted
    ],
)
def test_decode(answers: dict[int, int], conditions: set[str]) -> None:
    assert decode(answers) == conditions


def test_status_bytes_are_told_from_noise() -> None:
    assert all(is_status_byte(b) for b in (0x12, 0x1A, 0x32, 0x7E, 0x52, 0x16))
    # XON, XOFF, a NUL and a byte with bit 7 set are not answers.
    assert not any(is_status_byte(b) for b in (0x11, 0x13, 0x00, 0x92, 0xFF))


@pytest.mark.parametrize(
    "conditions,state,reason",
    [
        (set(), "ok", None),
        ({"paper_near_end"}, "warning", None),
        ({"paper_out"}, "offline", "paper_out"),
        ({"cover_open", "paper_out"}, "offline", "paper_out"),
        ({"offline", "paper_near_end"}, "offline", "offline"),
        ({"no_answer"}, "offline", "no_answer"),
        ({"absent"}, "failed", "absent"),
    ],
)
def test_state_and_refusal(conditions: set[str], state: str, reason: str | None) -> None:
    assert state_of(conditions) == state
    assert refusal(frozenset(conditions)) == reason
