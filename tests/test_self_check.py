"""The index checks its own recall (``pagelens.index.ann.self_check``, issue 25): probe queries, the plan
it chooses on isotropic and anisotropic collections, the exact fallback, persistence and reporting."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pagelens.index.ann.self_check import (
    PROBE_TOKENS,
    WIDTHS,
    Probe,
    SearchPlan,
    geometry,
    make_probes,
    run_check,
)
from pagelens.index.stores.edge_store import QdrantEdgeStore

from bench.retrieval import Synth, maxsim_scores, page_of, points_for, recall
from pagelens.core.types import CollectionManifest

DIM = 128


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def test_probes_are_unit_vectors_built_from_the_pages() -> None:
    rng = np.random.default_rng(0)
    pages = [unit(rng.standard_normal((50, DIM))) for _ in range(4)]
    probes = make_probes(pages[:2], pages, rng)
    assert probes.shape == (2, PROBE_TOKENS, DIM) and probes.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(probes, axis=-1), 1.0, atol=1e-5)
    # the first tokens lean on their own page: their best match there is far above chance (~0.3 for iid)
    own_best = (probes[0, :12] @ pages[0].T).max(axis=1)
    assert own_best.min() > 0.6
    # the generic ones single out no page: their best match anywhere is the sum of 8 random tokens' share
    pool = np.concatenate(pages)
    generic_best = (probes[:, 12:] @ pool.T).max(axis=-1)
    assert generic_best.max() < 0.8 and generic_best.mean() < 0.55  # a copied token would match at ~0.98


def test_geometry_tells_a_cone_from_isotropic_vectors() -> None:
    rng = np.random.default_rng(1)
    iso = [unit(rng.standard_normal((200, DIM))) for _ in range(8)]
    mean = unit(rng.standard_normal(DIM))
    cone = [unit(2.0 * mean + 0.3 * unit(rng.standard_normal((200, DIM)))) for _ in range(8)]
    dup = [np.repeat(unit(rng.standard_normal((4, DIM))), 50, axis=0) for _ in range(8)]
    g_iso, g_cone, g_dup = geometry(iso, rng), geometry(cone, rng), geometry(dup, rng)
    assert abs(g_iso["mean_token_cosine"]) < 0.05 and g_cone["mean_token_cosine"] > 0.9
    assert g_iso["pca_dims_90"] > 90 and g_iso["near_duplicate_share"] == 0.0
    assert g_dup["near_duplicate_share"] == 1.0 and g_dup["pca_dims_90"] <= 32


def fake_probe(pages: np.ndarray, stage_quality: float, scan_quality: float) -> Probe:
    """A Probe over in-RAM pages [N, T, D] whose first stages see the exact scores plus noise of the
    given size (0: perfect)."""
    ids = [f"p{i}" for i in range(len(pages))]
    rng = np.random.default_rng(3)
    memo: dict[bytes, np.ndarray] = {}

    def exact(q: np.ndarray) -> np.ndarray:
        key = q.tobytes()
        if key not in memo:
            memo[key] = maxsim_scores(pages, q[None])[0]
        return memo[key]

    def brute_force(q: np.ndarray, k: int) -> list[tuple[str, float]]:
        time.sleep(0.05)  # what scoring every page exactly costs, next to the first stages' in-RAM lookups
        return [(ids[i], float(exact(q)[i])) for i in np.argsort(-exact(q), kind="stable")[:k]]

    def noisy(q: np.ndarray, size: float) -> np.ndarray:
        return exact(q) + rng.standard_normal(len(pages)).astype(np.float32) * size

    def best(scores: np.ndarray, m: int) -> list[str]:
        return [ids[i] for i in np.argsort(-scores, kind="stable")[:m]]

    return Probe(
        sample_tokens=lambda n, g: [pages[i] for i in g.choice(len(pages), n, replace=False)],
        exact_top=brute_force,
        exact_scores=lambda q, sel: {i: float(exact(q)[ids.index(i)]) for i in sel},
        scan=lambda q, m: best(noisy(q, scan_quality), m),
        rerank=lambda q, sel: noisy(q, scan_quality)[[ids.index(i) for i in sel]],
        stages={"pooled": lambda q, w: best(noisy(q, stage_quality), w)},
        pages=len(pages), rows=int(pages.shape[0] * pages.shape[1]),
    )


def test_the_check_picks_the_cheapest_stage_that_reaches_the_target_and_falls_back_to_exact() -> None:
    rng = np.random.default_rng(4)
    pages = unit(rng.standard_normal((600, 30, DIM)))
    good = run_check(fake_probe(pages, stage_quality=0.0, scan_quality=0.0), target=0.95, probes=8)
    assert good.recall is not None and good.recall >= 0.95 and good.first_stage != "exact" and not good.fallback
    assert good.truth == "exact MaxSim of every page" and good.probes == 8
    assert {t["first_stage"] for t in good.trials} >= {"scan", "pooled", "exact"}
    hopeless = run_check(fake_probe(pages, stage_quality=50.0, scan_quality=50.0), target=0.95, probes=8)
    assert hopeless.first_stage == "exact" and hopeless.fallback and hopeless.recall == 1.0
    assert "no first stage reached the target" in hopeless.summary()
    # every non-exact trial measured its (poor) recall
    assert max(t["recall"] for t in hopeless.trials if t["first_stage"] != "exact") < 0.95


def test_outdated_after_a_quarter_of_change() -> None:
    plan = SearchPlan(recall=1.0, pages=1000)
    assert not plan.outdated(1200) and plan.outdated(1300) and plan.outdated(700)
    assert SearchPlan().outdated(10)  # never measured
    assert SearchPlan.from_dict({**plan.to_dict(), "unknown_key": 1}) == plan


def count_exact_calls(monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    """Records the pages each Qdrant exact call of the store names (None: every page), call by call."""
    calls: list[int | None] = []
    exact_hits = QdrantEdgeStore._exact_hits

    def spy(self, shard, q, limit, flt, ids=None, with_payload=True):  # noqa: ANN001, ANN202
        calls.append(None if ids is None else len(ids))
        return exact_hits(self, shard, q, limit, flt, ids=ids, with_payload=with_payload)

    monkeypatch.setattr(QdrantEdgeStore, "_exact_hits", spy)
    return calls


def synth_store(tmp_path: Path, generator: str, pages: int = 400, tokens: int = 120) -> tuple[QdrantEdgeStore, Synth]:
    syn = Synth(pages, tokens, generator=generator)
    store = QdrantEdgeStore(tmp_path / generator, full_datatype="float16")
    store.create_collection(CollectionManifest(name="c", model_id="synthetic", model_revision=None, dim=DIM))
    for k in range(syn.n_chunks()):
        full, rows, cols, _ = syn.gen_chunk(k)
        store.upsert("c", points_for(k * 100, full, rows, cols))
    return store, syn


@pytest.mark.slow
@pytest.mark.parametrize("generator", ["aniso", "iid"])
def test_the_default_search_returns_the_exact_top_5_on_both_generators(tmp_path: Path, generator: str) -> None:
    """400 pages x 120 tokens: after optimize, the measured plan reaches the target on the probes, and the
    default two_stage search returns exact MaxSim's top 5 (tie-aware recall@5 >= 0.95) for the generator's
    own planted queries, which the check never saw."""
    store, syn = synth_store(tmp_path, generator)
    result = store.repair("c", force=True)
    assert any(r.startswith("self-check: ") for r in result.rebuilt)
    status = store.search_status("c")
    report = status.to_dict()["self_check"]
    assert report["recall"] >= 0.95 and report["pages"] == 400 and report["probes"] == 32
    assert set(report["geometry"]) == {"mean_token_cosine", "pca_dims_90", "near_duplicate_share"}
    if generator == "aniso":
        assert report["geometry"]["mean_token_cosine"] > 0.3
        pooled = [t["recall"] for t in report["trials"] if t["first_stage"] == "pooled"]
        assert min(pooled) < 0.95  # the cone defeats the pooled means, and the check saw it
    queries, _ = syn.queries(20)
    full = np.concatenate([syn.gen_chunk(k)[0] for k in range(syn.n_chunks())]).astype(np.float16)
    exact = maxsim_scores(full.astype(np.float32), queries)
    got = []
    for qi, q in enumerate(queries):
        hits = store.search("c", q, 5)
        truth = [int(i) for i in np.argsort(-exact[qi], kind="stable")[:5]]
        got.append(recall([page_of(h.id) for h in hits], truth, 5, exact[qi]))
    assert float(np.mean(got)) >= 0.95, got
    store.close()
    # the plan is kept with the collection: a new process uses it without measuring again
    again = QdrantEdgeStore(tmp_path / generator, full_datatype="float16")
    assert again.search_status("c").self_check == report
    again.close()


def test_an_exact_fallback_warns_once_and_stays_exact(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store, syn = synth_store(tmp_path, "iid", pages=120, tokens=40)
    store.optimize("c")
    store.set_plan("c", SearchPlan(first_stage="exact", recall=1.0, pages=120, fallback=True))
    caplog.set_level(logging.WARNING, logger="pagelens.index.stores.edge_store")
    queries, _ = syn.queries(3)
    for q in queries:
        fast = store.search("c", q, 5)
        exact = store.search("c", q, 5, mode="exact")
        assert [(h.id, h.score) for h in fast] == [(h.id, h.score) for h in exact]
    warnings = [r.getMessage() for r in caplog.records if "no first stage reached" in r.getMessage()]
    assert len(warnings) == 1 and "pagelens optimize -c c" in warnings[0]
    store.close()


def test_removed_candidate_knobs_are_ignored_with_a_warning(monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    from pagelens.core import settings as settings_module
    from pagelens.core.settings import Settings

    monkeypatch.setattr(settings_module, "_WARNED", set())
    monkeypatch.setenv("PAGELENS_TUNING__TOKEN_CANDIDATES", "99")
    caplog.set_level(logging.WARNING)
    s = Settings(rerank_candidates=3)
    assert not hasattr(s.tuning, "token_candidates") and s.tuning.search_recall_target == 0.95
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "PAGELENS_TUNING__TOKEN_CANDIDATES is no longer a setting" in text and "rerank_candidates" in text


WIDTHS_BELOW_600 = [w for w in WIDTHS if w < 600]


def test_a_stage_that_ranks_every_page_is_ranked_once_per_probe_with_the_same_trials() -> None:
    """``RANKING_STAGES`` (dedup, sketch) are asked once per probe, at the widest width, and sliced: the trials
    equal those of asking at every width."""
    rng = np.random.default_rng(5)
    pages = unit(rng.standard_normal((600, 30, DIM)))
    ids = [f"p{i}" for i in range(len(pages))]
    calls: list[int] = []

    def noisy_ranking(q: np.ndarray, w: int) -> list[str]:  # the same noise for the same query
        noise = np.random.default_rng(abs(hash(q.tobytes())) % 2**32).standard_normal(len(pages)) * 0.5
        return [ids[i] for i in np.argsort(-(maxsim_scores(pages, q[None])[0] + noise), kind="stable")[:w]]

    def counted(q: np.ndarray, w: int) -> list[str]:
        calls.append(w)
        return noisy_ranking(q, w)

    plain = fake_probe(pages, stage_quality=0.0, scan_quality=0.0)
    plain.stages = {"pooled": noisy_ranking}
    once = fake_probe(pages, stage_quality=0.0, scan_quality=0.0)
    once.stages = {"sketch": counted}
    a = run_check(plain, target=0.95, probes=6)
    b = run_check(once, target=0.95, probes=6)
    assert calls == [max(WIDTHS_BELOW_600)] * 6
    recall = {(t["candidates"], t["rerank_keep"]): t["recall"] for t in a.trials if t["first_stage"] == "pooled"}
    assert len(recall) > 4 and min(recall.values()) < 1.0  # the noise costs some recall: a real comparison
    assert recall == {(t["candidates"], t["rerank_keep"]): t["recall"] for t in b.trials if t["first_stage"] == "sketch"}


def test_the_checks_exact_searches_are_split_into_short_calls_with_the_same_plan(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Edge holds the GIL through an exact search (~0.24 ms per 1139-token page), so the check's truth over
    every page is computed ``EXACT_CALL_ROWS`` token rows per call, each under the lock on its own: no call
    covers more pages than that, every call names its ids, and the check measures the same as with one
    call over every page (same truth, same trials, same plan)."""
    from pagelens.index.stores import edge_base

    store, _ = synth_store(tmp_path, "aniso", pages=200, tokens=60)
    store.optimize("c")
    calls = count_exact_calls(monkeypatch)
    plans = {}
    for rows in (10**9, 25 * 60):  # one call over the 200 pages; calls of 25 pages
        monkeypatch.setattr(edge_base, "EXACT_CALL_ROWS", rows)
        calls.clear()
        plans[rows] = store.self_check("c", force=True)
        assert calls and None not in calls
        assert max(calls) == (200 if rows == 10**9 else 25)
    one, split = plans[10**9], plans[25 * 60]
    assert (split.first_stage, split.candidates, split.rerank_keep, split.recall) == \
        (one.first_stage, one.candidates, one.rerank_keep, one.recall)
    def measured(plan: SearchPlan) -> list[tuple]:  # the trials' order follows their timed cost
        return sorted((t["first_stage"], t["candidates"], t["rerank_keep"], t["recall"]) for t in plan.trials)

    assert measured(split) == measured(one)
    store.close()


def _free_for_others(lock: object) -> bool:
    """Whether another thread can take ``lock`` now (a search's first step), within 1 s."""
    got: list[bool] = []

    def take() -> None:
        ok = lock.acquire(timeout=1.0)  # type: ignore[attr-defined]
        if ok:
            lock.release()  # type: ignore[attr-defined]
        got.append(ok)

    t = threading.Thread(target=take)
    t.start()
    t.join()
    return got[0]


def test_the_checks_kernels_and_exact_calls_run_outside_the_stores_lock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A search's first step takes the store's lock, so the self-check computes as searches do: under the
    lock it only takes views (a stage's prepared candidates, the candidates' int8 codes, the shard); every
    first stage, the int8 scan and rerank and each exact Qdrant call run with the lock free for a search
    (before: the stages' kernels ran under it, and single searches waited up to 1 s during a job's repair)."""
    from pagelens.index.ann import fast_rerank
    from pagelens.index.stores import edge_maintenance

    store, _ = synth_store(tmp_path, "aniso", pages=200, tokens=60)
    store.optimize("c")
    free: dict[str, list[bool]] = {}

    def watched(kind: str, fn):  # noqa: ANN001, ANN202
        def run(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            free.setdefault(kind, []).append(_free_for_others(store._lock))
            return fn(*args, **kwargs)
        return run

    for cls, name in ((fast_rerank.ScanView, "best"), (fast_rerank.RerankView, "maxsim")):
        monkeypatch.setattr(cls, name, watched(f"{cls.__name__}.{name}", getattr(cls, name)))
    monkeypatch.setattr(QdrantEdgeStore, "_exact_hits", watched("exact", QdrantEdgeStore._exact_hits))
    real_stages = edge_maintenance.first_stages

    def stages(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        built = real_stages(*args, **kwargs)
        for stage in built.values():
            prepare = stage.prepare
            stage.prepare = lambda prepare=prepare, name=stage.name: watched(f"stage {name}", prepare())
        return built

    monkeypatch.setattr(edge_maintenance, "first_stages", stages)
    retrieved: list[int] = []  # the probes' tokens come from the int8 codes, not Qdrant's retrieve (Python lists)
    monkeypatch.setattr(QdrantEdgeStore, "get_full_vectors", lambda self, c, ids: retrieved.append(len(ids)) or {})
    turns = store.readers.turns
    plan = store.self_check("c", force=True)
    assert plan.recall is not None and len(plan.trials) > 1 and plan.probes == 32
    assert {"ScanView.best", "RerankView.maxsim", "exact", "stage pooled"} <= set(free)
    assert {kind: all(v) for kind, v in free.items()} == {kind: True for kind in free}
    assert retrieved == []
    assert store.readers.turns - turns == len(free["exact"])  # each exact call after the searches in flight
    store.close()


def test_the_checks_probe_tokens_are_the_pages_vectors_within_a_code_step(tmp_path: Path) -> None:
    """The probes are built from the cache's int8 codes (``RerankView.vectors``): each page's tokens within
    half a code step of the vectors Qdrant holds."""
    store, _ = synth_store(tmp_path, "aniso", pages=100, tokens=60)
    store.optimize("c")
    cache = store._rerank_file("c")
    ids = sorted(cache.ids())[:5]
    view = cache.rerank_view(ids)
    full = store.get_full_vectors("c", ids)
    for i, got in zip(ids, view.vectors(), strict=True):
        assert got.shape == full[i].shape == (60, DIM) and got.dtype == np.float32
        assert float(np.abs(got - full[i]).max()) <= view.scale * 0.5 + 2e-3  # float16 storage, too
    store.close()


def test_exact_searches_run_in_short_calls_with_the_same_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Edge holds the GIL through a query (one exact search of 10,000 1139-token pages: ~1.2 s during
    which /healthz cannot answer), so ``mode="exact"`` and an exact-fallback plan score the pages in calls
    of ``EXACT_CALL_ROWS`` token rows, each naming its ids (with a filter: the pages Qdrant's scroll finds for
    it, not every page), and return exactly what one call over every page returns: the same ids, scores and
    payloads, in the same order, with and without a filter."""
    from pagelens.index.stores import edge_base

    from pagelens.core.types import PageFilter

    store, syn = synth_store(tmp_path, "aniso", pages=200, tokens=60)
    store.optimize("c")
    queries, _ = syn.queries(4)
    calls = count_exact_calls(monkeypatch)
    doc = sorted({h.payload["doc_id"] for h in store.search("c", queries[0], limit=50, mode="exact")})[0]

    def results(how: str) -> list[tuple]:
        out = []
        for q in queries:
            for flt in (None, PageFilter(doc_ids=[doc])):
                hits = store.search("c", q, limit=7, mode=how, page_filter=flt)
                out.append([(h.id, round(h.score, 4), h.payload["doc_id"], h.payload["page_no"]) for h in hits])
        return out

    monkeypatch.setattr(edge_base, "EXACT_CALL_ROWS", 10**9)
    calls.clear()
    one = results("exact")
    assert calls == [200, 10] * len(queries)  # one call per search, by ids: every page; the filter's 10 pages
    monkeypatch.setattr(edge_base, "EXACT_CALL_ROWS", 30 * 60)
    calls.clear()
    split = results("exact")
    assert split == one and all(len(r) == 7 for r in split)
    assert calls == ([30] * 6 + [20] + [10]) * len(queries)  # 200 pages in 7 calls; the filter's in one
    store.set_plan("c", SearchPlan(first_stage="exact", recall=1.0, pages=200, fallback=True))
    calls.clear()
    assert results("two_stage") == one  # an exact plan: the same, in the same short calls
    assert calls == ([30] * 6 + [20] + [10]) * len(queries)
    store.close()


def test_exact_searches_without_the_int8_cache_split_by_qdrants_ids(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a cache in step (``fast_rerank`` off: no torch) an exact search takes Qdrant's ids by scroll and
    scores them in calls of ``EXACT_CALL_ROWS`` / ``ASSUMED_PAGE_TOKENS`` pages: the same top pages and scores
    as one call over every page, and an empty collection still answers nothing."""
    from pagelens.index.stores import edge_base

    syn = Synth(200, 60, generator="aniso")
    store = QdrantEdgeStore(tmp_path / "plain", full_datatype="float16", fast_rerank=False)
    store.create_collection(CollectionManifest(name="c", model_id="synthetic", model_revision=None, dim=DIM))
    store.create_collection(CollectionManifest(name="empty", model_id="synthetic", model_revision=None, dim=DIM))
    for k in range(syn.n_chunks()):
        full, rows, cols, _ = syn.gen_chunk(k)
        store.upsert("c", points_for(k * 100, full, rows, cols))
    queries, _ = syn.queries(3)
    calls = count_exact_calls(monkeypatch)
    one = [[(h.id, round(h.score, 4)) for h in store.search("c", q, limit=7, mode="exact")] for q in queries]
    assert calls == [115, 85] * 3  # pages of a typical length assumed: 115 per call, whatever their own
    monkeypatch.setattr(edge_base, "EXACT_CALL_ROWS", 50 * edge_base.ASSUMED_PAGE_TOKENS)
    calls.clear()
    split = [[(h.id, round(h.score, 4)) for h in store.search("c", q, limit=7, mode="exact")] for q in queries]
    assert split == one and all(len(r) == 7 for r in split)
    assert calls == [50] * 12  # 4 calls of 50 pages per search
    assert store.search("empty", queries[0], limit=5, mode="exact") == []
    store.close()
