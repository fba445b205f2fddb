"""Where a page's image-patch tokens are in its full multivector, and where each patch is on the page
(the ColIdefics3 / Idefics3 processor's real geometry), for similarity maps (``pagelens.ui.similarity``) and
visual regions (``pagelens.retrieve.regions``).

The page's full multivector (``VectorStore.get_full_vectors``) holds every non-padding token the retriever
saw: the prompt, then the image tokens. Idefics3 (ColSmolVLM) resizes a page so its longest edge is the
processor's ``size["longest_edge"]`` (``Settings.page_longest_edge``), then stretches it to whole 512-px
tiles (each side rounded up to a multiple of 512) and lays it out as ``rows x cols`` local tiles in
row-major order followed by one global tile (the whole page squeezed to 512 x 512; a page that fits one
tile has only that tile). Each tile is ``side x side`` = 8 x 8 patch tokens in row-major order (512 px /
16-px SigLIP patches / pixel shuffle 4 = 8). So the local tiles assemble into a ``(rows * side) x (cols *
side)`` patch grid covering the whole page, and patch ``(i, j)`` of that grid covers the page fractions
``[j / (cols * side), (j + 1) / (cols * side)] x [i / (rows * side), (i + 1) / (rows * side)]`` at any
render size (``PatchLayout.cell_box``); patch ``(i, j)`` of the global tile covers ``[j / side, (j + 1) /
side] x [i / side, (i + 1) / side]``. ``tests/test_regions.py`` checks this against the processor's own
pixel values.

Pure: ``PatchLayout``, ``layout_from_token_ids``. Processor-dependent: ``page_layout`` re-runs the
retriever's processor to find where the image tokens are (the embedder does not store the layout),
``layout_for_size`` does it once per page size on a blank page, ``query_token_mask``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
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
    n_tokens: int | None = None  # tokens of the whole page multivector, when known (``page_layout``)

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

    def cell_box(self, row: int, col: int) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) page fractions (origin top-left) of cell (``row``, ``col``) of the local grid."""
        rows, cols = self.grid_shape
        return col / cols, row / rows, (col + 1) / cols, (row + 1) / rows

    def token_cells(self) -> np.ndarray:
        """Where each image token (in ``image_positions`` order) is on the local grid: int [n, 4] of
        (row0, col0, row1, col1), ends exclusive. A local-tile token covers its one cell; a global-tile
        token (patch (r, c) of the s x s thumbnail of the whole page) covers the block of ``rows x cols``
        cells under it."""
        s = self.side
        rows, cols = self.tile_grid
        k = np.arange(len(self.image_positions))
        tile, r_in, c_in = k // (s * s), (k % (s * s)) // s, k % s
        local = tile < self.n_local_tiles
        row0 = np.where(local, (tile // cols) * s + r_in, r_in * rows)
        col0 = np.where(local, (tile % cols) * s + c_in, c_in * cols)
        row1 = np.where(local, row0 + 1, (r_in + 1) * rows)
        col1 = np.where(local, col0 + 1, (c_in + 1) * cols)
        return np.stack([row0, col0, row1, col1], axis=1).astype(np.int64)

    def validate(self, n_tokens: int) -> None:
        """Raise ``ValueError`` when a page multivector of ``n_tokens`` tokens cannot have this layout (a
        page embedded with another tile grid: another ``page_longest_edge``)."""
        if self.n_tokens is not None and self.n_tokens != n_tokens:
            raise ValueError(f"layout mismatch: the page has {n_tokens} tokens, a {self.tile_grid[0]} x "
                             f"{self.tile_grid[1]} tile grid gives {self.n_tokens}")
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
    layout = layout_from_token_ids(ids, image_token_id, tokens_per_tile, _row_col_ids(tokenizer), fallback)
    return replace(layout, n_tokens=len(ids))


_layouts: dict[tuple[Any, ...], PatchLayout] = {}
_layouts_lock = threading.Lock()


def layout_for_size(processor: Any, width: int, height: int) -> PatchLayout:
    """``page_layout`` of a ``width`` x ``height`` px page, from a blank page of that size. The layout
    depends only on the tile grid (and the processor's geometry settings), so it is cached per grid
    (``get_number_of_image_patches``, no image work; per page size when the processor lacks it): a
    collection's pages share a few grids, so this costs one processor run per grid."""
    image_processor = getattr(processor, "image_processor", None)
    longest = int((getattr(image_processor, "size", None) or {}).get("longest_edge", 0))
    tile = int((getattr(image_processor, "max_image_size", None) or {}).get("longest_edge", 0))
    geometry: tuple[int, ...] = (longest, tile, int(getattr(processor, "image_seq_len", 64)))
    try:
        _, rows, cols = image_processor.get_number_of_image_patches(int(height), int(width))  # type: ignore[union-attr]
        key = ("grid", int(rows), int(cols), *geometry)
    except Exception:  # noqa: BLE001 - processor API drift: key by size instead
        key = ("size", int(width), int(height), *geometry)
    with _layouts_lock:
        found = _layouts.get(key)
    if found is not None:
        return found
    layout = page_layout(processor, Image.new("RGB", (max(1, int(width)), max(1, int(height))), "white"))
    with _layouts_lock:
        if len(_layouts) > 256:
            _layouts.clear()
        _layouts[key] = layout
    return layout


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
