"""Make `glyphs.py`, the window unit's bitmap font: 16x16 glyphs for exactly the Chinese characters
its display needs, rendered from a CJK font on the computer that prepares the firmware.

A microcontroller has no room for a CJK font (thousands of glyphs, megabytes); a unit needs a
few dozen: its fixed prompts (display.PROMPTS) and the names of the station's clerks. So the
installer runs this once per station, on any computer with Pillow and a CJK font (Debian:
fonts-wqy-zenhei or fonts-noto-cjk), and copies the result to the unit:

    python3 firmware/tools/fontgen.py --config /etc/yimen/station.toml --out firmware/glyphs.py

Each glyph is 32 bytes, MONO_HLSB (the layout MicroPython's framebuf.FrameBuffer takes), rows
top to bottom, the leftmost pixel in the high bit. Characters below U+0080 are left out: the
unit draws those with framebuf's own 8x8 font. Runs under CPython only (Pillow).
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FIRMWARE = Path(__file__).resolve().parents[1]
SIZE = 16
FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
)
MAX_GLYPHS = 512  # 16 KiB of glyphs: far more than any station's names and prompts need


def prompts() -> str:
    """The display's fixed texts, read from firmware/display.py so the two never disagree."""
    sys.path.insert(0, str(FIRMWARE))
    try:
        import display

        return "".join(display.PROMPTS.values())
    finally:
        sys.path.remove(str(FIRMWARE))


def clerk_names(config: Path) -> str:
    doc = tomllib.loads(config.read_text(encoding="utf-8"))
    return "".join(str(clerk.get("name", "")) for clerk in doc.get("clerks", []))


def find_font(given: str | None) -> str:
    for path in [given] if given else FONTS:
        if path and Path(path).exists():
            return path
    raise SystemExit(f"fontgen: no CJK font found (tried {', '.join(FONTS)}): install fonts-wqy-zenhei or give --font")


def render(char: str, font: ImageFont.FreeTypeFont) -> bytes:
    """One glyph, centred in 16x16, as MONO_HLSB bytes."""
    image = Image.new("1", (SIZE, SIZE), 0)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((0, 0), char, font=font)
    x = (SIZE - (right - left)) // 2 - left
    y = (SIZE - (bottom - top)) // 2 - top
    draw.text((x, y), char, font=font, fill=1)
    out = bytearray()
    for row in range(SIZE):
        bits = 0
        for col in range(SIZE):
            bits = bits << 1 | (1 if image.getpixel((col, row)) else 0)
        out += bits.to_bytes(2, "big")
    return bytes(out)


def generate(text: str, font_path: str) -> str:
    chars = sorted({ch for ch in text if ord(ch) >= 0x80 and not ch.isspace()})
    if len(chars) > MAX_GLYPHS:
        raise SystemExit(f"fontgen: {len(chars)} glyphs is more than a unit should carry ({MAX_GLYPHS})")
    font = ImageFont.truetype(font_path, SIZE)
    lines = [
        '"""16x16 glyphs for the window unit\'s display, made by tools/fontgen.py; do not edit."""',
        "",
        "SIZE = 16",
        "GLYPHS = {",
    ]
    lines += [f"    {ch!r}: {render(ch, font)!r}," for ch in chars]
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="the station's config: its clerks' names are drawn")
    parser.add_argument("--text", default="", help="more characters to include")
    parser.add_argument("--font", help="a CJK TrueType/OpenType font (default: the first of " + ", ".join(FONTS) + ")")
    parser.add_argument("--out", type=Path, default=FIRMWARE / "glyphs.py")
    args = parser.parse_args(argv)
    text = prompts() + args.text + (clerk_names(args.config) if args.config else "")
    args.out.write_text(generate(text, find_font(args.font)), encoding="utf-8")
    print(f"fontgen: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
