"""A release carries the extras install.sh gives a station ([pi]: GPIO, keypads, card readers;
[qr]: QR enrolment), and the updater installs them: else a station updated over the air would
lose its buttons and card readers. evdev has no wheel on PyPI, so its sdist travels with the
build backend and the updater compiles it, offline, as a station would."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ota import apply, release
from ota.paths import read_json, write_json
from tests.ota.conftest import build_release

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_a_release_carries_the_extras_and_the_updater_installs_them(
    tmp_path: Path, keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTHONPATH", raising=False)  # the new venv must run its own yimen, not this checkout
    county, trusted, _ = keys
    rel = build_release(tmp_path, tmp_path / "releases", county, "0.2.0")
    names = {p.name.lower() for p in (rel / "files").iterdir()}
    for wanted in ("evdev-", "gpiod-", "zxing_cpp-", "adafruit_blinka-", "setuptools-"):
        assert any(n.startswith(wanted) for n in names), f"{wanted}* not in the release: {sorted(names)}"
    assert any(n.startswith("evdev-") and n.endswith(".tar.gz") for n in names), "evdev travels as its sdist"

    # No gateway runs here: the "restart" writes the health a healthy new version would report
    # (the health check itself is proven with real gateways in test_update_end_to_end.py).
    state = tmp_path / "state"
    healthy = json.dumps({"healthy": True, "version": "0.2.0"})
    layout = apply.Layout(root=tmp_path / "opt", state=state, work=tmp_path / "work", keys=(trusted,),
                          health_s=30, poll_s=0.1,
                          restart=("sh", "-c", f"echo '{healthy}' > {state / 'updates' / 'health.json'}"))  # fmt: skip
    # What the gateway's fetch (ota/fetch.py) leaves for the updater: the checked release, then ready.json.
    rid = "r" + "0" * 16
    directory = layout.updates.release_dir(rid)
    shutil.copytree(rel / "files", directory / "files")
    offer = {
        "manifest": base64.b64encode((rel / release.MANIFEST).read_bytes()).decode(),
        "signature": (rel / release.SIGNATURE).read_text().strip(),
    }
    write_json(directory / "offer.json", offer)
    write_json(layout.updates.ready, {"release": rid})
    assert apply.run(layout) == 0, read_json(layout.updates.outcome)
    assert read_json(layout.updates.outcome)["state"] == "healthy"
    venv = layout.version_dir("0.2.0")
    probe = "import evdev, gpiod, zxingcpp, importlib.metadata as m; print(m.version('adafruit-blinka'))"
    result = subprocess.run([venv / "bin/python", "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
