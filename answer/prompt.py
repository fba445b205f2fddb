"""Prompt building for SmolVLM (Idefics3) over retrieved pages, and the image-token budget.

Message layout (one user turn, SmolVLM chat-template format)::

    [{"role": "user", "content": [
        {"type": "text", "text": "Document: <doc_name>, page <n>:"}, {"type": "image"},   # rank 1
        {"type": "text", "text": "Document: <doc_name>, page <n>:"}, {"type": "image"},   # rank 2 ...
        {"type": "text", "text": "\\nQuestion: <question>\\n<instruction>"},
    ]}]

The chat template turns every ``{"type": "image"}`` into one ``<image>`` placeholder; the processor
expands each into its tiles (see ``image_token_count``).

Image tokens of one page (Idefics3 / SmolVLM image processor, mirrored from transformers 5
``Idefics3ImageProcessor._preprocess``): the page is resized so its longest edge is ``longest_edge`` px
(aspect kept, the short side rounded up to even; small pages are upscaled), then each side is rounded up to
a multiple of the tile size ``T`` (``max_image_size["longest_edge"]``, 512 for SmolVLM-256M/500M). A page
of ``R x C`` tiles with ``R * C > 1`` becomes ``R * C`` local tiles + 1 global tile; a page that fits one
tile has only the global tile. Every tile is ``image_seq_len`` ``<image>`` tokens (64 for SmolVLM-256M).
So a US-letter page at longest edge 1536 is 3 x 3 + 1 = 10 tiles = 640 image tokens, at 512 one tile = 64.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pagelens.core.errors import IngestError

if TYPE_CHECKING:
    from pagelens.retrieve.types import SearchHit
    from PIL import Image

logger = logging.getLogger(__name__)

# transformers' Idefics3 image processors never resize past this (MAX_IMAGE_SIZE, px).
IDEFICS3_MAX_IMAGE_SIZE = 4096

INSTRUCTION = (
    "Answer the question using only the pages above. Name the document and page you used. "
    "If the pages do not contain the answer, say so."
)


class PageForPrompt(Protocol):
    """Anything with a document name and a 1-based page number (``SearchHit``, ``Citation``)."""

    @property
    def doc_name(self) -> str: ...

    @property
    def page_no(self) -> int: ...


def page_label(doc_name: str, page_no: int) -> str:
    """The text shown right before a page image: ``Document: <doc_name>, page <n>:``."""
    return f"Document: {doc_name}, page {page_no}:"


def build_messages(question: str, pages: Sequence[PageForPrompt]) -> list[dict[str, Any]]:
    """Chat messages for SmolVLM: per page (in the given rank order) its label then its image, then the
    question and the instruction. Images are placeholders; pass the page images, in the same order, to the
    processor along with the rendered template."""
    content: list[dict[str, Any]] = []
    for page in pages:
        content.append({"type": "text", "text": page_label(page.doc_name, page.page_no)})
        content.append({"type": "image"})
    content.append({"type": "text", "text": f"\nQuestion: {question.strip()}\n{INSTRUCTION}"})
    return [{"role": "user", "content": content}]


# ------------------------------------------------------------------------------------------------
# Image-token arithmetic
# ------------------------------------------------------------------------------------------------


def _resized_size(width: int, height: int, longest_edge: int) -> tuple[int, int]:
    """(width, height) after the processor's longest-edge resize (aspect kept, short side even)."""
    width, height = max(int(width), 1), max(int(height), 1)
    aspect = width / height
    if width >= height:
        width = longest_edge
        height = int(width / aspect)
        height += height % 2
    else:
        height = longest_edge
        width = int(height * aspect)
        width += width % 2
    width, height = max(width, 1), max(height, 1)
    # scale below the processor's absolute maximum
    aspect = width / height
    if width >= height and width > IDEFICS3_MAX_IMAGE_SIZE:
        width, height = IDEFICS3_MAX_IMAGE_SIZE, max(int(IDEFICS3_MAX_IMAGE_SIZE / aspect), 1)
    elif height > width and height > IDEFICS3_MAX_IMAGE_SIZE:
        height, width = IDEFICS3_MAX_IMAGE_SIZE, max(int(IDEFICS3_MAX_IMAGE_SIZE * aspect), 1)
    return width, height


def tile_grid(width: int, height: int, *, longest_edge: int, tile_size: int) -> tuple[int, int]:
    """(rows, cols) of local tiles an image of ``width x height`` px is cut into; (0, 0) when it fits in
    a single tile (then only the global tile is used)."""
    w, h = _resized_size(width, height, longest_edge)
    aspect = w / h
    if w >= h:
        w = math.ceil(w / tile_size) * tile_size
        h = math.ceil(int(w / aspect) / tile_size) * tile_size
    else:
        h = math.ceil(h / tile_size) * tile_size
        w = math.ceil(int(h * aspect) / tile_size) * tile_size
    if h > tile_size or w > tile_size:
        return h // tile_size, w // tile_size
    return 0, 0


def image_token_count(
    width: int,
    height: int,
    *,
    longest_edge: int,
    tile_size: int,
    image_seq_len: int,
    do_image_splitting: bool = True,
) -> int:
    """``<image>`` tokens the Idefics3 processor emits for one ``width x height`` image:
    ``(rows * cols + 1) * image_seq_len`` when split into more than one tile, else ``image_seq_len``."""
    if not do_image_splitting:
        return image_seq_len
    rows, cols = tile_grid(width, height, longest_edge=longest_edge, tile_size=tile_size)
    tiles = rows * cols + 1 if rows * cols > 0 else 1
    return tiles * image_seq_len


def fit_longest_edge(
    width: int,
    height: int,
    *,
    max_tokens: int,
    longest_edge: int,
    tile_size: int,
    image_seq_len: int,
    do_image_splitting: bool = True,
) -> int:
    """The largest longest edge (px) <= ``longest_edge`` at which the image costs at most ``max_tokens``
    image tokens, trying ``longest_edge`` then multiples of ``tile_size`` below it. A budget below one
    tile still gets one tile (``tile_size``: ``image_seq_len`` tokens, the least an image can cost)."""
    candidates = [longest_edge] + [
        n * tile_size for n in range((longest_edge - 1) // tile_size, 0, -1) if n * tile_size < longest_edge
    ]
    for edge in candidates:
        cost = image_token_count(
            width,
            height,
            longest_edge=edge,
            tile_size=tile_size,
            image_seq_len=image_seq_len,
            do_image_splitting=do_image_splitting,
        )
        if cost <= max_tokens:
            return edge
    return min(tile_size, longest_edge)


# ------------------------------------------------------------------------------------------------
# Page selection
# ------------------------------------------------------------------------------------------------


def open_page_image(hit: SearchHit) -> Image.Image:
    """Open (lazily: header only, pixels decoded on first use) the stored image of ``hit``.

    Raises ``IngestError`` naming the document and page when there is no readable image file.
    """
    from PIL import Image, UnidentifiedImageError

    where = f"{hit.doc_name} (doc_id {hit.doc_id})"
    if not hit.image_path:
        raise IngestError(
            where, "no page image is stored for this page; re-index the document", page=hit.page_no
        )
    path = Path(hit.image_path)
    if not path.is_file():
        raise IngestError(
            where,
            f"page image {path} is missing on this host; re-index the document to restore it (with workers on "
            "several hosts: set PAGELENS_PAGE_IMAGES_DIR on this one to the shared folder they wrote to)",
            page=hit.page_no,
            image_path=str(path),
        )
    try:
        return Image.open(path)
    except (OSError, UnidentifiedImageError) as exc:
        raise IngestError(
            where, f"page image {path} cannot be read: {exc}", page=hit.page_no, image_path=str(path)
        ) from exc


def select_pages(
    hits: Sequence[SearchHit],
    k: int,
    max_image_tokens: int,
    tokens_per_image: Callable[[Image.Image], int],
    open_image: Callable[[SearchHit], Image.Image] = open_page_image,
) -> list[SearchHit]:
    """The pages to show: the first ``k`` hits in rank order, stopping before the first page that would
    take the prompt's image tokens past ``max_image_tokens``.

    hits: in rank order (sorted by ``rank``, ties keep their order).
    tokens_per_image: image tokens one page costs (see ``image_token_count``).
    open_image: how a hit's image is opened (default ``open_page_image``; raises ``IngestError`` when a
      considered page's image is missing).

    At least one page is always returned when there are hits: if even the best page alone exceeds the
    budget it is returned by itself, and the answerer shows it at a reduced resolution
    (``fit_longest_edge``) so the prompt still respects the budget (down to one tile, ``image_seq_len``
    tokens, which no budget can go below).
    """
    ordered = sorted(hits, key=lambda h: h.rank)[: max(int(k), 0)]
    selected: list[SearchHit] = []
    used = 0
    for hit in ordered:
        cost = tokens_per_image(open_image(hit))
        if selected and used + cost > max_image_tokens:
            logger.info(
                "image-token budget %d reached: showing %d of %d pages",
                max_image_tokens,
                len(selected),
                len(ordered),
            )
            break
        selected.append(hit)
        used += cost
    return selected
