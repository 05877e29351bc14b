"""The over-the-air update units as install.sh installs them: present, enabled, and clean under
`systemd-analyze verify` (any warning fails)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.test_install import OFFLINE_PIP, copy_source, fake_root, install

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the installer adds a user and chowns: run as root"),
    pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing: apt-get systemd"),
]


def test_update_units_are_installed_enabled_and_verify(tmp_path: Path) -> None:
    root = fake_root(tmp_path / "root")
    source = copy_source(tmp_path / "src")
    install(source / "deploy/install.sh", "--root", str(root), "--source", str(source), "--pip-opts", OFFLINE_PIP)
    assert os.access(root / "opt/yimen/yimen-update", os.X_OK)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    assert (wants / "yimen-update.service").is_symlink(), "the updater must run at boot (finishes a cut update)"
    assert (wants / "yimen-update.path").is_symlink()
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    for unit in ("yimen-update.service", "yimen-update.path"):
        result = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", f"--root={root}", f"/etc/systemd/system/{unit}"],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0 and not result.stderr.strip(), (unit, result.stderr)
