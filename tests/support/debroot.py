"""Debian bookworm roots for the as-installed tests: built once by debootstrap, cached, booted.

A root holds what the installer would find on Raspberry Pi OS Lite: systemd, dbus and the
Debian packages `deploy/install.sh --print-packages` names (so the installer's apt step finds
them there and the test needs no mirror once the root is cached). It is cached under
$YIMEN_TEST_CACHE (default /var/cache/yimen-test, outside the checkout) in a directory named by
a hash of everything that goes into it: a changed package list builds a new root, an unchanged
one is reused. A test never writes to the cached root: each one runs on an overlay whose upper
layer is the test's own temporary directory.

arm64 roots are made with `debootstrap --foreign` and finished inside the root by
qemu-aarch64-static through binfmt_misc (registered here if the host has not).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("YIMEN_TEST_CACHE", "/var/cache/yimen-test"))
MIRROR = os.environ.get("YIMEN_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
# Bump to rebuild every cached root after a change in how roots are made.
BUILD_VERSION = 1
# systemd as PID 1 with a bus; the rest comes from the installer's own list.
BOOT_PACKAGES = ("systemd", "systemd-sysv", "dbus", "ca-certificates")
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class RootError(RuntimeError):
    pass


def host_arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def installer_packages() -> list[str]:
    out = subprocess.run(
        ["bash", str(ROOT / "deploy/install.sh"), "--print-packages"], capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def _run(cmd: list[str], what: str, timeout: float, **kw: object) -> None:
    env = {"PATH": CLEAN_PATH, "LANG": "C.UTF-8"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, **kw)  # type: ignore[call-overload]
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-3000:]
        raise RootError(f"{what} failed (exit {result.returncode}): {' '.join(cmd)}\n{tail}")


def ensure_binfmt(arch: str) -> None:
    """Foreign binaries run through qemu-user-static: binfmt_misc mounted and the arch enabled."""
    if arch == host_arch():
        return
    misc = Path("/proc/sys/fs/binfmt_misc")
    if not (misc / "register").exists():
        _run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(misc)], "mounting binfmt_misc", 30)
    name = {"arm64": "qemu-aarch64"}[arch]
    if not (misc / name).exists() or "enabled" not in (misc / name).read_text():
        _run(["update-binfmts", "--enable", name], f"registering {name} with binfmt_misc", 30)
    flags = re.search(r"^flags: (\w*)", (misc / name).read_text(), re.MULTILINE)
    if flags is None or "F" not in flags.group(1):
        raise RootError(f"{misc / name} lacks the F flag: qemu cannot run inside a chroot")


def root(arch: str) -> Path:
    """The cached root for `arch`, built (under a lock, so parallel workers build it once) if missing."""
    packages = sorted({*BOOT_PACKAGES, *installer_packages()})
    key = hashlib.sha256(json.dumps([BUILD_VERSION, SUITE, arch, MIRROR, packages]).encode()).hexdigest()[:16]
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{SUITE}-{arch}-{key}"
    ensure_binfmt(arch)
    with open(CACHE / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (path / ".complete").exists():
            return path
        _build(path, arch, packages)
    return path


def _build(path: Path, arch: str, packages: list[str]) -> None:
    work = path.with_name(path.name + ".building")
    shutil.rmtree(work, ignore_errors=True)
    include = "--include=" + ",".join(packages)
    foreign = arch != host_arch()
    cmd = ["debootstrap", "--variant=minbase", f"--arch={arch}", include]
    _run([*cmd, *(["--foreign"] if foreign else []), SUITE, str(work), MIRROR], f"debootstrap of {arch}", 1800)
    if foreign:
        # The second stage runs the root's own dpkg, emulated; the F flag means the root needs
        # no copy of qemu, but Debian's own tools look for it there, so it is put in anyway.
        shutil.copy2("/usr/bin/qemu-aarch64-static", work / "usr/bin/qemu-aarch64-static")
        _run(["chroot", str(work), "/debootstrap/debootstrap", "--second-stage"], f"second stage of {arch}", 3600)
    # apt's lists are not needed (the installer finds its packages installed) and are large.
    for lists in (work / "var/lib/apt/lists", work / "var/cache/apt/archives"):
        for item in lists.glob("*"):
            if item.is_file():
                item.unlink()
    (work / ".complete").write_text(" ".join(packages) + "\n")
    for stale in path.parent.glob(f"{SUITE}-{arch}-*"):
        if stale.name.endswith(".lock") or stale == work:
            continue
        shutil.rmtree(stale, ignore_errors=True)  # an older build of the same arch
    work.rename(path)


# ----- what the host gives the root: its CA certificates and pip's settings ------------------


def pip_settings() -> tuple[list[Path], list[Path]]:
    """The host's pip config files, and the local directories they point pip at (to bind in)."""
    files = [p for p in (Path("/etc/pip.conf"), Path.home() / ".config/pip/pip.conf") if p.is_file()]
    dirs: set[Path] = set()
    for conf in files:
        for url in re.findall(r"(?:file://)?(/[^\s]+)", conf.read_text()):
            if Path(url).is_dir():
                dirs.add(Path(url).parents[0] if Path(url).name == "simple" else Path(url))
    return files, sorted(dirs)


def give_host_settings(merged: Path) -> list[str]:
    """Copy the host's CA bundle and pip config into the (overlay) root; bind options for nspawn."""
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if bundle.is_file():
        shutil.copy2(bundle, merged / "etc/ssl/certs/ca-certificates.crt")
    files, dirs = pip_settings()
    for conf in files:  # at the same place inside (commands there run with HOME=/root)
        inside = merged / conf.relative_to("/")
        inside.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(conf, inside)
    return [f"--bind-ro={d}" for d in dirs]


# ----- an overlay of the cached root, booted ------------------------------------------------


@contextlib.contextmanager
def overlay(lower: Path, work: Path) -> Iterator[Path]:
    """The cached root with a writable layer in `work`; the cache itself is never written."""
    upper, scratch, merged = work / "upper", work / "work", work / "root"
    for d in (upper, scratch, merged):
        d.mkdir(parents=True)
    opts = f"lowerdir={lower},upperdir={upper},workdir={scratch}"
    _run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], "mounting the overlay", 30)
    try:
        yield merged
    finally:
        subprocess.run(["umount", "--lazy", str(merged)], check=False)


class Booted:
    """systemd-nspawn -b of a root; commands run inside through nsenter into its init.

    The host has no systemd of its own, so the container is neither registered with machined
    nor given a scope unit (`--register=no --keep-unit`), and `machinectl` is not used. The
    container shares the host's network: a broker on the host's loopback is reachable."""

    def __init__(self, merged: Path, log: Path, options: list[str]) -> None:
        self.merged = merged
        self.log = log
        self._log_file = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                "systemd-nspawn", "-D", str(merged), "-b", "--register=no", "--keep-unit",
                "--console=passive", *options,
            ],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env={"PATH": CLEAN_PATH, "LANG": "C.UTF-8"},
        )  # fmt: skip
        self.pid = self._init_pid()

    def _init_pid(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RootError(f"systemd-nspawn exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            # nspawn's first child is a short-lived helper that forks init: wait for systemd itself.
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
            with contextlib.suppress(OSError):
                for pid in children.read_text().split():
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                        return int(pid)
            time.sleep(0.1)
        raise RootError(f"no init in the container after {timeout} s: {self.log.read_text()[-2000:]}")

    def run(self, *cmd: str, timeout: float = 120, check: bool = True, user: str | None = None) -> str:
        """Run inside, with a clean environment; return stdout (stderr too on failure)."""
        inner = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *cmd] if user else list(cmd)
        env = ["env", "-i", f"PATH={CLEAN_PATH}", "LANG=C.UTF-8", "HOME=/root", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"]
        result = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-a", *env, *inner], capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)}: exit {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result.stdout + ("" if result.returncode == 0 else result.stderr)

    def wait_booted(self, timeout: float = 120) -> None:
        """Until systemd says the boot is over ("offline": its bus is not up yet, ask again)."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.run("systemctl", "is-system-running", "--wait", timeout=timeout, check=False).strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.5)
        raise RootError(f"the container's systemd says {state!r} after {timeout} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        """Power the container off (nspawn turns SIGTERM into a clean shutdown); one that does not
        go in time is ended by killing its init, which ends everything in its PID namespace."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()


def copy_checkout(dest: Path) -> Path:
    """The checkout as an installer would carry it: files only, no venv, no caches."""
    skip = shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.egg-info", "build", ".pytest_cache", ".ruff_cache", ".hypothesis"
    )
    shutil.copytree(ROOT, dest, ignore=skip)
    return dest


def run_in(merged: Path, *cmd: str, options: tuple[str, ...] = (), timeout: float = 600) -> subprocess.CompletedProcess:
    """One command in the root, not booted: `systemd-nspawn` gives it /dev, /proc and a clean
    environment, and runs a foreign root's binaries through binfmt_misc like native ones."""
    return subprocess.run(
        [
            "systemd-nspawn", "-q", "-D", str(merged), "--register=no", "--keep-unit", "--pipe",
            "--setenv=LANG=C.UTF-8", *options, *cmd,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": CLEAN_PATH, "LANG": "C.UTF-8"},
    )  # fmt: skip
