"""The as-installed tests: a booted Debian bookworm root (systemd-nspawn) and an arm64 root (qemu).

They need root, debootstrap, systemd-nspawn, qemu-user-static and binfmt-support (`./dev`
installs them) and reach Debian's archive and PyPI once per machine (the roots and pip's
downloads are cached under /var/cache/yimen-test). Select them with `-m installed`."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.provisioning.conftest import County, county  # noqa: F401 - the county broker and registrar

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
