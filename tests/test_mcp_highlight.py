"""Issue 27, MCP: ``search_pages`` returns each page's image with the hit's own regions drawn on it
(``highlight``, on by default), the same list it returns in its structured results; ``highlight: false``
gives the plain page. Real indexing of a generated PDF with the tiny random models."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_regions_surfaces import QUESTION, _pdf, _settings

from pagelens.app.access import OPEN
from pagelens.app.library import Pagelens
from pagelens.mcp.images import encode_page_image
from pagelens.mcp.tools import PagelensTools

pytestmark = pytest.mark.slow


def _pixels(data: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")).astype(int)


def test_search_pages_images_carry_the_same_regions_drawn(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    _pdf(tmp_path / "acme.pdf")
    settings = _settings(tmp_path / "data", tiny_models)
    with Pagelens(settings=settings) as lens:
        assert lens.index(tmp_path / "acme.pdf", collection="inv").pages_indexed == 2
        hits = lens.search(QUESTION, collection="inv", k=2, mode="hybrid")
        assert any(r["source"] == "text" for h in hits for r in h.regions)
        tools = PagelensTools(lens.service, local_files=True)
        args = {"query": QUESTION, "k": 2, "mode": "hybrid"}
        on = tools.call(OPEN, "search_pages", args)
        off = tools.call(OPEN, "search_pages", {**args, "highlight": False})
    assert not on.is_error and not off.is_error
    images_on = [b for b in on.content if b.type == "image"]
    images_off = [b for b in off.content if b.type == "image"]
    results = on.structured_content["results"]
    assert len(images_on) == len(images_off) == len(results) == len(hits)
    for hit, result, drawn_block, plain_block in zip(hits, results, images_on, images_off, strict=True):
        assert (result["doc_id"], result["page_no"]) == (hit.doc_id, hit.page_no)
        assert result["regions"] == hit.regions  # the list the tool returns is the hit's
        # the image is the page with exactly that list drawn; without highlight, the page as stored
        drawn_expected = encode_page_image(Path(hit.image_path), settings.mcp_image_max_edge,
                                           settings.mcp_image_max_bytes, regions=hit.regions)
        plain_expected = encode_page_image(Path(hit.image_path), settings.mcp_image_max_edge,
                                           settings.mcp_image_max_bytes)
        assert base64.b64decode(drawn_block.data) == drawn_expected.data
        assert base64.b64decode(plain_block.data) == plain_expected.data
        drawn, plain = _pixels(drawn_block.data), _pixels(plain_block.data)
        assert drawn.shape == plain.shape
        height, width = plain.shape[:2]
        for r in hit.regions:  # tinted where each region is, untouched in a corner no region covers
            x, y = int((r["x0"] + r["x1"]) / 2 * width), int((r["y0"] + r["y1"]) / 2 * height)
            assert np.abs(drawn[y, x] - plain[y, x]).sum() > 0, r
        if not any(r["x0"] * width <= 2 and r["y1"] * height >= height - 3 for r in hit.regions):
            assert np.array_equal(drawn[height - 2, 1], plain[height - 2, 1])
