"""Scores mean what they say (issue 19.1): every hit names what its ``score`` is (``score_kind``), carries
the visual MaxSim and the BM25 where computed (hybrid: both, also for a page only one ranking reached),
and the answerer's relevance gate compares thresholds with MaxSim / BM25, never with a fused value."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pagelens.answer.types import Citation
from pagelens.index.stores.base import VectorStore
from pagelens.index.stores.edge_store import QdrantEdgeStore
from pagelens.index.stores.server_store import QdrantServerStore
from pagelens.retrieve.hybrid import FusionConfig, maxsim
from pagelens.retrieve.retriever import Retriever
from pagelens.retrieve.types import SCORE_KINDS, SearchHit
from test_hybrid import FakeEmbedder
from test_store_contract import MANIFEST, text_points

COLL = MANIFEST.name


@pytest.fixture(params=["edge", "server"])
def filled(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[VectorStore, list[Any]]]:
    if request.param == "edge":
        store: VectorStore = QdrantEdgeStore(tmp_path / "edge")
    else:
        from qdrant_client import QdrantClient

        store = QdrantServerStore(QdrantClient(":memory:"), prefix="t_")
    points = text_points()
    store.create_collection(MANIFEST)
    store.upsert(COLL, points)
    yield store, points
    store.close()


def bm25_of_every_page(store: VectorStore, question: str) -> dict[str, float]:
    """BM25 of every page for ``question`` (0.0 for a page sharing no term), from an unfiltered text search."""
    scores = {h.id: h.score for h in store.search_text(COLL, question, limit=100)}
    return {str(pid): scores.get(str(pid), 0.0) for pid, _ in store.iter_payloads(COLL)}


def test_visual_and_text_modes_name_their_score(filled: tuple[VectorStore, list[Any]]) -> None:
    store, points = filled
    embedder = FakeEmbedder(points)
    retriever = Retriever(embedder, store)  # type: ignore[arg-type]
    query = embedder.embed_queries(["#2"])[0]
    by_id = {p.id: p for p in points}

    visual = retriever.search(COLL, "#2 warehouse", k=4, mode="visual")
    assert [h.score_kind for h in visual] == ["maxsim"] * 4
    for hit in visual:
        assert hit.visual_score == hit.score and hit.text_score is None
        assert hit.score == pytest.approx(maxsim(query, by_id[hit.point_id].embedding.full), abs=1e-3)
    assert visual[0].point_id == points[2].id

    text = retriever.search(COLL, "warehouse demolition permit", k=4, mode="text")
    assert [h.score_kind for h in text] == ["bm25", "bm25"]
    bm25 = bm25_of_every_page(store, "warehouse demolition permit")
    for hit in text:
        assert hit.text_score == hit.score == pytest.approx(bm25[hit.point_id])
        assert hit.visual_score is None  # text mode encodes no query
    assert embedder.calls == 2  # the query above and the visual search: text mode encodes nothing


@pytest.mark.parametrize("method", ["rrf", "dbsf"])
def test_hybrid_hits_carry_both_scores_also_from_one_ranking(
    filled: tuple[VectorStore, list[Any]], method: str
) -> None:
    """candidates=1, k=4: each ranking is 4 deep, so the fused top 4 holds pages that only one ranking
    reached; their missing MaxSim / BM25 is computed and equals what the other mode gives."""
    store, points = filled
    embedder = FakeEmbedder(points)
    retriever = Retriever(embedder, store, fusion=FusionConfig(method, rrf_k=2.0, candidates=1))  # type: ignore[arg-type]
    question = "#3 Zephyr warehouse invoice 4,512"  # five pages share a term: the 4-deep text ranking is full
    query = embedder.embed_queries([question])[0]
    by_id = {p.id: p for p in points}
    bm25 = bm25_of_every_page(store, question)
    visual_top = {h.id for h in store.search(COLL, query, limit=4, mode="exact")}
    text_top = {h.id for h in store.search_text(COLL, question, limit=4)}

    hits = retriever.search(COLL, question, k=4, mode="hybrid")
    assert len(hits) == 4 and [h.score_kind for h in hits] == [method] * 4
    ids = {h.point_id for h in hits}
    assert ids - visual_top and ids - text_top  # pages reached by one ranking only are among them
    for hit in hits:
        page = by_id[hit.point_id]
        assert hit.visual_score == pytest.approx(maxsim(query, page.embedding.full), abs=1e-3)
        assert hit.text_score == pytest.approx(bm25[hit.point_id], abs=1e-4)
        assert hit.score != hit.visual_score and hit.score != hit.text_score
    # the scanned page (#3, no text layer) is the visual winner: BM25 0, not None
    assert points[3].id in ids
    assert next(h for h in hits if h.point_id == points[3].id).text_score == 0.0
    # the fused value is a rank value, bounded whatever the similarities are
    bound = 2 / (2.0 + 1) if method == "rrf" else 2.0
    assert all(0 < h.score <= bound + 1e-9 for h in hits)
    assert max(h.visual_score or 0 for h in hits) > bound  # MaxSim is on another scale


def test_hybrid_page_sharing_no_term_scores_zero_bm25(filled: tuple[VectorStore, list[Any]]) -> None:
    """A short text ranking holds every page that shares a term: the others score BM25 0.0."""
    store, points = filled
    retriever = Retriever(FakeEmbedder(points), store, fusion=FusionConfig(candidates=50))  # type: ignore[arg-type]
    hits = retriever.search(COLL, "#0 demolition", k=6, mode="hybrid")
    sharing = {points[1].id, points[4].id}
    assert {h.point_id for h in hits} == {p.id for p in points}
    for hit in hits:
        assert (hit.text_score > 0) == (hit.point_id in sharing)
        assert hit.visual_score is not None


def test_fallback_to_visual_names_maxsim(tmp_path: Path) -> None:
    from test_store_contract import _legacy_collection

    store = _legacy_collection("edge", tmp_path)
    points = text_points()
    store.upsert(COLL, points)
    try:
        hits = Retriever(FakeEmbedder(points), store).search(  # type: ignore[arg-type]
            COLL, "#1", k=2, mode="hybrid", fallback_to_visual=True)
        assert [h.score_kind for h in hits] == ["maxsim", "maxsim"]
        assert hits[0].visual_score == hits[0].score and hits[0].text_score is None
    finally:
        store.close()


def test_score_kinds_are_documented() -> None:
    from pagelens.api.schemas import AnswerOut, SearchResult

    assert set(SCORE_KINDS) == {"maxsim", "bm25", "rrf", "dbsf"}
    schema = SearchResult.model_json_schema()
    assert schema["properties"]["score_kind"]["enum"] == ["maxsim", "bm25", "rrf", "dbsf"]
    assert "score_kind" in schema["required"]
    for kind in SCORE_KINDS:
        assert kind in schema["properties"]["score"]["description"]
    assert "MaxSim" in schema["properties"]["visual_score"]["description"]
    assert "BM25" in schema["properties"]["text_score"]["description"]
    citation = AnswerOut.model_json_schema()["$defs"]["CitationOut"]["properties"]
    assert {"score", "score_kind", "visual_score", "text_score", "image_url"} <= set(citation)
    hit = SearchHit(1, "d", "d.pdf", 1, 1, 0.5, None, score_kind="rrf", visual_score=9.0, text_score=1.5)
    assert {"score": 0.5, "score_kind": "rrf", "visual_score": 9.0, "text_score": 1.5}.items() <= hit.to_dict().items()


# --- the relevance gate -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image, ImageDraw

    path = tmp_path_factory.mktemp("gate") / "page.png"
    image = Image.new("RGB", (300, 400), "white")
    ImageDraw.Draw(image).text((20, 20), "Invoice total 89.90 EUR", fill="black")
    image.save(path)
    return path


def hybrid_hits(png: Path, fused: list[float], visual: list[float | None], text: list[float | None],
                kind: str = "rrf") -> list[SearchHit]:
    return [
        SearchHit(rank=i + 1, doc_id=f"doc{i}", doc_name=f"doc{i}.pdf", page_no=1, page_count=1, score=s,
                  image_path=str(png), score_kind=kind, visual_score=v, text_score=t)  # type: ignore[arg-type]
        for i, (s, v, t) in enumerate(zip(fused, visual, text, strict=True))
    ]


def test_gate_uses_visual_maxsim_not_the_fused_score(settings_factory: Any, page_png: Path) -> None:
    from pagelens.answer.answerer import SmolVLMAnswerer

    # RRF values (<= 0.67) under a MaxSim threshold of 5, MaxSim above it: the pages are relevant
    hits = hybrid_hits(page_png, [0.5, 0.4, 0.3], [12.0, 4.0, 7.5], [3.0, 0.0, None])
    answerer = SmolVLMAnswerer(settings_factory(relevance_threshold=5.0, max_new_tokens=2))
    answer = answerer.answer("What is the total?", hits, k=3)
    assert not answer.no_relevant_pages
    assert answer.citations == [
        Citation("doc0", "doc0.pdf", 1, 0.5, str(page_png), "rrf", 12.0, 3.0),
        Citation("doc2", "doc2.pdf", 1, 0.3, str(page_png), "rrf", 7.5, None),
    ]
    assert answer.to_dict()["citations"][0] == {
        "doc_id": "doc0", "doc_name": "doc0.pdf", "page_no": 1, "score": 0.5, "image_path": str(page_png),
        "score_kind": "rrf", "visual_score": 12.0, "text_score": 3.0, "regions": [],
    }
    # a fused value above the threshold does not let a page with a low MaxSim through
    low = hybrid_hits(page_png, [0.6, 0.55], [0.2, 0.1], [9.0, 8.0])
    gated = SmolVLMAnswerer(settings_factory(relevance_threshold=0.5)).answer("What is the total?", low)
    assert gated.no_relevant_pages and gated.citations == [] and gated.generated_tokens == 0
    # ... unless its BM25 reaches the text threshold (either gate passes a page)
    passed = SmolVLMAnswerer(settings_factory(relevance_threshold=0.5, relevance_threshold_text=8.5,
                                              max_new_tokens=2)).answer("What is the total?", low)
    assert [c.doc_id for c in passed.citations] == ["doc0"]


def test_gate_on_text_mode_hits(settings_factory: Any, page_png: Path, caplog: pytest.LogCaptureFixture) -> None:
    from pagelens.answer.answerer import SmolVLMAnswerer

    text_hits = hybrid_hits(page_png, [4.0, 1.0], [None, None], [4.0, 1.0], kind="bm25")
    # BM25 threshold: only the page at or above it
    answerer = SmolVLMAnswerer(settings_factory(relevance_threshold_text=2.0, max_new_tokens=2))
    assert [c.doc_id for c in answerer.answer("Total?", text_hits).citations] == ["doc0"]
    assert SmolVLMAnswerer(settings_factory(relevance_threshold_text=5.0)).answer("Total?", text_hits).no_relevant_pages
    # only the MaxSim threshold: text-mode hits have no MaxSim, so they are kept, and that is said once
    answerer = SmolVLMAnswerer(settings_factory(relevance_threshold=100.0, max_new_tokens=2))
    with caplog.at_level(logging.WARNING, logger="pagelens.answer.answerer"):
        first = answerer.answer("Total?", text_hits)
        answerer.answer("Total?", text_hits)
    assert [c.doc_id for c in first.citations] == ["doc0", "doc1"]
    warnings = [r.getMessage() for r in caplog.records if "relevance gate" in r.getMessage()]
    assert len(warnings) == 1 and "PAGELENS_RELEVANCE_THRESHOLD_TEXT" in warnings[0]


def test_gate_falls_back_to_a_maxsim_ranking_score(settings_factory: Any, page_png: Path) -> None:
    """A hit built with only its ranking score (visual mode, no visual_score set) is gated on it."""
    from pagelens.answer.answerer import SmolVLMAnswerer

    hits = hybrid_hits(page_png, [9.0, 3.0], [None, None], [None, None], kind="maxsim")
    answerer = SmolVLMAnswerer(settings_factory(relevance_threshold=5.0, max_new_tokens=2))
    assert [c.doc_id for c in answerer.answer("Total?", hits).citations] == ["doc0"]
    assert np.isclose(answerer.answer("Total?", hits).citations[0].score, 9.0)
