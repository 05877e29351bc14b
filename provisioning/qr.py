"""The provisioning file as a printable QR code, and reading one back from a camera frame.

Writing uses `qrcode` (the county side's `county` extra; a station never writes one). Reading
uses `zxing-cpp`, which
ships its decoder in the wheel (no system library); it is optional: a station without it
simply does not look at the camera, and says so.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image


def write_png(data: bytes, path: Path) -> None:
    """A QR code of `data` as a PNG, with error correction M: survives a crease or a smudge."""
    import qrcode

    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=8, border=4)
    code.add_data(data)
    code.make(fit=True)
    # 0600 from its first byte, like the claim file: the picture is the same secret.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)  # an older file of the same name keeps its mode otherwise
        code.make_image().save(out, format="PNG")


def decoder_missing() -> str | None:
    """Why QR codes cannot be read here, or None when they can."""
    try:
        import zxingcpp  # noqa: F401
    except ImportError as exc:
        return f"zxing-cpp is not installed ({exc}): `pip install zxing-cpp` to read QR codes with the camera"
    return None


def decode(image: bytes) -> list[bytes]:
    """The contents of every QR code in an encoded image (JPEG or PNG), as bytes."""
    import zxingcpp

    with Image.open(io.BytesIO(image)) as img:
        results = zxingcpp.read_barcodes(img.convert("L"), formats=zxingcpp.BarcodeFormat.QRCode)
    return [r.bytes for r in results if r.valid]
