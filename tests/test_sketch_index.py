"""The sketch first stage (``pagelens.index.ann.sketch_index``): every token in the collection's top
principal components. Its projection and codes, its files (a torn tail, a drop remembered), and in a real
Qdrant Edge store: built by ``optimize`` past ``sketch_min_rows``, measured by the self-check, searches
through it equal exact MaxSim's, it follows upserts, deletions and compactions like the other stages,
and it is dropped when the check prefers another stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pagelens.index.ann.dedup_index import SPANS_FILE
from pagelens.index.ann.self_check import SearchPlan
from pagelens.index.ann.sketch_index import SketchIndex, fit_projection, project_codes
from pagelens.index.stores.search_status import SKETCH_INDEX
from test_fast_rerank import DIM, edge_with, planted_corpus, unit


def test_projection_keeps_the_top_components_and_codes_approximate_the_projected_dot_products() -> None:
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((DIM, DIM)))[0]
    spread = np.r_[np.full(8, 3.0), np.full(DIM - 8, 0.1)]  # 8 strong directions
    x = (rng.standard_normal((4000, DIM)) * spread) @ basis.T
    components, scale = fit_projection(x, dims=8)
    assert components.shape == (DIM, 8) and components.dtype == np.float32
    np.testing.assert_allclose(components.T @ components, np.eye(8), atol=1e-5)  # orthonormal
    captured = np.linalg.norm(x @ components) ** 2 / np.linalg.norm(x) ** 2
    assert captured > 0.98  # the strong directions, not the noise
    cache_scale = float(np.abs(x).max()) / 127
    codes = np.clip(np.rint(x / cache_scale), -127, 127).astype(np.int8)
    sketch = project_codes(codes, cache_scale, components, scale)
    assert sketch.shape == (4000, 8) and sketch.dtype == np.int8
    err = np.abs(sketch.astype(np.float32) * scale - x @ components)
    assert err.max() < scale + 8 * cache_scale  # one rounding each side
    assert project_codes(codes[:0], cache_scale, components, scale).shape == (0, 8)


def test_files_survive_a_reopen_drop_a_torn_tail_and_remember_a_drop(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    index = SketchIndex(tmp_path / "sketch")
    assert index.covered == 0 and index.projection() is None
    components, scale = fit_projection(rng.standard_normal((500, DIM)).astype(np.float32), dims=16)
    index.start(components, scale)
    pages = [rng.integers(-100, 100, (n, DIM)).astype(np.int8) for n in (5, 0, 7)]
    index.append_codes(0, pages, 0.01)
    again = SketchIndex(tmp_path / "sketch")
    assert again.covered == 3
    codes, recs, starts, lens = again.segments()  # type: ignore[misc]
    assert recs.tolist() == [0, 2] and lens.tolist() == [5, 7] and tuple(codes.shape) == (12, 16)
    np.testing.assert_array_equal(codes.numpy()[5:], project_codes(pages[2], 0.01, components, scale))
    with open(tmp_path / "sketch" / SPANS_FILE, "ab") as fh:  # spans of a record whose codes never landed
        fh.write(np.array([12, 9], dtype=np.int64).tobytes())
    assert SketchIndex(tmp_path / "sketch").covered == 3
    again.decline(0.0, 3)
    dropped = SketchIndex(tmp_path / "sketch")
    assert dropped.covered == 0 and dropped.declined() == {"kept_share": 0.0, "records": 3}
    assert dropped.projection() is None


@pytest.fixture
def sketched(tmp_path: Path):  # noqa: ANN201
    """160 planted pages (200 made) in an Edge store whose ``optimize`` builds the sketch (any size)."""
    points, queries = planted_corpus(200)
    store = edge_with(tmp_path, points[:160], "scan", rerank_candidates=10)
    store.sketch_min_rows = 1
    store.optimize("fast")
    yield store, points, queries
    store.close()


def test_optimize_builds_it_the_check_measures_it_and_searches_through_it_are_exact(sketched) -> None:  # noqa: ANN001
    store, points, queries = sketched
    cache = store._rerank_file("fast")
    plan = store._plan("fast")
    assert any(t["first_stage"] == "sketch" for t in plan.trials)  # measured beside the other stages
    if plan.first_stage != "sketch":  # the check preferred another: dropped, not reported stale
        assert not cache.sketch_ready() and cache.sketch.declined() == {"kept_share": 0.0, "records": 160}
        assert SKETCH_INDEX not in store.search_status("fast").codes
        store.sketch_min_rows = 1
        cache.sketch.clear()  # decide again, and keep it this time
        assert store.search_status("fast").codes == (SKETCH_INDEX,)
        assert cache.ensure_sketch_index(1) == "built"
    assert cache.sketch_ready()
    sketch = {(t["candidates"], t["rerank_keep"]): t["recall"] for t in plan.trials if t["first_stage"] == "sketch"}
    assert sketch[(128, 16)] >= 0.95, sketch  # random pages: 64 of 128 components still find the top 5
    store.set_plan("fast", SearchPlan(first_stage="sketch", candidates=30, rerank_keep=10, recall=1.0, pages=160))
    for q in queries:  # a few candidates: the planted page first, with its exact score
        exact = store.search("fast", q, 5, mode="exact")
        got = store.search("fast", q, 5)
        assert got[0].id == exact[0].id and got[0].score == pytest.approx(exact[0].score, abs=1e-3)
    store.set_plan("fast", SearchPlan(first_stage="sketch", candidates=128, rerank_keep=10, recall=1.0, pages=160))
    for q in queries:  # enough of them: exact MaxSim's top 5, near-ties among the random pages included
        assert [h.id for h in store.search("fast", q, 5)] == [h.id for h in store.search("fast", q, 5, mode="exact")]


def test_it_follows_upserts_deletions_and_compactions(sketched) -> None:  # noqa: ANN001
    store, points, queries = sketched
    cache = store._rerank_file("fast")
    if not cache.sketch_ready():
        cache.sketch.clear()
        assert cache.ensure_sketch_index(1) == "built"
    store.set_plan("fast", SearchPlan(first_stage="sketch", candidates=30, rerank_keep=10, recall=1.0, pages=200))
    store.upsert("fast", points[160:])  # written through to the sketch: no optimize needed
    assert cache.sketch_ready() and cache.sketch.covered == 200
    probe = points[170].embedding.full
    q = unit(probe[:6] + 0.01)  # a query about a page just written
    assert store.search("fast", q, 1)[0].id == points[170].id
    assert store.delete_document("fast", points[170].payload["doc_id"]) == 6
    assert cache.sketch_ready()  # tombstones are records too
    assert points[170].id not in [h.id for h in store.search("fast", q, 5)]
    with store._lock:
        cache.compact(set(cache.ids()))
    assert not cache.sketch_ready() and SKETCH_INDEX in store.search_status("fast").codes
    for query in queries[:4]:  # the plan's stage is gone: the int8 scan stands in, still exact
        assert [h.id for h in store.search("fast", query, 5)] == [h.id for h in store.search("fast", query, 5, mode="exact")]
    assert cache.ensure_sketch_index(1) == "built" and cache.sketch.covered == len(cache._ids)


def declined_on(tmp_path: Path, name: str, pages: list[np.ndarray]) -> dict:
    """Optimize an Edge store of ``pages`` (each [30, DIM] tokens, 5 x 6 grids) that would build the sketch at
    any size; asserts it was declined, not reported stale and not tried by the check; returns the decline."""
    from pagelens.index.stores.edge_store import QdrantEdgeStore

    from pagelens.core.types import CollectionManifest, PageEmbedding, PagePoint, page_point_id

    points = []
    for i, full in enumerate(pages):
        grid = full.reshape(5, 6, DIM)
        points.append(PagePoint(page_point_id(name, f"{i:02d}" * 32, 1),
                                PageEmbedding(full=full, rows=grid.mean(axis=1), cols=grid.mean(axis=0)),
                                {"doc_id": f"doc-{i}", "page_no": 1, "text": ""}))
    store = QdrantEdgeStore(tmp_path / "edge")
    try:
        store.sketch_min_rows = 1
        store.create_collection(CollectionManifest(name=name, model_id="m", model_revision=None, dim=DIM))
        store.upsert(name, points)
        store.optimize(name)
        cache = store._rerank_file(name)
        declined = cache.sketch.declined()
        assert declined is not None and declined["records"] == len(pages)
        assert not cache.sketch_ready() and SKETCH_INDEX not in store.search_status(name).codes
        assert "sketch" not in {t["first_stage"] for t in store._plan(name).trials}
        return declined
    finally:
        store.close()


def test_not_built_on_a_cone(tmp_path: Path) -> None:
    """Tokens in a narrow cone (mean cosine of random pairs ~0.8): the top components carry what every page
    shares, and the probes overrate the sketch there (bench/sketch.py), so it is declined, with the cosine,
    and not reported stale."""
    rng = np.random.default_rng(3)
    axis = unit(rng.standard_normal(DIM))
    pages = [unit(axis + 0.3 * rng.standard_normal((30, DIM)) / np.sqrt(DIM) * 4) for _ in range(150)]
    assert declined_on(tmp_path, "cone", pages)["kept_share"] > 0.3  # the cosine


def test_not_built_where_a_few_directions_hold_nearly_all_the_variance(tmp_path: Path) -> None:
    """No cone (random pairs' mean cosine ~0) but the tokens vary mostly along 8 shared directions: the
    mean cosine does not see it, the components' share of the variance does (bench/sketch.py --generator
    lowrank: the probes overrate the sketch there too), so it is declined with that share."""
    from pagelens.index.ann.sketch_index import MAX_CONE_COSINE, MAX_VARIANCE_SHARE, mean_cosine

    rng = np.random.default_rng(4)
    basis = np.linalg.qr(rng.standard_normal((DIM, 8)))[0].T  # [8, DIM] orthonormal
    scales = 0.8 * 0.7 ** np.arange(8)
    pages = [unit((rng.standard_normal((30, 8)) * scales) @ basis + 0.6 / np.sqrt(DIM) * rng.standard_normal((30, DIM)))
             for _ in range(150)]
    assert abs(mean_cosine(np.concatenate(pages), np.random.default_rng(0))) < MAX_CONE_COSINE  # no cone
    assert MAX_VARIANCE_SHARE < declined_on(tmp_path, "lowrank", pages)["kept_share"] <= 1.0  # the share
