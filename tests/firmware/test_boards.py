"""The three unit layouts fit the Pico: every key on a pin of its own, apart from LEDs and display."""

import boards
import pytest

LAYOUTS = {
    "2-key rating pad": dict(layout="2", clerk=False, ticket="ticket:A", green="green:A"),
    "5-key pad with reasons": dict(
        layout="5", clerk=True, ticket="ticket", reasons=("slow", "attitude", "come-back", "unclear")
    ),
    "clerk keypad": dict(layout="keypad", clerk=True, ticket="", transfer="transfer:B"),
}


@pytest.mark.parametrize("name", LAYOUTS)
def test_each_layout_has_one_pin_per_key(name: str) -> None:
    settings = LAYOUTS[name]
    keys = boards.keys_for(
        settings["layout"],
        settings["clerk"],
        settings["ticket"],
        settings.get("reasons", ()),
        settings.get("transfer", ""),
        settings.get("green", ""),
    )
    pico = boards.BOARDS["raspberry_pi_pico"]
    boards.check_pins(pico, keys, settings.get("reasons", ()), card_reader=settings["layout"] == "2")
    pins = {boards.pin_for(pico, key, settings.get("reasons", ())) for key in keys}
    assert not pins & {pico["led_green"], pico["led_red"], pico["led_yellow"], pico["i2c_sda"], pico["i2c_scl"]}


def test_layouts_that_cannot_be_wired_are_refused() -> None:
    with pytest.raises(ValueError, match="ticket"):
        boards.keys_for("keypad", True, "ticket:A")
    with pytest.raises(ValueError, match="5-key"):
        boards.keys_for("2", False, "", ("slow",))
    with pytest.raises(ValueError, match="has no pin"):
        boards.pin_for(boards.BOARDS["raspberry_pi"], "enter")
    reasons = ("slow", "attitude", "come-back")
    with pytest.raises(ValueError, match="the card reader and come-back are both on GP9"):
        boards.check_pins(boards.BOARDS["raspberry_pi_pico"], boards.keys_for("5", False, "", reasons), reasons, True)
