"""Frames as both backends hand them on: capture time plus JPEG bytes, masked before encoding.

A frame is encoded once, when it is captured; the ring buffer, clips and snapshots all keep those
same bytes. Masking happens on the pixels before that single encode, so no stored byte ever held
the masked region.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image, ImageFilter

from peripherals.camera import MaskRegion

if TYPE_CHECKING:
    import numpy as np

FILL = (128, 128, 128)
# Blur by shrinking the region this many times and growing it back (then a light Gaussian to hide
# the blocks): a face spans a few dozen pixels at 640x480, so nothing of it is left, and it costs
# far less CPU on a Pi than a Gaussian of that radius.
BLUR_FACTOR = 24


@dataclass(frozen=True)
class Frame:
    ts: float  # capture time, seconds since the epoch
    jpeg: bytes


def thumbnail(jpeg: bytes) -> bytes:
    """A 32x24 grey thumbnail: cheap (the JPEG decoder's draft mode decodes at 1/8 scale), and
    blind to sensor noise, for telling whether a scene changed."""
    image = Image.open(io.BytesIO(jpeg))
    image.draft("L", (image.width // 8, image.height // 8))
    return image.convert("L").resize((32, 24), Image.Resampling.BOX).tobytes()


def resized_jpeg(jpeg: bytes, size: tuple[int, int], quality: int) -> bytes:
    """A frame re-encoded at another size or quality (snapshots smaller than clips)."""
    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    return encode_jpeg(image, quality)


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def cover(region: Image.Image, style: str) -> Image.Image:
    """The masked version of one region: flat grey (`fill`) or blurred past recognition (`blur`)."""
    if style == "fill":
        return Image.new(region.mode, region.size, FILL)
    small = (max(1, region.width // BLUR_FACTOR), max(1, region.height // BLUR_FACTOR))
    blurred = region.resize(small, Image.Resampling.BOX).resize(region.size, Image.Resampling.BILINEAR)
    return blurred.filter(ImageFilter.GaussianBlur(BLUR_FACTOR / 4))


def mask_image(image: Image.Image, regions: Sequence[MaskRegion], style: str) -> None:
    """Mask an RGB image in place (the synthetic source)."""
    for region in regions:
        box = region.box(image.width, image.height)
        image.paste(cover(image.crop(box), style), box)


def mask_array(array: np.ndarray, regions: Sequence[MaskRegion], style: str) -> None:
    """Mask an (height, width, channels) uint8 array in place (a picamera2 buffer; only RGB is touched)."""
    import numpy as np  # picamera2 depends on it; the rest of the gateway does not.

    height, width = array.shape[:2]
    for region in regions:
        left, top, right, bottom = region.box(width, height)
        pixels = array[top:bottom, left:right, :3]
        pixels[...] = np.asarray(cover(Image.fromarray(np.ascontiguousarray(pixels)), style))


def split_mjpeg(data: bytes) -> Iterator[bytes]:
    """The JPEGs of a concatenated-JPEG (.mjpeg) clip, in order.

    Walks each JPEG's marker segments up to its scan, then looks for the end-of-image marker: in
    the scan's entropy-coded data a 0xFF byte is always followed by 0x00 or a restart marker, so
    FF D9 there can only be the end.
    """
    pos = 0
    while pos < len(data):
        if data[pos : pos + 2] != b"\xff\xd8":
            raise ValueError(f"no JPEG start marker at byte {pos}")
        seg = pos + 2
        while data[seg : seg + 2] != b"\xff\xda":
            if seg + 4 > len(data) or data[seg] != 0xFF:
                raise ValueError(f"broken JPEG segment at byte {seg}")
            seg += 2 + int.from_bytes(data[seg + 2 : seg + 4], "big")
        end = data.find(b"\xff\xd9", seg)
        if end < 0:
            raise ValueError(f"JPEG starting at byte {pos} has no end marker")
        yield data[pos : end + 2]
        pos = end + 2
