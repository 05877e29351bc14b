"""`yimen doctor` on what each configured feature needs from the machine (edge/features.py):
its Python modules import for real, its programs are installed; a missing one is a PROBLEM that
says which feature wants it and how to install it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mqtt.broker import Mosquitto
from tests.conftest import station_config
from tests.deploy.test_doctor import doctor_lines
from tests.edge.station.station_support import CONFIG


def test_each_configured_feature_has_its_libraries_checked(
    tmp_path: Path, broker: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "board", None)  # Blinka not installed, whatever this process imported
    service = CONFIG.replace("[[windows]]\nnumber = 1\n", "[[windows]]\nnumber = 1\ngpio = { good = 17 }\n")
    service = service.replace("[[windows]]\nnumber = 3\n", f'[[windows]]\nnumber = 3\nkeypad = "{tmp_path}/kbd"\n')
    service += '\n[announce]\nvoice = true\ncommand = ["no-such-speaker", "-v", "cmn"]\n'
    _code, lines = doctor_lines(station_config(tmp_path, broker.port, extra=service))
    found = {line.split("needs ", 1)[1].split(" ")[0].rstrip(":.)"): line for line in lines if " libraries: " in line}
    assert set(found) == {"gpiod", "board", "digitalio", "evdev", "no-such-speaker"}, lines
    assert found["evdev"].startswith("OK ") and "[[windows]] keypad / card_reader" in found["evdev"]
    speaker = found["no-such-speaker"]
    assert speaker.startswith("PROBLEM") and "no-such-speaker is not installed" in speaker, speaker
    assert "[announce] voice" in speaker and "apt-get install no-such-speaker" in speaker
    board = found["board"]
    assert board.startswith("PROBLEM") and "does not import" in board and "yimen[pi]" in board, board


def test_a_station_without_such_features_gets_no_library_lines(tmp_path: Path, broker: Mosquitto) -> None:
    _code, lines = doctor_lines(station_config(tmp_path, broker.port))
    assert not [line for line in lines if " libraries: " in line]
