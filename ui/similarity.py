"""Similarity maps: which image patches of a page matched the question (late-interaction interpretability).

The page's full multivector (``VectorStore.get_full_vectors``) holds every non-padding token the retriever
saw: the prompt, then the image tokens. Idefics3 (ColSmolVLM) lays an image out as ``rows x cols`` local
512-px tiles in row-major order followed by one global tile (a page that fits one tile has only that tile);
each tile is ``side x side`` = 8 x 8 patch tokens in row-major order. So the local tiles assemble into a
``(rows * side) x (cols * side)`` patch grid covering the whole page (the processor stretches the page to
whole tiles, so the grid maps onto the page image by plain scaling).

The map is, per patch, the maximum over query tokens of the dot product between the (L2-normalised) query
token and the patch token: the same quantity MaxSim sums, seen from the page side (as colpali-engine's
``get_similarity_maps_from_embeddings`` followed by a max over query tokens).

Pure math: ``similarity_grid``, ``overlay_heatmap``. The layout (``PatchLayout``, ``layout_from_token_ids``,
``page_layout``, ``query_token_mask``) lives in ``pagelens.models.patch_layout`` (shared with the visual
regions of ``pagelens.retrieve.regions``) and is re-exported here.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from pagelens.models.patch_layout import (  # noqa: F401 - re-exported: the similarity map's public names
    PatchLayout,
    layout_from_token_ids,
    page_layout,
    query_token_mask,
)


def similarity_grid(
    query: np.ndarray,
    page: np.ndarray,
    layout: PatchLayout,
    query_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Per-patch max similarity over query tokens.

    query: [n_q, dim] float (L2-normalised query tokens); page: [n_tokens, dim] float (the page's full
    multivector); query_mask: bool [n_q] of the query tokens to use (None or all False: all of them).
    Returns float32 [rows * side, cols * side], row-major over the page (top-left patch first).
    """
    query = np.asarray(query, dtype=np.float32)
    page = np.asarray(page, dtype=np.float32)
    if query.ndim != 2 or page.ndim != 2 or query.shape[1] != page.shape[1]:
        raise ValueError(f"shape mismatch: query {query.shape}, page {page.shape}")
    layout.validate(page.shape[0])
    if query_mask is not None:
        mask = np.asarray(query_mask, dtype=bool)
        if mask.shape != (query.shape[0],):
            raise ValueError(f"query_mask {mask.shape} does not match {query.shape[0]} query tokens")
        if mask.any():
            query = query[mask]
    patches = page[layout.local_positions]  # [R*C*s*s, dim], tile-major
    sims = query @ patches.T  # [n_q, R*C*s*s]
    best = sims.max(axis=0)  # [R*C*s*s]
    r, c = layout.tile_grid
    s = layout.side
    grid = best.reshape(r, c, s, s).transpose(0, 2, 1, 3).reshape(r * s, c * s)
    return grid.astype(np.float32, copy=False)


def _turbo_lut() -> np.ndarray:
    """256 x 3 uint8 colours from dark blue through green and yellow to red (a compact 'turbo'-like ramp)."""
    stops = np.array(
        [
            [0.00, 48, 18, 59],
            [0.15, 70, 107, 227],
            [0.35, 27, 208, 213],
            [0.50, 97, 252, 108],
            [0.65, 210, 233, 53],
            [0.80, 254, 155, 45],
            [1.00, 180, 4, 38],
        ]
    )
    x = np.linspace(0.0, 1.0, 256)
    lut = np.stack([np.interp(x, stops[:, 0], stops[:, k]) for k in (1, 2, 3)], axis=1)
    return lut.round().astype(np.uint8)


_LUT = _turbo_lut()


def normalise(grid: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1] (a flat grid becomes all zeros)."""
    grid = np.asarray(grid, dtype=np.float32)
    lo, hi = float(grid.min()), float(grid.max())
    if hi - lo < 1e-12:
        return np.zeros_like(grid)
    return (grid - lo) / (hi - lo)


def overlay_heatmap(image: Image.Image, grid: np.ndarray, alpha: float = 0.55) -> Image.Image:
    """Upsample the patch grid onto the page (bilinear) and alpha-blend it: hot patches opaque, cold ones
    faint, so the page stays readable. Returns an RGB image of the page's size."""
    base = image.convert("RGB")
    level = Image.fromarray((normalise(grid) * 255).round().astype(np.uint8), mode="L")
    level = level.resize(base.size, Image.Resampling.BILINEAR)
    values = np.asarray(level)
    colour = Image.fromarray(_LUT[values], mode="RGB")
    mask = Image.fromarray((alpha * (0.3 + 0.7 * values / 255.0) * 255).astype(np.uint8), mode="L")
    return Image.composite(colour, base, mask)


# ---------------------------------------------------------------------------------------------------
# Model-dependent helpers (need the retriever's processor)
# ---------------------------------------------------------------------------------------------------
