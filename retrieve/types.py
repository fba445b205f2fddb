"""Search results as handed to the answerer, the CLI and the API."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

ScoreKind = Literal["maxsim", "bm25", "rrf", "dbsf"]
"""What a hit's ``score`` is: ``maxsim`` (visual mode), ``bm25`` (text mode), ``rrf`` / ``dbsf`` (hybrid
mode, the fused value of that fusion method)."""

SCORE_KINDS: dict[str, str] = {
    "maxsim": "visual MaxSim: sum over the query tokens of each token's best dot product with a page "
    "token (L2-normalised vectors, so at most the number of query tokens)",
    "bm25": "BM25 of the question's terms against the page's text layer (Qdrant IDF; 0 when no term is shared)",
    "rrf": "reciprocal rank fusion of the visual and the text ranking: sum of w / (rrf_k + rank); "
    "a rank, not a similarity (at most 2 / (rrf_k + 1), 0.67 with the defaults)",
    "dbsf": "distribution-based score fusion of the visual and the text ranking: weighted sum of each "
    "ranking's normalised score (each in [0, 1], so at most 2)",
}
"""One line per ``ScoreKind``, for schema descriptions, CLI help and docs."""


@dataclass
class SearchHit:
    """One retrieved page, rank 1 first.

    score: what ranked the page; ``score_kind`` names it: ``maxsim`` (sum over query tokens of the best
        dot product with a page token) in visual mode, ``bm25`` in text mode, ``rrf`` / ``dbsf`` (the
        fused value, ``pagelens.retrieve.fusion``; not a similarity) in hybrid mode.
    visual_score: MaxSim of the page (visual and hybrid modes; in hybrid mode computed for every returned
        page, also one the visual ranking did not reach). None in text mode (no query encoding).
    text_score: BM25 of the page (text and hybrid modes; in hybrid mode computed for every returned page,
        0.0 when the page shares no term with the question). None in visual mode.
    image_path: the stored page image (PNG) on this host's disk (the payload's path, relative to the
        page-image root ``PAGELENS_PAGE_IMAGES_DIR``, resolved), or None when no readable location is
        known; the file may be missing on a host that does not share the root.
    text: the page text (text layer or OCR, see ``text_source``).
    regions: where on the page it matched, best first (at most ``Settings.tuning.max_regions``): dicts
        ``{"x0", "y0", "x1", "y1", "source", "score"}`` with coordinates as fractions of the page's width
        and height (origin top-left, 0..1), ``source`` ``"text"`` (words matching the question, with
        their ``"text"``) or ``"visual"`` (patches that won MaxSim); see ``pagelens.retrieve.regions``.
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
    score_kind: ScoreKind = "maxsim"
    language: str | None = None  # detected language of the page text (ISO 639-1), None before languages
    text_source: str | None = None  # pdf | ocr | none; None for pages indexed before OCR
    regions: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, with_text: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not with_text:
            data.pop("text")
        return data
