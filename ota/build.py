"""County side: `yimen release build`, a signed release for the stations' platform.

A release directory holds `files/` (the yimen wheel and every wheel it depends on, for the
stations' platform: aarch64, CPython 3.11 by default), `manifest.json` and `manifest.sig`.
pip does the resolving: `pip download --platform ... --only-binary :all:` fetches exactly what
`pip install --no-index` on a station will need. The release also carries the extras every
station installs (`release.STATION_EXTRAS`, as deploy/install.sh does): without them a station
updated over the air would lose its GPIO buttons, keypads, card readers and QR enrolment.
evdev has no wheel on PyPI for any platform, so its sdist travels with the build backend's wheel
and the station compiles it (install.sh installed gcc and python3-dev for exactly that).
`--platform host` builds for this machine instead (tests, a county that mirrors its stations).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path

from ota import release

STATION_PLATFORM = "manylinux2014_aarch64"
STATION_PYTHON = "3.11"
DEFAULT_CHUNK = 16 * 1024
_WHEEL = re.compile(r"^yimen-([^-]+)-py3-none-any\.whl$")
# Requirements with no wheel on PyPI: their sdist travels, built on the station from BUILD_BACKEND.
SOURCE_ONLY = frozenset({"evdev"})
BUILD_BACKEND = "setuptools>=61"
_EXTRA_REQ = re.compile(r'^Requires-Dist: *([A-Za-z0-9._-]+)([^;]*); *extra *== *"([a-z0-9-]+)" *$')


class BuildError(RuntimeError):
    pass


def _pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise BuildError(f"pip {args[0]} failed:\n{result.stderr.strip()[-2000:]}")


def build(
    source: Path,
    out: Path,
    key: Path,
    *,
    platform: str = STATION_PLATFORM,
    python: str = STATION_PYTHON,
    find_links: tuple[Path, ...] = (),
    no_index: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
) -> Path:
    """Build, sign and return the release directory `out/yimen-<version>`. `source` is a yimen
    source tree or an already built yimen wheel."""
    signer = release.load_private(key)
    index = [*(f"--find-links={p}" for p in find_links), *(["--no-index"] if no_index else [])]
    with tempfile.TemporaryDirectory(prefix="yimen-release-") as tmp:
        if source.is_file():
            wheel = source
        else:
            _pip("wheel", "--no-deps", "-w", tmp, *index, str(source))
            wheel = next(Path(tmp).glob("yimen-*.whl"))
        m = _WHEEL.match(wheel.name)
        if m is None:
            raise BuildError(f"{wheel.name}: not a yimen wheel (yimen-<version>-py3-none-any.whl)")
        version = m.group(1)
        target = out / f"yimen-{version}"
        if target.exists():
            raise BuildError(f"{target} exists: a release is never rebuilt in place (remove it first)")
        files = Path(tmp) / "files"
        files.mkdir()
        shutil.copy2(wheel, files / wheel.name)
        if platform == "host":
            where: list[str] = []
            platform_name = sysconfig.get_platform().replace("-", "_").replace(".", "_")
            python = f"{sys.version_info.major}.{sys.version_info.minor}"
        else:
            where = [
                "--platform",
                platform,
                "--python-version",
                python,
                "--implementation",
                "cp",
                "--only-binary",
                ":all:",
            ]
            platform_name = platform
        binary, source = extra_requirements(wheel, release.STATION_EXTRAS)
        _pip("download", "-d", str(files), *where, *index, str(wheel), *binary)
        if source:
            _pip("download", "-d", str(files), "--no-deps", "--no-binary", ",".join(SOURCE_ONLY), *index, *source)
            _pip("download", "-d", str(files), "--only-binary", ":all:", *index, BUILD_BACKEND)
        paths = sorted(p for p in files.iterdir() if p.is_file())
        raw = release.make_manifest(version, platform_name, python, paths, chunk_size)
        target.mkdir(parents=True)
        shutil.copytree(files, target / "files")
    (target / release.MANIFEST).write_bytes(raw)
    (target / release.SIGNATURE).write_text(release.sign(raw, signer) + "\n")
    return target


def extra_requirements(wheel: Path, extras: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """What the wheel's `extras` require, from its own metadata (pyproject.toml stays the one place
    they are named): (those fetched as wheels for the platform, those that travel as sdists)."""
    with zipfile.ZipFile(wheel) as whl:
        name = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        lines = whl.read(name).decode().splitlines()
    binary: list[str] = []
    source: list[str] = []
    for line in lines:
        m = _EXTRA_REQ.match(line.strip())
        if m and m.group(3) in extras:
            spec = m.group(1) + m.group(2).strip()
            (source if m.group(1).lower() in SOURCE_ONLY else binary).append(spec)
    missing = set(extras) - {m.group(3) for line in lines if (m := _EXTRA_REQ.match(line.strip()))}
    if missing:
        raise BuildError(f"{wheel.name} has no extra {', '.join(sorted(missing))}: is it a yimen wheel of this tree?")
    return binary, source


def open_release(directory: Path) -> tuple[release.Manifest, str]:
    """A built release read back (county side): its manifest and signature, the files checked."""
    raw = (directory / release.MANIFEST).read_bytes()
    signature = (directory / release.SIGNATURE).read_text().strip()
    manifest = release.parse_manifest(raw)
    release.check_files(manifest, directory / "files")
    return manifest, signature
