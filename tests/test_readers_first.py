"""Searches before writes (``pagelens.index.stores.readers_first``, issue 26.3): a writer steps aside while a
search runs, for at most its budget per page, and the embedded store's ``upsert`` goes through it page by
page, Qdrant and the rerank cache written together."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pagelens.index.ann.fast_rerank import RerankCache, RerankView, ScanView
from pagelens.index.stores.edge_store import QdrantEdgeStore
from pagelens.index.stores.readers_first import ReadersFirst
from test_fast_rerank import edge_with, planted_corpus
from test_search_status import manifest
from test_token_index import Corpus, edge_points, pid

from pagelens.core.errors import CollectionNotFoundError


def test_a_writer_waits_for_the_searches_in_flight_and_no_longer_than_its_budget() -> None:
    gate = ReadersFirst(max_wait_s=30)
    gate.turn().wait()  # nobody reading: at once
    assert (gate.turns, gate.forced) == (1, 0)

    done = threading.Event()
    with gate.reading():
        assert gate.readers == 1
        writer = threading.Thread(target=lambda: (gate.turn().wait(), done.set()))
        writer.start()
        assert not done.wait(0.3)  # held back while the search runs
    assert done.wait(10)  # the search ended: the writer goes on at once
    writer.join()
    assert gate.readers == 0 and (gate.turns, gate.forced) == (2, 0)

    bounded = ReadersFirst(max_wait_s=0.05)
    with bounded.reading():  # a search that outlasts the budget: the writer goes on anyway
        turn = bounded.turn()
        turn.wait()
        turn.wait()  # the rest of the page's pieces do not wait again
    assert (bounded.turns, bounded.forced) == (2, 1) and bounded.waited_s < 5

    with gate.reading():  # a turn's own budget (the self-check's exact calls): shorter than the gate's 30 s
        started = time.perf_counter()
        gate.turn(0.05).wait()
        waited = time.perf_counter() - started
    assert 0.04 <= waited < 5 and gate.forced == 1


def test_upsert_writes_nothing_while_a_search_runs_then_every_page_with_its_cache_record(tmp_path: Path) -> None:
    points, _ = planted_corpus(12)
    store = QdrantEdgeStore(tmp_path / "edge", write_max_wait_s=30)
    store.create_collection(manifest("c"))
    store.upsert("c", points[:4])
    finished = threading.Event()
    with store.readers.reading():  # a search in flight
        writer = threading.Thread(target=lambda: (store.upsert("c", points[4:]), finished.set()))
        writer.start()
        assert not finished.wait(0.5)
        assert store.count("c") == 4 and len(store._rerank_file("c")) == 4  # nothing written meanwhile
    assert finished.wait(60)
    writer.join()
    assert store.count("c") == len(store._rerank_file("c")) == 12
    status = store.search_status("c")
    assert "rerank_cache" not in status.codes  # Qdrant and the cache were written together
    assert store.readers.forced == 0 and store.readers.turns >= 8
    store.close()


def _lock_is_free(store: QdrantEdgeStore) -> bool:
    """Whether another thread can take the store's lock now (a search thread holding it would block it)."""
    got: list[bool] = []

    def take() -> None:
        ok = store._lock.acquire(timeout=5)
        got.append(ok)
        if ok:
            store._lock.release()

    t = threading.Thread(target=take)
    t.start()
    t.join(10)
    return got == [True]


def test_upsert_computes_the_cache_appends_costly_part_outside_the_store_lock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The token cells and dedup covers of a page (most of a cache append: 72 of 99 ms per 1139-token page,
    bench/README.md) are computed by ``RerankCache.prepare`` while the store's lock is free, so a search
    arriving then takes its views at once; the locked append is handed the result and uses it."""
    corpus = Corpus(300, seed=4, noise=0.1)
    points = edge_points(corpus)
    store = QdrantEdgeStore(tmp_path / "edge")
    store.token_index_min_pages = 100
    store.create_collection(manifest("c"))
    store.upsert("c", points[:280])
    store.optimize("c")
    cache = store._rerank_file("c")
    assert cache.token_index_ready() and cache.dedup_ready()
    seen: dict[str, list] = {"lock free": [], "handed": []}
    prepare, append = RerankCache.prepare, RerankCache.append

    def spy_prepare(self: RerankCache, items):  # noqa: ANN001, ANN202
        seen["lock free"].append(_lock_is_free(store))
        return prepare(self, items)

    def spy_append(self: RerankCache, items, prepared=None):  # noqa: ANN001, ANN202
        seen["handed"].append(prepared is not None and prepared.cells is not None and prepared.kept is not None)
        return append(self, items, prepared)

    monkeypatch.setattr(RerankCache, "prepare", spy_prepare)
    monkeypatch.setattr(RerankCache, "append", spy_append)
    store.upsert("c", points[280:])
    assert seen["lock free"] and all(seen["lock free"])
    assert seen["handed"] and all(seen["handed"])
    assert cache.token_index_ready() and cache.dedup_ready() and len(cache) == 300
    assert pid(290) in cache.token_candidates(corpus.query(290), 20)
    store.close()


@pytest.mark.parametrize("first_stage", ["scan", "pooled", "dedup"])
def test_a_search_runs_its_kernels_and_qdrants_call_outside_the_store_lock_while_a_page_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first_stage: str
) -> None:
    """The first stage, the int8 rerank and Qdrant's exact stage each run while another thread can take
    the store's lock; an upsert made during the rerank lands, and the search still returns exact MaxSim's
    top pages of what it started on."""
    corpus = Corpus(36, seed=3, noise=0.1)  # near-duplicate tokens: worth a dedup index
    points = edge_points(corpus)
    store = edge_with(tmp_path, points[:30], first_stage, rerank_candidates=4, write_max_wait_s=0.01)
    if first_stage == "dedup":
        store._rerank_file("fast").ensure_dedup_index()
        assert store._rerank_file("fast").dedup_ready()
    free: dict[str, bool] = {}
    written: list[int] = []
    real_best, real_maxsim, real_exact = ScanView.best, RerankView.maxsim, store._exact_hits
    real_pooled = RerankCache.pooled_search

    def write_a_page() -> None:
        if not written:  # a page written in the middle of the search
            writer = threading.Thread(target=lambda: store.upsert("fast", points[30:31]))
            writer.start()
            writer.join(30)
            written.append(store.count("fast"))

    def best(self: ScanView, query: np.ndarray, m: int) -> list[str]:
        free.setdefault(f"first stage ({first_stage})", _lock_is_free(store))
        write_a_page()
        return real_best(self, query, m)

    def pooled_search(self: RerankCache, device: str = "cpu") -> object:
        search = real_pooled(self, device)

        def run(query: np.ndarray, k: int) -> list[str]:
            free.setdefault("first stage (pooled)", _lock_is_free(store))
            write_a_page()
            return search(query, k)

        return run

    def maxsim(self: RerankView, query: np.ndarray, device: str = "cpu") -> np.ndarray:
        free.setdefault("int8 rerank", _lock_is_free(store))
        return real_maxsim(self, query, device)

    def exact_hits(*args: object, **kwargs: object) -> object:
        free.setdefault("exact stage", _lock_is_free(store))
        return real_exact(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ScanView, "best", best)
    monkeypatch.setattr(RerankCache, "pooled_search", pooled_search)
    monkeypatch.setattr(RerankView, "maxsim", maxsim)
    monkeypatch.setattr(store, "_exact_hits", exact_hits)
    q = corpus.query(7)
    exact = store.search("fast", q, 3, mode="exact")
    free.clear()
    got = store.search("fast", q, 3)
    steps = {f"first stage ({first_stage})": True, "exact stage": True}
    if first_stage != "scan":  # the scan's ranking is already int8 MaxSim of every page: no second pass
        steps["int8 rerank"] = True
    assert free == steps
    assert written == [31]  # the write went through while the search ran
    assert [h.id for h in got] == [h.id for h in exact]  # the new page is not among them (the planted query's)
    store.close()


def test_a_search_survives_a_close_and_reports_a_deletion_that_happen_while_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Qdrant's exact stage runs outside the lock: a ``close`` meanwhile (the store reopens lazily) is
    answered by the collection's new shard; a ``delete_collection`` meanwhile is a clear not-found error."""
    points, queries = planted_corpus(30)
    store = edge_with(tmp_path, points, "pooled", rerank_candidates=4)
    exact = [h.id for h in store.search("fast", queries[1], 3, mode="exact")]
    real_maxsim = RerankView.maxsim
    action: list[str] = ["close"]

    def maxsim(self: RerankView, query: np.ndarray, device: str = "cpu") -> np.ndarray:
        action.append("ran")
        if action[0] == "close":
            store.close()
        else:
            store.delete_collection("fast")
        return real_maxsim(self, query, device)

    monkeypatch.setattr(RerankView, "maxsim", maxsim)
    assert [h.id for h in store.search("fast", queries[1], 3)] == exact
    assert action == ["close", "ran"]
    action[0] = "delete"
    with pytest.raises(CollectionNotFoundError):
        store.search("fast", queries[1], 3)
    assert action == ["delete", "ran", "ran"]
    store.close()


class _CountingShard:
    """An Edge shard that counts its updates and flushes (all else passes through)."""

    def __init__(self, shard: object) -> None:
        self._shard = shard
        self.updates = 0
        self.flushes = 0

    def update(self, op: object) -> object:
        self.updates += 1
        return self._shard.update(op)  # type: ignore[attr-defined]

    def flush(self) -> object:
        self.flushes += 1
        return self._shard.flush()  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._shard, name)


def test_a_long_document_is_written_in_short_edge_calls_so_no_thread_stalls_long(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Edge's update and flush hold the GIL for their whole run (~4.5 ms per 1139-token page written, a
    flush ~28 ms plus ~1.5 ms per page since the last one: bench/README.md), stalling every other thread
    (``/healthz``). So with no search in flight a long document goes in writes of at most ``WRITE_TOKENS``
    tokens (one page at least), and the default flush cadence flushes every ~13 such pages, not
    every ~430: 40 pages of 1139 tokens -> 7 pages per write, and at least two flushes."""
    from pagelens.index.stores import edge_store
    from test_fast_rerank import DIM, unit

    from pagelens.core.types import PageEmbedding, PagePoint, page_point_id

    rng = np.random.default_rng(3)
    pages = [PagePoint(page_point_id("c", "ab" * 32, i + 1),
                       PageEmbedding(full=unit(rng.standard_normal((1139, DIM))),
                                     rows=unit(rng.standard_normal((32, DIM))),
                                     cols=unit(rng.standard_normal((32, DIM)))),
                       {"doc_id": "long", "page_no": i + 1})
             for i in range(40)]
    store = QdrantEdgeStore(tmp_path / "edge")
    store.create_collection(manifest("c"))
    written: list[int] = []
    append = RerankCache.append

    def spy_append(self: RerankCache, items, prepared=None):  # noqa: ANN001, ANN202
        written.append(len(items))
        return append(self, items, prepared)

    monkeypatch.setattr(RerankCache, "append", spy_append)
    counting = _CountingShard(store._shards["c"])
    store._shards["c"] = counting
    store.upsert("c", pages)
    per_write = edge_store.WRITE_TOKENS // 1139
    assert per_write == 7
    assert written == [per_write] * (40 // per_write) + [40 % per_write]  # one cache append per Edge update
    assert counting.updates == len(written)
    assert counting.flushes >= 2  # ~13 such pages per flush by default (8 MiB counted as float32)
    assert store.count("c") == 40 and len(store._rerank_file("c")) == 40
    store.close()
