"""County side: `yimen release build`, a signed release for the stations' platform.

A release directory holds `files/` (the yimen wheel and every wheel it depends on, for the
stations' platform: aarch64, CPython 3.11 by default), `manifest.json` and `manifest.sig`.
pip does the resolving: `pip download --platform ... --only-binary :all:` fetches exactly what
`pip install --no-index` on a station will need. The release carries yimen's own dependencies,
not the `[pi]`/`[qr]` extras: evdev has no aarch64 wheel on PyPI and would have to be compiled on
every station at every update; see README, "Over-the-air updates", for how a station keeps them.
`--platform host` builds for this machine instead (tests, a county that mirrors its stations).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from ota import release

STATION_PLATFORM = "manylinux2014_aarch64"
STATION_PYTHON = "3.11"
DEFAULT_CHUNK = 16 * 1024
_WHEEL = re.compile(r"^yimen-([^-]+)-py3-none-any\.whl$")


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
        _pip("download", "-d", str(files), *where, *index, str(wheel))
        paths = sorted(p for p in files.iterdir() if p.is_file())
        raw = release.make_manifest(version, platform_name, python, paths, chunk_size)
        target.mkdir(parents=True)
        shutil.copytree(files, target / "files")
    (target / release.MANIFEST).write_bytes(raw)
    (target / release.SIGNATURE).write_text(release.sign(raw, signer) + "\n")
    return target


def open_release(directory: Path) -> tuple[release.Manifest, str]:
    """A built release read back (county side): its manifest and signature, the files checked."""
    raw = (directory / release.MANIFEST).read_bytes()
    signature = (directory / release.SIGNATURE).read_text().strip()
    manifest = release.parse_manifest(raw)
    release.check_files(manifest, directory / "files")
    return manifest, signature
