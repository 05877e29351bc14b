"""Link protocol version 2 between the firmware and the gateway driver, over ptys: a keypad unit
announcing more keys than a HELLO holds, codes and cards, refused keys shown on the unit, the
time-limit light and the display, and a version 1 unit that keeps working beside them."""

from __future__ import annotations

import logging
import os
import time

from firmware import link
from peripherals.keyevents import key_event
from peripherals.window_unit import WindowConfig
from tests.peripherals.window_unit.rig import fw_link, wait_until

KEYPAD = dict(layout="keypad", transfer="transfer:B")


def test_a_keypad_unit_announces_every_key_across_frames(make_line, make_unit, make_gateway, recorder) -> None:
    line = make_line()
    # A 16-byte chip id (SAMD51 boards under CircuitPython): HELLO and a KEYS frame.
    unit = make_unit(line, uid="5a1b2c3d4e5f60718293a4b5c6d7e8f9", **KEYPAD)
    assert len(unit.app.unit.announce) > 1, "a keypad's keys do not fit in one HELLO"
    gateway = make_gateway(WindowConfig(1, line.path))
    wait_until(lambda: gateway.status()["units"][0]["keys"] == unit.keys, "every key announced")
    status = gateway.status()["units"][0]
    assert status["proto"] == 2 and len(status["keys"]) == 21
    for digit in "1234":
        unit.press(digit)
    unit.press("enter")
    unit.press("start")
    wait_until(lambda: len(recorder.events("key")) == 2, "the code and the start key")
    code, start = recorder.events("key")
    assert (code["key"], code["code"], start["key"]) == ("code", "****", "start"), "a code is never published"


def test_a_key_the_station_refuses_lights_the_units_error_led(
    make_line, make_unit, make_gateway, recorder, caplog
) -> None:
    line = make_line()
    unit = make_unit(line, reasons=("slow", "zap"), layout="5")
    refused: list[str] = []

    def on_key(press) -> str:
        recorder(key_event(press))
        if press.key == "slow":
            refused.append(press.key)
            return "error"  # the station had no bad rating waiting for a reason
        return "thanks"

    caplog.set_level(logging.WARNING)
    known = lambda key: link.is_builtin(key) or key == "slow"  # noqa: E731 (the station's reason keys)
    gateway = make_gateway(WindowConfig(1, line.path), on_key=on_key, known_key=known)
    wait_until(lambda: recorder.events("unit"), "the unit online")
    wait_until(lambda: any(": zap (" in r.message for r in caplog.records), "the installer told of the unknown key")
    unit.press("slow")
    wait_until(lambda: unit.app.unit.led_state(fw_link.ticks_ms()) == "error", "the unit to show the refusal")
    assert unit.led("red") and refused == ["slow"]
    assert gateway.status()["units"][0]["refused_keys"] == 1
    assert unit.unacked == 0, "a refused key is acknowledged: sending it again cannot help"


def test_a_malformed_key_is_refused_at_the_gateway_logged_and_counted(
    make_line, make_unit, make_gateway, recorder, caplog
) -> None:
    line = make_line()
    unit = make_unit(line)
    gateway = make_gateway(WindowConfig(4, line.path))
    wait_until(lambda: recorder.events("unit"), "the unit online")
    caplog.set_level(logging.WARNING)
    unit.app.unit.queue.add("Zap!", 5)  # what a corrupted settings.py could make a unit send
    wait_until(lambda: gateway.status()["units"][0]["refused_keys"] == 1, "the refusal counted")
    assert any("window 4" in r.message and "'Zap!'" in r.message and "refused" in r.message for r in caplog.records)
    wait_until(lambda: unit.app.unit.led_state(fw_link.ticks_ms()) == "error", "the unit to show the refusal")
    unit.press("good")
    wait_until(lambda: recorder.keys() == [("good", 2)], "the queue goes on")


def test_time_limit_light_and_display_reach_the_unit(make_line, make_unit, make_gateway, recorder) -> None:
    line = make_line()
    unit = make_unit(line)
    gateway = make_gateway(WindowConfig(1, line.path))
    gateway.show(1, {"name": "张丽", "no": "c01", "ticket": "A001"})  # before it is online: sent at HELLO
    wait_until(lambda: recorder.events("unit"), "the unit online")
    wait_until(lambda: unit.app.unit.shown.get("ticket") == "A001", "the display fields")
    assert unit.app.unit.screen(fw_link.ticks_ms())[:2] == ("张丽 c01", "A001")
    gateway.show(1, {"name": "欧阳" * 20, "no": "c01", "ticket": "A001"})  # a name too long for the display
    wait_until(lambda: unit.app.unit.shown.get("name") == "欧阳" * 8, "the name, cut to what fits")
    gateway.set_limit(1, "warn")
    wait_until(lambda: unit.led("yellow"), "the yellow light")
    gateway.set_limit(1, "over")
    wait_until(lambda: not unit.led("yellow") and unit.app.unit.limit == "over", "the overrun")
    seen_red = set()
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline and len(seen_red) < 2:
        seen_red.add(unit.led("red"))
        time.sleep(0.05)
    assert seen_red == {True, False}, "an overrun blinks the red LED"


class ScriptedUnit:
    """A unit scripted frame by frame: a version 1 unit as deployed before this protocol grew
    (HELLO with every key, no KEYS), or a hostile one. It acknowledges what the gateway sends and
    keeps the SET payloads."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self.decoder = link.Decoder()
        self.link = link.Link(7)
        self.sets: list[dict] = []

    def send(self, ftype: int, payload: dict) -> bytes:
        return self.link.send(ftype, link.dumps(payload), 0)

    def pump(self) -> set[int]:
        """Read what the gateway sent, answer PING and SET with ACK; the seqs it acknowledged."""
        acked = set()
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return acked
        for ftype, seq, payload in self.decoder.feed(data):
            if ftype == link.ACK:
                acked.add(seq)
            else:
                os.write(self.fd, link.ack(seq))
                if ftype == link.SET:
                    self.sets.append(payload)
        return acked

    def exchange(self, ftype: int, payload: dict) -> None:
        """Send a frame and its retransmissions, as a unit does, until the gateway acknowledges it
        (the gateway may not have opened the port yet, and opening it drops what was waiting)."""
        frame = self.send(ftype, payload)
        acked: set[int] = set()
        deadline = time.monotonic() + 15
        while self.link.seq not in acked:
            assert time.monotonic() < deadline, f"no ACK of {link.NAMES[ftype]}"
            os.write(self.fd, frame)
            resend_at = time.monotonic() + link.RETRY_MS / 1000
            while time.monotonic() < resend_at and self.link.seq not in acked:
                acked |= self.pump()
                time.sleep(0.01)


def test_a_version_1_unit_keeps_working(make_line, make_gateway, recorder) -> None:
    line = make_line()
    old = ScriptedUnit(line.unit_fd)
    gateway = make_gateway(WindowConfig(2, line.path))
    hello = {"proto": 1, "uid": "0ld0001", "fw": "1.0.0", "model": "raspberry_pi_pico", "keys": ["good", "bad"]}
    old.exchange(link.HELLO, hello)
    old.exchange(link.KEY, {"key": "good", "n": 1, "ms": 10})
    assert recorder.keys() == [("good", 1)]
    gateway.set_limit(2, "over")
    gateway.show(2, {"ticket": "A001"})
    gateway.set_led(2, "ready")
    wait_until(lambda: old.pump() is not None and {"led": "ready"} in old.sets, "the LED set")
    old.exchange(link.KEY, {"key": "Zap!", "n": 2, "ms": 20})  # refused: shown as the error state a while
    wait_until(lambda: old.pump() is not None and old.sets[-2:] == [{"led": "error"}, {"led": "ready"}], "a flash")
    assert all(set(s) == {"led"} for s in old.sets), f"only `led` goes to a version 1 unit: {old.sets}"
    assert gateway.status()["units"][0]["proto"] == 1


HELLO2 = {"proto": 2, "uid": "bad0001", "fw": "2.0.0", "model": "x", "nkeys": 3, "keys": ["good"]}


def test_hostile_frames_are_refused_and_the_unit_goes_on(make_line, make_gateway, recorder) -> None:
    line = make_line()
    unit = ScriptedUnit(line.unit_fd)
    gateway = make_gateway(WindowConfig(5, line.path))
    status = lambda: gateway.status()["units"][0]  # noqa: E731
    unit.exchange(link.HELLO, {**HELLO2, "nkeys": 1000})  # more keys than any unit may have
    unit.exchange(link.HELLO, {**HELLO2, "keys": ["Good"]})  # not a key name
    assert status()["bad_frames"] == 2 and status()["state"] != "online"
    unit.exchange(link.HELLO, HELLO2)
    assert status()["state"] == "online"
    unit.exchange(link.KEYS, {"at": 5, "keys": ["bad"]})  # does not continue the list
    unit.exchange(link.KEYS, {"at": 1, "keys": ["bad", "next", "skip"]})  # past nkeys
    assert status()["bad_frames"] == 4 and status()["keys"] == ["good"]
    unit.exchange(link.KEYS, {"at": 1, "keys": ["bad", "next"]})
    assert status()["keys"] == ["good", "bad", "next"]
    for n, press in enumerate(
        [{"key": "code", "code": "12ab"}, {"key": "card", "card": "1" * 17}, {"key": "code"}, {"key": "a b"}], 1
    ):
        unit.exchange(link.KEY, {**press, "n": n, "ms": n})
    assert status()["refused_keys"] == 4
    wait_until(lambda: unit.pump() is not None and {"flash": "error"} in unit.sets, "the refusal shown")
    unit.exchange(link.KEY, {"key": "code", "code": "2222", "n": 5, "ms": 5})
    assert [(k["key"], k.get("code")) for k in recorder.events("key")] == [("code", "****")]


def test_a_units_counters_are_bounded_to_the_wire(make_line, make_gateway, recorder) -> None:
    """A press's number and uptime wrap at 2**29 on the wire: a unit sending a negative or
    huge one (which would travel in the `key` event to the county) is refused, not widened."""
    line = make_line()
    unit = ScriptedUnit(line.unit_fd)
    gateway = make_gateway(WindowConfig(5, line.path))
    status = lambda: gateway.status()["units"][0]  # noqa: E731
    unit.exchange(link.HELLO, {**HELLO2, "nkeys": 1})
    for n, ms in [(10**60, 1), (-1, 1), (1, link.WIRE_PERIOD), (True, 1)]:
        unit.exchange(link.KEY, {"key": "good", "n": n, "ms": ms})
    unit.exchange(link.PONG, {"up_ms": 5, "n": 0, "dropped": -7})
    assert status()["bad_frames"] == 5 and recorder.keys() == []
    unit.exchange(link.KEY, {"key": "good", "n": 1, "ms": 2})
    assert recorder.keys() == [("good", 1)]
