"""Secrets never leave the station in config output, however TOML spells their key.

Each case is a config the gateway itself accepts (loaded by `edge.config.load`), with the
broker password spelled as TOML allows; what `config-get` sends must not contain it."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from edge import config as config_mod
from edge.configfile import ConfigError
from tests.conftest import COUNTY, STATION

SECRET = "Hunter2-s3cret-Value"

_REST = f"""
[storage]
path = "{{storage}}"
max_mb = 64

[station]
id = "{STATION}"
county = "{COUNTY}"
"""

# The [broker] part of a config, each spelling the password differently.
SPELLINGS = {
    "plain": f'[broker]\nusername = "u"\npassword = "{SECRET}"\n',
    "double-quoted key": f'[broker]\nusername = "u"\n"password" = "{SECRET}"\n',
    "single-quoted key": f"[broker]\nusername = 'u'\n'password' = '{SECRET}'\n",
    "escaped key": f'[broker]\nusername = "u"\n"pass\\u0077ord" = "{SECRET}"\n',
    "quoted table": f'[ "broker" ]\nusername = "u"\npassword = "{SECRET}"\n',
    "dotted key": f'broker.username = "u"\nbroker.password = "{SECRET}"\n',
    "quoted dotted key": f'"broker"."password" = "{SECRET}"\nbroker.username = "u"\n',
    "inline table": f'broker = {{ username = "u", password = "{SECRET}" }}\n',
    "multi-line string": f'[broker]\nusername = "u"\npassword = """\n{SECRET}"""\n',
    "literal multi-line": f"[broker]\nusername = 'u'\npassword = '''\n{SECRET}'''\n",
    "old one in a comment": f'[broker]\nusername = "u"\n# password = "{SECRET}"\npassword = "new"\n',
    "trailing comment": f'[broker]\nusername = "u" # was {SECRET}\npassword = "new"\n',
}


def _config(tmp_path: Path, broker: str, extra: str = "") -> config_mod.Config:
    path = tmp_path / "station.toml"
    path.write_text(broker + _REST.format(storage=tmp_path / "state") + extra, encoding="utf-8")
    return config_mod.load(path)


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_config_output_never_holds_the_password(tmp_path: Path, spelling: str) -> None:
    cfg = _config(tmp_path, SPELLINGS[spelling])
    assert cfg.broker.password in (SECRET, f"{SECRET}", "new"), "the gateway itself reads this spelling"
    text = config_mod.redacted_text(cfg)
    assert SECRET not in text and SECRET not in repr(cfg), "nor in a logged or traced config object"
    doc = tomllib.loads(text)  # still TOML, and still says which keys there are
    assert doc["broker"]["password"] == "<redacted>" and doc["broker"]["username"] == "u"
    assert doc["station"]["id"] == STATION


def test_credentials_in_a_url_are_blanked(tmp_path: Path) -> None:
    media = f'\n[media]\nlive_push_url = "rtmp://cam:{SECRET}@county.example/live/x"\n'
    text = config_mod.redacted_text(_config(tmp_path, '[broker]\nhost = "127.0.0.1"\n', media))
    assert SECRET not in text
    assert tomllib.loads(text)["media"]["live_push_url"] == "rtmp://cam:<redacted>@county.example/live/x"


@pytest.mark.parametrize("value", ["12345678", "[12345678]", "{ a = 12345678 }", "true"])
def test_a_config_error_does_not_echo_a_password(tmp_path: Path, value: str) -> None:
    """`yimen run`, `doctor` and the journal print config errors: a mistyped password stays out."""
    with pytest.raises(ConfigError) as refused:
        _config(tmp_path, f'[broker]\nusername = "u"\n"password" = {value}\n')
    message = str(refused.value)
    assert "password" in message and "12345678" not in message and "true" not in message.lower().split(":", 1)[1]
