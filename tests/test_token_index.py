"""The token-level first stage (``pagelens.index.ann.token_index``): codebook, lists, candidate scores, the
persistent index inside the rerank cache, and its use by ``QdrantEdgeStore`` searches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pagelens.index.ann.fast_rerank import RerankCache, quantize_int8
from pagelens.index.ann.self_check import SearchPlan
from pagelens.index.ann.token_index import (
    DELTA_FILE,
    CellLists,
    Codebook,
    TokenIndex,
    candidate_scores,
    spherical_kmeans,
    train_codebook,
    unique_pairs,
)
from pagelens.index.stores.edge_store import QdrantEdgeStore
from test_fast_rerank import DIM, maxsim, unit

from pagelens.core.types import CollectionManifest, PageEmbedding, PageFilter, PagePoint, page_point_id


class Corpus:
    """Pages made of shared 'words' (like a collection's recurring patches): each page mixes common
    words (on every page), words of its topic (shared by ~10 pages) and a few of its own, each with
    noise. A query copies own and topic words of one target page: its exact MaxSim top 5 is the
    target and pages of the same topic, which pooled means blur but the token index finds."""

    def __init__(self, n_pages: int, tokens: int = 64, seed: int = 0, topics: int | None = None,
                 noise: float = 0.5) -> None:
        self.rng = np.random.default_rng(seed)
        self.tokens = tokens
        self.noise = noise  # per-token noise norm: 0.5 leaves no near-duplicates (cos ~0.8), 0.1 many
        self.common = unit(self.rng.standard_normal((16, DIM)))
        self.n_topics = topics or max(1, n_pages // 10)
        self.topic_words = unit(self.rng.standard_normal((self.n_topics, 12, DIM)))
        self.own: list[np.ndarray] = []
        self.full: list[np.ndarray] = []
        for i in range(n_pages):
            self.full.append(self.make_page(i))

    def topic(self, i: int) -> int:
        return (i * 7) % self.n_topics

    def make_page(self, i: int) -> np.ndarray:
        rng = self.rng
        own = unit(rng.standard_normal((3, DIM)))
        self.own.append(own)
        n = self.tokens
        src = rng.random(n)
        words = np.where((src < 0.5)[:, None], self.common[rng.integers(0, 16, n)],
                         self.topic_words[self.topic(i)][rng.integers(0, 12, n)])
        words[:6] = own[rng.integers(0, 3, 6)]
        return unit(words + rng.standard_normal(words.shape) * (self.noise / np.sqrt(DIM)))

    def add_pages(self, n: int) -> list[np.ndarray]:
        start = len(self.full)
        new = [self.make_page(start + j) for j in range(n)]
        self.full.extend(new)
        return new

    def query(self, target: int) -> np.ndarray:
        rng = self.rng
        words = np.concatenate([self.own[target][rng.integers(0, 3, 4)],
                                self.topic_words[self.topic(target)][rng.integers(0, 12, 4)],
                                self.common[:4]])
        return unit(words + rng.standard_normal(words.shape) * (0.3 / np.sqrt(DIM)))

    def exact_top(self, q: np.ndarray, k: int, alive: set[int] | None = None) -> list[int]:
        scores = [(maxsim(q, f), i) for i, f in enumerate(self.full) if alive is None or i in alive]
        return [i for _, i in sorted(scores, reverse=True)[:k]]


def pid(i: int) -> str:
    return page_point_id("tok", f"{i // 10:04d}" * 16, i % 10 + 1)


def cache_with(tmp_path: Path, corpus: Corpus) -> RerankCache:
    cache = RerankCache(tmp_path / "rerank")
    cache.append((pid(i), f, f[:4], f[4:8]) for i, f in enumerate(corpus.full))
    return cache


# --- codebook ----------------------------------------------------------------------------------


def test_spherical_kmeans_finds_separated_clusters() -> None:
    rng = np.random.default_rng(0)
    centers = unit(rng.standard_normal((8, DIM)))
    x = unit(np.repeat(centers, 50, axis=0) + rng.standard_normal((400, DIM)) * 0.02)
    c = spherical_kmeans(torch.from_numpy(x), 8, iters=10, init="k-means++").numpy()
    assert c.shape == (8, DIM)
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1.0, atol=1e-5)
    # every true center has a centroid within cosine 0.99 (k-means recovers them)
    assert (centers @ c.T).max(axis=1).min() > 0.99


def test_codebook_assigns_each_token_to_the_best_fine_centroid_of_its_best_coarse_cell() -> None:
    rng = np.random.default_rng(1)
    sample = unit(rng.standard_normal((6000, DIM)))
    cb = train_codebook(sample, coarse=8, fine=16, iters=4)
    assert cb.coarse.shape == (8, DIM) and cb.fine.shape == (8, 16, DIM) and cb.n_cells == 128
    x = unit(rng.standard_normal((500, DIM)))
    cells = cb.assign(torch.from_numpy(x)).numpy()
    coarse = (x @ cb.coarse.T).argmax(axis=1)
    want = np.array([a * 16 + (x[i] @ cb.fine[a].T).argmax() for i, a in enumerate(coarse)])
    # bf16 dot products in the product, fp32 here: near-ties may differ, nothing more
    assert (cells == want).mean() > 0.97
    # int8 codes (what the cache holds) assign like the float vectors: a positive scale per row
    codes, _ = quantize_int8(x)
    assert (cb.assign(torch.from_numpy(codes)).numpy() == cells).mean() > 0.95


def test_a_coarse_cell_with_few_points_repeats_its_first_fine_centroid() -> None:
    rng = np.random.default_rng(2)
    big = unit(rng.standard_normal((1, DIM)) + rng.standard_normal((400, DIM)) * 0.05)
    far = unit(-big[:1] + rng.standard_normal((6, DIM)) * 0.01)  # 6 points: one fine centroid at 4/centroid
    cb = train_codebook(np.concatenate([big, far]), coarse=2, fine=8, iters=6)
    small = int((far[0] @ cb.coarse.T).argmax())
    np.testing.assert_array_equal(cb.fine[small], np.repeat(cb.fine[small][:1], 8, axis=0))
    cells = cb.assign(torch.from_numpy(far)).numpy()
    assert set(cells.tolist()) == {small * 8}  # the copies are never chosen


def test_probe_returns_the_best_cells_with_their_scores_best_first() -> None:
    rng = np.random.default_rng(3)
    cb = train_codebook(unit(rng.standard_normal((4000, DIM))), coarse=4, fine=8, iters=3)
    q = unit(rng.standard_normal((5, DIM)))
    cells, scores = cb.probe(q, nprobe=6, coarse_probe=4)  # every coarse cell: exact top 6 of all 32
    flat = cb.fine.reshape(-1, DIM)
    for i in range(5):
        sims = q[i] @ flat.T
        np.testing.assert_allclose(scores[i], np.sort(sims)[::-1][:6], rtol=1e-5)
        np.testing.assert_allclose(sims[cells[i]], scores[i], rtol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()


# --- lists and scores --------------------------------------------------------------------------


def test_unique_pairs_and_lists_hold_each_page_once_per_cell() -> None:
    cells = torch.tensor([5, 5, 2, 5, 2, 7])
    recs = torch.tensor([0, 0, 0, 1, 1, 1])
    c, r = unique_pairs(cells, recs)
    assert list(zip(c.tolist(), r.tolist(), strict=True)) == [(2, 0), (2, 1), (5, 0), (5, 1), (7, 1)]
    lists = CellLists.from_pairs(np.array([7, 2, 2, 5]), np.array([1, 1, 1, 0]), n_cells=8)
    assert lists.get(2).tolist() == [1] and lists.get(5).tolist() == [0] and lists.get(7).tolist() == [1]
    assert lists.length(0) == 0 and len(lists.offsets) == 9


def test_lists_from_record_ordered_chunks_equal_the_full_sort() -> None:
    rng = np.random.default_rng(4)
    cells, recs = [], []
    for lo in range(0, 1000, 100):  # chunks over increasing, disjoint record ranges (as assignment makes)
        c, r = unique_pairs(torch.from_numpy(rng.integers(0, 300, 5000)), torch.from_numpy(rng.integers(lo, lo + 100, 5000)))
        cells.append(c)
        recs.append(r)
    fast = CellLists.from_record_ordered(np.concatenate(cells), np.concatenate(recs), n_cells=300)
    full = CellLists.from_pairs(np.concatenate(cells)[::-1], np.concatenate(recs)[::-1], n_cells=300)
    np.testing.assert_array_equal(fast.offsets, full.offsets)
    np.testing.assert_array_equal(fast.records, full.records)


def test_candidate_scores_sum_gains_over_the_worst_probed_cell_and_skip_long_lists() -> None:
    # 4 records; cell 0 held by 0, 1; cell 1 by 2; cell 2 by every record (a 'white margin')
    lists = CellLists.from_pairs(np.array([0, 0, 1, 2, 2, 2, 2]), np.array([0, 1, 2, 0, 1, 2, 3]), n_cells=3)
    cells = np.array([[0, 1, 2], [2, 1, 0]])
    scores = np.array([[0.9, 0.7, 0.5], [0.8, 0.6, 0.2]], dtype=np.float32)
    total = candidate_scores([lists], cells, scores, n_records=4, max_list_len=10).numpy()
    # token 0: floor 0.5 -> rec0 0.4, rec1 0.4, rec2 0.2, rec3 0 ; token 1: floor 0.2 -> every record
    # holds cell 2 (0.6); rec 2 also cell 1 (0.4 < 0.6)
    np.testing.assert_allclose(total, [1.0, 1.0, 0.8, 0.6], atol=1e-6)
    skipped = candidate_scores([lists], cells, scores, n_records=4, max_list_len=3).numpy()
    np.testing.assert_allclose(skipped, [0.4, 0.4, 0.2 + 0.4, 0.0], atol=1e-6)  # cell 2 (4 records) skipped
    # a second set of lists (the delta) counts like the first
    delta = CellLists.from_pairs(np.array([0]), np.array([3]), n_cells=3)
    both = candidate_scores([lists, delta], cells, scores, n_records=4, max_list_len=10).numpy()
    assert both[3] == pytest.approx(0.4 + 0.6, abs=1e-6)


# --- the persistent index in the rerank cache ---------------------------------------------------


def test_the_token_index_finds_what_pooled_means_miss(tmp_path: Path) -> None:
    corpus = Corpus(600, seed=1)
    cache = cache_with(tmp_path, corpus)
    assert not cache.token_index_ready()
    assert cache.ensure_token_index(min_pages=100) == "built"
    assert cache.token_index_ready() and cache.tokens.trained_pages == 600
    hits = misses = 0
    for target in range(0, 600, 40):
        q = corpus.query(target)
        truth = {pid(i) for i in corpus.exact_top(q, 5)}
        got = set(cache.token_candidates(q, 30))
        hits += len(truth & got)
        misses += len(truth - got)
        assert pid(target) in got
    assert hits / (hits + misses) >= 0.95
    # reopened from disk: the same candidates
    q = corpus.query(7)
    again = RerankCache(tmp_path / "rerank")
    assert again.token_index_ready() and again.token_candidates(q, 30) == cache.token_candidates(q, 30)
    assert cache.ensure_token_index(min_pages=100) == ""  # nothing to do


def test_small_collections_get_no_token_index(tmp_path: Path) -> None:
    cache = cache_with(tmp_path, Corpus(40))
    assert cache.ensure_token_index(min_pages=100) == ""
    assert not cache.token_index_ready() and not (tmp_path / "rerank" / "tokens").exists()


def test_appended_pages_are_indexed_at_once_and_survive_a_reopen(tmp_path: Path) -> None:
    corpus = Corpus(300, seed=2)
    cache = cache_with(tmp_path, corpus)
    cache.ensure_token_index(min_pages=100)
    new = corpus.add_pages(20)
    cache.append((pid(300 + j), f, f[:4], f[4:8]) for j, f in enumerate(new))
    assert cache.token_index_ready() and cache.tokens.delta_records == 20
    for target in (300, 311, 319):
        assert pid(target) in cache.token_candidates(corpus.query(target), 20)
    reopened = RerankCache(tmp_path / "rerank")
    assert reopened.token_index_ready() and reopened.tokens.delta_records == 20
    assert pid(311) in reopened.token_candidates(corpus.query(311), 20)
    # folding the delta into the lists keeps the candidates
    q = corpus.query(305)
    before = reopened.token_candidates(q, 20)
    assert reopened.ensure_token_index(min_pages=100, fold_share=0.01) == "folded"
    assert reopened.tokens.delta_records == 0 and not (tmp_path / "rerank" / "tokens" / DELTA_FILE).exists()
    assert reopened.token_candidates(q, 20) == before


def test_a_torn_delta_batch_is_cut_and_caught_up_by_ensure(tmp_path: Path) -> None:
    corpus = Corpus(300, seed=3)
    cache = cache_with(tmp_path, corpus)
    cache.ensure_token_index(min_pages=100)
    new = corpus.add_pages(10)
    cache.append((pid(300 + j), f, f[:4], f[4:8]) for j, f in enumerate(new[:5]))
    cache.append((pid(305 + j), f, f[:4], f[4:8]) for j, f in enumerate(new[5:]))
    delta = tmp_path / "rerank" / "tokens" / DELTA_FILE
    size = delta.stat().st_size
    with open(delta, "r+b") as fh:  # a crash in the middle of the second batch
        fh.truncate(size - 40)
    reopened = RerankCache(tmp_path / "rerank")
    assert len(reopened) == 310 and reopened.tokens.covered == 305 and not reopened.token_index_ready()
    assert reopened.ensure_token_index(min_pages=100) == "caught up"
    assert reopened.token_index_ready()
    assert pid(308) in reopened.token_candidates(corpus.query(308), 20)


def test_a_failed_token_append_only_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = Corpus(300, seed=4)
    cache = cache_with(tmp_path, corpus)
    cache.ensure_token_index(min_pages=100)

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(cache.tokens, "append", broken)
    new = corpus.add_pages(3)
    assert cache.append((pid(300 + j), f, f[:4], f[4:8]) for j, f in enumerate(new)) == 3  # the cache took them
    assert len(cache) == 303 and not cache.token_index_ready()
    monkeypatch.undo()
    assert cache.ensure_token_index(min_pages=100) == "caught up" and cache.token_index_ready()
    assert pid(301) in cache.token_candidates(corpus.query(301), 20)


def test_deleted_pages_are_never_candidates_and_compaction_renumbers_the_lists(tmp_path: Path) -> None:
    corpus = Corpus(300, seed=5)
    cache = cache_with(tmp_path, corpus)
    cache.ensure_token_index(min_pages=100)
    dead = set(range(0, 300, 7))
    gone = {pid(i) for i in dead}
    assert cache.remove(gone) == len(dead)
    assert cache.token_index_ready()  # tombstones are records too
    q = corpus.query(7)  # a deleted page; its topic's other pages are mostly alive
    assert not gone & set(cache.token_candidates(q, 300))
    alive = set(range(300)) - dead
    truth = {pid(i) for i in corpus.exact_top(q, 5, alive)}
    assert truth <= set(cache.token_candidates(q, 20))
    cache.remove({pid(i) for i in range(1, 300, 7)} | {pid(i) for i in range(2, 300, 7)}
                 | {pid(i) for i in range(3, 300, 7)})
    alive -= set(range(1, 300, 7)) | set(range(2, 300, 7)) | set(range(3, 300, 7))
    gone = {pid(i) for i in set(range(300)) - alive}
    truth = {pid(i) for i in corpus.exact_top(q, 5, alive)}
    assert cache.compact({pid(i) for i in alive}) > 0
    assert cache.token_index_ready() and cache.tokens.covered == len(alive) == len(cache)
    got = cache.token_candidates(q, 40)
    assert not gone & set(got) and len(truth & set(got)) >= 4  # the topic is thin now: near ties
    # the renumbered lists are exactly those of assigning the compacted cache afresh
    remapped = (np.array(cache.tokens.lists.offsets), np.array(cache.tokens.lists.records))
    assert cache.tokens.codebook is not None
    fresh = TokenIndex.assign_all(cache.tokens.codebook, cache._token_rows())
    np.testing.assert_array_equal(remapped[0], fresh.offsets)
    np.testing.assert_array_equal(remapped[1], fresh.records)


def test_the_codebook_is_retrained_when_the_collection_doubles_and_dropped_when_it_shrinks(tmp_path: Path) -> None:
    corpus = Corpus(150, seed=6)
    cache = cache_with(tmp_path, corpus)
    assert cache.ensure_token_index(min_pages=100) == "built" and cache.tokens.trained_pages == 150
    new = corpus.add_pages(150)
    cache.append((pid(150 + j), f, f[:4], f[4:8]) for j, f in enumerate(new))
    assert cache.ensure_token_index(min_pages=100) == "built" and cache.tokens.trained_pages == 300
    assert cache.tokens.delta_records == 0
    cache.remove({pid(i) for i in range(260)})
    assert cache.ensure_token_index(min_pages=100) == "dropped" and not cache.token_index_ready()


# --- in the Edge store -------------------------------------------------------------------------


def edge_points(corpus: Corpus) -> list[PagePoint]:
    out = []
    for i, f in enumerate(corpus.full):
        grid = f.reshape(8, 8, DIM)
        out.append(PagePoint(pid(i), PageEmbedding(full=f, rows=grid.mean(axis=1), cols=grid.mean(axis=0)),
                             {"doc_id": f"doc-{i // 10}", "doc_name": f"d{i // 10}.pdf", "page_no": i % 10 + 1,
                              "page_count": 10, "meta": {}, "text": ""}))
    return out


def test_edge_searches_take_candidates_from_the_token_index_and_return_exact_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = Corpus(400, seed=7)
    store = QdrantEdgeStore(tmp_path / "edge", token_index_min_pages=100, rerank_candidates=10)
    store.create_collection(CollectionManifest(name="tok", model_id="m", model_revision=None, dim=DIM))
    store.upsert("tok", edge_points(corpus))
    store.optimize("tok")
    store.set_plan("tok", SearchPlan(first_stage="tokens", candidates=40, rerank_keep=10, recall=1.0, pages=400))
    cache = store._rerank_file("tok")
    assert cache.token_index_ready()
    calls: list[int] = []
    real = cache.token_search

    def counting_search(*args: object, **kwargs: object) -> object:
        search = real(*args, **kwargs)  # type: ignore[arg-type]
        assert search is not None

        def counting(query: np.ndarray, m: int) -> list[str]:
            calls.append(m)
            return search(query, m)

        return counting

    monkeypatch.setattr(cache, "token_search", counting_search)
    for target in (3, 150, 333):
        q = corpus.query(target)
        got = store.search("tok", q, limit=5, mode="two_stage")
        exact = store.search("tok", q, limit=5, mode="exact")
        assert [h.id for h in got] == [h.id for h in exact]
        assert [h.score for h in got] == pytest.approx([h.score for h in exact], abs=1e-4)
        assert got[0].id == pid(target)
    assert calls == [40, 40, 40]
    # a filtered search reranks the pages the filter matches (the lists know nothing of payloads)
    flt = PageFilter(doc_ids=["doc-15"])
    hits = store.search("tok", corpus.query(150), limit=3, mode="two_stage", page_filter=flt)
    assert calls == [40, 40, 40] and hits and {h.payload["doc_id"] for h in hits} == {"doc-15"}
    # pages upserted after optimize are found at once (the delta), deleted ones never come back
    corpus.add_pages(10)
    store.upsert("tok", edge_points(corpus)[400:])
    assert cache.token_index_ready() and len(calls) == 3
    q = corpus.query(402)
    assert store.search("tok", q, limit=5)[0].id == pid(402) and len(calls) == 4
    assert store.delete_document("tok", "doc-40") == 10  # pages 400-409
    assert cache.token_index_ready()
    hits = store.search("tok", q, limit=5)
    assert len(calls) == 5 and not {h.id for h in hits} & {pid(i) for i in range(400, 410)}
    assert [h.id for h in hits] == [h.id for h in store.search("tok", q, limit=5, mode="exact")]
    store.close()


def test_a_build_outside_the_lock_takes_in_pages_appended_meanwhile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's lock is free while the codebook trains (searches and upserts go on): pages
    appended then are assigned when the build is installed; a compaction then voids the build."""
    import threading

    import pagelens.index.ann.fast_rerank as fr

    corpus = Corpus(300, seed=8)
    cache = cache_with(tmp_path, corpus)
    lock = threading.RLock()
    real_train = fr.train_codebook
    new = corpus.add_pages(4)

    def train_while_pages_arrive(*args: object, **kwargs: object) -> Codebook:
        free: list[bool] = []
        t = threading.Thread(target=lambda: free.append(lock.acquire(timeout=1)) or lock.release())
        t.start()
        t.join()
        assert free == [True]  # another thread can take the lock during training
        with lock:
            cache.append((pid(300 + j), f, f[:4], f[4:8]) for j, f in enumerate(new))
        return real_train(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fr, "train_codebook", train_while_pages_arrive)
    assert cache.ensure_token_index(min_pages=100, lock=lock) == "built"
    assert cache.token_index_ready() and cache.tokens.covered == 304
    assert pid(302) in cache.token_candidates(corpus.query(302), 20)

    def train_while_compacting(*args: object, **kwargs: object) -> Codebook:
        with lock:
            cache.remove({pid(i) for i in range(200)})
            cache.compact({pid(i) for i in range(200, 614)})
        return real_train(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fr, "train_codebook", train_while_compacting)
    more = corpus.add_pages(310)  # past twice the trained pages: a retrain
    cache.append((pid(304 + j), f, f[:4], f[4:8]) for j, f in enumerate(more))
    assert cache.ensure_token_index(min_pages=100, lock=lock) == ""  # the records moved: voided
    # the compaction renumbered the old codebook's lists, so the index still serves every page
    assert cache.token_index_ready() and cache.tokens.trained_pages == 300 and len(cache) == 414
    assert pid(500) in cache.token_candidates(corpus.query(500), 20)


def test_an_append_prepared_outside_the_lock_writes_what_the_locked_one_does(tmp_path: Path) -> None:
    """``RerankCache.prepare`` computes a write's codes, token cells and dedup covers before the store takes
    its lock (``QdrantEdgeStore.upsert``); appending with it leaves the same files as an append that computes
    them itself. A prepared append whose codec, codebook or dedup threshold is no longer the cache's is not
    trusted: what it holds is computed again (here it holds garbage, and the files are still the same)."""
    import dataclasses

    corpus = Corpus(300, seed=4, noise=0.1)  # near-duplicate tokens: a dedup index is built too
    caches = {name: cache_with(tmp_path / name, corpus) for name in ("plain", "prepared", "stale codec", "stale index")}
    for cache in caches.values():
        assert cache.ensure_token_index(min_pages=100) == "built"
        assert cache.ensure_dedup_index() == "built"
    new = corpus.add_pages(12)
    items = [(pid(300 + j), f, f[:4], f[4:8]) for j, f in enumerate(new)]
    caches["plain"].append(items)
    prepared = caches["prepared"].prepare(items)
    assert prepared is not None and prepared.cells is not None and len(prepared.codes) == 12
    assert prepared.kept is not None and len(prepared.kept) == 12
    caches["prepared"].append(items, prepared)
    stale = caches["stale codec"].prepare(items)
    assert stale is not None
    caches["stale codec"].append(items, dataclasses.replace(  # another codec object: nothing of it is used
        stale, codec=(stale.codec[0].copy(), stale.codec[1]), codes=[np.zeros_like(c) for c in stale.codes]))
    stale = caches["stale index"].prepare(items)
    assert stale is not None
    caches["stale index"].append(items, dataclasses.replace(  # the codes hold; the cells and covers do not
        stale, codebook=object(), cells=torch.zeros_like(stale.cells),
        kept=[c[:1] for c in stale.codes], dedup_threshold=-5.0))

    def files(cache: RerankCache) -> dict[str, bytes]:
        return {str(p.relative_to(cache.folder)): p.read_bytes() for p in sorted(cache.folder.rglob("*")) if p.is_file()}

    expected = files(caches["plain"])
    assert any(name.startswith("tokens") for name in expected) and any(name.startswith("dedup") for name in expected)
    for name in ("prepared", "stale codec", "stale index"):
        assert files(caches[name]) == expected, name
    q = corpus.query(305)
    assert caches["prepared"].token_candidates(q, 20) == caches["plain"].token_candidates(q, 20)
    assert pid(305) in caches["prepared"].token_candidates(q, 20)
