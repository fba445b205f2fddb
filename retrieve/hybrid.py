"""Retrieval modes and hybrid (visual + text) search over a ``VectorStore``.

Modes (``QueryMode``, accepted by the CLI ``--mode``, the API ``mode`` field and ``Pagelens.search``):

=============  ===========================================================================
``visual``     MaxSim on the page images with the configured strategy (``search_mode``:
               ``two_stage`` pooled prefetch + exact rerank, or ``exact`` brute force)
``two_stage``  visual, two-stage strategy (the pre-hybrid meaning of ``--mode``)
``exact``      visual, brute-force strategy
``text``       BM25 on the pages' text layers (sparse vector ``text_bm25``); no model needed
``hybrid``     visual (configured strategy) and BM25, each ``candidates`` deep, fused by
               ``rrf`` or ``dbsf`` (``retrieve.fusion``) with ``text_weight``
=============  ===========================================================================

Page text is the PDF text layer, or OCR (``ingest.ocr``) where a page has no usable one, analysed in
the page's language (``index.text_analysis``). Pages with no text at all (OCR off or unavailable, or
nothing read) have an empty BM25 vector: in ``text`` mode they are never found, in ``hybrid`` they
compete on their visual rank alone. A query with no indexable term (only
stopwords) gives an empty text ranking, so ``hybrid`` returns the visual ranking unchanged.

Collections created before the text index existed: an explicit ``text``/``hybrid`` raises
``TextIndexMissingError`` (re-index to get it); the *default* mode (no mode given) falls back to
``visual`` with a warning, so upgrading pagelens never breaks searching an old collection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal, cast

from index.store import VectorStore
from index.types import PageFilter, RetrievalMode, ScoredPage, SearchMode
from pagelens.errors import InvalidRequestError
from retrieve.fusion import FusedItem, dbsf, rrf

log = logging.getLogger(__name__)

QUERY_MODES: tuple[str, ...] = ("visual", "text", "hybrid", "two_stage", "exact")
FusionMethod = Literal["rrf", "dbsf"]


def resolve_mode(mode: str | None, default_mode: str = "visual", strategy: str = "two_stage") -> tuple[
    RetrievalMode, SearchMode
]:
    """``(retrieval mode, visual strategy)`` for a user-given mode (None: ``default_mode``)."""
    chosen = mode or default_mode
    if chosen in ("two_stage", "exact"):
        return "visual", cast(SearchMode, chosen)
    if chosen not in ("visual", "text", "hybrid"):
        raise InvalidRequestError(
            f"unknown search mode '{chosen}'; use one of: {', '.join(QUERY_MODES)}", mode=str(chosen)
        )
    if strategy not in ("two_stage", "exact"):
        raise InvalidRequestError(f"unknown visual strategy '{strategy}'; use two_stage or exact")
    return cast(RetrievalMode, chosen), cast(SearchMode, strategy)


@dataclass(frozen=True)
class FusionConfig:
    """How ``hybrid`` fuses. ``text_weight`` in [0, 1]; the visual ranking gets ``1 - text_weight``
    (weights are doubled, so 0.5 is plain unweighted RRF / DBSF). ``candidates``: depth of each
    ranking before fusion."""

    method: FusionMethod = "rrf"
    rrf_k: float = 2.0
    text_weight: float = 0.5
    candidates: int = 50

    def __post_init__(self) -> None:
        if self.method not in ("rrf", "dbsf"):
            raise InvalidRequestError(f"unknown fusion '{self.method}'; use rrf or dbsf")
        if not 0.0 <= self.text_weight <= 1.0:
            raise InvalidRequestError(f"hybrid text weight must be in [0, 1], got {self.text_weight}")
        if self.rrf_k <= 0 or self.candidates < 1:
            raise InvalidRequestError("rrf_k must be > 0 and candidates >= 1")

    @classmethod
    def from_settings(cls, settings: Any) -> FusionConfig:
        return cls(
            method=getattr(settings, "fusion", "rrf"),
            rrf_k=float(getattr(settings, "rrf_k", 2.0)),
            text_weight=float(getattr(settings, "hybrid_text_weight", 0.5)),
            candidates=int(getattr(settings, "hybrid_candidates", 50)),
        )


@dataclass
class RankedPage:
    """A page of a (possibly fused) ranking: ``score`` is MaxSim (visual), BM25 (text) or the fused
    score (hybrid); ``visual_score`` / ``text_score`` are the inputs (None when the page was not in
    that ranking)."""

    id: str
    score: float
    payload: dict[str, Any]
    visual_score: float | None = None
    text_score: float | None = None


def fuse(
    visual: list[ScoredPage], text: list[ScoredPage], limit: int, config: FusionConfig
) -> list[RankedPage]:
    """Fuse a visual and a text ranking (each best first) into the top ``limit``."""
    payloads = {p.id: p.payload for p in text}
    payloads.update({p.id: p.payload for p in visual})
    rankings = {"visual": [(p.id, p.score) for p in visual], "text": [(p.id, p.score) for p in text]}
    weights = {"visual": 2.0 * (1.0 - config.text_weight), "text": 2.0 * config.text_weight}
    fused: list[FusedItem]
    if config.method == "rrf":
        fused = rrf(rankings, k=config.rrf_k, weights=weights, limit=limit)
    else:
        fused = dbsf(rankings, weights=weights, limit=limit)
    return [
        RankedPage(
            id=item.id,
            score=item.score,
            payload=payloads[item.id],
            visual_score=item.scores.get("visual"),
            text_score=item.scores.get("text"),
        )
        for item in fused
    ]


def search_pages(
    store: VectorStore,
    collection: str,
    *,
    mode: RetrievalMode,
    limit: int,
    query_vectors: Any = None,
    question: str = "",
    strategy: SearchMode = "two_stage",
    page_filter: PageFilter | None = None,
    prefetch_limit: int = 100,
    fusion: FusionConfig | None = None,
) -> list[RankedPage]:
    """One search in ``mode``. ``query_vectors`` [n_q, dim] float32 is needed for visual/hybrid,
    ``question`` for text/hybrid."""
    if mode == "text":
        return [
            RankedPage(p.id, p.score, p.payload, text_score=p.score)
            for p in store.search_text(collection, question, limit=limit, page_filter=page_filter)
        ]
    if mode == "visual":
        hits = store.search(
            collection, query_vectors, limit=limit, mode=strategy, page_filter=page_filter,
            prefetch_limit=max(prefetch_limit, limit),
        )
        return [RankedPage(p.id, p.score, p.payload, visual_score=p.score) for p in hits]
    if mode != "hybrid":
        raise InvalidRequestError(f"unknown retrieval mode '{mode}'")
    config = fusion or FusionConfig()
    depth = max(config.candidates, limit)
    text = store.search_text(collection, question, limit=depth, page_filter=page_filter)
    visual = store.search(
        collection, query_vectors, limit=depth, mode=strategy, page_filter=page_filter,
        prefetch_limit=max(prefetch_limit, depth),
    )
    return fuse(visual, text, limit, config)
