"""The README's config examples are real configs: they parse with the gateway's own parser."""

from __future__ import annotations

import re
import tomllib

from edge.config import parse
from tests.conftest import ROOT


def test_readme_station_config_examples_parse() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    station = next(b for b in blocks if "[station]" in b)
    parts = next(b for b in blocks if "[[categories]]" in b and "[[windows]]" in b)
    cfg = parse(tomllib.loads(station + parts), "README.md")
    assert cfg.station.id == "hy-0001" and cfg.storage.max_mb == 512
    assert [w.number for w in cfg.windows.windows] == [1] and cfg.printer.port is not None
    assert cfg.service is not None and cfg.service.categories[0].code == "A" and len(cfg.cameras) == 1
