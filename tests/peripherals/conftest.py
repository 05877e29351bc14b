from __future__ import annotations

from pathlib import Path

import pytest

from tests.peripherals.window_unit.rig import Recorder


@pytest.fixture
def recorder(tmp_path: Path) -> Recorder:
    """`emit` for tests: each event committed to SQLite before it returns."""
    return Recorder(tmp_path / "events.db")
