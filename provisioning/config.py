"""The `[provisioning]` section: where a station without an identity looks for its claim.

A Pi's image ships a config with `[provisioning]` and `[storage]` and no `[station]`; its
first `yimen run` enrols and writes `[station]` and `[broker]` into the station's own file laid
over it (edge/configlayers.py). The section stays, so that a station whose login is later
refused can enrol again from a new claim.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge import configlayers
from edge.configfile import ConfigError, Section

# The boot partition (what an installer can write from any laptop) and USB sticks, however
# the desktop or udisks mounted them.
DEFAULT_SEARCH = (
    "/boot/firmware/yimen-provision.json",
    "/boot/yimen-provision.json",
    "/media/*/yimen-provision.json",
    "/media/*/*/yimen-provision.json",
    "/mnt/*/yimen-provision.json",
)


@dataclass(frozen=True)
class ProvisioningConfig:
    search: tuple[str, ...] = DEFAULT_SEARCH
    # Also look for the claim's QR code with the first configured camera (needs zxing-cpp).
    camera: bool = True
    # How long to wait for the registrar's reply before asking again.
    reply_timeout_s: float = 30.0
    # Pause between searches while no claim is found, and after a refused one.
    retry_s: float = 10.0


def needs_enrolment(path: Path) -> bool:
    """A config with `[provisioning]` and no `[station]`: a station that has not enrolled yet.

    Here rather than in enrol.py so that an enrolled gateway's start never imports the crypto."""
    try:
        doc = configlayers.read(path).doc
    except ConfigError:
        return False  # config.load reports it properly
    return "provisioning" in doc and "station" not in doc


def parse_provisioning(section: Section) -> ProvisioningConfig:
    search = section.get_list("search", list(DEFAULT_SEARCH))
    for pattern in search:
        if not isinstance(pattern, str) or not pattern:
            raise section.error("search", f"expected a list of glob patterns, got {pattern!r}")
    base = Path(section.source).resolve().parent
    cfg = ProvisioningConfig(
        # Relative patterns are relative to the config file, like every other path in it.
        search=tuple(p if Path(p).is_absolute() else str(base / p) for p in search),
        camera=section.get_bool("camera", ProvisioningConfig.camera),
        reply_timeout_s=section.get_float("reply_timeout_s", ProvisioningConfig.reply_timeout_s, minval=1),
        retry_s=section.get_float("retry_s", ProvisioningConfig.retry_s, minval=0.1),
    )
    section.done()
    return cfg
