"""The near-duplicate-free first stage (index/ann/dedup_index.py): the token cover keeps one token per group
of near-duplicates and represents every dropped token within the threshold; the index survives a reopen,
ignores a torn tail, is caught up after appends and dropped by a compaction; its candidates hold the exact
top pages; the Edge store builds it at optimize and a plan using it returns exact MaxSim's results; it is
not built where covers keep most tokens (isotropic vectors)."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from pagelens.index.ann.dedup_index import (
    CODES_FILE,
    MAX_KEPT_SHARE,
    SPANS_FILE,
    THRESHOLD,
    DedupIndex,
    token_cover,
)
from pagelens.index.ann.fast_rerank import RerankCache, encode_centred, fit_codec
from pagelens.index.ann.first_stages import first_stages
from pagelens.index.ann.self_check import SearchPlan
from pagelens.index.stores.edge_store import QdrantEdgeStore
from test_fast_rerank import DIM
from test_search_status import manifest, same_as_exact
from test_token_index import Corpus, edge_points, pid


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_the_cover_keeps_one_token_per_group_of_near_duplicates_and_represents_every_token() -> None:
    rng = np.random.default_rng(0)
    groups = unit(rng.standard_normal((3, DIM)))
    page = unit(groups[rng.integers(0, 3, 200)] + rng.standard_normal((200, DIM)) * (0.05 / np.sqrt(DIM)))
    distinct = unit(rng.standard_normal((40, DIM)))  # random directions: |cos| ~ 0.1, nothing to merge
    x = np.concatenate([page, distinct])
    centre, scale = fit_codec(x)
    codes = encode_centred(x, centre, scale)
    keep = token_cover(codes, centre, scale)
    assert list(keep) == sorted(keep) and len(keep) == 3 + 40  # one per group, every distinct token
    decoded = unit(centre + scale * codes.astype(np.float32))
    cos = decoded @ decoded[keep].T
    assert (cos.max(axis=1) >= THRESHOLD).all()  # every token has a kept representative


def test_the_index_reopens_ignores_a_torn_tail_and_refuses_a_gap(tmp_path: Path) -> None:
    index = DedupIndex(tmp_path / "dedup")
    pages = [np.full((n, DIM), n, dtype=np.int8) for n in (3, 0, 5)]
    index.append(0, pages, DIM)
    with pytest.raises(ValueError, match="covers 3 records, not 1"):
        index.append(1, pages[:1], DIM)
    again = DedupIndex(tmp_path / "dedup")
    assert again.covered == 3 and again.kept_tokens() == 8 and again.ready(3) and not again.ready(4)
    with open(tmp_path / "dedup" / SPANS_FILE, "ab") as fh:  # spans of a record whose codes never landed
        fh.write(np.asarray([[8, 4]], dtype=np.int64).tobytes())
    torn = DedupIndex(tmp_path / "dedup")
    assert torn.covered == 3
    assert (tmp_path / "dedup" / CODES_FILE).stat().st_size == 8 * DIM
    torn.clear()
    assert DedupIndex(tmp_path / "dedup").covered == 0


def test_the_cache_builds_catches_up_and_drops_it_and_its_candidates_hold_the_exact_top(tmp_path: Path) -> None:
    corpus = Corpus(120, seed=3, noise=0.1)  # repeated words, near-duplicate tokens: worth a cover
    cache = RerankCache(tmp_path / "rerank")
    points = edge_points(corpus)
    cache.append((p.id, p.embedding.full, p.embedding.rows, p.embedding.cols) for p in points[:100])
    assert not cache.dedup_ready() and "dedup" not in first_stages(cache)
    assert cache.ensure_dedup_index() == "built" and cache.dedup_ready()
    assert cache.ensure_dedup_index() == ""  # nothing to do
    cache.append((p.id, p.embedding.full, p.embedding.rows, p.embedding.cols) for p in points[100:])
    assert cache.dedup_ready()  # kept current by the append: searches during an upload keep the dedup plan
    assert cache.ensure_dedup_index() == ""
    stage = first_stages(cache)["dedup"]
    for target in (5, 42, 111):
        q = corpus.query(target)
        got = stage.candidates(q, 20)
        assert len(got) == 20 and pid(target) in got
        assert {pid(i) for i in corpus.exact_top(q, 3)} <= set(got)
    cache.remove([pid(5)])
    assert cache.dedup_ready() and cache.ensure_dedup_index() == ""  # its tombstone has an empty cover
    assert pid(5) not in stage.candidates(corpus.query(5), 120)  # deleted pages are never proposed
    cache.compact({p.id for p in points} - {pid(5)})
    assert not cache.dedup_ready() and cache.dedup.covered == 0  # renumbered: rebuilt next time
    assert cache.ensure_dedup_index() == "built"
    assert RerankCache(tmp_path / "rerank").dedup_ready()  # another process finds it
    cache.clear()
    assert not (tmp_path / "rerank" / "dedup").exists()


def test_the_store_builds_it_at_optimize_and_a_dedup_plan_returns_exact_results(tmp_path: Path) -> None:
    corpus = Corpus(300, seed=11, noise=0.1)
    store = QdrantEdgeStore(tmp_path / "edge", token_index_min_pages=0, rerank_candidates=10)
    store.create_collection(manifest("d"))
    store.upsert("d", edge_points(corpus))
    result = store.repair("d")
    assert "dedup index built" in result.rebuilt and result.after.current
    trials = store.search_status("d").self_check["trials"]
    assert any(t["first_stage"] == "dedup" for t in trials)  # measured by the self-check
    plan = SearchPlan(first_stage="dedup", candidates=64, rerank_keep=16, recall=1.0, pages=300, probes=32)
    assert plan.summary().startswith("int8 scan of every page's distinct tokens -> 64 candidates -> 16 scored exactly")
    store.set_plan("d", plan)
    for target in (0, 77, 299):
        assert len(same_as_exact(store, "d", corpus.query(target), 5)) == 5  # ids, order and scores of exact
    store.upsert("d", edge_points(corpus)[:1])  # a page written again: the index follows the cache at once
    assert store._rerank_file("d").dedup_ready()
    assert len(same_as_exact(store, "d", corpus.query(3), 5)) == 5
    store.close()


def test_a_failed_cover_append_leaves_it_behind_and_searches_scan_until_optimize(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    corpus = Corpus(200, seed=12, noise=0.1)
    store = QdrantEdgeStore(tmp_path / "edge", token_index_min_pages=0, rerank_candidates=10)
    store.create_collection(manifest("d"))
    points = edge_points(corpus)
    store.upsert("d", points[:150])
    assert "dedup index built" in store.repair("d").rebuilt
    store.set_plan("d", SearchPlan(first_stage="dedup", candidates=64, rerank_keep=16, recall=1.0, pages=150, probes=32))

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(DedupIndex, "append", broken)
    store.upsert("d", points[150:])
    assert "could not add 50 pages to the dedup index" in caplog.text  # one write: no search ran meanwhile
    assert not store._rerank_file("d").dedup_ready()  # behind: the plan's stage falls back to the scan
    assert "dedup_index" in store.search_status("d").codes  # and the repair after the job catches it up
    for target in (3, 160, 199):  # the new pages are found all the same
        assert len(same_as_exact(store, "d", corpus.query(target), 5)) == 5
    monkeypatch.undo()
    assert store._rerank_file("d").ensure_dedup_index() == "caught up"
    store.close()


def test_it_is_not_built_where_covers_keep_most_tokens_and_is_decided_again_when_the_cache_doubles(
        tmp_path: Path) -> None:
    corpus = Corpus(100, seed=5)  # noise 0.5: copies of a word are at cosine ~0.8, nothing to merge
    cache = RerankCache(tmp_path / "rerank")
    points = edge_points(corpus)
    cache.append((p.id, p.embedding.full, p.embedding.rows, p.embedding.cols) for p in points)
    assert cache.ensure_dedup_index() == "declined"
    declined = RerankCache(tmp_path / "rerank").dedup.declined()  # kept on disk, another process sees it
    assert declined is not None and declined["records"] == 100 and declined["kept_share"] > MAX_KEPT_SHARE
    assert not (tmp_path / "rerank" / "dedup" / CODES_FILE).exists()  # no second copy of the codes
    assert not cache.dedup_ready() and "dedup" not in first_stages(cache)
    assert cache.ensure_dedup_index() == ""  # not decided again until the cache has doubled
    repeats = Corpus(100, seed=6, noise=0.1)
    cache.append((str(uuid.UUID(int=uuid.UUID(p.id).int + 10_000)), p.embedding.full, p.embedding.rows,
                  p.embedding.cols) for p in edge_points(repeats))
    assert cache.ensure_dedup_index() == "declined"  # decided again: half the pages still have no repeats
    near = Corpus(60, seed=7, noise=0.1)
    fresh = RerankCache(tmp_path / "fresh")
    fresh.append((p.id, p.embedding.full, p.embedding.rows, p.embedding.cols) for p in edge_points(near))
    fresh.dedup.decline(0.9, 10)  # an old decision, then the cache grew past twice its size
    assert fresh.ensure_dedup_index() == "built" and fresh.dedup_ready() and fresh.dedup.declined() is None
    assert 0 < fresh.dedup.kept_tokens() < 0.5 * 60 * near.tokens
