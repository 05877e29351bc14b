"""The station's `[update]` section: which release keys it trusts and how fast it may fetch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge.configfile import Section

INSTALLER_KEYS = Path("/etc/yimen/release-keys")


@dataclass(frozen=True)
class UpdateConfig:
    # Public keys put there by the installer (--release-key); enrolment adds the county's own
    # under <storage>/identity/release-keys.
    keys: Path = INSTALLER_KEYS
    # Cap on release download, kbit/s; events always go first whatever this says.
    kbps: float = 64.0
    enabled: bool = True


def parse_update(section: Section) -> UpdateConfig:
    cfg = UpdateConfig(
        keys=section.get_path("keys", UpdateConfig.keys),
        kbps=section.get_float("kbps", UpdateConfig.kbps, minval=1, maxval=100_000),
        enabled=section.get_bool("enabled", UpdateConfig.enabled),
    )
    section.done()
    return cfg
