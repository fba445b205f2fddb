"""Page images for MCP clients: downscaled and size-capped, so a search result fits an agent's context."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from pagelens.retrieve.highlight import draw_regions

_JPEG_QUALITIES = (85, 70, 55)
_SHRINK = 0.75  # each further step when even the lowest JPEG quality is over the byte cap


@dataclass(frozen=True)
class EncodedImage:
    """An encoded page image: ``data`` bytes of ``mime_type``, ``width`` x ``height`` px."""

    data: bytes
    mime_type: str
    width: int
    height: int


def encode_page_image(path: Path, max_edge: int, max_bytes: int,
                      regions: Sequence[dict[str, Any]] | None = None) -> EncodedImage:
    """The image at ``path`` with its longest edge at most ``max_edge`` px (never enlarged) and at most
    ``max_bytes`` bytes: PNG (lossless, crisp text) when it fits, else JPEG at quality 85, 70, 55, then
    the same at 3/4 of the size, and so on (the cap is met for any ``max_bytes`` >= 10,000).
    ``regions``: drawn on the page first (``pagelens.retrieve.highlight.draw_regions``)."""
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    if regions:
        image = draw_regions(image, regions)
    if max(image.size) > max_edge:
        image.thumbnail((max_edge, max_edge), Image.Resampling.LANCZOS)
    png = _encode(image, "PNG")
    if len(png) <= max_bytes:
        return EncodedImage(png, "image/png", *image.size)
    while True:
        for quality in _JPEG_QUALITIES:
            jpeg = _encode(image, "JPEG", quality=quality)
            if len(jpeg) <= max_bytes:
                return EncodedImage(jpeg, "image/jpeg", *image.size)
        if max(image.size) <= 64:  # pragma: no cover - a 64 px JPEG is a few kB
            return EncodedImage(jpeg, "image/jpeg", *image.size)
        size = (max(1, int(image.width * _SHRINK)), max(1, int(image.height * _SHRINK)))
        image = image.resize(size, Image.Resampling.LANCZOS)


def _encode(image: Image.Image, fmt: str, **options: int) -> bytes:
    buffer = io.BytesIO()
    if fmt == "PNG":
        image.save(buffer, format="PNG", optimize=False, compress_level=6)
    else:
        image.save(buffer, format="JPEG", optimize=True, **options)
    return buffer.getvalue()
