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

Pure math: ``PatchLayout``, ``layout_from_token_ids``, ``similarity_grid``, ``overlay_heatmap``.
Model-dependent: ``page_layout`` and ``query_token_mask`` re-run the retriever's processor to find where the
image tokens are (the embedder does not store the layout).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

_ROW_COL = re.compile(r"^<row_(\d+)_col_(\d+)>$")


@dataclass(frozen=True)
class PatchLayout:
    """Where a page's image-patch tokens are in its full multivector.

    image_positions: int [n_tiles * side * side], indices into the full multivector of the image tokens,
      in processor order (local tiles row-major, each tile row-major, then the global tile if any).
    tile_grid: (rows, cols) of local tiles; (1, 1) for a single-tile page (its one tile is the grid).
    side: patches per tile side (8 for ColSmolVLM: 512 px / 16 px SigLIP patches / pixel shuffle 4).
    """

    image_positions: np.ndarray
    tile_grid: tuple[int, int]
    side: int = 8

    @property
    def n_local_tiles(self) -> int:
        return self.tile_grid[0] * self.tile_grid[1]

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(patch rows, patch cols) of the assembled local grid."""
        return self.tile_grid[0] * self.side, self.tile_grid[1] * self.side

    @property
    def local_positions(self) -> np.ndarray:
        """Positions of the local-tile tokens only (the global tile, a thumbnail of the page, is left out)."""
        return self.image_positions[: self.n_local_tiles * self.side * self.side]

    def validate(self, n_tokens: int) -> None:
        per_tile = self.side * self.side
        n_img = len(self.image_positions)
        expected = {per_tile} if self.n_local_tiles == 1 else {(self.n_local_tiles + 1) * per_tile}
        if self.n_local_tiles == 1:
            expected.add(2 * per_tile)  # a 1 x 1 grid reported with its global tile
        if n_img not in expected:
            raise ValueError(
                f"layout mismatch: {n_img} image tokens for a {self.tile_grid[0]} x {self.tile_grid[1]} "
                f"tile grid of {per_tile} tokens per tile"
            )
        if n_img and (int(self.image_positions.max()) >= n_tokens or int(self.image_positions.min()) < 0):
            raise ValueError(f"image token positions fall outside the {n_tokens}-token multivector")


def layout_from_token_ids(
    input_ids: Sequence[int],
    image_token_id: int,
    tokens_per_tile: int = 64,
    row_col_of: Mapping[int, tuple[int, int]] | None = None,
    fallback_grid: tuple[int, int] | None = None,
) -> PatchLayout:
    """Build the layout from one page's token ids (non-padding, in the order of the full multivector).

    row_col_of: token id -> (row, col) for the ``<row_i_col_j>`` marker tokens (1-based); the largest seen
      gives the tile grid. fallback_grid is used when there are no markers. One tile only -> (1, 1).
    """
    ids = np.asarray(input_ids)
    positions = np.flatnonzero(ids == image_token_id).astype(np.int64)
    side = int(round(tokens_per_tile**0.5))
    if side * side != tokens_per_tile:
        raise ValueError(f"tokens_per_tile={tokens_per_tile} is not a square")
    n_tiles = len(positions) // tokens_per_tile
    if n_tiles == 0 or len(positions) % tokens_per_tile:
        raise ValueError(f"{len(positions)} image tokens are not whole tiles of {tokens_per_tile}")
    grid: tuple[int, int] | None = None
    if n_tiles == 1:
        grid = (1, 1)
    else:
        if row_col_of:
            seen = [row_col_of[int(t)] for t in ids if int(t) in row_col_of]
            if seen:
                grid = (max(r for r, _ in seen), max(c for _, c in seen))
        if grid is None:
            grid = fallback_grid
        if grid is None or grid[0] * grid[1] + 1 != n_tiles:
            raise ValueError(f"cannot tell the tile grid of a page with {n_tiles} tiles")
    return PatchLayout(image_positions=positions, tile_grid=grid, side=side)


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


def _row_col_ids(tokenizer: Any) -> dict[int, tuple[int, int]]:
    out: dict[int, tuple[int, int]] = {}
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    for token, tid in vocab.items():
        m = _ROW_COL.match(token)
        if m:
            out[int(tid)] = (int(m.group(1)), int(m.group(2)))
    return out


def page_layout(processor: Any, image: Image.Image) -> PatchLayout:
    """Re-run the retriever's processor (``ColIdefics3Processor.process_images``) on the stored page image
    to find the image-token positions and the tile grid. ~0.1-0.4 s of CPU per page."""
    batch = processor.process_images([image.convert("RGB")])
    ids = batch["input_ids"][0]
    mask = batch["attention_mask"][0].bool()
    ids = ids[mask].tolist()  # same order as the stored full multivector (padding removed)
    tokenizer = processor.tokenizer
    image_token_id = int(tokenizer.convert_tokens_to_ids(getattr(processor, "image_token", "<image>")))
    tokens_per_tile = int(getattr(processor, "image_seq_len", 64))
    fallback: tuple[int, int] | None = None
    try:
        _, rows, cols = processor.image_processor.get_number_of_image_patches(image.height, image.width)
        fallback = (int(rows), int(cols))
    except Exception:  # noqa: BLE001 - processor API drift: markers usually suffice
        fallback = None
    return layout_from_token_ids(ids, image_token_id, tokens_per_tile, _row_col_ids(tokenizer), fallback)


def query_token_mask(processor: Any, question: str, n_tokens: int) -> np.ndarray | None:
    """Bool [n_tokens]: the query's own tokens, without colpali's ``<end_of_utterance>`` augmentation
    suffix (those tokens match everything a little and blur the map). None when it cannot be aligned."""
    try:
        batch = processor.process_queries(texts=[question])
        ids = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
        if len(ids) != n_tokens:
            return None
        suffix_token = getattr(processor, "query_augmentation_token", "<end_of_utterance>")
        suffix_id = int(processor.tokenizer.convert_tokens_to_ids(suffix_token))
        special = set(getattr(processor.tokenizer, "all_special_ids", []) or [])
        mask = np.array([t != suffix_id and t not in special for t in ids], dtype=bool)
        return mask if mask.any() else None
    except Exception:  # noqa: BLE001
        return None
