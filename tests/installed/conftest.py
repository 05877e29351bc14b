"""The as-installed tests: a booted Debian bookworm root (systemd-nspawn) and an arm64 root (qemu).

They need root, debootstrap, systemd-nspawn, qemu-user-static and binfmt-support (`./dev`
installs them) and reach Debian's archive and PyPI once per machine (the roots and pip's
downloads are cached under /var/cache/yimen-test). Select them with `-m installed`."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.provisioning.conftest import County, county  # noqa: F401 - the county broker and registrar
from tests.support import debroot

NEEDED = ("debootstrap", "systemd-nspawn", "nsenter", "qemu-aarch64-static", "update-binfmts")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    missing = [tool for tool in NEEDED if shutil.which(tool) is None]
    for item in items:
        if "installed" not in item.keywords:
            continue
        if os.geteuid() != 0:
            item.add_marker(pytest.mark.skip(reason="boots a container and mounts overlays: run as root"))
        elif missing:
            item.add_marker(
                pytest.mark.skip(reason=f"{', '.join(missing)} missing: run ./dev test, which installs them")
            )


@pytest.fixture
def station(tmp_path: Path) -> Iterator[debroot.Booted]:
    """A booted bookworm (systemd PID 1) on an overlay of the cached root, with this checkout at /usr/src/yimen."""
    lower = debroot.root(debroot.host_arch())
    pip_cache = debroot.CACHE / f"pip-{debroot.host_arch()}"
    pip_cache.mkdir(parents=True, exist_ok=True)
    with debroot.overlay(lower, tmp_path / "container") as merged:
        options = debroot.give_host_settings(merged)
        debroot.copy_checkout(merged / "usr/src/yimen")
        options.append(f"--bind={pip_cache}:/root/.cache/pip")
        booted = debroot.Booted(merged, tmp_path / "nspawn.log", options)
        try:
            booted.wait_booted()
            yield booted
        finally:
            booted.stop()
