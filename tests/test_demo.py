"""The README's first command: a whole simulated station reconciles with what the county got."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_demo_runs_end_to_end_and_reconciles(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "demo", "--seconds", "6", "--rate", "20", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "demo OK" in result.stdout
    summary = json.loads(result.stdout.split("reconciliation:", 1)[1].splitlines()[0])
    assert summary["station_last_seq"] > 20 and summary["county_received"] == summary["station_last_seq"]
    # The gateway's camera pictures reached the console over MQTT (no shared folder between them).
    assert summary["console_media"].get("complete", 0) >= 1, summary
    lines = result.stdout.splitlines()
    assert any(" rating " in line for line in lines) and any(" queue " in line for line in lines)
