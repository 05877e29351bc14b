"""The synthetic camera: a moving test scene with its capture time drawn into every frame.

For development, tests and the demo, where there is no Pi camera. Each frame carries its capture
time twice: as text for a person, and as a bar code for a test. The bar code is a row of black and
white blocks (the time in milliseconds, 48 bits, then 8 bits of CRC) at the top of the frame; the
blocks are many JPEG 8x8 cells wide, so they survive compression, and reading them back from a
decoded clip proves which moments the clip really holds.
"""

from __future__ import annotations

import math
import threading
import zlib
from datetime import datetime
from functools import cache

from PIL import Image, ImageChops, ImageDraw, ImageFont, ImageStat

from peripherals.camera.frames import Frame, encode_jpeg, mask_image
from peripherals.camera.pipeline import FrameCamera

TIME_BITS = 48
CHECK_BITS = 8
_CODE_BITS = TIME_BITS + CHECK_BITS
NOISE_SIGMA = 8


def _code_geometry(width: int, height: int) -> tuple[int, int, int, int]:
    """(left, top, block width, block height) of the bar code in a frame of this size."""
    block = width // (_CODE_BITS + 4)
    return 2 * block, max(2, height // 60), block, max(8, height // 20)


def _check(ms: int) -> int:
    return zlib.crc32(ms.to_bytes(TIME_BITS // 8, "big")) & 0xFF


def draw_timestamp(image: Image.Image, ms: int) -> None:
    """Draw `ms` as the bar code: black block for a 1 bit, white for a 0, most significant first."""
    left, top, block, tall = _code_geometry(image.width, image.height)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, image.width - 1, top * 2 + tall), fill="white")
    bits = (ms << CHECK_BITS) | _check(ms)
    for i in range(_CODE_BITS):
        if bits >> (_CODE_BITS - 1 - i) & 1:
            x = left + i * block
            draw.rectangle((x, top, x + block - 1, top + tall - 1), fill="black")


def read_timestamp(image: Image.Image) -> int | None:
    """The milliseconds drawn by `draw_timestamp`, or None where the code is unreadable (e.g. masked)."""
    grey = image.convert("L")
    left, top, block, tall = _code_geometry(grey.width, grey.height)
    bits = 0
    for i in range(_CODE_BITS):
        # The middle half of the block: away from the edges, where JPEG ringing is.
        x0, y0 = left + i * block + block // 4, top + tall // 4
        cell = grey.crop((x0, y0, x0 + max(1, block // 2), y0 + max(1, tall // 2)))
        bits = bits << 1 | (ImageStat.Stat(cell).mean[0] < 128)
    ms = bits >> CHECK_BITS
    return ms if bits & 0xFF == _check(ms) else None


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


@cache
def _background(width: int, height: int) -> Image.Image:
    """A counter and two sides: smooth areas, as a real scene mostly is, so JPEG sizes are realistic."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    image = Image.blend(image, Image.new("RGB", (width, height), (70, 110, 150)), 0.6)
    draw = ImageDraw.Draw(image)
    counter = round(height * 0.55)
    draw.rectangle((0, counter, width, counter + height // 12), fill=(150, 110, 70))
    for i in range(6):  # a shelf of files behind the clerk
        x = width // 10 + i * width // 9
        box = (x, height // 5, x + width // 14, counter - height // 8)
        draw.rectangle(box, outline=(30, 30, 30), width=2)
    return image


@cache
def _noise(width: int, height: int) -> Image.Image:
    """Sensor-like noise: without it a flat synthetic scene compresses far better than a real one."""
    return Image.effect_noise((width, height), NOISE_SIGMA).convert("RGB")


def draw_scene(width: int, height: int, ts: float, window: int) -> Image.Image:
    """The frame at time `ts`: a ball that moves across the counter, the time as text and bar code."""
    ms = round(ts * 1000)
    # Shifting one noise image is a hundredth of the CPU of drawing new noise for every frame.
    noise = ImageChops.offset(_noise(width, height), ms % 97, ms % 89)
    image = ImageChops.add(_background(width, height), noise, 1.0, -128)
    draw = ImageDraw.Draw(image)
    phase = ts % 20 / 20  # crosses the frame every 20 s: motion is visible between 2 fps frames
    radius = height // 10
    cx = round(radius + phase * (width - 2 * radius))
    cy = round(height * 0.75 + math.sin(phase * 2 * math.pi) * height // 10)
    draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=(220, 60, 40))
    moment = datetime.fromtimestamp(ms / 1000).astimezone()
    text = f"window {window}  {moment:%Y-%m-%d %H:%M:%S}.{ms % 1000:03d}"
    draw.text((width // 40, height // 8), text, fill="white", font=_font(max(10, height // 20)))
    draw_timestamp(image, ms)
    return image


class SyntheticCamera(FrameCamera):
    """Renders, masks and encodes a frame every 1/fps seconds of its clock."""

    backend = "sim"

    def _open(self) -> None:
        self._due = self.clock.now()

    def _next_frame(self, stopping: threading.Event) -> Frame | None:
        period = 1 / self.config.fps
        # Never sleep longer than a period, even if the wall clock has just stepped backwards.
        if self.clock.sleep(min(period, max(0.0, self._due - self.clock.now())), stopping):
            return None
        ts = self.clock.now()
        # Keep the cadence; resynchronise after a stall or a clock step.
        self._due = self._due + period if abs(ts - self._due) < period else ts + period
        cfg = self.config
        image = draw_scene(cfg.width, cfg.height, ts, cfg.window)
        mask_image(image, cfg.mask, cfg.mask_style)
        return Frame(ts, encode_jpeg(image, cfg.quality))

    def _close(self) -> None:
        """Nothing to release: the scene is drawn from the clock alone."""
