"""Window-unit firmware update from the gateway: the firmware files this gateway carries, sent to
each unit whose HELLO names another version, over the link itself (FILE frames, PROTOCOL.md).

The files travel inside the gateway's own release (the `firmware` package of the signed yimen
wheel), so a unit runs what the county signed. A unit takes the update only if its HELLO says it
can (`"files": 1`); each file is checked by sha256 on the unit before anything is switched, and the
unit switches at a reboot it makes only once every press is acknowledged. The gateway then waits
for the unit's HELLO: the new version means done; the old one means the unit put its previous
files back (the new firmware did not start) and this version is not offered to it again; no
HELLO within RETURN_S is reported, and the unit restores its previous files at its next boot.
`settings.py` (what the installer set on that unit) and `glyphs.py` (its display's font) are never sent.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import firmware

# What a unit runs, as the unit's flash holds it: not settings.py nor glyphs.py (made for that unit
# or station), not the package's __init__.py, not tools/.
FILES = ("link.py", "debounce.py", "pressqueue.py", "unit.py", "boards.py", "cardreader.py", "hw.py", "fwfiles.py",
         "version.py", "display.py", "ssd1306.py", "app.py", "boot.py", "main.py", "code.py")  # fmt: skip
CHUNK = 144  # raw bytes per FILE frame: base64 192 characters, within the 240-byte payload
RETURN_S = 60.0  # a unit that has not said HELLO with a version by then has not come back


@dataclass(frozen=True)
class Bundle:
    version: str
    files: tuple[tuple[str, bytes], ...]

    @classmethod
    def from_directory(cls, directory: Path = Path(firmware.__file__).parent) -> Bundle:
        text = (directory / "version.py").read_text()
        m = re.search(r'^FW = "([^"]+)"', text, re.M)
        if m is None:
            raise ValueError(f'{directory}/version.py has no FW = "..." line')
        return cls(m.group(1), tuple((name, (directory / name).read_bytes()) for name in FILES))

    def frames(self) -> Iterator[dict[str, Any]]:
        """The FILE payloads of one update, in order."""
        for name, data in self.files:
            yield {"op": "open", "name": name}
            for off in range(0, len(data), CHUNK):
                yield {"op": "data", "off": off, "b64": base64.b64encode(data[off : off + CHUNK]).decode()}
            yield {"op": "close", "sha256": hashlib.sha256(data).hexdigest()}
        yield {"op": "commit", "fw": self.version}

    @property
    def size(self) -> int:
        return sum(len(data) for _name, data in self.files)


class Updates:
    """Which units to update, and what became of each: one per driver, used by its port threads."""

    def __init__(self, bundle: Bundle, return_s: float = RETURN_S) -> None:
        self.bundle = bundle
        self.return_s = return_s
        self._gave_up: set[str] = set()  # uids that came back with their old firmware

    def wanted(self, uid: str, fw: str, hello: dict[str, Any]) -> bool:
        return hello.get("files") == 1 and fw != self.bundle.version and uid not in self._gave_up

    def gave_up(self, uid: str) -> None:
        self._gave_up.add(uid)
