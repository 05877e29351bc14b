"""The installer's config and the station's own `local.toml` laid over it: what wins, what is
refused, and which file set which value (what `yimen status` and `doctor` show)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge import config as config_mod
from edge import configlayers, status
from edge.configfile import ConfigError
from tests.conftest import station_config


def test_the_station_file_overrides_key_by_key_and_says_so(tmp_path: Path) -> None:
    base = station_config(tmp_path, 1883)
    local = tmp_path / "state" / "local.toml"
    local.parent.mkdir()
    local.write_text("[broker]\nport = 8883\n\n[telemetry]\ninterval_s = 60\n")
    cfg = config_mod.load(base)
    assert cfg.broker.port == 8883 and cfg.broker.host == "127.0.0.1", "tables merge: host stays the installer's"
    assert cfg.telemetry.interval_s == 60
    assert cfg.layers is not None
    assert cfg.layers.origin["broker.port"] == local and cfg.layers.origin["broker.host"] == base
    shown = status.render(status.read(cfg))
    assert f"config {local} (the station's own): broker.port, telemetry.interval_s" in shown, shown
    assert f"config {base} (the installer's): station.id" in shown


def test_the_station_file_may_not_move_storage_and_is_checked_like_the_installers(tmp_path: Path) -> None:
    base = station_config(tmp_path, 1883)
    local = tmp_path / "state" / "local.toml"
    local.parent.mkdir()
    local.write_text('[storage]\npath = "/elsewhere"\n')
    with pytest.raises(ConfigError, match=r"local.toml: \[storage\] path: set only in .*station.toml"):
        config_mod.load(base)
    local.write_text("[broker]\nprot = 1\n")
    with pytest.raises(ConfigError, match=r"\[broker\] prot: unknown key"):
        config_mod.load(base)
    local.write_text("[broker\n")
    with pytest.raises(ConfigError, match=r"local\.toml: not valid TOML"):
        config_mod.load(base)


def test_a_whole_table_array_is_replaced_not_merged(tmp_path: Path) -> None:
    base = tmp_path / "a.toml"
    base.write_text('[storage]\npath = "s"\n\n[[windows]]\nnumber = 1\n\n[[windows]]\nnumber = 2\n')
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "local.toml").write_text("[[windows]]\nnumber = 3\n")
    layers = configlayers.read(base)
    assert layers.doc["windows"] == [{"number": 3}]
    assert layers.local == tmp_path / "s" / "local.toml", "relative to the installer's file"
