"""The house: the station's code imports nothing from the county's (centre/).

A Pi runs edge/, mqtt/, peripherals/, firmware/ and provisioning/'s station side; the county's
console may import the station's contract modules (events, topics), never the other way round.
`yimen centre` and `yimen demo` are found by module name (edge/cli.py COUNTY_COMMANDS)."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import ROOT

STATION_PACKAGES = ("edge", "mqtt", "peripherals", "firmware", "provisioning")
# provisioning/'s county side: the registrar and its registry run next to the console.
COUNTY_SIDE = {"provisioning/registrar.py", "provisioning/registry.py", "provisioning/dynsec.py"}


def station_files() -> list[str]:
    return sorted(
        str(p.relative_to(ROOT))
        for pkg in STATION_PACKAGES
        for p in (ROOT / pkg).rglob("*.py")
        if str(p.relative_to(ROOT)) not in COUNTY_SIDE
    )


def test_no_station_module_names_centre_in_an_import() -> None:
    offenders = []
    for rel in station_files():
        tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"), rel)
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{rel}:{node.lineno} imports {n}" for n in names if n.split(".")[0] == "centre"]
    assert not offenders, offenders


def test_importing_every_station_module_loads_no_county_module() -> None:
    modules = [rel[:-3].replace("/", ".").removesuffix(".__init__") for rel in station_files()]
    # firmware/ is MicroPython code, some of it importing board modules CPython lacks.
    modules = [m for m in modules if not m.startswith("firmware")]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "print(sorted(n for n in sys.modules if n == 'centre' or n.startswith('centre.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout


def test_the_yimen_command_still_offers_the_county_subcommands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edge.cli", "centre", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "yimen centre" in out.stdout and "--config" in out.stdout
