"""亮身份 on the window unit: the display drawn by the firmware under the real MicroPython unix port
(framebuf), with a glyph font made by tools/fontgen.py from the machine's CJK font; pixels checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.firmware import FIRMWARE
from tests.firmware.test_vectors import micropython

HERE = Path(__file__).resolve().parent
WIDTH, HEIGHT = 128, 64


def make_font(directory: Path, text: str) -> dict[str, bytes]:
    run = subprocess.run(
        [sys.executable, str(FIRMWARE / "tools" / "fontgen.py"), "--text", text, "--out", str(directory / "glyphs.py")],
        capture_output=True,
        text=True,
    )
    if "no CJK font found" in run.stderr:
        pytest.skip("no CJK font on this machine (./dev test installs fonts-wqy-zenhei)")
    assert run.returncode == 0, run.stderr
    scope: dict = {}
    exec((directory / "glyphs.py").read_text(encoding="utf-8"), scope)
    return scope["GLYPHS"]


def draw(directory: Path, clerk: str, ticket: str, prompt: str) -> list[list[int]]:
    run = micropython(str(HERE / "draw_display.py"), str(FIRMWARE), str(directory), clerk, ticket, prompt)
    lines = run.stdout.split()
    assert lines[:2] == ["shows", "1"], run.stdout + run.stderr  # drawn once, not again when unchanged
    buf = bytes.fromhex(lines[2])
    # MONO_VLSB: byte (page, x) holds 8 vertical pixels, the top one in bit 0.
    return [[buf[(y // 8) * WIDTH + x] >> (y % 8) & 1 for x in range(WIDTH)] for y in range(HEIGHT)]


def glyph_pixels(glyph: bytes) -> list[list[int]]:
    return [[glyph[2 * row + col // 8] >> (7 - col % 8) & 1 for col in range(16)] for row in range(16)]


def block(pixels: list[list[int]], x: int, y: int, w: int, h: int) -> list[list[int]]:
    return [row[x : x + w] for row in pixels[y : y + h]]


def test_the_clerk_the_ticket_and_please_rate(tmp_path: Path) -> None:
    font = make_font(tmp_path, "张丽")
    pixels = draw(tmp_path, "张丽 c01", "A001", "ready")
    for i, ch in enumerate("张丽"):
        assert block(pixels, 16 * i, 0, 16, 16) == glyph_pixels(font[ch]), f"clerk name glyph {ch}"
    for i, ch in enumerate("请评价"):
        assert block(pixels, 16 * i, 48, 16, 16) == glyph_pixels(font[ch]), f"prompt glyph {ch}"
    number = block(pixels, 40, 4, 24, 8)  # "c01" after the name and a space, framebuf's 8x8 font
    assert all(any(any(row[8 * i : 8 * i + 8]) for row in number) for i in range(3)), "c, 0, 1 each drawn"
    ticket = block(pixels, 0, 20, 96, 24)
    cells = [[row[24 * i : 24 * i + 24] for row in ticket] for i in range(4)]
    assert cells[1] == cells[2] and cells[0] != cells[1] != cells[3], "A, 0, 0, 1 at three times the 8x8 font"
    for cell in cells:
        assert any(map(any, cell))
        for y in range(0, 24, 3):  # each font pixel a solid 3x3 square
            for x in range(0, 24, 3):
                assert len({cell[y + dy][x + dx] for dy in range(3) for dx in range(3)}) == 1
    drawn = {(x, y) for y in range(HEIGHT) for x in range(WIDTH) if pixels[y][x]}
    assert all(y < 16 or 20 <= y < 44 or y >= 48 for _, y in drawn), "nothing outside the three lines"


def test_a_character_missing_from_the_font_shows_as_a_box(tmp_path: Path) -> None:
    make_font(tmp_path, "")  # the prompts only: the clerk's name was not in the config
    pixels = draw(tmp_path, "赵", "", "")
    box = block(pixels, 0, 0, 16, 16)
    assert box[1][1:15] == [1] * 14 and box[14][1:15] == [1] * 14
    assert [row[1] for row in box[1:15]] == [1] * 14 and sum(map(sum, box[3:13])) == 20  # only the sides inside
