"""Retrieval modes (visual / text / hybrid), fusion through the Retriever, old collections, and the
known-item set over real PDFs with the tiny random retriever (slow)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REAL_PDFS
from pagelens.index.stores.edge_store import QdrantEdgeStore
from pagelens.retrieve.hybrid import FusionConfig, fuse, resolve_mode
from pagelens.retrieve.retriever import Retriever
from test_store_contract import DIM, MANIFEST, _legacy_collection, text_points, unit

from pagelens.core.errors import InvalidRequestError, TextIndexMissingError
from pagelens.core.types import ScoredPage

KNOWN_ITEMS = Path(__file__).parent / "data" / "known_items.jsonl"


class FakeEmbedder:
    """Query vectors chosen per question: a question naming a point index ("#3") gets that page's
    own tokens (so visual search finds it first); anything else a fixed random query."""

    model_id = MANIFEST.model_id
    model_revision = MANIFEST.model_revision

    def __init__(self, points: list[Any]) -> None:
        self.points = points
        self.calls = 0

    def embed_queries(self, questions: list[str]) -> list[np.ndarray]:
        self.calls += 1
        out = []
        for q in questions:
            if "#" in q:
                idx = int(q.split("#")[1].split()[0])
                out.append(unit(self.points[idx].embedding.full[:8]))
            else:
                out.append(unit(np.random.default_rng(0).standard_normal((6, DIM))))
        return out


@pytest.fixture
def edge(tmp_path: Path) -> Any:
    store = QdrantEdgeStore(tmp_path / "edge")
    points = text_points()
    store.create_collection(MANIFEST)
    store.upsert(MANIFEST.name, points)
    yield store, points
    store.close()


def test_resolve_mode_mapping() -> None:
    assert resolve_mode("two_stage") == ("visual", "two_stage")
    assert resolve_mode("exact", strategy="two_stage") == ("visual", "exact")
    assert resolve_mode("visual", strategy="exact") == ("visual", "exact")
    assert resolve_mode("hybrid") == ("hybrid", "two_stage")
    assert resolve_mode("text") == ("text", "two_stage")
    assert resolve_mode(None, default_mode="hybrid") == ("hybrid", "two_stage")
    with pytest.raises(InvalidRequestError, match="visual, text, hybrid"):
        resolve_mode("bm25")
    with pytest.raises(InvalidRequestError):
        FusionConfig(text_weight=1.5)


def test_fuse_keeps_inputs_and_payloads() -> None:
    visual = [ScoredPage("a", 9.0, {"n": "a"}), ScoredPage("b", 8.0, {"n": "b"}), ScoredPage("c", 7.0, {"n": "c"})]
    text = [ScoredPage("c", 5.0, {"n": "c"}), ScoredPage("d", 1.0, {"n": "d"})]
    fused = fuse(visual, text, limit=10, config=FusionConfig("rrf", rrf_k=2.0))
    # a: 1/3; b: 1/4; c: 1/5 + 1/3; d: 1/4 -> c a b d (b and d tie at 1/4: best rank 1 vs 2... b is 2, d 2; id)
    assert [p.id for p in fused] == ["c", "a", "b", "d"]
    assert fused[0].score == pytest.approx(1 / 5 + 1 / 3)
    assert (fused[0].visual_score, fused[0].text_score) == (7.0, 5.0)
    assert (fused[3].visual_score, fused[3].text_score) == (None, 1.0)
    assert fused[3].payload == {"n": "d"}
    # text weight 0: the visual order (d, absent from it, scores 0 and comes last)
    assert [p.id for p in fuse(visual, text, 10, FusionConfig(text_weight=0.0))] == ["a", "b", "c", "d"]
    # text weight 1: the text order first
    assert [p.id for p in fuse(visual, text, 2, FusionConfig("dbsf", text_weight=1.0))] == ["c", "d"]
    # an empty text ranking leaves the visual ranking unchanged
    assert [p.id for p in fuse(visual, [], 10, FusionConfig())] == ["a", "b", "c"]


def test_retriever_modes(edge: Any) -> None:
    store, points = edge
    embedder = FakeEmbedder(points)
    retriever = Retriever(embedder, store)  # type: ignore[arg-type]
    coll = MANIFEST.name
    # text: BM25 only, no query encoding
    hits = retriever.search(coll, "warehouse demolition permit", k=3, mode="text")
    assert [h.point_id for h in hits] == [points[1].id, points[4].id]
    assert embedder.calls == 0 and hits[0].text_score == hits[0].score and hits[0].visual_score is None
    assert retriever.last_timings.mode == "text"
    # visual: the page whose tokens make the query comes first, whatever the words say
    hits = retriever.search(coll, "page #3 warehouse", k=3, mode="visual")
    assert hits[0].point_id == points[3].id and hits[0].text_score is None
    assert hits[0].visual_score == hits[0].score
    # hybrid: the scanned page (#3, no text) is first visually; "warehouse" puts pages 1 and 4 first
    # in text. Both the visual winner and the text winner make the top 3.
    hits = retriever.search(coll, "page #3 warehouse", k=3, mode="hybrid")
    top = {h.point_id for h in hits}
    assert points[3].id in top and points[4].id in top | {points[1].id}
    assert [h.rank for h in hits] == [1, 2, 3]
    assert all(h.score > 0 for h in hits)
    # stopwords only: hybrid = visual ranking
    assert [h.point_id for h in retriever.search(coll, "the of #2", k=5, mode="hybrid")] == [
        h.point_id for h in retriever.search(coll, "the of #2", k=5, mode="visual")
    ]
    # legacy names of the visual strategies still work
    assert retriever.search(coll, "#5", k=1, mode="exact")[0].point_id == points[5].id
    assert retriever.search(coll, "#5", k=1, mode="two_stage")[0].point_id == points[5].id
    with pytest.raises(InvalidRequestError):
        retriever.search(coll, "x", k=1, mode="sparse")


@pytest.mark.parametrize("kind", ["edge", "server"])
def test_old_collection_explicit_mode_errors_default_falls_back(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = _legacy_collection(kind, tmp_path)
    points = text_points()
    store.upsert(MANIFEST.name, points)
    retriever = Retriever(FakeEmbedder(points), store)  # type: ignore[arg-type]
    try:
        for mode in ("text", "hybrid"):
            with pytest.raises(TextIndexMissingError, match="--reindex"):
                retriever.search(MANIFEST.name, "warehouse #2", k=3, mode=mode)
        with caplog.at_level(logging.WARNING):
            hits = retriever.search(MANIFEST.name, "warehouse #2", k=3, mode="hybrid", fallback_to_visual=True)
        assert hits[0].point_id == points[2].id and retriever.last_timings.mode == "visual"
        assert "no text index" in caplog.text
    finally:
        store.close()


def test_service_default_mode_and_api_schema(tmp_path: Path, edge: Any) -> None:
    from pagelens.api.schemas import AskRequest, SearchRequest

    from pagelens.app.service import PagelensService
    from pagelens.core.settings import Settings

    store, points = edge
    settings = Settings(_env_file=None, data_dir=tmp_path / "d")  # type: ignore[call-arg]
    assert settings.retrieval_mode == "hybrid" and settings.tuning.fusion == "rrf" and settings.tuning.rrf_k == 2.0
    service = PagelensService(settings, store=store, embedder=FakeEmbedder(points))  # type: ignore[arg-type]
    hits = service.search(MANIFEST.name, "invoice FR-7781 #5", k=2)  # default: hybrid
    assert hits[0].point_id == points[5].id
    assert hits[0].visual_score is not None and hits[0].text_score is not None
    assert service.search(MANIFEST.name, "FR-7781", k=1, mode="text")[0].point_id == points[5].id
    for mode in ("visual", "text", "hybrid", "two_stage", "exact"):
        assert SearchRequest(question="q", mode=mode).mode == mode
        assert AskRequest(question="q", mode=mode).mode == mode
    with pytest.raises(ValueError):
        SearchRequest(question="q", mode="bm25")


# --- the known-item set over real PDFs (tiny random retriever) ---------------------------------


def test_known_item_set_is_reproducible() -> None:
    from make_known_items import make_known_items

    if not REAL_PDFS.is_dir():
        pytest.skip(f"{REAL_PDFS} not found")
    stored = [json.loads(line) for line in KNOWN_ITEMS.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert make_known_items(REAL_PDFS) == stored
    assert len(stored) >= 30
    assert {it["kind"] for it in stored} == {"sentence", "number"}


@pytest.mark.slow
def test_known_items_text_high_hybrid_close(settings_factory: Any, tmp_path: Path) -> None:
    from make_known_items import DEFAULT_DOCS

    from pagelens.app.evaluation import EvalDataset, load_jsonl, run_eval, write_report
    from pagelens.app.service import PagelensService

    if not REAL_PDFS.is_dir():
        pytest.skip(f"{REAL_PDFS} not found")
    settings = settings_factory(page_longest_edge=512, ingest_workers=0)
    service = PagelensService(settings)
    dataset = EvalDataset("known_items", load_jsonl(KNOWN_ITEMS), [REAL_PDFS / d for d in DEFAULT_DOCS])
    try:
        result = run_eval(service, dataset, "known", modes=["visual", "text", "hybrid"])
    finally:
        service.close()
    paths = write_report(result, tmp_path / "report")
    by_mode = {m.mode: m.summary for m in result.modes}
    print("\n" + paths["markdown"].read_text())  # the numbers, for the log (pytest -s)
    assert result.n_queries == len(dataset.queries) and all(m.error is None for m in result.modes)
    text, hybrid = by_mode["text"], by_mode["hybrid"]
    assert text["recall@5"] >= 0.9  # exact phrases of one page each
    assert text["ndcg@5"] >= 0.85
    assert hybrid["recall@5"] >= text["recall@5"] - 0.1  # fusion with a random ranking does not wreck it
    assert hybrid["recall@5"] > by_mode["visual"]["recall@5"] + 0.5
