"""One helper for every atomic file write on the station: after `os.replace` into a directory, the
directory itself must be fsync'd, or a power cut can undo the rename (the new name was only in the
page cache). Used by the outbox's seq mark, the station's own config, media files and the updater."""

from __future__ import annotations

import os
from pathlib import Path


def sync_dir(path: Path) -> None:
    """fsync the directory `path`, so that renames into it survive a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
