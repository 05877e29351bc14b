"""The station's config sections: defaults, cross-checks, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge import config
from edge.app import Gateway
from edge.configfile import ConfigError
from tests.edge.station.station_support import CONFIG

SPINE = """
[station]
id = "hy-0001"
county = "hengyang"
name = "青山村便民服务站"
[broker]
host = "127.0.0.1"
[storage]
path = "state"
[clock]
sync = "assume"
[printer]
port = "/dev/ttyUSB0"
"""


def load(tmp_path: Path, text: str, spine: str = SPINE) -> config.Config:
    path = tmp_path / "station.toml"
    path.write_text(spine + text, encoding="utf-8")
    return config.load(path)


def test_the_station_sections_load(tmp_path: Path) -> None:
    cfg = load(tmp_path, CONFIG)
    service = cfg.service
    assert service is not None and service.queue and service.recall_max == 3
    assert [w.number for w in service.windows] == [1, 2, 3] and service.window(2).reason_keys  # type: ignore[union-attr]
    assert [c.code for c in service.categories_of(2)] == ["A", "B"]
    assert service.category("B").item_name == "最低生活保障申请"  # type: ignore[union-attr]
    assert service.ratings.reason_name("come-back") == "让我多次跑"
    assert not service.announce.voice and not service.announce.display
    assert cfg.printer.present and cfg.printer.port == "/dev/ttyUSB0"


def test_no_station_sections_means_no_station(tmp_path: Path) -> None:
    assert load(tmp_path, "").service is None


def test_windows_named_only_by_a_category_get_defaults(tmp_path: Path) -> None:
    text = '[[categories]]\ncode = "A"\nname = "社保"\nitem = "x"\nwindows = [4]\n'
    service = load(tmp_path, text).service
    assert service is not None and [w.number for w in service.windows] == [4]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("number = 1", "number = 1\nunti = 3"), r"\[windows #1\] unti: unknown key"),
        (("number = 3", "number = 2"), r"\[windows #3\] number: window 2 is already given in \[windows #2\]"),
        (('cards = ["0001000002"]', 'cards = ["0001000001"]'), r"\[clerks #2\] cards: card '0001000001' is already"),
        (
            ('code = "2222"', 'code = "1111"'),
            r"\[clerks #2\] code: keypad code '1111' is already given in \[clerks #1\]",
        ),
        (('hours = ["08:30-17:30"]', 'hours = ["17:30-08:30"]'), r"\[categories #2\] hours: '17:30-08:30' ends before"),
        (('hours = ["08:30-17:30"]', 'hours = ["8:30-17:30"]'), r"\[categories #2\] hours: '8:30-17:30' is not a span"),
        (("windows = [2, 3]", "windows = []"), r"\[categories #2\] windows: \[\]: give the numbers"),
        (('code = "B"', 'code = "b"'), r"\[categories #2\] code: 'b' does not match"),
        (("thanks_s = 3", 'thanks_s = 3\n[[ratings.reasons]]\nkey = "next"\nname = "x"'), r"'next' is already a key"),
        (("recall_max = 3", "recall_max = 3\nvoice = true"), r"\[queue\] voice: unknown key"),
    ],
)
def test_bad_station_config_names_key_and_problem(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    assert change[0] in CONFIG
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, CONFIG.replace(*change, 1))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[queue]\nenabled = true\n", r"\[queue\] enabled: the queue needs at least one \[\[categories\]\]"),
        ("[ratings]\nwindow_s = 60\n", r"the station has no windows"),
        ('[announce]\ntemplate = "{ticket}"\n[[windows]]\nnumber = 1\n', r"\[announce\] template: '\{ticket\}'"),
    ],
)
def test_inconsistent_station_config(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, text)


def test_the_gateway_wires_the_station_into_telemetry(tmp_path: Path) -> None:
    cfg = load(tmp_path, CONFIG, spine=SPINE.replace('port = "/dev/ttyUSB0"', "enabled = false"))
    gateway = Gateway(cfg)
    try:
        assert gateway.station is not None and gateway.printer.status()["state"] == "disabled"
        queue = gateway.health.telemetry([]).data["queue"]
        assert queue["waiting"] == {"A": 0, "B": 0} and queue["open"] == [1, 2, 3] and queue["paused"] == []
    finally:
        gateway.station.stop()  # type: ignore[union-attr]
        gateway.outbox.close()
