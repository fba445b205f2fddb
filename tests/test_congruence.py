"""Congruence: Qdrant's MaxSim (both backends) equals colpali-engine's ``score_multi_vector``;
and how much the two-stage (pooled prefetch + rerank) search keeps of the exact top 5.

Synthetic but structured embeddings: pages belong to topic clusters whose patches are noisy copies
of shared prototype vectors (plus background patches); "planted" queries are noisy copies of a
contiguous patch region (a few patch rows) of one target page, "topic" queries are noisy prototypes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from colpali_engine.utils.processing_utils import BaseVisualRetrieverProcessor
from pagelens.index.stores.base import VectorStore
from pagelens.index.stores.edge_store import QdrantEdgeStore
from pagelens.index.stores.server_store import QdrantServerStore

from pagelens.core.types import CollectionManifest, PageEmbedding, PagePoint, page_point_id

DIM = 128
N_PAGES = 360
N_CLUSTERS = 12
PROTOS_PER_CLUSTER = 24
COLL = "congruence"
MANIFEST = CollectionManifest(name=COLL, model_id="synthetic", model_revision=None, dim=DIM)


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def build_corpus(seed: int = 0) -> tuple[list[PagePoint], list[np.ndarray], list[str | None]]:
    """Pages [r*c, DIM] on an r x c patch grid; 20 queries [n_q, DIM] and their planted target id."""
    rng = np.random.default_rng(seed)
    protos = unit(rng.standard_normal((N_CLUSTERS, PROTOS_PER_CLUSTER, DIM)))
    points: list[PagePoint] = []
    for i in range(N_PAGES):
        k = i % N_CLUSTERS
        r, c = int(rng.integers(6, 9)), 8
        n = r * c
        from_proto = rng.random(n) < 0.6
        tokens = rng.standard_normal((n, DIM)).astype(np.float32)  # background
        picks = protos[k, rng.integers(0, PROTOS_PER_CLUSTER, n)]
        tokens[from_proto] = picks[from_proto] * 6.0 + tokens[from_proto]  # prototype + noise
        full = unit(tokens)
        grid = full.reshape(r, c, DIM)
        sha = f"{i:064x}"
        payload = {"doc_id": f"doc-{i // 4}", "doc_name": f"d{i // 4}.pdf", "page_no": i % 4 + 1, "cluster": k}
        points.append(PagePoint(page_point_id(COLL, sha, i % 4 + 1), PageEmbedding(full, grid.mean(1), grid.mean(0)),
                                payload))
    queries: list[np.ndarray] = []
    targets: list[str | None] = []
    for j in range(10):  # planted: a 2-row region of one page, noisy
        target = points[int(rng.integers(0, N_PAGES))]
        r0 = int(rng.integers(0, target.embedding.rows.shape[0] - 2))
        region = target.embedding.full[r0 * 8 : (r0 + 2) * 8]
        sel = region[rng.choice(len(region), 12, replace=False)]
        queries.append(unit(sel + 0.08 * rng.standard_normal(sel.shape)))
        targets.append(target.id)
        del j
    for j in range(10):  # topic: noisy prototypes of one cluster, many pages compete
        k = j % N_CLUSTERS
        sel = protos[k, rng.choice(PROTOS_PER_CLUSTER, 10, replace=False)]
        queries.append(unit(sel + 0.1 * rng.standard_normal(sel.shape)))
        targets.append(None)
    return points, queries, targets


@pytest.fixture(scope="module")
def corpus() -> tuple[list[PagePoint], list[np.ndarray], list[str | None]]:
    return build_corpus()


@pytest.fixture(scope="module", params=["edge", "server"])
def loaded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, corpus: tuple
) -> Iterator[VectorStore]:
    if request.param == "edge":
        store: VectorStore = QdrantEdgeStore(Path(tmp_path_factory.mktemp("edge")))
    else:
        from qdrant_client import QdrantClient

        store = QdrantServerStore(QdrantClient(":memory:"))
    points = corpus[0]
    store.create_collection(MANIFEST)
    t0 = time.perf_counter()
    store.upsert(COLL, points)
    print(f"\n[{request.param}] upsert {len(points)} pages: {time.perf_counter() - t0:.2f} s")
    yield store
    store.close()


def colpali_ranking(points: list[PagePoint], query: np.ndarray, k: int) -> tuple[list[str], np.ndarray]:
    """Brute force with colpali-engine: ids and scores of the top ``k`` (ties by id)."""
    scores = BaseVisualRetrieverProcessor.score_multi_vector(
        [torch.from_numpy(query)], [torch.from_numpy(p.embedding.full) for p in points], device="cpu"
    )[0].numpy()
    order = sorted(range(len(points)), key=lambda i: (-scores[i], points[i].id))[:k]
    return [points[i].id for i in order], scores[order]


def test_exact_ranking_equals_colpali_engine(loaded: VectorStore, corpus: tuple) -> None:
    points, queries, targets = corpus
    latencies = []
    for q, target in zip(queries, targets, strict=True):
        want_ids, want_scores = colpali_ranking(points, q, 10)
        t0 = time.perf_counter()
        hits = loaded.search(COLL, q, limit=10, mode="exact")
        latencies.append(time.perf_counter() - t0)
        assert [h.id for h in hits] == want_ids
        np.testing.assert_allclose([h.score for h in hits], want_scores, atol=1e-3, rtol=1e-5)
        if target is not None:
            assert hits[0].id == target  # planted page is found
    print(f"exact query latency: median {1000 * float(np.median(latencies)):.1f} ms")


def test_two_stage_recall_at_5(loaded: VectorStore, corpus: tuple) -> None:
    _, queries, _ = corpus
    recalls: dict[int, float] = {}
    for prefetch in (100, 20):
        hits_total = 0
        latencies = []
        for q in queries:
            exact = {h.id for h in loaded.search(COLL, q, limit=5, mode="exact")}
            t0 = time.perf_counter()
            two = loaded.search(COLL, q, limit=5, mode="two_stage", prefetch_limit=prefetch)
            latencies.append(time.perf_counter() - t0)
            hits_total += len(exact & {h.id for h in two})
        recalls[prefetch] = hits_total / (5 * len(queries))
        print(f"two-stage recall@5 vs exact (prefetch {prefetch}, {N_PAGES} pages, {len(queries)} queries): "
              f"{recalls[prefetch]:.3f}; median latency {1000 * float(np.median(latencies)):.1f} ms")
    assert recalls[100] >= 0.8, f"two-stage recall@5 {recalls} below 0.8"
