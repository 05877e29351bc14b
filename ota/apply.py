"""`yimen update apply`: the root side of an update. Install side by side, switch, watch, roll back.

Run by systemd as root (deploy/yimen-update.service) when the gateway has put a checked release
in `<state>/updates/` and written `ready.json`, and once at every boot. The gateway's sandbox
cannot write /opt/yimen, and should not be able to: this side checks the signature again with
the keys root trusts before it installs anything the gateway handed over.

    /opt/yimen/versions/<version>/   one venv per version, `pip install --no-index` from the release
    /opt/yimen/current -> versions/<version>   what the unit starts; replaced by rename (atomic)

The order makes every power cut survivable; the breadcrumb (`<work>/breadcrumb.json`, written
with fsync before each step) says where it was:

1. `installing`: the new venv is built beside the running one. Cut here: `current` still names the
   old version; at boot the half-built venv is removed and the install tried once more.
2. `trial`: `trial.json` is written, `current` is switched, the gateway restarted. The new version
   has `health_s` to report healthy (birth, first PUBACK, window units answering). If it does not,
   because it failed a check or never started at all, `current` is switched back and the gateway
   restarted. Cut here: at boot the trial is given one more chance with a fresh deadline; a
   second cut (or a version that reboots the machine) rolls back without another try.
3. done: `outcome.json` says `healthy` or `rolled-back` (with the reason), for whichever version
   runs next to report to the county; the previous version is kept, older ones removed.

The updater itself always runs from the version that was current before the update
(deploy/yimen-update picks it from `<work>/runner`), so a broken new version cannot break
its own rollback.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.syncdir import sync_dir
from ota import release
from ota.paths import Updates, read_json, write_json

log = logging.getLogger("yimen.ota.apply")

_RELEASE_ID = re.compile(r"^r[0-9a-f]{16}$")
MAX_INSTALL_ATTEMPTS = 2
MAX_TRIAL_BOOTS = 2


@dataclass(frozen=True)
class Layout:
    root: Path = Path("/opt/yimen")
    state: Path = Path("/var/lib/yimen")
    work: Path = Path("/var/lib/yimen-update")
    keys: tuple[Path, ...] = (Path("/etc/yimen/release-keys"),)
    health_s: float = 180.0
    restart: tuple[str, ...] = ("systemctl", "restart", "yimen.service")
    python: str = "/usr/bin/python3"
    system_site_packages: bool = True  # as install.sh makes it: picamera2 comes from the OS
    pip_timeout_s: float = 1800.0
    poll_s: float = 0.5

    @property
    def updates(self) -> Updates:
        return Updates.of(self.state)

    @property
    def breadcrumb(self) -> Path:
        return self.work / "breadcrumb.json"

    @property
    def current(self) -> Path:
        return self.root / "current"

    def version_dir(self, version: str) -> Path:
        return self.root / "versions" / version

    @property
    def pinned_keys(self) -> Path:
        """The enrolment's release keys as root first saw them (see `pin_enrolment_keys`)."""
        return self.work / "release-keys"

    def trusted(self) -> list:
        return release.load_trusted(*self.keys, self.pinned_keys)


class InstallError(RuntimeError):
    pass


def current_version(layout: Layout) -> str | None:
    try:
        return Path(os.readlink(layout.current)).name
    except OSError:
        return None


def switch(layout: Layout, version: str) -> None:
    """Point `current` at `version` by renaming a new symlink over it: atomic, and durable once the
    directory is synced."""
    tmp = layout.root / ".current.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(f"versions/{version}", tmp)
    os.replace(tmp, layout.current)
    sync_dir(layout.root)
    log.info("current -> versions/%s", version)


def run(layout: Layout) -> int:
    """One pass: finish whatever a power cut interrupted, else install a ready release."""
    layout.work.mkdir(parents=True, exist_ok=True)
    with open(layout.work / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        pin_enrolment_keys(layout)
        crumb = read_json(layout.breadcrumb)
        if crumb is not None:
            return _resume(layout, crumb)
        ready = read_json(layout.updates.ready)
        if ready is not None:
            return _apply(layout, ready, attempt=1)
    return 0


def pin_enrolment_keys(layout: Layout) -> None:
    """Trust on first use: the release keys the enrolment reply carried (stored by the gateway,
    user yimen, under <state>/identity/release-keys) are copied to root's own directory the first
    time the updater sees them, and never again. Root never trusts a file the gateway can still
    change: a gateway taken over later cannot plant a key to get its code run as root. A county
    that rotates its key gives the new one to the installer (/etc/yimen/release-keys)."""
    if any(layout.pinned_keys.glob("*.pem")):
        return
    found = release.load_trusted(layout.state / "identity" / "release-keys")
    if not found:
        return
    tmp = layout.work / "release-keys.new"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o755)
    for n, key in enumerate(found):
        (tmp / f"enrolment-{n}.pem").write_text(release.public_text(key) + "\n")
    shutil.rmtree(layout.pinned_keys, ignore_errors=True)
    os.replace(tmp, layout.pinned_keys)
    sync_dir(layout.work)
    log.info("pinned %d release key(s) from the enrolment", len(found))


def _apply(layout: Layout, ready: dict[str, Any], attempt: int) -> int:
    updates = layout.updates
    rid = str(ready.get("release", ""))
    if not _RELEASE_ID.match(rid):
        return _refuse(layout, rid, {}, "bad-request", f"ready.json names no release id: {ready!r}")
    directory = updates.release_dir(rid)
    offer = read_json(directory / "offer.json") or {}
    try:
        raw = base64.b64decode(str(offer.get("manifest", "")), validate=True)
        manifest = release.verify(raw, str(offer.get("signature", "")), layout.trusted())
        release.check_files(manifest, directory / "files")
    except (release.ReleaseError, ValueError) as exc:
        code = exc.code if isinstance(exc, release.ReleaseError) else "bad-manifest"
        return _refuse(layout, rid, {}, code, f"the updater's own check: {exc}")
    running = current_version(layout)
    about = {"release": rid, "version": manifest.version, "from": running}
    if running is not None and release.version_key(manifest.version) <= release.version_key(running):
        return _refuse(layout, rid, about, "not-newer", f"{manifest.version} is not newer than {running}")
    crumb = {**about, "phase": "installing", "attempt": attempt}
    write_json(layout.breadcrumb, crumb)
    if running is not None:
        (layout.work / "runner").write_text(running + "\n")
    try:
        _install(layout, manifest, directory / "files")
    except InstallError as exc:
        shutil.rmtree(layout.version_dir(manifest.version), ignore_errors=True)
        layout.breadcrumb.unlink(missing_ok=True)
        return _refuse(layout, rid, about, "install-failed", str(exc))
    return _trial(layout, {**crumb, "phase": "trial", "boots": 0}, restart=True)


def _install(layout: Layout, manifest: release.Manifest, files: Path) -> None:
    """A fresh venv for the version, from the release's files only; smoke-tested before use."""
    target = layout.version_dir(manifest.version)
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    venv = [
        layout.python,
        "-m",
        "venv",
        *(["--system-site-packages"] if layout.system_site_packages else []),
        str(target),
    ]
    pip = [str(target / "bin/python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--no-cache-dir", "--no-index", "--find-links", str(files), _with_extras(manifest.requires)]  # fmt: skip
    smoke = [str(target / "bin/yimen"), "--version"]
    for cmd in (venv, pip, smoke):
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=layout.pip_timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InstallError(f"{Path(cmd[0]).name} {cmd[1] if len(cmd) > 1 else ''}: {exc}") from None
        if result.returncode != 0:
            raise InstallError(f"{' '.join(cmd[:4])} failed: {(result.stderr or result.stdout).strip()[-1500:]}")
    if result.stdout.split() != ["yimen", manifest.version]:
        raise InstallError(f"the new venv says {result.stdout.strip()!r}, not 'yimen {manifest.version}'")
    (target / ".complete").touch()  # as install.sh marks a venv it finished building
    sync_dir(target)


def _with_extras(requires: str) -> str:
    """`yimen==1.2` -> `yimen[pi,qr]==1.2`: the new venv gets the extras install.sh gave the first
    one (evdev is compiled here from the sdist the release carries, with install.sh's gcc)."""
    name, _, pin = requires.partition("==")
    return f"{name}[{','.join(release.STATION_EXTRAS)}]=={pin}"


def _trial(layout: Layout, crumb: dict[str, Any], restart: bool) -> int:
    updates = layout.updates
    updates.health.unlink(missing_ok=True)
    write_json(updates.trial, {k: crumb[k] for k in ("release", "version", "from")})
    write_json(layout.breadcrumb, crumb)
    switch(layout, crumb["version"])
    if restart:
        _restart(layout)
    deadline = time.monotonic() + layout.health_s
    health: dict[str, Any] = {}
    while time.monotonic() < deadline:
        health = read_json(updates.health) or {}
        if health.get("healthy") and health.get("version") == crumb["version"]:
            return _done(layout, crumb)
        time.sleep(layout.poll_s)
    failed = [name for name, ok in (health.get("checks") or {}).items() if not ok]
    reason = (
        f"{crumb['version']} did not pass {', '.join(failed)} within {layout.health_s:.0f} s"
        if failed
        else f"{crumb['version']} never reported on its health within {layout.health_s:.0f} s (did it start?)"
    )
    return _rollback(layout, crumb, reason)


def _done(layout: Layout, crumb: dict[str, Any]) -> int:
    log.info("update to %s healthy", crumb["version"])
    keep = {crumb["version"], crumb.get("from")}
    for old in (layout.root / "versions").iterdir():
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)
    _finish(layout, crumb, {"state": "healthy"})  # told last: what it says is then already true
    return 0


def _rollback(layout: Layout, crumb: dict[str, Any], reason: str) -> int:
    log.error("update to %s rolled back: %s", crumb["version"], reason)
    previous = crumb.get("from")
    if previous is not None:
        switch(layout, previous)
    _restart(layout)
    shutil.rmtree(layout.version_dir(crumb["version"]), ignore_errors=True)  # before the outcome is told
    _finish(layout, crumb, {"state": "rolled-back", "code": "unhealthy", "reason": reason}, refused=True)
    return 1


def _refuse(layout: Layout, rid: str, about: dict[str, Any], code: str, reason: str) -> int:
    log.error("release %s not installed: %s", rid or "?", reason)
    _finish(layout, {"release": rid, **about}, {"state": "refused", "code": code, "reason": reason}, refused=True)
    return 1


def _finish(layout: Layout, crumb: dict[str, Any], outcome: dict[str, Any], refused: bool = False) -> None:
    """Tell the next gateway what happened, then forget the update (breadcrumb last)."""
    updates = layout.updates
    about = {k: crumb[k] for k in ("release", "version", "from") if k in crumb}
    write_json(updates.outcome, {**outcome, **about})
    if refused and about.get("release"):
        updates.give_up(about["release"], f"{outcome.get('code')}: {outcome.get('reason')}")
    for path in (updates.trial, updates.health, updates.ready):
        path.unlink(missing_ok=True)
    if about.get("release"):
        shutil.rmtree(updates.release_dir(about["release"]), ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (layout.work / "runner").unlink()
    layout.breadcrumb.unlink(missing_ok=True)
    sync_dir(layout.work)


def _resume(layout: Layout, crumb: dict[str, Any]) -> int:
    """The updater was cut off (power, a kill): carry on from the breadcrumb."""
    phase = crumb.get("phase")
    log.warning("resuming an update to %s interrupted in phase %s", crumb.get("version"), phase)
    if phase == "installing":
        shutil.rmtree(layout.version_dir(str(crumb.get("version"))), ignore_errors=True)
        if current_version(layout) != crumb.get("from") and crumb.get("from"):
            switch(layout, crumb["from"])
        ready = read_json(layout.updates.ready)
        attempt = int(crumb.get("attempt", 1)) + 1
        layout.breadcrumb.unlink(missing_ok=True)
        if ready is None or attempt > MAX_INSTALL_ATTEMPTS:
            return _refuse(layout, str(crumb.get("release", "")), crumb, "install-interrupted",
                           f"the install was cut off {attempt - 1} times (power?)")  # fmt: skip
        return _apply(layout, ready, attempt)
    boots = int(crumb.get("boots", 0)) + 1
    if boots >= MAX_TRIAL_BOOTS:
        return _rollback(layout, crumb, f"the station restarted {boots} times during the trial of {crumb['version']}")
    return _trial(layout, {**crumb, "boots": boots}, restart=True)


def _restart(layout: Layout) -> None:
    result = subprocess.run(list(layout.restart), capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        log.error("restarting the gateway (%s) failed: %s", " ".join(layout.restart), result.stderr.strip())
