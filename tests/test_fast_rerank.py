"""The fast two-stage rerank: bfloat16 vector cache, MaxSim kernel, and its use in ``QdrantEdgeStore``."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from index.edge_store import RERANK_DIR, QdrantEdgeStore
from index.fast_rerank import INDEX_FILE, RECORD, VECTORS_FILE, Bf16VectorFile, from_bf16_bits, to_bf16_bits
from index.types import CollectionManifest, PageEmbedding, PageFilter, PagePoint, page_point_id

DIM = 128


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def maxsim(q: np.ndarray, d: np.ndarray) -> float:
    return float((q.astype(np.float64) @ d.astype(np.float64).T).max(axis=1).sum())


def test_bf16_bits_match_torch_rounding() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(10_000).astype(np.float32),
                        np.array([0.0, -0.0, 1.0, -1.0, 1e-30, 1e38, 1.00390625, 1.01171875], dtype=np.float32)])
    ours = to_bf16_bits(x.reshape(-1, 1)).reshape(-1)
    theirs = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(ours, theirs)
    back = from_bf16_bits(ours)
    np.testing.assert_allclose(back, x, rtol=2 ** -8)  # 8-bit mantissa


def test_cache_roundtrip_latest_record_wins_and_reload(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    cache = Bf16VectorFile(tmp_path / "r")
    assert len(cache) == 0 and cache.split(["a"]) == ([], ["a"])
    ids = [str(page_point_id("c", "s", i)) for i in range(5)]
    vecs = [unit(rng.standard_normal((int(rng.integers(3, 9)), DIM))) for _ in ids]
    assert cache.append(zip(ids, vecs, strict=True)) == 5
    newer = unit(rng.standard_normal((4, DIM)))
    cache.append([(ids[2], newer)])  # re-upsert of one page: the later record wins
    assert len(cache) == 5 and cache.dead_records == 1
    q = unit(rng.standard_normal((6, DIM)))
    again = Bf16VectorFile(tmp_path / "r")  # a new process reads the same files
    for c in (cache, again):
        got = c.maxsim(q, ids)
        want = [maxsim(q, from_bf16_bits(to_bf16_bits(v))) for v in [*vecs[:2], newer, *vecs[3:]]]
        np.testing.assert_allclose(got, want, atol=0.05)
    assert again.split([ids[0], "missing", ids[4]]) == ([ids[0], ids[4]], ["missing"])


def test_kernel_pads_pages_of_different_lengths_exactly(tmp_path: Path) -> None:
    """Pages of 1..70 tokens in chunks of 32: the bf16 kernel equals MaxSim on the bf16-rounded
    vectors (computed in float64) to bf16 accumulation error, and stays within 0.05 of fp32 MaxSim."""
    rng = np.random.default_rng(2)
    cache = Bf16VectorFile(tmp_path / "r")
    ids = [str(page_point_id("c", "s", i)) for i in range(70)]
    vecs = [unit(rng.standard_normal((i + 1, DIM))) for i in range(70)]
    cache.append(zip(ids, vecs, strict=True))
    q = unit(rng.standard_normal((20, DIM)))
    order = list(rng.permutation(70))
    got = cache.maxsim(q, [ids[i] for i in order])
    rounded_q = from_bf16_bits(to_bf16_bits(q))
    for score, i in zip(got, order, strict=True):
        assert abs(score - maxsim(rounded_q, from_bf16_bits(to_bf16_bits(vecs[i])))) < 0.02
        assert abs(score - maxsim(q, vecs[i])) < 0.05


def test_torn_tail_after_a_crash_is_ignored(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    folder = tmp_path / "r"
    cache = Bf16VectorFile(folder)
    ids = [str(page_point_id("c", "s", i)) for i in range(3)]
    cache.append((i, unit(rng.standard_normal((5, DIM)))) for i in ids)
    # a crash mid-append: half a record in the index, and a record whose rows never reached the disk
    with open(folder / INDEX_FILE, "ab") as fh:
        fh.write(RECORD.pack(b"\x01" * 16, 15, 5, DIM) + b"\x00" * 7)
    with open(folder / VECTORS_FILE, "ab") as fh:
        fh.write(b"\x00" * 100)  # torn vectors: not a whole row
    reopened = Bf16VectorFile(folder)
    assert reopened.ids() == set(ids)
    more = str(page_point_id("c", "s", 9))
    vec = unit(rng.standard_normal((2, DIM)))
    reopened.append([(more, vec)])  # appends start at a row/record boundary again
    final = Bf16VectorFile(folder)
    assert final.ids() == {*ids, more}
    np.testing.assert_allclose(final.maxsim(vec[:1], [more]), [1.0], atol=0.01)


def test_compact_keeps_only_live_latest_records(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    cache = Bf16VectorFile(tmp_path / "r")
    ids = [str(page_point_id("c", "s", i)) for i in range(4)]
    for _ in range(3):
        cache.append((i, unit(rng.standard_normal((6, DIM)))) for i in ids)
    last = {i: unit(rng.standard_normal((6, DIM))) for i in ids}
    cache.append(last.items())
    q = unit(rng.standard_normal((3, DIM)))
    before = cache.maxsim(q, ids[:3])
    size = (tmp_path / "r" / VECTORS_FILE).stat().st_size
    assert cache.compact(set(ids[:3])) == 13  # 16 records: 12 superseded, 1 of a deleted page
    assert cache.ids() == set(ids[:3])
    assert (tmp_path / "r" / VECTORS_FILE).stat().st_size == size * 3 // 16
    np.testing.assert_array_equal(Bf16VectorFile(tmp_path / "r").maxsim(q, ids[:3]), before)


# --- in the Edge store -------------------------------------------------------------------------


def planted_corpus(n_pages: int = 60, seed: int = 5) -> tuple[list[PagePoint], list[np.ndarray]]:
    """Pages as random patch grids; each query copies tokens of one page (clear score gaps)."""
    rng = np.random.default_rng(seed)
    points = []
    for i in range(n_pages):
        r, c = int(rng.integers(4, 8)), int(rng.integers(4, 8))
        full = unit(rng.standard_normal((r * c, DIM)))
        grid = full.reshape(r, c, DIM)
        points.append(PagePoint(
            page_point_id("fast", f"{i // 6:02d}" * 32, i % 6 + 1),
            PageEmbedding(full=full, rows=grid.mean(axis=1), cols=grid.mean(axis=0)),
            {"doc_id": f"doc-{i // 6}", "doc_name": f"d{i // 6}.pdf", "page_no": i % 6 + 1, "page_count": 6,
             "meta": {}, "text": ""},
        ))
    queries = []
    for t in rng.choice(n_pages, 12, replace=False):
        full = points[int(t)].embedding.full
        toks = full[rng.choice(len(full), 6, replace=False)] + rng.standard_normal((6, DIM)) * 0.02
        queries.append(unit(np.concatenate([toks, rng.standard_normal((4, DIM))])))
    return points, queries


def edge_with(tmp_path: Path, points: list[PagePoint], **kwargs: object) -> QdrantEdgeStore:
    store = QdrantEdgeStore(tmp_path / "edge", **kwargs)  # type: ignore[arg-type]
    store.create_collection(CollectionManifest(name="fast", model_id="m", model_revision=None, dim=DIM))
    store.upsert("fast", points)
    return store


@pytest.mark.parametrize("rerank_candidates", [10, 32])
def test_fast_two_stage_equals_exact_when_prefetch_covers_the_collection(tmp_path: Path, rerank_candidates: int) -> None:
    """With every page prefetched, the fast path returns exact MaxSim's top 5 with Qdrant's own
    scores, as long as the bf16 kernel keeps a few more candidates than asked for (near ties among
    the random filler pages are within bf16 error)."""
    points, queries = planted_corpus()
    store = edge_with(tmp_path, points, rerank_candidates=rerank_candidates)
    assert store.fast_rerank and len(store._rerank_file("fast")) == len(points)
    for q in queries:
        exact = store.search("fast", q, 5, mode="exact")
        fast = store.search("fast", q, 5, mode="two_stage", prefetch_limit=len(points))
        assert [h.id for h in fast] == [h.id for h in exact]
        assert [h.score for h in fast] == [h.score for h in exact]  # Qdrant's exact fp32 scores
        assert fast[0].payload["doc_name"].endswith(".pdf")
        flt = PageFilter(doc_ids=["doc-1", "doc-3"])
        got = store.search("fast", q, 4, mode="two_stage", page_filter=flt, prefetch_limit=len(points))
        assert [h.id for h in got] == [h.id for h in store.search("fast", q, 4, mode="exact", page_filter=flt)]
        assert {h.payload["doc_id"] for h in got} <= {"doc-1", "doc-3"}
    store.close()


def test_with_no_spare_candidates_the_planted_page_still_wins(tmp_path: Path) -> None:
    points, queries = planted_corpus()
    store = edge_with(tmp_path, points, rerank_candidates=1)
    for q in queries:
        exact = store.search("fast", q, 5, mode="exact")
        fast = store.search("fast", q, 5, mode="two_stage", prefetch_limit=len(points))
        assert fast[0].id == exact[0].id and fast[0].score == exact[0].score
        scores = {h.id: h.score for h in store.search("fast", q, 60, mode="exact")}
        assert all(h.score == scores[h.id] for h in fast)  # every score is the exact one
    store.close()


def test_pages_missing_from_the_cache_are_scored_by_qdrant_and_backfilled(tmp_path: Path) -> None:
    points, queries = planted_corpus()
    store = edge_with(tmp_path, points, rerank_candidates=10)
    want = [[h.id for h in store.search("fast", q, 5, mode="exact")] for q in queries]
    store.close()
    shutil.rmtree(tmp_path / "edge" / "fast" / RERANK_DIR)  # a collection from before the cache
    store = QdrantEdgeStore(tmp_path / "edge", rerank_candidates=10)
    assert len(store._rerank_file("fast")) == 0
    for q, ids in zip(queries, want, strict=True):
        assert [h.id for h in store.search("fast", q, 5, mode="two_stage", prefetch_limit=60)] == ids
    assert store.sync_rerank_cache("fast") == (len(points), 0)
    assert len(store._rerank_file("fast")) == len(points)
    for q, ids in zip(queries, want, strict=True):
        assert [h.id for h in store.search("fast", q, 5, mode="two_stage", prefetch_limit=60)] == ids
    store.close()


def test_reupserts_and_deletes_keep_the_fast_path_exact(tmp_path: Path) -> None:
    points, queries = planted_corpus()
    store = edge_with(tmp_path, points, rerank_candidates=10)
    # page 0 gets page 1's vectors: a query about page 1 must now find both
    moved = PagePoint(points[0].id, points[1].embedding, points[0].payload)
    for _ in range(3):
        store.upsert("fast", [moved, *points[1:]])
    cache = store._rerank_file("fast")
    assert cache.dead_records == 3 * len(points)
    q = points[1].embedding.full[:4]
    top = store.search("fast", q, 2, mode="two_stage", prefetch_limit=60)
    assert {h.id for h in top} == {points[0].id, points[1].id}
    assert top[0].score == pytest.approx(top[1].score, abs=1e-4)
    assert store.delete_document("fast", "doc-0") == 6
    for qq in queries:
        hits = store.search("fast", qq, 5, mode="two_stage", prefetch_limit=60)
        assert "doc-0" not in {h.payload["doc_id"] for h in hits}
        assert [h.id for h in hits] == [h.id for h in store.search("fast", qq, 5, mode="exact")]
    store.optimize("fast")  # compacts: dead records outnumber live ones
    cache = store._rerank_file("fast")
    assert len(cache) == len(points) - 6 and cache.dead_records == 0
    store.close()


def test_fast_rerank_off_writes_no_cache(tmp_path: Path) -> None:
    points, queries = planted_corpus(20)
    store = edge_with(tmp_path, points, fast_rerank=False)
    assert not (tmp_path / "edge" / "fast" / RERANK_DIR).exists()
    hits = store.search("fast", queries[0], 3, mode="two_stage", prefetch_limit=20)
    assert [h.id for h in hits] == [h.id for h in store.search("fast", queries[0], 3, mode="exact")]
    store.close()
