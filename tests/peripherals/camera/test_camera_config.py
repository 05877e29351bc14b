"""`[[cameras]]` tables: defaults, every option, and mistakes that must name where they are."""

from __future__ import annotations

import tomllib

import pytest

from edge.configfile import ConfigError, Section
from peripherals.camera import CameraConfig, MaskRegion, parse_camera, parse_cameras


def cameras(text: str) -> tuple[CameraConfig, ...]:
    return parse_cameras(Section("", tomllib.loads(text), source="station.toml"))


def test_defaults_fit_a_2g_uplink() -> None:
    (cam,) = cameras("[[cameras]]\nwindow = 1\n")
    assert cam == CameraConfig(window=1)
    assert (cam.width, cam.height, cam.snapshot_interval_s, cam.clip_before_s, cam.clip_after_s) == (
        640,
        480,
        60,
        20,
        10,
    )
    assert cam.mask == ()


def test_every_option() -> None:
    (cam,) = cameras(
        """
        [[cameras]]
        window = 2
        backend = "sim"
        camera = 1
        width = 320
        height = 240
        quality = 40
        fps = 1
        snapshot_interval_s = 0
        clip_before_s = 5
        clip_after_s = 0
        mask_style = "blur"
        mask = [{x = 0.0, y = 0.5, w = 1.0, h = 0.5}, {x = 0.1, y = 0.1, w = 0.2, h = 0.2}]
        """
    )
    assert cam == CameraConfig(
        window=2,
        backend="sim",
        camera=1,
        width=320,
        height=240,
        quality=40,
        fps=1.0,
        snapshot_interval_s=0.0,
        clip_before_s=5.0,
        clip_after_s=0.0,
        mask=(MaskRegion(0.0, 0.5, 1.0, 0.5), MaskRegion(0.1, 0.1, 0.2, 0.2)),
        mask_style="blur",
    )


def test_no_cameras_is_fine() -> None:
    assert cameras("") == ()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("window = 1\nqualty = 50", r"\[cameras\[0\]\] qualty: unknown key"),
        ("backend = 'sim'", r"\[cameras\[0\]\] window: missing"),
        ("window = 1\nbackend = 'v4l2'", r"backend: 'v4l2' is not one of picamera2, sim"),
        ("window = 1\nquality = 100", r"quality: 100 is above the maximum 95"),
        ("window = 1\nsnapshot_interval_s = 0.5", r"snapshot_interval_s: must be 0 .* or at least 1"),
        (
            "window = 1\nmask = [{x = 0.5, y = 0, w = 0.6, h = 1}]",
            r"\[cameras\[0\]\.mask\[0\]\] w: region reaches past",
        ),
        ("window = 1\nmask = [{x = 0, y = 0, w = 1}]", r"\[cameras\[0\]\.mask\[0\]\] h: missing"),
        ("window = 1\nmask = [{x = 0, y = 0, w = 1, h = 1, blur = 3}]", r"mask\[0\]\] blur: unknown key"),
        ("window = 1\nmask_style = 'pixelate'", r"mask_style: 'pixelate' is not one of fill, blur"),
    ],
)
def test_mistakes_name_table_and_key(table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cameras(f"[[cameras]]\n{table}\n")


def test_two_cameras_on_one_window() -> None:
    with pytest.raises(ConfigError, match=r"\[cameras\[1\]\] window: 3 is also cameras\[0\]'s"):
        cameras("[[cameras]]\nwindow = 3\nbackend = 'sim'\n[[cameras]]\nwindow = 3\nbackend = 'sim'\n")


def test_two_windows_on_one_sensor() -> None:
    with pytest.raises(ConfigError, match=r"\[cameras\[1\]\] camera: picamera2 camera 0 is also cameras\[0\]'s"):
        cameras("[[cameras]]\nwindow = 1\n[[cameras]]\nwindow = 2\n")


def test_parse_camera_reads_one_table() -> None:
    section = Section("cameras[0]", {"window": 4, "backend": "sim"}, source="station.toml")
    assert parse_camera(section) == CameraConfig(window=4, backend="sim")


def test_mask_region_in_pixels() -> None:
    assert MaskRegion(0.0, 0.6, 1.0, 0.4).box(640, 480) == (0, 288, 640, 480)
    assert MaskRegion(0.5, 0.5, 0.0, 0.0).box(640, 480) == (320, 240, 321, 241)  # never empty
