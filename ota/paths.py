"""Where an update lives on the station, and the small JSON files the two sides hand over.

The gateway (user yimen, sandboxed: only the state directory is writable) downloads and checks
a release under `<storage>/updates/`, and asks for it to be installed by writing `ready.json`.
The updater (root, `yimen update apply`, started by systemd when `ready.json` appears) installs
it, writes `trial.json` for the new version to prove itself in, and `outcome.json` for whichever
version runs next to report. The gateway answers the trial with `health.json`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.syncdir import sync_dir


@dataclass(frozen=True)
class Updates:
    root: Path  # <storage>/updates

    @classmethod
    def of(cls, storage: Path) -> Updates:
        return cls(storage / "updates")

    def release_dir(self, release: str) -> Path:
        return self.root / release

    @property
    def ready(self) -> Path:
        return self.root / "ready.json"

    @property
    def trial(self) -> Path:
        return self.root / "trial.json"

    @property
    def health(self) -> Path:
        return self.root / "health.json"

    @property
    def outcome(self) -> Path:
        return self.root / "outcome.json"

    @property
    def cache(self) -> Path:
        """The files of the last release downloaded: a later release that lists the same file
        (same name and sha256: a dependency that did not change) takes it from here."""
        return self.root / "cache"

    @property
    def refused(self) -> Path:
        """Releases this station gave up on (rolled back, bad files): not fetched again."""
        return self.root / "refused.json"

    def give_up(self, release: str, why: str) -> None:
        """Remember that `release` is not to be fetched again (the last 50 are kept)."""
        gave_up = read_json(self.refused) or {}
        gave_up[release] = why
        write_json(self.refused, dict(list(gave_up.items())[-50:]))

    def given_up(self, release: str) -> str | None:
        return (read_json(self.refused) or {}).get(release)


def write_json(path: Path, doc: dict[str, Any], mode: int = 0o644) -> None:
    """Replace `path` atomically and durably: a power cut leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as out:
        json.dump(doc, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    sync_dir(path.parent)


def read_json(path: Path) -> dict[str, Any] | None:
    """The file's JSON object, or None when it is missing or not one (a half-written file never is)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
