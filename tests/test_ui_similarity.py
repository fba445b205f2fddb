"""Similarity-map math: hand-made vectors -> the expected hottest patch, layouts, overlay."""

from __future__ import annotations

import numpy as np
import pytest
from pagelens.ui.similarity import PatchLayout, layout_from_token_ids, overlay_heatmap, similarity_grid
from PIL import Image

DIM = 4
IMG = 99  # the <image> token id of the hand-made sequences
ROW_COL = {1000 + 6 * (r - 1) + (c - 1): (r, c) for r in range(1, 7) for c in range(1, 7)}


def _ids(rows: int, cols: int, per_tile: int, prompt: int = 3) -> list[int]:
    """Idefics3-like token ids: prompt, <row_r_col_c> + image tokens per local tile, global tile, tail."""
    ids = [1] * prompt
    for r in range(1, rows + 1):
        for c in range(1, cols + 1):
            ids += [2, 1000 + 6 * (r - 1) + (c - 1)] + [IMG] * per_tile
        ids.append(3)  # "\n"
    ids += [2, 4] + [IMG] * per_tile + [2]  # global tile
    ids += [5, 6]
    return ids


def _unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def test_hottest_patch_in_a_2x3_tile_grid() -> None:
    side, rows, cols = 2, 2, 3
    ids = _ids(rows, cols, side * side)
    layout = layout_from_token_ids(ids, IMG, tokens_per_tile=side * side, row_col_of=ROW_COL)
    assert layout.tile_grid == (rows, cols)
    assert layout.grid_shape == (4, 6)
    assert len(layout.image_positions) == (rows * cols + 1) * side * side

    page = np.tile(_unit([0, 0, 0, 1]), (len(ids), 1))  # every token points away from the query
    # target: tile (row 1, col 2) (0-based), its patch (1, 0) -> page patch (1*2+1, 2*2+0) = (3, 4)
    tile_index = 1 * cols + 2
    token_in_tile = 1 * side + 0
    page[layout.image_positions[tile_index * side * side + token_in_tile]] = _unit([1, 0, 0, 0])
    # a decoy in the global tile (must be ignored) and a partial match elsewhere
    page[layout.image_positions[-1]] = _unit([1, 0, 0, 0]) * 1.0
    page[layout.image_positions[0]] = _unit([1, 1, 0, 0])
    query = np.stack([_unit([1, 0, 0, 0]), _unit([0, 1, 0, 0.01])])

    grid = similarity_grid(query, page, layout)
    assert grid.shape == (4, 6)
    assert np.unravel_index(int(np.argmax(grid)), grid.shape) == (3, 4)
    assert grid[3, 4] == pytest.approx(1.0, abs=1e-6)
    assert grid[0, 0] == pytest.approx(np.sqrt(0.5), abs=1e-6)  # max over the two query tokens


def test_query_mask_selects_tokens() -> None:
    side = 2
    ids = [IMG] * (side * side)  # a single-tile page: no markers, no global tile
    layout = layout_from_token_ids(ids, IMG, tokens_per_tile=side * side)
    assert layout.tile_grid == (1, 1)
    page = np.stack([_unit([1, 0, 0, 0]), _unit([0, 1, 0, 0]), _unit([0, 0, 1, 0]), _unit([0, 0, 0, 1])])
    query = np.stack([_unit([0, 0, 0, 1]), _unit([0, 1, 0, 0])])
    full = similarity_grid(query, page, layout)
    assert full.shape == (2, 2)
    assert full[0, 1] == pytest.approx(1.0) and full[1, 1] == pytest.approx(1.0)
    only_second = similarity_grid(query, page, layout, query_mask=np.array([False, True]))
    assert np.unravel_index(int(np.argmax(only_second)), (2, 2)) == (0, 1)
    assert only_second[1, 1] == pytest.approx(0.0)


def test_fallback_grid_and_errors() -> None:
    ids = [IMG] * (5 * 4)  # 2 x 2 tiles + global of 4 tokens, no markers
    layout = layout_from_token_ids(ids, IMG, tokens_per_tile=4, fallback_grid=(2, 2))
    assert layout.tile_grid == (2, 2)
    with pytest.raises(ValueError):
        layout_from_token_ids(ids, IMG, tokens_per_tile=4)  # no markers, no fallback
    with pytest.raises(ValueError):
        layout_from_token_ids([IMG] * 5, IMG, tokens_per_tile=4)  # not whole tiles
    bad = PatchLayout(image_positions=np.arange(20), tile_grid=(2, 2), side=2)
    with pytest.raises(ValueError):
        similarity_grid(np.ones((1, DIM)), np.ones((10, DIM)), bad)  # positions beyond the page


def test_overlay_is_hottest_where_the_grid_is() -> None:
    page = Image.new("RGB", (80, 120), "white")
    grid = np.zeros((6, 4), dtype=np.float32)
    grid[5, 3] = 1.0  # bottom-right patch
    out = overlay_heatmap(page, grid, alpha=0.6)
    assert out.size == page.size and out.mode == "RGB"
    arr = np.asarray(out).astype(int)
    hot = arr[110, 75]
    cold = arr[5, 5]
    assert hot[0] > hot[2]  # red-ish where the match is
    assert cold[2] > cold[0]  # blue-ish, faint, elsewhere
    assert np.abs(arr[5, 5] - 255).max() < 120  # the page stays readable where nothing matched
