"""Regions drawn onto a page image (server-side highlights for clients without a canvas: the page-image
endpoint's ``highlight`` option, the MCP tools' image content), and the compact form regions take in a
URL query (``highlight=t:x0,y0,x1,y1;v:x0,y0,x1,y1``).

``draw_regions`` is pure (a PIL image in, a new one out) and usable by any front end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image, ImageDraw

from pagelens.core.errors import InvalidRequestError

# RGB per source: text regions amber, visual regions blue (distinguishable, also in greyscale by outline width)
COLOURS = {"text": (255, 176, 0), "visual": (30, 136, 229)}
FILL_ALPHA = 70  # 0..255: translucent, the page stays readable
MAX_HIGHLIGHT_REGIONS = 32
MAX_HIGHLIGHT_CHARS = 2000
_CODES = {"t": "text", "v": "visual"}


def draw_regions(image: Image.Image, regions: Sequence[dict[str, Any]]) -> Image.Image:
    """A copy of ``image`` (RGB) with each region (page fractions, ``pagelens.retrieve.regions``) drawn as a
    translucent box with an outline: text regions amber (2 px outline), visual blue (1 px, dashed look
    by a lighter fill). Regions are drawn in reverse rank so the best is on top. Boxes are at least
    2 px wide and high so a tiny box stays visible."""
    base = image.convert("RGBA")
    width, height = base.size
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for r in reversed(list(regions)):
        colour = COLOURS.get(str(r.get("source")), COLOURS["visual"])
        x0, y0 = float(r["x0"]) * width, float(r["y0"]) * height
        x1, y1 = max(float(r["x1"]) * width, x0 + 2), max(float(r["y1"]) * height, y0 + 2)
        outline = 2 if r.get("source") == "text" else 1
        draw.rectangle((x0, y0, x1, y1), fill=(*colour, FILL_ALPHA), outline=(*colour, 255), width=outline)
    return Image.alpha_composite(base, overlay).convert("RGB")


def highlight_param(regions: Sequence[dict[str, Any]]) -> str:
    """The compact URL form of ``regions``: ``t:x0,y0,x1,y1;v:...`` (4 decimals)."""
    parts = []
    for r in regions:
        code = "t" if r.get("source") == "text" else "v"
        parts.append(code + ":" + ",".join(f"{float(r[k]):.4f}".rstrip("0").rstrip(".") or "0"
                                           for k in ("x0", "y0", "x1", "y1")))
    return ";".join(parts)


def parse_highlight(value: str) -> list[dict[str, Any]]:
    """Regions from the compact URL form (``highlight_param``); raises ``InvalidRequestError`` naming
    the bad part (at most ``MAX_HIGHLIGHT_REGIONS`` boxes, coordinates fractions in [0, 1])."""
    value = (value or "").strip()
    if len(value) > MAX_HIGHLIGHT_CHARS:
        raise InvalidRequestError(f"highlight is too long ({len(value)} characters, at most {MAX_HIGHLIGHT_CHARS})")
    out: list[dict[str, Any]] = []
    for part in filter(None, (p.strip() for p in value.split(";"))):
        code, sep, coords = part.partition(":")
        try:
            if not sep or code not in _CODES:
                raise ValueError
            x0, y0, x1, y1 = (float(v) for v in coords.split(","))
        except ValueError:
            raise InvalidRequestError(f"highlight: cannot read '{part[:40]}'; write t:x0,y0,x1,y1 (text) or "
                                      "v:x0,y0,x1,y1 (visual), fractions of the page, separated by ';'") from None
        if not all(0.0 <= v <= 1.0 for v in (x0, y0, x1, y1)) or x0 > x1 or y0 > y1:
            raise InvalidRequestError(f"highlight: '{part[:40]}' is not a box of page fractions (0 <= x0 <= x1 <= 1, "
                                      "0 <= y0 <= y1 <= 1)")
        out.append({"x0": x0, "y0": y0, "x1": x1, "y1": y1, "source": _CODES[code], "score": 0.0})
        if len(out) > MAX_HIGHLIGHT_REGIONS:
            raise InvalidRequestError(f"highlight: at most {MAX_HIGHLIGHT_REGIONS} boxes")
    return out
