"""Retriever families: which colpali-engine class embeds a checkpoint, and how its page tokens are pooled.

A checkpoint's family is read from its own ``config.json`` (of the base model for a peft adapter):
``architectures`` first (``["ColQwen2_5"]`` as colpali-engine saves it), then ``model_type``
(``"qwen2_5_vl"``; a base checkpoint such as SmolVLM's ``Idefics3ForConditionalGeneration`` maps by its
type). Families whose class the installed colpali-engine lacks are left out of ``supported_families()``.

Page-token layout and row/column pooling (``PageEmbedding.rows`` / ``cols``) per layout:

- ``tiles`` (ColIdefics3, ColModernVBert: ``Idefics3Processor`` splitting): local 512-px tiles row-major,
  then a global tile, 64 tokens (8 x 8) per tile; pooled over the assembled local-tile patch grid
  (``pagelens.models.embedder.pool_rows_cols``);
- ``merged_grid`` (ColQwen2/2.5/3/3.5, ColQwen2.5-Omni): one token per ``merge x merge`` block of
  patches, row-major over the resized page; the grid is ``image_grid_thw`` [t, h, w] / merge ->
  (h/merge) x (w/merge); rows [h/merge, dim], cols [w/merge, dim] (``pool_grid``);
- ``square`` (ColPali 32 x 32 = 1024 tokens, ColGemma3 16 x 16 = 256 tokens): a fixed s x s grid per page
  (s = sqrt(n_image_tokens)); when n is not a perfect square (an unknown variant), rows = cols = the one
  mean vector of the page's image tokens.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pagelens.core.errors import UnsupportedModelError

if TYPE_CHECKING:
    import torch

__all__ = ["FAMILIES", "RetrieverFamily", "UnsupportedModelError", "detect_family", "detect_family_in",
           "page_grid", "pool_grid", "supported_families"]

@dataclass(frozen=True)
class RetrieverFamily:
    """One colpali-engine model family.

    name: the colpali-engine model class (``ColQwen2_5``); processor: its processor class;
    model_types: ``config.json`` ``model_type`` values it loads; layout: ``tiles`` | ``merged_grid`` |
    ``square`` (module docstring); page_tokens: what one page costs, for the manifest and the docs.
    """

    name: str
    processor: str
    model_types: tuple[str, ...]
    layout: str
    page_tokens: str

    @property
    def tiled(self) -> bool:
        """Idefics3-style 512-px tiles (``page_longest_edge`` applies; the ColSmolVLM fast paths run)."""
        return self.layout == "tiles"

    def classes(self) -> tuple[Any, Any]:
        """(model class, processor class) from colpali-engine."""
        import colpali_engine.models as cm

        return getattr(cm, self.name), getattr(cm, self.processor)


_TILES = "prompt + 64 per 512-px tile (tiles of the page resized to page_longest_edge, plus a global tile)"
_MERGED = "prompt + one per 2 x 2 block of 14/16-px patches, capped by the processor's max_pixels"
FAMILIES: tuple[RetrieverFamily, ...] = (
    RetrieverFamily("ColIdefics3", "ColIdefics3Processor", ("idefics3",), "tiles", _TILES),
    RetrieverFamily("ColModernVBert", "ColModernVBertProcessor", ("modernvbert",), "tiles", _TILES),
    RetrieverFamily("ColPali", "ColPaliProcessor", ("paligemma",), "square",
                    "prompt + a fixed s x s grid (32 x 32 = 1024 at 448 px)"),
    RetrieverFamily("ColQwen2", "ColQwen2Processor", ("qwen2_vl",), "merged_grid", _MERGED),
    RetrieverFamily("ColQwen2_5", "ColQwen2_5_Processor", ("qwen2_5_vl",), "merged_grid", _MERGED),
    RetrieverFamily("ColQwen2_5Omni", "ColQwen2_5OmniProcessor", ("qwen2_5_omni_thinker", "qwen2_5_omni"),
                    "merged_grid", _MERGED),
    RetrieverFamily("ColQwen3", "ColQwen3Processor", ("qwen3_vl",), "merged_grid", _MERGED),
    RetrieverFamily("ColQwen3_5", "ColQwen3_5Processor", ("qwen3_5",), "merged_grid", _MERGED),
    RetrieverFamily("ColGemma3", "ColGemmaProcessor3", ("gemma3",), "square", "prompt + a fixed s x s grid (16 x 16 = 256)"),
)

SCORE_SCALE = ("maxsim: sum over query tokens (the family's query-augmentation tokens included) of the best "
               "cosine similarity with a page token; 0..n_query_tokens")


def supported_families() -> list[RetrieverFamily]:
    """The families whose model and processor classes the installed colpali-engine ships."""
    try:
        import colpali_engine.models as cm
    except ImportError:  # pragma: no cover - a dependency
        return []
    return [f for f in FAMILIES if hasattr(cm, f.name) and hasattr(cm, f.processor)]


def supported_list() -> str:
    """'ColIdefics3 (model_type idefics3), ...' for error messages."""
    return ", ".join(f"{f.name} (model_type {'/'.join(f.model_types)})" for f in supported_families())


def family_by_name(name: str) -> RetrieverFamily:
    for family in supported_families():
        if family.name == name:
            return family
    raise UnsupportedModelError(f"unknown retriever family '{name}'; supported: {supported_list()}")


def detect_family(config: dict[str, Any], where: str = "config.json") -> RetrieverFamily:
    """The family of a checkpoint from its parsed ``config.json``: an ``architectures`` entry naming a
    family class wins, then ``model_type``. Raises ``UnsupportedModelError`` listing the supported ones."""
    families = supported_families()
    archs = [str(a) for a in (config.get("architectures") or [])]
    for family in families:
        if family.name in archs:
            return family
    model_type = str(config.get("model_type") or "")
    for family in families:
        if model_type in family.model_types:
            return family
    raise UnsupportedModelError(
        f"{where}: model_type '{model_type or '?'}' (architectures {archs or '?'}) is not a retriever family "
        f"pagelens supports; supported: {supported_list()}. Set PAGELENS_RETRIEVER_MODEL to a checkpoint of "
        "one of them",
        model_type=model_type,
        architectures=archs,
        supported=[f.name for f in families],
    )


def detect_family_in(weights_dir: Path) -> RetrieverFamily:
    """``detect_family`` of ``weights_dir/config.json``."""
    path = Path(weights_dir) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UnsupportedModelError(f"{path}: cannot read the model config ({exc})") from exc
    return detect_family(config, where=str(path))


def pool_grid(image_vecs: torch.Tensor, grid: tuple[int, int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean-pool one page's image tokens laid out row-major on a ``grid`` = (rows, cols) token grid.

    image_vecs: [n, dim]. Returns (rows [R, dim], cols [C, dim]) when R * C == n; otherwise (no grid, or
    a count that does not match it) rows = cols = [1, dim], the mean of all image tokens (zeros if n = 0).
    """
    n, dim = image_vecs.shape
    if grid is not None and grid[0] * grid[1] == n and n > 0:
        patch = image_vecs.reshape(grid[0], grid[1], dim)
        return patch.mean(dim=1), patch.mean(dim=0)
    mean = image_vecs.mean(dim=0, keepdim=True) if n else image_vecs.new_zeros((1, dim))
    return mean, mean.clone()


def page_grid(family: RetrieverFamily, n_tokens: int, grid_thw: Any = None, merge: int = 2) -> tuple[int, int] | None:
    """The token grid of one page for the ``merged_grid`` and ``square`` layouts (None: unknown).

    grid_thw: that page's ``image_grid_thw`` row [t, h, w] (patches) for ``merged_grid``; merge: the image
    processor's ``merge_size``."""
    if family.layout == "merged_grid" and grid_thw is not None:
        t, h, w = (int(v) for v in grid_thw)
        if merge > 0 and t >= 1 and h % merge == 0 and w % merge == 0:
            return (t * h // merge, w // merge)  # t > 1 (a video) stacks frames as rows
        return None
    if family.layout == "square":
        side = math.isqrt(n_tokens)
        return (side, side) if side * side == n_tokens and side > 0 else None
    return None
