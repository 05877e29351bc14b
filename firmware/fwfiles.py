"""Firmware update on the unit: files received over the link, switched at a reboot, undone if the
new firmware does not come back.

The gateway sends FILE frames (link.py): `open` a file, `data` in order, `close` with its sha256,
then `commit` with the new version. Each file is written beside the running one as `<name>.new`
and checked before anything changes. `commit` renames each running file to `<name>.bak` and
each new one into place, writes `update.json`, and asks for a reboot, which the main loop makes
only once every press is acknowledged (so an update loses no press the gateway has not got).

At each boot (main.py), before the firmware is imported, `boot_check` counts the boots of a
firmware on trial; the second boot of one that never reached the gateway puts the `.bak` files
back. A firmware that raises at start is undone at once (`restore`, then reset). Once the new
firmware has a session with the gateway, `confirm` removes `update.json` and the `.bak` files.
"""

import os

try:
    import hashlib
except ImportError:  # pragma: no cover - every supported port has it
    hashlib = None
import binascii
import json

MARKER = "update.json"
MAX_FILES = 24


def _exists(name):
    try:
        os.stat(name)
        return True
    except OSError:
        return False


def _remove(name):
    try:  # noqa: SIM105 - MicroPython has no contextlib
        os.remove(name)
    except OSError:
        pass


def _plain(name):
    """A file name in the firmware's own directory, never a path."""
    return isinstance(name, str) and 0 < len(name) <= 32 and "/" not in name and name.endswith(".py")


class Staging:
    """The receiving side of an update; one file open at a time."""

    def __init__(self):
        self._file = None
        self._name = None
        self._written = 0
        self._hash = None
        self.staged = []
        self.error = None

    def handle(self, msg):
        """One FILE frame's payload. Returns True once a commit asks for a reboot."""
        op = msg.get("op")
        try:
            if op == "open":
                self._open(msg["name"])
            elif op == "data":
                self._data(msg["off"], msg["b64"])
            elif op == "close":
                self._close(msg["sha256"])
            elif op == "commit":
                return self._commit(msg["fw"])
            elif op == "abort":
                self._abort("aborted by the gateway")
            else:
                self._abort("unknown op")
        except (KeyError, ValueError, TypeError, OSError) as exc:
            self._abort("bad " + str(op) + ": " + str(exc))
        return False

    def _open(self, name):
        if not _plain(name) or len(self.staged) >= MAX_FILES:
            raise ValueError("file name")
        if self._file is not None:
            self._file.close()
        if not self.staged:
            self.error = None
        self._name = name
        self._file = open(name + ".new", "wb")  # noqa: SIM115 - stays open across FILE frames
        self._written = 0
        self._hash = hashlib.sha256()

    def _data(self, off, b64):
        if self._file is None or off != self._written:
            raise ValueError("data out of order")
        chunk = binascii.a2b_base64(b64)
        self._file.write(chunk)
        self._hash.update(chunk)
        self._written += len(chunk)

    def _close(self, sha256):
        if self._file is None:
            raise ValueError("close without open")
        self._file.close()
        self._file = None
        if binascii.hexlify(self._hash.digest()).decode() != sha256:
            _remove(self._name + ".new")
            raise ValueError("sha256 of " + self._name)
        self.staged.append(self._name)

    def _commit(self, fw):
        if self.error is not None or not self.staged:
            self._abort("nothing good to commit")
            return False
        with open(MARKER, "w") as f:
            json.dump({"fw": fw, "files": self.staged, "boots": 0}, f)
        for name in self.staged:
            if _exists(name):
                _remove(name + ".bak")
                os.rename(name, name + ".bak")
            os.rename(name + ".new", name)
        self.staged = []
        return True

    def _abort(self, why):
        if self._file is not None:
            self._file.close()
            self._file = None
        for name in self.staged + ([self._name] if self._name else []):
            _remove(name + ".new")
        self.staged = []
        self.error = why


def _marker():
    try:
        with open(MARKER) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def restore():
    """Put the previous firmware back (its `.bak` files); True if there was an update to undo."""
    doc = _marker()
    if doc is None:
        return False
    for name in doc.get("files", []):
        if _plain(name) and _exists(name + ".bak"):
            _remove(name)
            os.rename(name + ".bak", name)
    _remove(MARKER)
    return True


def boot_check():
    """At boot, before the firmware is imported: undo a trial firmware that is booting a second time."""
    doc = _marker()
    if doc is None:
        return
    if doc.get("boots", 0) >= 1:
        restore()
        return
    doc["boots"] = doc.get("boots", 0) + 1
    with open(MARKER, "w") as f:
        json.dump(doc, f)


def confirm():
    """The new firmware reached the gateway: keep it."""
    doc = _marker()
    if doc is None:
        return
    for name in doc.get("files", []):
        if _plain(name):
            _remove(name + ".bak")
    _remove(MARKER)
