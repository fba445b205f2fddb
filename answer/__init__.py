"""Answers over retrieved pages with SmolVLM, citing document and page.

``SmolVLMAnswerer(settings)`` implements the ``Answerer`` protocol: ``answer()`` (blocking) and
``stream()`` (``AnswerEvent`` token events, then ``done`` with the ``Answer``). Nothing loads at import.
"""

from pagelens.answer.answerer import SmolVLMAnswerer
from pagelens.answer.base import Answerer
from pagelens.answer.prompt import (
    INSTRUCTION,
    PageForPrompt,
    build_messages,
    fit_longest_edge,
    image_token_count,
    open_page_image,
    page_label,
    select_pages,
    tile_grid,
)
from pagelens.answer.types import NO_RELEVANT_PAGES_TEXT, Answer, AnswerEvent, Citation, Timings

__all__ = [
    "INSTRUCTION",
    "NO_RELEVANT_PAGES_TEXT",
    "Answer",
    "AnswerEvent",
    "Answerer",
    "Citation",
    "PageForPrompt",
    "SmolVLMAnswerer",
    "Timings",
    "build_messages",
    "fit_longest_edge",
    "image_token_count",
    "open_page_image",
    "page_label",
    "select_pages",
    "tile_grid",
]
