"""What each feature a config turns on needs from the machine, for `yimen doctor`.

deploy/install.sh installs all of it (the `[pi]` and `[qr]` extras, espeak-ng, a Chinese
font); this says, per configured feature, whether its libraries import and its programs
and files are there, so a station set up by hand or half upgraded is told what is missing
before a clerk meets it. Devices (the GPIO chip, the keypad's event device) are opened by the
doctor's peripheral checks.
"""

from __future__ import annotations

import importlib
import shutil
from dataclasses import dataclass

from edge.config import Config


@dataclass(frozen=True)
class Need:
    feature: str  # as the config says it, e.g. "[[windows]] gpio"
    kind: str  # "module" or "program"
    name: str
    fix: str


def needs(cfg: Config) -> list[Need]:
    """Every library, program and file the configured features use."""
    out: list[Need] = []
    pi = "sudo /opt/yimen/current/bin/pip install 'yimen[pi]' (or run deploy/install.sh again)"
    if cfg.windows.with_gpio:
        # Blinka's `board` fails to import on a machine it does not know: that is a finding too.
        out += [Need("[[windows]] gpio", "module", m, pi) for m in ("gpiod", "board", "digitalio")]
    if cfg.windows.with_input_devices:
        out.append(Need("[[windows]] keypad / card_reader", "module", "evdev", pi))
    if cfg.provisioning is not None and cfg.provisioning.camera and cfg.cameras:
        qr = "sudo /opt/yimen/current/bin/pip install 'yimen[qr]' (or run deploy/install.sh again)"
        out.append(Need("[provisioning] camera (QR codes)", "module", "zxingcpp", qr))
    if cfg.service is not None and cfg.service.announce.voice:
        program = cfg.service.announce.command[0]
        out.append(Need("[announce] voice", "program", program, f"sudo apt-get install {program}"))
    return out


def missing(need: Need) -> str | None:
    """Why `need` is not met here, or None."""
    if need.kind == "program":
        return None if shutil.which(need.name) else f"{need.name} is not installed"
    try:
        importlib.import_module(need.name)
    except Exception as exc:  # noqa: BLE001 - any failure to import is the finding (Blinka raises NotImplementedError)
        return f"Python module {need.name} does not import ({type(exc).__name__}: {exc})"
    return None
