"""Bad config files: one clear error naming the key and the problem, and no gateway."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge import config
from edge.configfile import ConfigError

GOOD = """
[station]
id = "hy-0001"
county = "hengyang"
name = "Xinqiao village service station"
[broker]
host = "127.0.0.1"
port = 1883
[storage]
path = "/var/lib/yimen"
max_mb = 512
"""


def load_text(tmp_path: Path, text: str) -> config.Config:
    path = tmp_path / "station.toml"
    path.write_text(text, encoding="utf-8")
    return config.load(path)


def test_the_documented_example_loads_with_defaults(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, GOOD)
    assert cfg.station.id == "hy-0001" and cfg.broker.port == 1883
    assert cfg.broker.protocol == "5" and cfg.broker.keepalive_s == 60
    assert cfg.storage.max_bytes == 512 * 1024 * 1024 and cfg.storage.retention_days == 7
    assert cfg.telemetry.interval_s == 60 and cfg.simulate is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('id = "hy-0001"', 'id = "HY 0001"'), r"\[station\] id: 'HY 0001' does not match"),
        (("port = 1883", "prot = 1883"), r"\[broker\] prot: unknown key"),
        (("port = 1883", 'port = "1883"'), r"\[broker\] port: expected an integer"),
        (("port = 1883", "port = 70000"), r"\[broker\] port: 70000 is above the maximum 65535"),
        (("max_mb = 512", "max_mb = true"), r"\[storage\] max_mb: expected an integer"),
        (('county = "hengyang"\n', ""), r"\[station\] county: missing"),
        (("[storage]", "[storage]\nretention_days = -1"), r"\[storage\] retention_days: -1.0 is below"),
        (("[broker]", "[brokr]"), r"\[brokr\]: unknown section"),
        (("port = 1883", 'port = 1883\nprotocol = "4"'), r"\[broker\] protocol: '4' is not one of 5, 3.1.1"),
        (("port = 1883", 'port = 1883\npassword = "x"'), r"\[broker\] password: given without username"),
        (("port = 1883", 'port = 1883\nca_file = "/nonexistent/ca.pem"\ntls = true'), r"ca_file: .* does not exist"),
        (('name = "Xinqiao', "name = Xinqiao"), r"not valid TOML"),
    ],
)
def test_bad_config_names_key_and_problem(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_text(tmp_path, GOOD.replace(*change, 1))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        config.load(tmp_path / "nope.toml")


def test_relative_storage_path_is_relative_to_the_config(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, GOOD.replace('"/var/lib/yimen"', '"state"'))
    assert cfg.storage.path == tmp_path / "state"


def test_gateway_refuses_to_start_on_a_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text(GOOD.replace("port = 1883", "prot = 1883"), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "[broker] prot: unknown key" in result.stderr
    assert result.stderr.count("\n") == 1, "one clear error, not a traceback"


def test_gateway_exits_nonzero_when_storage_is_unusable(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("not a directory")
    path = tmp_path / "station.toml"
    path.write_text(GOOD.replace('"/var/lib/yimen"', f'"{tmp_path}/blocker/state"'), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert "storage path" in result.stderr and "cannot create it" in result.stderr


def test_gateway_exits_nonzero_when_storage_is_not_writable(tmp_path: Path) -> None:
    """As an installer would meet it: the gateway's user cannot write the storage directory."""
    import os

    locked = tmp_path / "state"
    locked.mkdir()
    # Root writes through any mode bits, but not into an immutable directory.
    lock, unlock = (["chattr", "+i"], ["chattr", "-i"]) if os.geteuid() == 0 else (["chmod", "500"], ["chmod", "700"])
    if subprocess.run([*lock, str(locked)], capture_output=True).returncode != 0:
        pytest.skip(f"cannot make {locked} unwritable here ({' '.join(lock)} failed)")
    try:
        path = tmp_path / "station.toml"
        path.write_text(GOOD.replace('"/var/lib/yimen"', f'"{locked}"'), encoding="utf-8")
        result = subprocess.run(
            [sys.executable, "-m", "edge.cli", "run", "--config", str(path)], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 1, result.stderr
        assert f"storage path {locked}: not writable" in result.stderr
    finally:
        subprocess.run([*unlock, str(locked)], check=True)


@pytest.mark.parametrize(
    ("media", "message"),
    [
        ("upload_kbps = 0", r"\[media\] upload_kbps: 0.0 is below the minimum 1.0"),
        ("chunk_kb = 1024", r"\[media\] chunk_kb: 1024 is above the maximum 256"),
        ('live_push_url = "http://county/live"', r"\[media\] live_push_url: 'http://county/live' does not match"),
        ("upload_kpbs = 64", r"\[media\] upload_kpbs: unknown key"),
    ],
)
def test_bad_media_section_names_key_and_problem(tmp_path: Path, media: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_text(tmp_path, GOOD + "[media]\n" + media + "\n")


def test_media_defaults_fit_a_poor_link(tmp_path: Path) -> None:
    media = load_text(tmp_path, GOOD).media
    assert (media.upload_kbps, media.chunk_kb, media.live_push_url) == (128, 16, None)
