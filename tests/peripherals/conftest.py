from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peripherals.window_unit.rig import Recorder


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[Recorder]:
    """`emit` for tests: the real outbox, each event on disk before it returns."""
    rec = Recorder(tmp_path / "recorder")
    yield rec
    rec.close()
