"""Window-unit firmware update, with the real firmware under the real MicroPython unix port on a
pty: the gateway's driver sends its firmware over the link; the unit checks, switches at a reboot
made only with no press waiting, and puts its previous files back when the new firmware does not
start (at once if it raises, at its next power-up if it hangs)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from firmware import boards
from peripherals.window_unit import WindowConfig, WindowsConfig
from peripherals.window_unit.driver import WindowUnits
from peripherals.window_unit.fwupdate import FILES, Bundle, Updates
from tests.firmware import FIRMWARE
from tests.peripherals.window_unit.conftest import FAST
from tests.peripherals.window_unit.rig import Line, Recorder, wait_until

MP_BOARD = Path(__file__).resolve().parents[2] / "firmware" / "mp_board"
UID = "e6614103e7"
PINS = boards.BOARDS["raspberry_pi_pico"]


def firmware_dir(dest: Path, version: str, app_prefix: str = "") -> Path:
    """The firmware as a bundle at `version`; `app_prefix` is put at the top of app.py (sabotage)."""
    dest.mkdir(parents=True)
    for name in [*FILES, "settings.py"]:
        shutil.copy(FIRMWARE / name, dest / name)
    (dest / "version.py").write_text(f'FW = "{version}"\n')
    if app_prefix:
        (dest / "app.py").write_text(app_prefix + (dest / "app.py").read_text())
    return dest


class MicroPythonUnit:
    """A unit's flash (a directory) run by the MicroPython unix port on the line's unit side; its
    power supply starts it again whenever it exits (a reset) until stopped."""

    def __init__(self, flash: Path, fd: int) -> None:
        self.flash, self.fd = flash, fd
        for fake in MP_BOARD.glob("*.py"):
            shutil.copy(fake, flash / fake.name)
        (flash / "uid.txt").write_text(UID)
        (flash / "pins").mkdir()
        self.boots = 0
        self.log = open(flash.parent / "unit.log", "ab")  # noqa: SIM115 - the unit's stderr, for a failure's story
        self.proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._power, daemon=True)
        self._thread.start()

    def _power(self) -> None:
        while not self._stop.is_set():
            self.boots += 1
            self.proc = subprocess.Popen([sys.executable, "-m", "micropython_unix", "main.py"], cwd=self.flash,
                                         stdin=self.fd, stdout=self.fd, stderr=self.log)  # fmt: skip
            while self.proc.poll() is None and not self._stop.is_set():
                time.sleep(0.05)
            time.sleep(0.2)

    def power_cycle(self) -> None:
        assert self.proc is not None
        self.proc.kill()

    def press(self, key: str, done: Callable[[], bool]) -> None:
        """Hold the key until `done()` (the press is recorded, say), as a person holds a key until
        the unit answers; whatever the machine's load, no press is too short to be seen."""
        pin = self.flash / "pins" / boards.pin_for(PINS, key)
        pin.touch()
        try:
            wait_until(done, f"{key} to be taken", timeout=30)
        finally:
            pin.unlink()
        time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        if self.proc is not None:
            self.proc.kill()
        self._thread.join(5)
        self.log.close()


Gateway = Callable[..., WindowUnits]


@pytest.fixture
def rig(tmp_path: Path, recorder: Recorder) -> Iterator[tuple[MicroPythonUnit, Gateway]]:
    line = Line(tmp_path, "unit")
    unit = MicroPythonUnit(firmware_dir(tmp_path / "flash", "1.0.9"), line.unit_fd)
    gateways: list[WindowUnits] = []

    def gateway(bundle: Bundle, return_s: float = 60) -> WindowUnits:
        gw = WindowUnits(WindowsConfig((WindowConfig(number=1, unit=line.path),), FAST), recorder,
                         firmware=Updates(bundle, return_s))  # fmt: skip
        gw.start()
        gateways.append(gw)
        return gw

    yield unit, gateway
    for gw in gateways:
        gw.stop()
    unit.stop()
    line.close()


def firmware_events(recorder: Recorder) -> list[dict]:
    return [e for e in recorder.events("unit") if e["state"] == "firmware"]


def fw_online(gw: WindowUnits) -> str | None:
    units = gw.status()["units"]
    return units[0]["fw"] if units and units[0]["state"] == "online" else None


def test_a_unit_is_updated_without_losing_a_press(
    tmp_path: Path, rig: tuple[MicroPythonUnit, Gateway], recorder: Recorder
) -> None:
    unit, gateway = rig
    bundle = Bundle.from_directory(firmware_dir(tmp_path / "new", "1.1.0"))
    gw = gateway(bundle)
    pressed = 0
    # Press all through the transfer, until the unit commits; not the layout's first key ("good"):
    # held at power-up it starts the unit in maintenance mode (firmware/README.md).
    committed = unit.flash / "update.json"
    while not committed.exists() and pressed < 200:
        unit.press("next" if pressed % 2 else "bad", lambda n=pressed: len(recorder.keys()) > n or committed.exists())
        pressed += 1
    wait_until(lambda: firmware_events(recorder), "the update's outcome", timeout=60)
    assert firmware_events(recorder)[0]["result"] == "updated", firmware_events(recorder)
    assert fw_online(gw) == "1.1.0"
    for name, data in bundle.files:
        assert (unit.flash / name).read_bytes() == data, name
    # The unit keeps the new firmware once its session started (just after the HELLO the gateway saw).
    wait_until(lambda: not list(unit.flash.glob("*.bak")) and not committed.exists(), "the unit to keep it")
    assert (unit.flash / "settings.py").read_bytes() == (FIRMWARE / "settings.py").read_bytes()
    assert unit.boots == 2, "the unit rebooted once, into the new firmware"
    # The unit rebooted only once every press it had seen was acknowledged: all are recorded, in
    # order with no gap (but the last one, if the commit came while it was held down).
    assert pressed > 10, "the transfer was too quick to press during it"
    wait_until(lambda: len(recorder.keys()) >= pressed - 1, f"the {pressed} presses recorded", timeout=20)
    numbers = [n for _key, n in recorder.keys()]  # noqa: SIM118 - Recorder.keys() is the presses, not a dict's
    assert numbers == list(range(1, len(numbers) + 1)), numbers


def test_a_firmware_that_raises_at_start_is_put_back_at_once(
    tmp_path: Path, rig: tuple[MicroPythonUnit, Gateway], recorder: Recorder
) -> None:
    unit, gateway = rig
    broken = Bundle.from_directory(firmware_dir(tmp_path / "bad", "1.2.0", 'raise RuntimeError("broken")\n'))
    gw = gateway(broken)
    wait_until(lambda: firmware_events(recorder), "the update's outcome", timeout=60)
    event = firmware_events(recorder)[0]
    assert event["result"] == "rolled-back" and event["fw_to"] == "1.2.0", event
    assert fw_online(gw) == "1.0.9"
    assert "broken" not in (unit.flash / "app.py").read_text()
    time.sleep(2)
    assert len(firmware_events(recorder)) == 1, "a version that failed is not sent again"


def test_a_firmware_that_hangs_never_comes_back_and_is_put_back_at_power_up(
    tmp_path: Path, rig: tuple[MicroPythonUnit, Gateway], recorder: Recorder
) -> None:
    unit, gateway = rig
    hangs = Bundle.from_directory(firmware_dir(tmp_path / "hang", "1.3.0", "while True:\n    pass\n"))
    gw = gateway(hangs, return_s=5)
    wait_until(lambda: firmware_events(recorder), "the gateway to give up on the unit", timeout=60)
    assert firmware_events(recorder)[0]["result"] == "no-return"
    unit.power_cycle()  # someone unplugs it, or the board's watchdog fires
    wait_until(lambda: fw_online(gw) == "1.0.9", "the unit back on its previous firmware", timeout=30)
    assert not (unit.flash / "update.json").exists()
