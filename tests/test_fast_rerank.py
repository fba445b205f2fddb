"""The fast two-stage rerank: int8 vector cache, MaxSim kernel, and its use in ``QdrantEdgeStore``."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from pagelens.index.ann import fast_rerank
from pagelens.index.ann.fast_rerank import (
    INDEX_FILE,
    LEGACY_VECTORS_FILE,
    POOLED_FILE,
    POOLED_WIDTH,
    RECORD,
    SCALES_FILE,
    VECTORS_FILE,
    RerankCache,
    ScanView,
    encode_centred,
    fit_width,
    from_bf16_bits,
    quantize_int8,
    quantize_query,
    to_bf16_bits,
)
from pagelens.index.ann.self_check import SearchPlan
from pagelens.index.stores.edge_store import RERANK_DIR, QdrantEdgeStore

from pagelens.core.types import CollectionManifest, PageEmbedding, PageFilter, PagePoint, page_point_id

DIM = 128


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def maxsim(q: np.ndarray, d: np.ndarray) -> float:
    return float((q.astype(np.float64) @ d.astype(np.float64).T).max(axis=1).sum())


def page(rng: np.random.Generator, r: int, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(full [r*c, DIM], rows [r, DIM], cols [c, DIM]) of a random patch grid."""
    full = unit(rng.standard_normal((r * c, DIM)))
    grid = full.reshape(r, c, DIM)
    return full, grid.mean(axis=1), grid.mean(axis=0)


def int8_rounded(a: np.ndarray, cache: RerankCache) -> np.ndarray:
    """What ``cache`` holds of ``a`` [n, DIM] (centred int8 codes of its codec), back in float32."""
    centre, scale = cache._codec
    return encode_centred(a, centre, scale).astype(np.float32) * np.float32(scale) + centre


def int_kernel_reference(q: np.ndarray, a: np.ndarray, cache: RerankCache) -> float:
    """The kernel's arithmetic in float64: int8 query codes against the page's int8 codes, max per query
    token, scaled back, plus the centre's term."""
    centre, scale = cache._codec
    qi, qs = quantize_query(q)
    codes = encode_centred(a, centre, scale).astype(np.float64)
    best = (qi.numpy().astype(np.float64) @ codes.T).max(axis=1)
    return float((best * qs.numpy().astype(np.float64) * scale).sum() + q.astype(np.float64).sum(axis=0) @ centre)


def entries(ids: list[str], pages: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> list[tuple]:
    return [(i, *p) for i, p in zip(ids, pages, strict=True)]


def test_bf16_bits_match_torch_rounding() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(10_000).astype(np.float32),
                        np.array([0.0, -0.0, 1.0, -1.0, 1e-30, 1e38, 1.00390625, 1.01171875], dtype=np.float32)])
    ours = to_bf16_bits(x.reshape(-1, 1)).reshape(-1)
    theirs = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(ours, theirs)
    back = from_bf16_bits(ours)
    np.testing.assert_allclose(back, x, rtol=2 ** -8)  # 8-bit mantissa


def test_int8_quantization_is_within_half_a_step_per_row() -> None:
    rng = np.random.default_rng(8)
    x = unit(rng.standard_normal((500, DIM)))
    x[3] = 0.0  # an all-zero row: scale 0, codes 0
    x[4, :] = 0.0
    x[4, 7] = -0.5  # one non-zero value: exactly -127 * scale
    codes, scales = quantize_int8(x)
    assert codes.dtype == np.int8 and scales.dtype == np.float32 and codes.shape == x.shape
    assert scales[3] == 0 and not codes[3].any()
    assert codes[4, 7] == -127 and np.isclose(scales[4], 0.5 / 127)
    assert np.abs(codes).max() == 127
    err = np.abs(codes.astype(np.float32) * scales[:, None] - x)
    assert (err <= scales[:, None] / 2 + 1e-7).all()


def test_cache_roundtrip_latest_record_wins_and_reload(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    cache = RerankCache(tmp_path / "r")
    assert len(cache) == 0 and cache.split(["a"]) == ([], ["a"])
    assert cache.pooled_candidates(unit(rng.standard_normal((3, DIM))), 5) == []
    ids = [str(page_point_id("c", "s", i)) for i in range(5)]
    pages = [page(rng, int(rng.integers(1, 4)), int(rng.integers(1, 4))) for _ in ids]
    assert cache.append(entries(ids, pages)) == 5
    newer = page(rng, 2, 2)
    cache.append([(ids[2], *newer)])  # re-upsert of one page: the later record wins
    assert len(cache) == 5 and cache.dead_records == 1
    q = unit(rng.standard_normal((6, DIM)))
    again = RerankCache(tmp_path / "r")  # a new process reads the same files
    for c in (cache, again):
        got = c.maxsim(q, ids)
        want = [maxsim(q, int8_rounded(p[0], c)) for p in [*pages[:2], newer, *pages[3:]]]
        np.testing.assert_allclose(got, want, atol=0.02)
    assert again.split([ids[0], "missing", ids[4]]) == ([ids[0], ids[4]], ["missing"])


def test_fit_width_pads_with_the_first_vector_and_pools_longer_inputs() -> None:
    v = np.arange(5 * 4, dtype=np.float32).reshape(5, 4)
    padded = fit_width(v, 8)
    np.testing.assert_array_equal(padded[:5], v)
    np.testing.assert_array_equal(padded[5:], np.repeat(v[:1], 3, axis=0))
    long = np.arange(10 * 2, dtype=np.float32).reshape(10, 2)
    pooled = fit_width(long, 4)  # groups of 3: rows 0-2, 3-5, 6-8, 9 (+ 9, 9 repeated)
    np.testing.assert_allclose(pooled, [long[0:3].mean(0), long[3:6].mean(0), long[6:9].mean(0), long[9]])
    assert fit_width(np.ones((POOLED_WIDTH, 3)), POOLED_WIDTH).shape == (POOLED_WIDTH, 3)


def test_kernel_pads_pages_of_different_lengths_exactly(tmp_path: Path) -> None:
    """Pages of 1..70 tokens: the int8 x int8 kernel equals its own arithmetic done in float64 (int8 query
    codes against the centred int8 page codes, max per query token, scaled, plus the centre's term) to
    float32 rounding, and stays within 0.05 of fp32 MaxSim."""
    rng = np.random.default_rng(2)
    cache = RerankCache(tmp_path / "r")
    ids = [str(page_point_id("c", "s", i)) for i in range(70)]
    vecs = [unit(rng.standard_normal((i + 1, DIM))) for i in range(70)]
    cache.append((i, v, v[:1], v[:1]) for i, v in zip(ids, vecs, strict=True))
    q = unit(rng.standard_normal((20, DIM)))
    order = list(rng.permutation(70))
    got = cache.maxsim(q, [ids[i] for i in order])
    for score, i in zip(got, order, strict=True):
        assert abs(score - int_kernel_reference(q, vecs[i], cache)) < 1e-4
        assert abs(score - maxsim(q, vecs[i])) < 0.05


def test_pooled_candidates_are_the_top_k_by_rows_and_by_cols(tmp_path: Path) -> None:
    """The brute-force pooled pass returns the union of the top k pages by row-mean MaxSim and by
    column-mean MaxSim (checked against float64 numpy on bf16-rounded vectors), deleted and
    superseded pages excluded."""
    rng = np.random.default_rng(6)
    cache = RerankCache(tmp_path / "r")
    n = 1500  # more than one pooled chunk
    ids = [str(page_point_id("c", "s", i)) for i in range(n)]
    pages = [page(rng, int(rng.integers(2, 9)), int(rng.integers(2, 9))) for _ in ids]
    cache.append(entries(ids, pages))
    cache.remove(ids[:100])
    replaced = {i: page(rng, 3, 3) for i in ids[100:150]}
    cache.append((i, *p) for i, p in replaced.items())
    live = {i: replaced.get(i, p) for i, p in zip(ids, pages, strict=True) if i not in set(ids[:100])}
    q = unit(rng.standard_normal((20, DIM)))
    rq = from_bf16_bits(to_bf16_bits(q))

    def rounded(a: np.ndarray) -> np.ndarray:
        return from_bf16_bits(to_bf16_bits(a))

    by_rows = sorted(live, key=lambda i: -maxsim(rq, rounded(live[i][1])))
    by_cols = sorted(live, key=lambda i: -maxsim(rq, rounded(live[i][2])))
    got = cache.pooled_candidates(q, 40)
    assert not set(got) & set(ids[:100])
    assert len(set(got)) == len(got) <= 80
    # bf16 accumulation may swap near ties at the border: the clear top 30 of each must be there
    assert set(by_rows[:30]) | set(by_cols[:30]) <= set(got)
    assert len(set(got) & (set(by_rows[:40]) | set(by_cols[:40]))) >= len(got) - 4


def test_torn_tail_after_a_crash_is_ignored(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    folder = tmp_path / "r"
    cache = RerankCache(folder)
    ids = [str(page_point_id("c", "s", i)) for i in range(3)]
    cache.append((i, *page(rng, 1, 5)) for i in ids)
    # a crash mid-append: half a record in the index, and data whose records never reached the disk
    with open(folder / INDEX_FILE, "ab") as fh:
        fh.write(RECORD.pack(b"\x01" * 16, 15, 5, DIM, POOLED_WIDTH)[:20])
    with open(folder / VECTORS_FILE, "ab") as fh:
        fh.write(b"\x00" * 300)  # torn vectors: rows and a part of one
    with open(folder / SCALES_FILE, "ab") as fh:
        fh.write(b"\x00" * 6)
    with open(folder / POOLED_FILE, "ab") as fh:
        fh.write(b"\x00" * 5000)
    reopened = RerankCache(folder)
    assert reopened.ids() == set(ids)
    more = str(page_point_id("c", "s", 9))
    full, rows, cols = page(rng, 1, 2)
    reopened.append([(more, full, rows, cols)])  # appends start at a row/record/slot boundary again
    final = RerankCache(folder)
    assert final.ids() == {*ids, more}
    np.testing.assert_allclose(final.maxsim(full[:1], [more]), [1.0], atol=0.01)
    assert more in final.pooled_candidates(rows, 1)
    assert (folder / VECTORS_FILE).stat().st_size == (3 * 5 + 2) * DIM  # the torn rows were cut
    assert (folder / SCALES_FILE).stat().st_size == (3 * 5 + 2) * 4


def test_a_cache_in_the_old_bfloat16_layout_is_discarded(tmp_path: Path) -> None:
    """Caches written before the int8 layout (vectors.bf16) are deleted on open; appends start afresh."""
    rng = np.random.default_rng(9)
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / LEGACY_VECTORS_FILE).write_bytes(b"\x00" * (4 * DIM * 2))
    (folder / POOLED_FILE).write_bytes(b"\x00" * (2 * POOLED_WIDTH * DIM * 2))
    (folder / INDEX_FILE).write_bytes(RECORD.pack(b"\x02" * 16, 0, 4, DIM, POOLED_WIDTH))
    cache = RerankCache(folder)
    assert len(cache) == 0
    assert not (folder / LEGACY_VECTORS_FILE).exists() and not (folder / INDEX_FILE).exists()
    pid = str(page_point_id("c", "s", 1))
    full, rows, cols = page(rng, 2, 2)
    cache.append([(pid, full, rows, cols)])
    np.testing.assert_allclose(RerankCache(folder).maxsim(full[:1], [pid]), [1.0], atol=0.01)


def test_inconsistent_files_are_discarded(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    folder = tmp_path / "r"
    cache = RerankCache(folder)
    cache.append((str(page_point_id("c", "s", i)), *page(rng, 2, 2)) for i in range(4))
    (folder / POOLED_FILE).write_bytes(b"")  # e.g. a file restored from another backup
    assert len(RerankCache(folder)) == 0 and not (folder / INDEX_FILE).exists()


def test_compact_keeps_only_live_latest_records(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    cache = RerankCache(tmp_path / "r")
    ids = [str(page_point_id("c", "s", i)) for i in range(4)]
    for _ in range(3):
        cache.append((i, *page(rng, 2, 3)) for i in ids)
    cache.append((i, *page(rng, 2, 3)) for i in ids)
    q = unit(rng.standard_normal((3, DIM)))
    before = cache.maxsim(q, ids[:3])
    pooled_before = cache.pooled_candidates(q, 3)
    size = (tmp_path / "r" / VECTORS_FILE).stat().st_size
    assert cache.compact(set(ids[:3])) == 13  # 16 records: 12 superseded, 1 of a deleted page
    assert cache.ids() == set(ids[:3]) and cache.dead_records == 0
    assert (tmp_path / "r" / VECTORS_FILE).stat().st_size == size * 3 // 16
    reopened = RerankCache(tmp_path / "r")
    np.testing.assert_array_equal(reopened.maxsim(q, ids[:3]), before)
    assert set(pooled_before) <= set(ids) and set(reopened.pooled_candidates(q, 3)) == set(ids[:3])


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


def edge_with(tmp_path: Path, points: list[PagePoint], first_stage: str = "scan", **kwargs: object) -> QdrantEdgeStore:
    """An Edge store holding ``points`` in collection "fast", searching with ``first_stage`` (the self-check
    would pick exact for collections this small: the fast path is what these tests exercise)."""
    store = QdrantEdgeStore(tmp_path / "edge", **kwargs)  # type: ignore[arg-type]
    store.create_collection(CollectionManifest(name="fast", model_id="m", model_revision=None, dim=DIM))
    store.upsert("fast", points)
    keep = int(kwargs.get("rerank_candidates", 16))  # type: ignore[call-overload]
    store.set_plan("fast", SearchPlan(first_stage=first_stage, candidates=len(points), rerank_keep=keep, recall=1.0,
                                      pages=len(points)))
    return store


@pytest.mark.parametrize(("rerank_candidates", "first_stage"), [(10, "pooled"), (32, "pooled"), (10, "scan")])
def test_fast_two_stage_equals_exact_when_prefetch_covers_the_collection(
    tmp_path: Path, rerank_candidates: int, first_stage: str
) -> None:
    """With every page prefetched, the fast path returns exact MaxSim's top 5 with Qdrant's own
    scores, as long as the kernel keeps a few more candidates than asked for (near ties among the
    random filler pages are within its int8/bf16 error)."""
    points, queries = planted_corpus()
    store = edge_with(tmp_path, points, first_stage, rerank_candidates=rerank_candidates)
    store.optimize("fast")
    store.set_plan("fast", SearchPlan(first_stage=first_stage, candidates=len(points), rerank_keep=rerank_candidates,
                                      recall=1.0, pages=len(points)))
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


def test_pages_deleted_behind_the_caches_back_never_come_back(tmp_path: Path) -> None:
    points, queries = planted_corpus()
    store = edge_with(tmp_path, points, rerank_candidates=10)
    store.fast_rerank = False  # as if the process died between the Qdrant delete and the cache update
    assert store.delete_document("fast", "doc-2") == 6
    store.fast_rerank = True
    assert len(store._rerank_file("fast")) == len(points)  # 6 ghosts in the cache
    for q in queries:
        hits = store.search("fast", q, 5, mode="two_stage", prefetch_limit=60)
        assert "doc-2" not in {h.payload["doc_id"] for h in hits}
        assert [h.id for h in hits] == [h.id for h in store.search("fast", q, 5, mode="exact")]
    store.sync_rerank_cache("fast")
    assert len(store._rerank_file("fast")) == len(points) - 6
    store.close()


def test_fast_rerank_off_writes_no_cache(tmp_path: Path) -> None:
    points, queries = planted_corpus(20)
    store = edge_with(tmp_path, points, fast_rerank=False)
    assert not (tmp_path / "edge" / "fast" / RERANK_DIR).exists()
    hits = store.search("fast", queries[0], 3, mode="two_stage", prefetch_limit=20)
    assert [h.id for h in hits] == [h.id for h in store.search("fast", queries[0], 3, mode="exact")]
    store.close()


def test_float16_full_vectors_search_like_float32(tmp_path: Path) -> None:
    """``full_datatype="float16"`` (PAGELENS_FULL_VECTOR_DATATYPE, for very large collections): the same
    exact and fast two_stage top 5, scores within 2e-3 of the float32 store's."""
    from pagelens.index.stores.factory import open_store
    from pagelens.index.stores.server_store import QdrantServerStore
    from qdrant_client import QdrantClient

    from pagelens.core.settings import Settings

    points, queries = planted_corpus(30)
    settings = Settings(data_dir=tmp_path / "data", full_vector_datatype="float16")
    half = open_store(settings)
    assert isinstance(half, QdrantEdgeStore) and half.full_datatype == "float16"
    half.create_collection(CollectionManifest(name="fast", model_id="m", model_revision=None, dim=DIM))
    half.upsert("fast", points)
    full = edge_with(tmp_path / "fp32", points)
    server = QdrantServerStore(QdrantClient(":memory:"), full_datatype="float16")
    server.create_collection(CollectionManifest(name="fast", model_id="m", model_revision=None, dim=DIM))
    server.upsert("fast", points)
    for q in queries:
        want = full.search("fast", q, 5, mode="exact")
        for store in (half, server):
            for mode in ("exact", "two_stage"):
                got = store.search("fast", q, 5, mode=mode, prefetch_limit=30)
                assert [h.id for h in got][:3] == [h.id for h in want][:3]
                for g, w in zip(got, want, strict=True):
                    if g.id == w.id:
                        assert abs(g.score - w.score) < 2e-3
    half.close()
    full.close()


def test_the_write_ahead_log_stays_bounded_while_indexing(tmp_path: Path) -> None:
    """Edge keeps every update in its WAL until a flush (~0.7 MB per 1139-token page); the store
    flushes every ``wal_flush_bytes`` of upserted vectors, so a long indexing job cannot fill the disk."""

    def wal_mb(root: Path) -> float:
        return sum(f.stat().st_size for f in (root / "fast" / "shard" / "wal").rglob("*") if f.is_file()) / 1e6

    rng = np.random.default_rng(10)
    batches = [[PagePoint(page_point_id("fast", f"{b:02d}" * 32, i + 1),
                          PageEmbedding(full=unit(rng.standard_normal((1139, DIM))),
                                        rows=unit(rng.standard_normal((32, DIM))),
                                        cols=unit(rng.standard_normal((32, DIM)))),
                          {"doc_id": f"doc-{b}", "page_no": i + 1})
                for i in range(25)] for b in range(10)]  # 250 pages, ~146 MB of fp32 vectors
    sizes = {}
    for flush_bytes in (10**12, 16 * 1024 * 1024):
        root = tmp_path / str(flush_bytes)
        store = QdrantEdgeStore(root, wal_flush_bytes=flush_bytes, fast_rerank=False)
        store.create_collection(CollectionManifest(name="fast", model_id="m", model_revision=None, dim=DIM))
        for batch in batches:
            store.upsert("fast", batch)
        sizes[flush_bytes] = wal_mb(root)
        assert store.count("fast") == 250
        store.close()
        reopened = QdrantEdgeStore(root)
        assert reopened.count("fast") == 250  # nothing lost by the flushes
        reopened.close()
    assert sizes[10**12] > 150  # unflushed: the log holds every update
    assert sizes[16 * 1024 * 1024] < 150


@pytest.mark.parametrize("fast_rerank", [False, True])
def test_upserts_optimize_as_the_collection_grows_where_searches_need_it(tmp_path: Path, fast_rerank: bool) -> None:
    """Without the int8 cache, past ``optimize_every_bytes`` of new vectors ``upsert`` runs Edge's
    optimizers (HNSW built, replaced segments flushed away), so one huge unoptimized segment never has to
    be rewritten whole; with it, no search reads what they build and they hold the GIL (a server would
    stall), so ``upsert`` leaves them to ``pagelens optimize`` and the status says so. Searches stay exact."""
    rng = np.random.default_rng(11)
    points = [PagePoint(page_point_id("fast", f"{i // 10:02d}" * 32, i % 10 + 1),
                        PageEmbedding(full=unit(rng.standard_normal((400, DIM))),
                                      rows=unit(rng.standard_normal((20, DIM))),
                                      cols=unit(rng.standard_normal((20, DIM)))),
                        {"doc_id": f"doc-{i // 10}", "page_no": i % 10 + 1})
               for i in range(200)]  # ~45 MB of fp32 vectors
    infos = {}
    pending = {}
    for every in (10**12, 8 * 1024 * 1024):
        store = QdrantEdgeStore(tmp_path / str(every), optimize_every_bytes=every, fast_rerank=fast_rerank)
        store.create_collection(CollectionManifest(name="fast", model_id="m", model_revision=None, dim=DIM))
        for start in range(0, len(points), 20):
            store.upsert("fast", points[start : start + 20])
        infos[every] = store._require("fast")[0].info()
        q = points[37].embedding.full[:5]
        exact = store.search("fast", q, 5, mode="exact")
        assert exact[0].id == points[37].id
        assert [h.id for h in store.search("fast", q, 5, mode="two_stage", prefetch_limit=200)] == [h.id for h in exact]
        pending[every] = store.search_status("fast").segments_pending
        store.close()
    assert infos[10**12].indexed_vectors_count == 0  # nothing optimized until asked
    assert infos[8 * 1024 * 1024].points_count == 200
    if fast_rerank:
        assert infos[8 * 1024 * 1024].indexed_vectors_count == 0
        assert pending[8 * 1024 * 1024] is True  # reported: `pagelens optimize` runs it
    else:
        assert infos[8 * 1024 * 1024].indexed_vectors_count > 0


@pytest.mark.parametrize("first_stage", ["dedup", "scan"])
def test_search_kernels_are_split_over_search_threads_and_leave_the_callers_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first_stage: str
) -> None:
    """Issue 19.7: the int8 rerank of one search ran on torch's 2 threads, which under CPU contention
    spin at ~150 barriers per query (measured 15x slower than one thread). Issue 25: one thread per
    search left the second core idle (the dedup scan of 10k pages: ~100 ms on one thread, ~65 on two).
    Now a search's chunks go to ``search_threads`` pool threads with one torch thread each (0: one per
    core; 1: the searching thread alone), the caller's torch setting is left alone, and the results are
    those of one thread."""
    points, queries = planted_corpus()
    monkeypatch.setattr(fast_rerank, "MIN_CHUNK_ROWS", 64)  # several chunks even for this small corpus
    monkeypatch.setattr(fast_rerank, "MAX_KEPT_SHARE", 1.01)  # a dedup index even on these random pages
    seen: list[tuple[str, int]] = []
    original = fast_rerank.segment_maxsim

    def spy(*args: object) -> np.ndarray:
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        return original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(fast_rerank, "segment_maxsim", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        results = {}
        for threads in (1, 3, 0):
            root = tmp_path / f"t{threads}"
            store = edge_with(root, points, first_stage, rerank_candidates=10, search_threads=threads,
                              token_index_min_pages=0)
            store.optimize("fast")
            assert store._rerank_file("fast").dedup_ready()
            store.set_plan("fast", SearchPlan(first_stage=first_stage, candidates=40, rerank_keep=10, recall=1.0,
                                              pages=len(points)))
            seen.clear()
            results[threads] = [[(h.id, h.score) for h in store.search("fast", q, 5, prefetch_limit=30)]
                                for q in queries]
            pool = [t for name, t in seen if name.startswith("pagelens-kernel")]
            if threads == 1:
                assert not pool and seen  # the searching thread alone, on its one torch thread
                assert {t for _, t in seen} == {1}
            else:
                assert len(pool) == len(seen) > len(queries)  # every chunk on the pool, several per search
                assert set(pool) == {1}
                names = {name for name, _ in seen}
                assert len(names) <= (threads or fast_rerank.search_workers(0))
            assert torch.get_num_threads() == 2  # the caller's setting is untouched
            store.close()
        assert results[1] == results[3] == results[0]
    finally:
        torch.set_num_threads(before)


def test_search_threads_come_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pagelens.index.stores.factory import open_store

    from pagelens.core.settings import Settings

    assert Settings(data_dir=tmp_path, _env_file=None).tuning.search_threads == 0  # type: ignore[call-arg]
    monkeypatch.setenv("PAGELENS_TUNING__SEARCH_THREADS", "1")
    assert Settings(data_dir=tmp_path, _env_file=None).tuning.search_threads == 1  # type: ignore[call-arg]
    monkeypatch.delenv("PAGELENS_TUNING__SEARCH_THREADS")
    store = open_store(Settings(data_dir=tmp_path, tuning={"search_threads": 3}))
    assert isinstance(store, QdrantEdgeStore) and store.search_threads == 3
    store.close()


@pytest.mark.parametrize("first_stage", ["scan", "dedup"])
def test_the_whole_collection_ranking_runs_outside_the_lock_while_writers_go_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first_stage: str) -> None:
    """Issue 26.3: a search's costly part (ranking every page's int8 codes) does not hold the store's lock.
    While it ranks, another thread upserts new pages, deletes one of the old ones and compacts the cache;
    the search still returns exact MaxSim's pages of the collection as it was, and later searches see
    the writes."""
    import threading

    points, queries = planted_corpus(80)
    old, new = points[:60], points[60:]
    if first_stage == "dedup":  # random patches have no near-duplicates: build the index regardless
        monkeypatch.setattr("pagelens.index.ann.fast_rerank.MAX_KEPT_SHARE", 1.0)
    store = edge_with(tmp_path, old, "scan", rerank_candidates=10)
    store.optimize("fast")
    assert store._rerank_file("fast").dedup_ready() == (first_stage == "dedup")
    store.set_plan("fast", SearchPlan(first_stage=first_stage, candidates=40, rerank_keep=10, recall=1.0, pages=60))
    expected = [[h.id for h in store.search("fast", q, 5, mode="exact")] for q in queries]
    victim = next(p.payload["doc_id"] for p in old  # a document with no page in the first query's top 5
                  if not any(o.id in expected[0] for o in old if o.payload["doc_id"] == p.payload["doc_id"]))
    wrote: list[str] = []
    original = ScanView.best

    def ranking_while_writing(self: ScanView, query: np.ndarray, m: int) -> list[str]:
        if not wrote:
            def write() -> None:
                try:
                    store.upsert("fast", new)
                    assert store.delete_document("fast", victim) == 6
                    with store._lock:
                        cache = store._rerank_file("fast")
                        assert cache.compact(set(cache.ids())) == 12  # 6 pages and their tombstones: renumbered
                    wrote.append("done")
                except BaseException as exc:  # noqa: BLE001 - reported by the search's thread
                    wrote.append(repr(exc))

            writer = threading.Thread(target=write)
            writer.start()
            writer.join(timeout=60)  # the lock is free: the writer finishes while this search ranks
            assert wrote == ["done"], "the writer waited for the search's ranking"
        return original(self, query, m)

    monkeypatch.setattr(ScanView, "best", ranking_while_writing)
    got = [h.id for h in store.search("fast", queries[0], 5)]
    assert wrote == ["done"]
    assert got == expected[0]  # exact MaxSim's pages, with the writes going on
    monkeypatch.setattr(ScanView, "best", original)
    for q in queries:  # afterwards: exact MaxSim's results over the collection as written
        fast = [h.id for h in store.search("fast", q, 5)]
        assert fast == [h.id for h in store.search("fast", q, 5, mode="exact")]
    store.close()
