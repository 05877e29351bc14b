"""Releases for the over-the-air tests: built by the product's own `yimen release build`, for this
machine, from wheels ./dev fetched once (.venv/wheelhouse), so the tests reach nothing beyond
loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ota import release
from tests.conftest import ROOT

WHEELHOUSE = ROOT / ".venv" / "wheelhouse"
SABOTAGE = 'raise RuntimeError("this release is broken on purpose (test)")'


def source_at(dest: Path, version: str, sabotage: bool = False) -> Path:
    """The checkout as a county would build it, at `version`; `sabotage`: a gateway that never starts."""
    skip = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", "build", ".*_cache", "tests", "bench")
    shutil.copytree(ROOT, dest, ignore=skip)
    init = dest / "edge" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "0.1.0"', f'__version__ = "{version}"'))
    if sabotage:
        app = dest / "edge" / "app.py"
        text = app.read_text()
        anchor = "    def start(self) -> None:\n        self.outbox.set_meta"
        assert anchor in text
        app.write_text(
            text.replace(anchor, f"    def start(self) -> None:\n        {SABOTAGE}\n        self.outbox.set_meta")
        )
    return dest


def build_release(tmp: Path, releases: Path, key: Path, version: str, sabotage: bool = False) -> Path:
    if not (WHEELHOUSE / ".complete").exists():
        pytest.fail("no .venv/wheelhouse: run ./dev once (it fetches the station's dependency wheels)")
    src = source_at(tmp / f"src-{version}", version, sabotage)
    cmd = [sys.executable, "-m", "edge.cli", "release", "build", "--source", str(src), "--out", str(releases),
           "--key", str(key), "--platform", "host", "--no-index", "--find-links", str(WHEELHOUSE)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    return releases / f"yimen-{version}"


def copy_release(base: Path, releases: Path, version: str, key: Path) -> Path:
    """Another release made of `base`'s files, re-signed as `version` with `key`: what a county
    that signs something odd (or an attacker with another key) would offer."""
    target = releases / f"yimen-{version}"
    shutil.copytree(base / "files", target / "files")
    raw = release.make_manifest(version, *_platform(base), sorted((target / "files").iterdir()), 16 * 1024)
    (target / release.MANIFEST).write_bytes(raw)
    (target / release.SIGNATURE).write_text(release.sign(raw, release.load_private(key)))
    return target


def _platform(base: Path) -> tuple[str, str]:
    m = release.parse_manifest((base / release.MANIFEST).read_bytes())
    return m.platform, m.python


def install_version(root: Path, rel: Path, version: str) -> None:
    """What install.sh does for the first version (the installer's part, not the updater's)."""
    venv = root / "versions" / version
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    subprocess.run(
        [venv / "bin/python", "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index",
         "--find-links", str(rel / "files"), f"yimen=={version}"],
        check=True, timeout=600, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )  # fmt: skip
    os.symlink(f"versions/{version}", root / "current")


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(county release key, the station's trusted key directory, a key the station does not trust)."""
    county = tmp_path / "county" / "release.key"
    pub = release.keygen(county)
    trusted = tmp_path / "station-keys"
    trusted.mkdir()
    shutil.copy(pub, trusted / "county.pem")
    other = tmp_path / "attacker" / "release.key"
    release.keygen(other)
    return county, trusted, other
