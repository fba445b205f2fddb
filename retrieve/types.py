"""Search results as handed to the answerer, the CLI and the API."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class SearchHit:
    """One retrieved page, rank 1 first.

    score: MaxSim (sum over query tokens of the best dot product with a page token) in visual mode,
        BM25 in text mode, the fused score (``retrieve.fusion``) in hybrid mode.
    visual_score / text_score: the MaxSim / BM25 inputs (None when not computed or the page was not
        in that ranking).
    image_path: the stored page image (PNG) on local disk, or None when it is not available here.
    text: the page text (text layer or OCR, see ``text_source``).
    """

    rank: int
    doc_id: str
    doc_name: str
    page_no: int
    page_count: int
    score: float
    image_path: str | None
    text: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    point_id: str = ""
    visual_score: float | None = None
    text_score: float | None = None
    language: str | None = None  # detected language of the page text (ISO 639-1), None before languages
    text_source: str | None = None  # pdf | ocr | none; None for pages indexed before OCR

    def to_dict(self, with_text: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not with_text:
            data.pop("text")
        return data
