"""The config as two files: the installer's, read-only, and the station's own, read after it.

Installed, the gateway runs as `yimen` with only its state directory writable
(`ProtectSystem=strict`), so it never writes the installer's `/etc/yimen/station.toml`.
Everything the station itself writes (enrolment's `[station]` and `[broker]`, a `config-set`
or `bind-unit` from the county) goes to `local.toml` in the storage directory that the
installer's file names, with the rollback copy beside it. The station's file overrides the
installer's key by key: tables merge, any other value (a string, a number, a list, an array of
tables such as `[[windows]]`) is replaced whole. A key can be changed by the station's file,
not removed; `[storage] path` is the installer's alone, because it says where the station's
file is.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.configfile import ConfigError
from edge.syncdir import sync_dir

LOCAL_NAME = "local.toml"


@dataclass(frozen=True)
class Layers:
    """The merged document, and which file set each value (`"broker.host"` -> path)."""

    base: Path
    local: Path | None
    # Out of repr: the document holds secrets, and a Config is logged and traced.
    doc: dict[str, Any] = field(repr=False)
    origin: dict[str, Path] = field(default_factory=dict, repr=False)

    def set_by(self) -> dict[Path, list[str]]:
        """Each file with the keys whose value it set, in file order."""
        out: dict[Path, list[str]] = {}
        for key, path in self.origin.items():
            out.setdefault(path, []).append(key)
        return out


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def local_path(base: Path, doc: dict[str, Any]) -> Path | None:
    """`local.toml` in the installer's `[storage] path` (relative to the installer's file); None
    when the installer's file names no storage (then nothing can be written, and parse says so)."""
    storage = doc.get("storage")
    path = storage.get("path") if isinstance(storage, dict) else None
    if not isinstance(path, str) or not path:
        return None
    directory = Path(path).expanduser()
    if not directory.is_absolute():
        directory = base.resolve().parent / directory
    return directory / LOCAL_NAME


def merge(base: dict[str, Any], over: dict[str, Any], origin: dict[str, Path], source: Path, prefix: str = "") -> None:
    """Lay `over` onto `base` in place, noting in `origin` that `source` set each value it gives."""
    for key, value in over.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value, origin, source, f"{name}.")
            continue
        for stale in [k for k in origin if k == name or k.startswith(f"{name}.")]:
            del origin[stale]
        base[key] = value
        if isinstance(value, dict):
            _note(value, origin, source, f"{name}.")
        else:
            origin[name] = source


def _note(doc: dict[str, Any], origin: dict[str, Path], source: Path, prefix: str = "") -> None:
    for key, value in doc.items():
        if isinstance(value, dict):
            _note(value, origin, source, f"{prefix}{key}.")
        else:
            origin[f"{prefix}{key}"] = source


def read(base: Path, local_text: str | None = None) -> Layers:
    """The installer's file with the station's laid over it; `local_text` stands in for the
    station's file (to check a change before it is written)."""
    base = Path(base)
    doc = _read_toml(base)
    origin: dict[str, Path] = {}
    _note(doc, origin, base)
    local = local_path(base, doc)
    if local is None:
        return Layers(base, None, doc, origin)
    if local_text is not None:
        try:
            over = tomllib.loads(local_text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{local}: not valid TOML: {exc}") from None
    elif local.exists():
        over = _read_toml(local)
    else:
        return Layers(base, local, doc, origin)
    storage = over.get("storage")
    if isinstance(storage, dict) and "path" in storage and storage["path"] != doc["storage"]["path"]:
        raise ConfigError(f"{local}: [storage] path: set only in {base} (it says where this file is); remove it here")
    merge(doc, over, origin, local)
    return Layers(base, local, doc, origin)


def describe(layers: Layers) -> list[str]:
    """For status and doctor: which file set which values, one line per file."""
    lines = []
    for path, keys in layers.set_by().items():
        role = "the installer's" if path == layers.base else "the station's own"
        lines.append(f"{path} ({role}): {', '.join(keys)}")
    if layers.local is not None and layers.local not in layers.set_by():
        lines.append(f"{layers.local} (the station's own): not written yet")
    return lines


def local_for(base: Path) -> Path | None:
    """Where the station's own file is, from the installer's file alone (None if it cannot say)."""
    try:
        return local_path(Path(base), _read_toml(Path(base)))
    except ConfigError:
        return None


def atomic_write(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Replace a file so that a power cut leaves the old or the new one, never half; keeps the
    mode of a file already there (else `mode`: readable by the service's group, not the world)."""
    mode = path.stat().st_mode & 0o777 if path.exists() else mode
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    sync_dir(path.parent)
