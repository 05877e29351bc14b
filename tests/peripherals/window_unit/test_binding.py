"""The config edit behind `bind-unit`: the right table changes, everything else stays as written."""

from __future__ import annotations

import re
import tomllib

import pytest

from peripherals.window_unit.binding import BindError, bind

CATEGORIES = """
[[categories]]
code = "A"   # social security
windows = [1, 2]
"""


def test_a_window_without_a_table_gets_one_and_the_file_keeps_its_comments() -> None:
    text, replaced = bind("# station 7\n[station]\nid = 'st-7'\n" + CATEGORIES, "abcd0002", 2)
    assert replaced is None
    assert text.startswith("# station 7\n") and 'code = "A"   # social security' in text
    assert tomllib.loads(text)["windows"] == [{"number": 2, "unit": "auto", "uid": "abcd0002"}]


def test_an_auto_window_gets_the_new_unit_and_says_which_it_replaced() -> None:
    before = '[[windows]]\nnumber = 1\nunit = "auto"\nuid = "aaaa0001"  # the old one\ngpio = { good = 5 }\n'
    text, replaced = bind(before + CATEGORIES, "cccc0003", 1)
    assert replaced == "aaaa0001"
    assert tomllib.loads(text)["windows"] == [{"number": 1, "unit": "auto", "uid": "cccc0003", "gpio": {"good": 5}}]


@pytest.mark.parametrize(
    ("text", "uid", "window", "message"),
    [
        ('[[windows]]\nnumber = 2\nunit = "/dev/ttyACM0"\n', "abcd0002", 2, "fixed device path '/dev/ttyACM0'"),
        ('[[windows]]\nnumber = 1\nunit = "auto"\nuid = "abcd0002"\n', "abcd0002", 2, "already window 1's"),
        ('[[windows]]\nnumber = 2\nunit = "auto"\nuid = "abcd0002"\n', "abcd0002", 2, "nothing to change"),
        (CATEGORIES, "abcd0002", 5, "window 5 is not one of this station's windows (1, 2)"),
        (CATEGORIES, "ABCD", 1, "is not a unit's uid"),
        ("[[windows]\n", "abcd0002", 1, "not valid TOML"),
    ],
)
def test_bindings_that_cannot_be_made_say_why(text: str, uid: str, window: int, message: str) -> None:
    with pytest.raises(BindError, match=re.escape(message)):
        bind(text, uid, window)
