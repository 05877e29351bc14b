"""`yimen doctor` on window units and the printer: device paths present and openable by the
service user, enough `auto` units plugged in, and the printer's own answer about paper and cover.
Devices are pseudo-terminals; the printer is the fake ESC/POS printer, which answers DLE EOT."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqtt.broker import Mosquitto
from tests.conftest import GatewayProcess, station_config, wait_until
from tests.deploy.test_doctor import doctor_lines, line_of
from tests.peripherals.printer.fake_printer import FakePrinter


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[str]:
    """A serial port, as far as the doctor can tell: a pty slave behind a by-id style link."""
    master, slave = os.openpty()
    link = tmp_path / "usb-Raspberry_Pi_Pico_E6614103E7-if00"
    link.symlink_to(os.ttyname(slave))
    yield str(link)
    os.close(master)
    os.close(slave)


@pytest.fixture
def fake() -> Iterator[FakePrinter]:
    printer = FakePrinter().start()
    yield printer
    printer.stop()


def printer_config(tmp_path: Path, port: int, device: str) -> Path:
    return station_config(tmp_path, port, extra=f'[printer]\nport = "{device}"\ntimeout_s = 0.3\n')


def test_named_units_keypads_and_auto_units_each_get_a_line(tmp_path: Path, broker: Mosquitto, pty: str) -> None:
    absent = tmp_path / "usb-Raspberry_Pi_Pico_0000aaaa-if00"
    extra = f"""
[window_unit]
ports = ["{tmp_path}/usb-*"]

[[windows]]
number = 1
unit = "{pty}"

[[windows]]
number = 2
unit = "{absent}"
keypad = "{tmp_path}/no-such-keypad"

[[windows]]
number = 3
unit = "auto"
uid = "bbbb0002"

[[windows]]
number = 4
unit = "auto"
uid = "cccc0003"
"""
    code, lines = doctor_lines(station_config(tmp_path, broker.port, extra=extra))
    assert code == 1
    good = line_of(lines, "window 1 unit")
    assert good.startswith("OK ") and f"{pty} present" in good
    missing = line_of(lines, "window 2 unit")
    assert missing.startswith("PROBLEM") and f"{absent} does not exist" in missing, missing
    assert "[[windows]] number = 2" in missing and "plug the window unit in" in missing
    keypad = line_of(lines, "window 2 keypad")
    assert keypad.startswith("PROBLEM") and "no-such-keypad does not exist" in keypad and "/dev/input/by-id" in keypad
    auto = line_of(lines, 'window units (unit = "auto")')
    # The glob also matches window 1's link: one device, found once, short of the two auto windows.
    assert auto.startswith("PROBLEM") and f"1 unit plugged in ({pty})" in auto, auto
    assert "bbbb0002 for window 3, cccc0003 for window 4" in auto


def test_a_port_the_service_user_cannot_open_names_the_udev_rule(tmp_path: Path, broker: Mosquitto, pty: str) -> None:
    extra = f'[[windows]]\nnumber = 1\nunit = "{pty}"\n'
    _code, lines = doctor_lines(station_config(tmp_path, broker.port, extra=extra), user="nobody")
    line = line_of(lines, "window 1 unit")
    # A pty belongs to its owner and group tty: the rule that would give it to dialout is missing.
    assert line.startswith("PROBLEM") and f"user nobody may not read and write {pty}" in line, line
    assert "group dialout" in line and "70-yimen.rules" in line and "udevadm" in line


def test_a_ready_printer_is_ok(tmp_path: Path, broker: Mosquitto, fake: FakePrinter) -> None:
    code, lines = doctor_lines(printer_config(tmp_path, broker.port, fake.path))
    assert code == 0, lines
    assert line_of(lines, "printer") == f"OK       printer: {fake.path} answers and is ready to print"
    assert fake.queries[:1] == [1], "the doctor asked the printer itself (DLE EOT 1 first)"


@pytest.mark.parametrize(
    ("state", "words"),
    [({"paper": "out"}, "out of paper"), ({"cover_open": True}, "cover is open"), ({"mute": True}, "does not answer")],
)
def test_a_printer_that_cannot_print_says_why_in_installer_words(
    tmp_path: Path, broker: Mosquitto, fake: FakePrinter, state: dict, words: str
) -> None:
    fake.set(**state)
    code, lines = doctor_lines(printer_config(tmp_path, broker.port, fake.path))
    assert code == 1
    line = line_of(lines, "printer")
    assert line.startswith("PROBLEM") and words in line and fake.path in line, line


def test_the_printer_is_left_to_a_running_gateway(tmp_path: Path, broker: Mosquitto, fake: FakePrinter, gateways):
    config = printer_config(tmp_path, broker.port, fake.path)
    gw = GatewayProcess(config).start()
    gateways.append(gw)
    wait_until(lambda: gw.status()["gateway"].startswith("running"), 15, "the gateway to run")
    fake.set(paper="out")
    _code, lines = doctor_lines(config)
    line = line_of(lines, "printer")
    assert line.startswith("OK ") and "paper and cover not checked: the gateway, running (pid" in line, line
    assert gw.stop() == 0
