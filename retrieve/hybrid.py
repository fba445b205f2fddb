"""Retrieval modes and hybrid (visual + text) search over a ``VectorStore``.

Modes (``QueryMode``, accepted by the CLI ``--mode``, the API ``mode`` field and ``PagelensService.search``):

=============  ===========================================================================
``visual``     MaxSim on the page images with the configured strategy (``search_mode``:
               ``two_stage`` pooled prefetch + exact rerank, or ``exact`` brute force)
``two_stage``  visual, two-stage strategy (the pre-hybrid meaning of ``--mode``)
``exact``      visual, brute-force strategy
``text``       BM25 on the pages' text layers (sparse vector ``text_bm25``); no model needed
``hybrid``     visual (configured strategy) and BM25, each ``candidates`` deep, fused by
               ``rrf`` or ``dbsf`` (``pagelens.retrieve.fusion``) with ``text_weight``
=============  ===========================================================================

Scores: ``RankedPage.score`` is what ranked the page, named by ``score_kind`` (``maxsim`` in visual
mode, ``bm25`` in text mode, ``rrf`` / ``dbsf`` in hybrid mode: a fused rank value, not a similarity).
``visual_score`` (MaxSim) and ``text_score`` (BM25) are given where computed: visual mode has no
``text_score``, text mode no ``visual_score`` (no query encoding); hybrid mode computes both for every
page it returns, also for a page that only one ranking reached (MaxSim from the page's full vectors,
BM25 by a text search restricted to that page's document; 0.0 when the page shares no term).

Page text is the PDF text layer, or OCR (``pagelens.ingest.ocr``) where a page has no usable one, analysed in
the page's language (``pagelens.index.stores.text_analysis``). Pages with no text at all (OCR off or
unavailable, or nothing read) have an empty BM25 vector: in ``text`` mode they are never found, in
``hybrid`` they compete on their visual rank alone. A query with no indexable term (only
stopwords) gives an empty text ranking, so ``hybrid`` returns the visual ranking unchanged.

Collections created before the text index existed: an explicit ``text``/``hybrid`` raises
``TextIndexMissingError`` (re-index to get it); the *default* mode (no mode given) falls back to
``visual`` with a warning, so upgrading pagelens never breaks searching an old collection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
from pagelens.index.stores.base import VectorStore
from pagelens.retrieve.fusion import FusedItem, dbsf, rrf
from pagelens.retrieve.types import ScoreKind

from pagelens.core.errors import InvalidRequestError
from pagelens.core.types import PageFilter, RetrievalMode, ScoredPage, SearchMode

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
        tuning = settings.tuning
        return cls(method=tuning.fusion, rrf_k=float(tuning.rrf_k), text_weight=float(tuning.hybrid_text_weight),
                   candidates=int(tuning.hybrid_candidates))


def score_kind(mode: RetrievalMode, fusion: FusionConfig | None = None) -> ScoreKind:
    """What ``score`` means for a search in retrieval ``mode``: maxsim, bm25, or the fusion method."""
    if mode == "visual":
        return "maxsim"
    if mode == "text":
        return "bm25"
    return (fusion or FusionConfig()).method


@dataclass
class RankedPage:
    """A page of a (possibly fused) ranking: ``score`` is MaxSim (visual), BM25 (text) or the fused
    score (hybrid); ``visual_score`` / ``text_score`` are the inputs (None when the page was not in
    that ranking; ``search_pages`` fills both for every hybrid result)."""

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
    fused = fuse(visual, text, limit, config)
    complete_visual_scores(store, collection, fused, query_vectors)
    complete_text_scores(store, collection, fused, question, text_ranking_complete=len(text) < depth)
    return fused


def maxsim(query: np.ndarray, page: np.ndarray) -> float:
    """MaxSim of ``query`` [n_q, dim] against ``page`` [n_tokens, dim] (both float32, L2-normalised):
    sum over query tokens of the best dot product with a page token (what the store's search returns)."""
    scores = np.asarray(query, dtype=np.float32) @ np.asarray(page, dtype=np.float32).T  # [n_q, n_tokens]
    return float(scores.max(axis=1).sum())


def complete_visual_scores(store: VectorStore, collection: str, pages: list[RankedPage], query: Any) -> None:
    """Set ``visual_score`` (MaxSim from the stored full vectors) on the pages the visual ranking did not
    reach. A page whose vectors are gone (deleted meanwhile) keeps None."""
    missing = [p for p in pages if p.visual_score is None]
    if not missing or query is None:
        return
    vectors = store.get_full_vectors(collection, [p.id for p in missing])
    for page in missing:
        if page.id in vectors:
            page.visual_score = maxsim(query, vectors[page.id])


def complete_text_scores(
    store: VectorStore, collection: str, pages: list[RankedPage], question: str, *, text_ranking_complete: bool
) -> None:
    """Set ``text_score`` (BM25) on the pages the text ranking did not reach.

    ``text_ranking_complete``: the text ranking held every page sharing a term with the question (it
    was shorter than asked), so a page absent from it scores 0.0. Otherwise the pages' documents are
    searched again by BM25 with a ``doc_ids`` filter deep enough to hold all their pages (IDF does not
    depend on the filter, so the scores are those of the unfiltered ranking); a page absent there
    shares no term and scores 0.0."""
    missing = [p for p in pages if p.text_score is None]
    if not missing:
        return
    found: dict[str, float] = {}
    doc_ids = sorted({str(p.payload["doc_id"]) for p in missing if p.payload.get("doc_id")})
    if not text_ranking_complete and doc_ids:
        doc_filter = PageFilter(doc_ids=doc_ids)
        depth = store.count(collection, doc_filter)
        if depth > 0:
            found = {p.id: p.score for p in store.search_text(collection, question, limit=depth,
                                                                page_filter=doc_filter)}
    for page in missing:
        if text_ranking_complete or page.payload.get("doc_id"):
            page.text_score = found.get(page.id, 0.0)
