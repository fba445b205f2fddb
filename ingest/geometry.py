"""Target raster sizes (px) for pages and images."""

from __future__ import annotations

import math


def fit_size(
    width: float, height: float, longest_edge: int, max_pixels: int, *, upscale: bool = True
) -> tuple[int, int]:
    """Size (width, height) in px whose longest edge is ``longest_edge`` px, keeping the aspect ratio.

    ``width``/``height`` are in any unit (PDF points or source px). With ``upscale=False`` a source
    already smaller than ``longest_edge`` keeps its size. Whatever the result, ``w * h`` never exceeds
    ``max_pixels``: a larger target is scaled down to fit (a huge page box is made smaller, never
    refused). Each side is at least 1 px. Raises ``ValueError`` for a non-finite or empty box.
    """
    if not (math.isfinite(width) and math.isfinite(height)) or width <= 0 or height <= 0:
        raise ValueError(f"empty or invalid page box {width}x{height}")
    scale = longest_edge / max(width, height)
    if not upscale:
        scale = min(scale, 1.0)
    rounding = round
    if width * height * scale * scale > max_pixels:
        scale = math.sqrt(max_pixels / (width * height))
        rounding = math.floor  # type: ignore[assignment]  # stay under the cap, keep the aspect ratio
    w = max(1, int(rounding(width * scale)))
    h = max(1, int(rounding(height * scale)))
    while w * h > max_pixels and (w > 1 or h > 1):  # a 1-px minimum side may still overshoot
        if w >= h:
            w -= 1
        else:
            h -= 1
    return w, h
