"""Search-structure status and self-repair (``pagelens.index.stores.search_status``): the stores say whether their
fast-path structures are current (rerank cache by identity, token index, optimize), searches of a
stale collection stay exact and warn once, and every repair path (index rerun, job worker, server
start, ``pagelens optimize``) brings the fast path back. The SIGKILL versions are in
``tests/reliability/test_self_repair.py``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from pagelens.index.ann.self_check import SearchPlan
from pagelens.index.stores.aliases import EdgeAliases, with_aliases
from pagelens.index.stores.edge_store import OPTIMIZED_FILE, QdrantEdgeStore
from pagelens.index.stores.search_status import (
    DEDUP_INDEX,
    OPTIMIZE_PENDING,
    RERANK_CACHE,
    SELF_CHECK,
    SERVER_ERROR,
    SERVER_OPTIMIZING,
    SERVER_PENDING,
    TOKEN_INDEX,
    IdDigest,
    SearchStatus,
    StaleWarnings,
)
from test_fast_rerank import DIM, planted_corpus
from test_token_index import Corpus, edge_points, pid

from pagelens.core.errors import CollectionNotFoundError
from pagelens.core.types import CollectionManifest, PageEmbedding, PagePoint, page_point_id

WARN_LOGGER = "pagelens.index.stores.edge_store"


def manifest(name: str) -> CollectionManifest:
    return CollectionManifest(name=name, model_id="m", model_revision=None, dim=DIM)


def stale_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "are stale" in r.getMessage()]


def same_as_exact(store: Any, collection: str, q: np.ndarray, k: int) -> list[str]:
    """Two-stage top ``k`` == exact MaxSim top ``k`` (ids, order, scores); returns the ids."""
    fast = store.search(collection, q, k, mode="two_stage")
    exact = store.search(collection, q, k, mode="exact")
    assert [h.id for h in fast] == [h.id for h in exact]
    assert [h.score for h in fast] == pytest.approx([h.score for h in exact], abs=1e-4)
    return [h.id for h in fast]


# --- digests ------------------------------------------------------------------------------------


def test_id_digest_is_order_independent_and_tells_equal_counts_apart() -> None:
    ids = [page_point_id("c", f"{i:02d}" * 32, 1) for i in range(50)]
    a, b = IdDigest(ids), IdDigest(reversed(ids))
    assert a.digest() == b.digest() and a.digest()[0] == 50
    a.add(ids[:5])  # already there: unchanged
    assert a.digest() == b.digest()
    swapped = IdDigest([*ids[:-1], page_point_id("c", "ff" * 32, 1)])
    assert swapped.digest()[0] == 50 and swapped.digest() != a.digest()
    a.discard([ids[-1]])
    a.add([page_point_id("c", "ff" * 32, 1)])
    assert a.digest() == swapped.digest()


def test_the_rerank_cache_digest_matches_the_live_set_through_appends_removes_and_reloads(tmp_path: Path) -> None:
    from pagelens.index.ann.fast_rerank import RerankCache

    points, _ = planted_corpus(12)
    cache = RerankCache(tmp_path / "rerank")
    rows = [(p.id, p.embedding.full, p.embedding.rows, p.embedding.cols) for p in points]
    cache.append(rows)
    cache.append(rows[:3])  # re-upserts: still the same set
    assert cache.digest() == IdDigest(p.id for p in points).digest()
    cache.remove([points[0].id, points[1].id])
    want = IdDigest(p.id for p in points[2:]).digest()
    assert cache.digest() == want
    assert RerankCache(tmp_path / "rerank").digest() == want  # read back from index.bin
    cache.compact({p.id for p in points[2:]})
    assert cache.digest() == want


# --- Qdrant Edge --------------------------------------------------------------------------------


def test_a_cache_out_of_step_is_found_by_identity_repaired_and_searches_stay_exact(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What a SIGKILL between Qdrant's upsert and the cache append (or delete) leaves: Qdrant has
    points the cache lacks, and the cache pages Qdrant deleted; here as many of each, so the counts
    agree and only the ids tell. Before: the count check took the cache as complete, so the pooled
    scan never offered the new pages and offered deleted ones (fewer results than asked)."""
    points, _ = planted_corpus(60)
    root = tmp_path / "edge"
    store = QdrantEdgeStore(root, rerank_candidates=10)
    store.create_collection(manifest("fast"))
    assert store.search_status("fast") == SearchStatus("fast", True)  # empty: nothing to build
    store.upsert("fast", points)
    status = store.search_status("fast")
    assert not status.current and status.codes == (DEDUP_INDEX, SELF_CHECK) and status.points == 60
    assert status.segments_pending  # Edge's segment optimizer has not run: not a staleness with the int8 cache
    result = store.repair("fast")
    assert result.ran and result.after.current and store.search_status("fast").current
    # the repair of a healthy collection leaves Edge's segment optimizer (it holds the GIL) to `optimize`
    assert not (root / "fast" / OPTIMIZED_FILE).exists() and result.after.segments_pending
    assert result.after.to_dict()["segments_pending"] is True
    assert store.repair("fast", force=True).after.current  # `pagelens optimize`: the segments too
    assert (root / "fast" / OPTIMIZED_FILE).is_file() and not store.search_status("fast").segments_pending
    store.close()

    rng = np.random.default_rng(3)
    new = []
    for i in range(6):  # doc-0 replaced by six other pages, behind the cache's back
        full = (rng.standard_normal((30, DIM))).astype(np.float32)
        full /= np.linalg.norm(full, axis=1, keepdims=True)
        grid = full.reshape(5, 6, DIM)
        new.append(PagePoint(page_point_id("fast", "ee" * 32, i + 1),
                             PageEmbedding(full=full, rows=grid.mean(axis=1), cols=grid.mean(axis=0)),
                             {"doc_id": "doc-new", "doc_name": "new.pdf", "page_no": i + 1, "page_count": 6,
                              "meta": {}, "text": ""}))
    other = QdrantEdgeStore(root, fast_rerank=False)  # writes Qdrant only
    assert other.delete_document("fast", "doc-0") == 6
    other.upsert("fast", new)
    other.close()

    store = QdrantEdgeStore(root, rerank_candidates=10)
    assert store.count("fast") == len(store._rerank_file("fast")) == 60  # same count, different pages
    status = store.search_status("fast")
    assert not status.current and set(status.codes) == {OPTIMIZE_PENDING, RERANK_CACHE}
    assert "6 of 60 pages missing from it, 6 deleted pages still in it" in " ".join(status.stale)
    caplog.set_level(logging.WARNING, logger=WARN_LOGGER)
    q = new[2].embedding.full[:6]
    assert same_as_exact(store, "fast", q, 5)[0] == new[2].id
    assert len(store.search("fast", q, 60, mode="two_stage")) == 60  # never fewer than k
    warned = stale_warnings(caplog)
    assert len(warned) == 1, warned  # once per collection and staleness, not per search
    assert "collection 'fast'" in warned[0] and "`pagelens optimize --collection fast`" in warned[0]
    assert "rerank cache is out of step" in warned[0] and "lower recall on large collections" in warned[0]

    result = store.repair("fast")
    assert result.before == status and result.after.current
    assert "rerank cache: 6 pages added, 6 deleted pages dropped" in result.rebuilt
    assert store._rerank_file("fast").digest() == IdDigest(i for i, _ in store.iter_payloads("fast")).digest()
    caplog.clear()
    assert same_as_exact(store, "fast", q, 5)[0] == new[2].id
    assert stale_warnings(caplog) == []
    store.upsert("fast", new[:1])  # a write Edge's segments have not seen optimized: the int8 cache has it
    store.search("fast", q, 5)
    assert store.search_status("fast").current and store.search_status("fast").segments_pending
    assert stale_warnings(caplog) == []  # nothing a search reads is stale: no warning
    store.close()


def test_the_token_path_tops_up_from_the_pooled_hnsw_when_it_finds_fewer_than_k(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token stage that finds one page (few pages share a probed cell with the query) for k = 8:
    the rest come from the int8 scan of every page. (The token index itself is stubbed: its real
    build is exercised in test_token_index.py and below.)"""
    corpus = Corpus(120, seed=4)
    store = QdrantEdgeStore(tmp_path / "edge", token_index_min_pages=50, rerank_candidates=10)
    store.create_collection(manifest("tok"))
    store.upsert("tok", edge_points(corpus))
    store.set_plan("tok", SearchPlan(first_stage="tokens", candidates=40, rerank_keep=10, recall=1.0, pages=120))
    cache = store._rerank_file("tok")
    calls: list[int] = []

    def one_candidate(query: np.ndarray, m: int, **kwargs: object) -> list[str]:
        calls.append(m)
        return [pid(17)]

    monkeypatch.setattr(cache, "token_index_ready", lambda: True)
    monkeypatch.setattr(cache, "token_search", lambda *a, **k: one_candidate)
    q = corpus.query(17)
    fast = store.search("tok", q, 8, mode="two_stage", prefetch_limit=120)
    exact = store.search("tok", q, 8, mode="exact")
    assert calls == [40] and len(fast) == 8  # was 1: only what the token stage found
    assert [h.id for h in fast] == [h.id for h in exact]
    store.close()


def test_a_missing_token_index_is_stale_and_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    corpus = Corpus(120, seed=5)
    store = QdrantEdgeStore(tmp_path / "edge", token_index_min_pages=0)
    store.create_collection(manifest("tok"))
    store.upsert("tok", edge_points(corpus))
    assert store.repair("tok").after.current
    store.close()
    # optimized, but without the token index a collection of 120 pages gets from 50 pages on (as after
    # a kill between Edge's optimizers and the token index build)
    store = QdrantEdgeStore(tmp_path / "edge", token_index_min_pages=50, rerank_candidates=10)
    status = store.search_status("tok")
    assert status.codes == (TOKEN_INDEX,)
    assert status.stale == ("no token index although the collection has 120 pages (it is built from 50 pages, "
                            "token_index_min_pages)",)
    caplog.set_level(logging.WARNING, logger=WARN_LOGGER)
    for target in (3, 77):
        assert same_as_exact(store, "tok", corpus.query(target), 5)[0] == pid(target)  # the measured plan meanwhile
    assert len(stale_warnings(caplog)) == 1 and "no token index" in stale_warnings(caplog)[0]
    # the cache holds every page: the warning says searches still scan them all (no recall lost)
    assert "consider every page (the int8 scan) and stay right" in stale_warnings(caplog)[0]
    result = store.repair("tok")
    assert result.rebuilt[0] == "token index built" and result.after.current
    assert result.rebuilt[1].startswith("self-check: ")  # a new first stage: measured again
    assert store._rerank_file("tok").token_index_ready()
    store.close()


def test_the_optimized_mark_persists_and_any_upsert_clears_it(tmp_path: Path) -> None:
    points, _ = planted_corpus(30)
    root = tmp_path / "edge"
    store = QdrantEdgeStore(root)
    store.create_collection(manifest("fast"))
    store.upsert("fast", points)
    assert not (root / "fast" / OPTIMIZED_FILE).exists()
    assert store.optimize("fast") in (True, False)
    assert store.search_status("fast").current
    store.close()
    store = QdrantEdgeStore(root)  # another process: read from disk
    assert store.search_status("fast").current
    noop = store.repair("fast")
    assert noop.rebuilt == [] and not noop.ran
    store.upsert("fast", points[:1])  # same page again: still a write the segments have not seen optimized
    assert not (root / "fast" / OPTIMIZED_FILE).exists()
    assert store.search_status("fast").segments_pending and store.search_status("fast").current
    store.close()
    store = QdrantEdgeStore(root, fast_rerank=False)  # Qdrant's prefetch picks the candidates: it needs them
    assert store.search_status("fast").codes == (OPTIMIZE_PENDING,)
    store.close()


def test_an_upsert_during_a_repair_leaves_the_collection_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    points, _ = planted_corpus(30)
    store = QdrantEdgeStore(tmp_path / "edge")
    store.create_collection(manifest("fast"))
    store.upsert("fast", points[:20])
    real_sync = store._sync

    def sync_while_pages_arrive(collection: str, batch: int = 64, rescan: bool = True) -> Any:
        store.upsert("fast", points[20:])  # between Edge's optimizers and the mark: not in the optimized segments
        return real_sync(collection, batch, rescan)

    monkeypatch.setattr(store, "_sync", sync_while_pages_arrive)
    result = store.repair("fast", force=True)
    assert result.after.segments_pending and not (tmp_path / "edge" / "fast" / OPTIMIZED_FILE).exists()
    monkeypatch.undo()
    assert store.repair("fast", force=True).after.current
    assert not store.search_status("fast").segments_pending
    store.close()


def test_aliases_forward_status_and_repair(tmp_path: Path) -> None:
    points, _ = planted_corpus(12)
    inner = QdrantEdgeStore(tmp_path / "edge")
    store = with_aliases(inner)
    store.create_collection(manifest("fast"))
    store.upsert("fast", points)
    EdgeAliases(inner.root).set("docs", "fast")
    assert store.search_status("docs") == inner.search_status("fast")
    assert not store.search_status("docs").current
    result = store.repair("docs")
    assert result.collection == "fast" and result.after.current
    with pytest.raises(CollectionNotFoundError):
        store.search_status("ghost")
    store.close()


def test_stale_warnings_once_per_staleness() -> None:
    seen = StaleWarnings()
    a = SearchStatus.of("c", [(OPTIMIZE_PENDING, "x")])
    b = SearchStatus.of("c", [(OPTIMIZE_PENDING, "x, later"), (TOKEN_INDEX, "y")])
    assert seen.seen(a) and not seen.seen(a)
    assert seen.seen(b) and not seen.seen(a) and not seen.seen(b)  # a new kind warns; fewer kinds do not
    assert not seen.seen(SearchStatus("c", True))
    assert seen.seen(a)  # current in between: a new staleness
    assert seen.seen(SearchStatus.of("d", [(RERANK_CACHE, "z")]))


# --- Qdrant server ------------------------------------------------------------------------------


class StubQdrant:
    """Just what ``QdrantServerStore`` calls for status and repair, with a settable collection status."""

    def __init__(self, status: str, error: str | None = None) -> None:
        from pagelens.index.stores.server_store import MANIFEST_KEY
        from qdrant_client import models

        self.models = models
        self.status = models.CollectionStatus(status)
        self.error = error
        self.updates: list[dict[str, Any]] = []
        self.metadata = {MANIFEST_KEY: manifest("srv").to_dict()}

    def collection_exists(self, name: str) -> bool:
        return name == "srv"

    def get_collection(self, name: str) -> Any:
        optimizer = (self.models.OptimizersStatusOneOf1(error=self.error) if self.error
                     else self.models.OptimizersStatusOneOf.OK)
        return SimpleNamespace(status=self.status, optimizer_status=optimizer, points_count=7,
                               config=SimpleNamespace(metadata=self.metadata))

    def update_collection(self, name: str, **kwargs: Any) -> bool:
        self.updates.append({"name": name, **kwargs})
        self.status = self.models.CollectionStatus.YELLOW
        return True

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("status", "code", "triggers"), [
    ("green", None, False), ("grey", SERVER_PENDING, True), ("yellow", SERVER_OPTIMIZING, False),
    ("red", SERVER_ERROR, True),
])
def test_server_status_and_repair(status: str, code: str | None, triggers: bool, caplog: pytest.LogCaptureFixture) -> None:
    from pagelens.index.stores.server_store import QdrantServerStore

    client = StubQdrant(status, error="disk full" if status == "red" else None)
    store = QdrantServerStore(client, url="http://qdrant:6333")  # type: ignore[arg-type]
    before = store.search_status("srv")
    assert before.current is (code is None) and before.codes == ((code,) if code else ()) and before.points == 7
    if status == "red":
        assert "disk full" in before.stale[0]
    caplog.set_level(logging.WARNING, logger="pagelens.index.stores.server_store")
    store._check_status_now_and_then("srv")
    store._check_status_now_and_then("srv")  # within STATUS_CHECK_S: no second request, no second warning
    assert len(stale_warnings(caplog)) == (0 if code is None else 1)
    forced = status == "red"
    result = store.repair("srv", force=forced)
    assert bool(client.updates) is triggers
    if triggers:
        assert client.updates[0]["name"] == "srv" and "optimizers_config" in client.updates[0]
        assert result.rebuilt == ["triggered Qdrant's optimizers (they build the HNSW graphs in the background)"]
        if status == "grey":
            assert result.after.codes == (SERVER_OPTIMIZING,)
    else:
        assert result.rebuilt == []


# --- the repair paths of the product (tiny models where an embedder is needed) --------------------


def stale_edge_collection(settings: Any, name: str = "c", n_pages: int = 60) -> list[PagePoint]:
    """A collection left as by a kill between Qdrant's upserts and the rerank-cache appends: points in
    Qdrant, none in the cache, never optimized. (The token index is left to the SIGKILL tests in
    tests/reliability/test_self_repair.py: its build costs ~10 s of CPU.)"""
    import shutil

    from pagelens.index.stores.edge_store import RERANK_DIR

    corpus = Corpus(n_pages, seed=11)
    points = [PagePoint(p.id, p.embedding, {**p.payload, "sha256": "ab" * 32, "collection": name})
              for p in edge_points(corpus)]
    store = QdrantEdgeStore(settings.edge_dir, token_index_min_pages=0)
    store.create_collection(CollectionManifest(name=name, model_id=settings.retriever_model, model_revision=None,
                                               dim=DIM))
    store.upsert(name, points)
    store.close()
    shutil.rmtree(settings.edge_dir / name / RERANK_DIR)
    return points


REBUILT_CACHE = "rerank cache: 60 pages added, 0 deleted pages dropped"


@pytest.fixture
def stale_settings(settings_factory: Any) -> Any:
    settings = settings_factory(token_index_min_pages=0)
    stale_edge_collection(settings)
    return settings


def test_the_job_worker_repairs_after_a_job(stale_settings: Any) -> None:
    from pagelens.app.jobs import JobStore, JobWorker
    from pagelens.app.service import PagelensService

    service = PagelensService(stale_settings)
    worker = JobWorker(JobStore(stale_settings.data_dir), service)
    assert not service.search_status("c").current
    worker._repair("c")
    assert service.search_status("c").current
    worker._repair("ghost")  # a collection deleted meanwhile: logged, never raised
    service.close()


def test_server_start_repairs_in_the_background_and_the_api_shows_the_status(stale_settings: Any) -> None:
    from fastapi.testclient import TestClient

    from pagelens.server import create_app

    app = create_app(stale_settings, web_ui=False)
    with TestClient(app) as client:
        repair = app.state.startup_repair
        assert repair.done.wait(120)
        [result] = repair.results
        assert set(result.before.codes) == {OPTIMIZE_PENDING, RERANK_CACHE} and result.after.current
        assert REBUILT_CACHE in result.rebuilt
        body = client.get("/v1/collections/c").json()
        structures = body["search_structures"]
        assert structures["current"] is True and structures["stale"] == []
        assert structures["self_check"]["recall"] >= 0.95 and structures["self_check"]["pages"] == 60
        assert client.get("/v1/collections").json()[0]["search_structures"]["current"] is True
        schema = client.get("/openapi.json").json()["components"]["schemas"]
        assert set(schema["SearchStructuresOut"]["properties"]) == {"current", "stale", "self_check",
                                                                      "segments_pending"}


def test_the_api_shows_what_is_stale(stale_settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from pagelens.app import repair as repair_module
    from pagelens.server import create_app

    monkeypatch.setattr(repair_module.StartupRepair, "start", lambda self: self.done.set())  # no repair at start
    with TestClient(create_app(stale_settings, web_ui=False)) as client:
        body = client.get("/v1/collections/c").json()
    assert body["search_structures"]["current"] is False
    assert any("not optimized since" in s for s in body["search_structures"]["stale"])
    assert any("60 of 60 pages missing from it" in s for s in body["search_structures"]["stale"])


def test_pagelens_optimize_reports_what_it_rebuilt(stale_settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from pagelens.cli import app

    for key, value in {"PAGELENS_DATA_DIR": stale_settings.data_dir, "PAGELENS_TUNING__TOKEN_INDEX_MIN_PAGES": 0,
                       "PAGELENS_RETRIEVER_MODEL": stale_settings.retriever_model}.items():
        monkeypatch.setenv(key, str(value))
    runner = CliRunner()
    first = runner.invoke(app, ["optimize", "--collection", "c", "--json"])
    assert first.exit_code == 0, first.output
    [entry] = json.loads(first.stdout)["collections"]
    assert entry["collection"] == "c" and entry["before"]["current"] is False
    assert entry["after"]["current"] is True and entry["after"]["stale"] == []
    check = entry["after"]["self_check"]  # the index measured its own recall (issue 25)
    assert check["recall"] >= 0.95 and check["pages"] == 60 and check["probes"] == 32
    assert REBUILT_CACHE in entry["rebuilt"] and any(r.startswith("self-check: ") for r in entry["rebuilt"])
    again = runner.invoke(app, ["optimize"])  # every collection; nothing left to rebuild
    assert again.exit_code == 0, again.output
    lines = again.stdout.strip().splitlines()
    assert lines[0].startswith("collection c: was current; nothing to rebuild") and lines[0].endswith("now current")
    assert lines[1].strip().startswith("search: ") and "recall@5" in lines[1] and "mean token cosine" in lines[1]
    missing = runner.invoke(app, ["optimize", "--collection", "ghost"])
    assert missing.exit_code == 2 and "ghost" in missing.output


def test_a_noop_index_rerun_repairs_a_stale_collection(settings_factory: Any, tmp_path: Path) -> None:
    """Every `pagelens index` run checks the status, new pages or not: a rerun whose documents are all
    complete rebuilds what an interrupted closing optimize left stale; a current one is left alone."""
    from pagelens.index.pipeline.indexer import IndexInput
    from test_batch import make_pdf

    from pagelens.app.service import PagelensService

    values = {"page_longest_edge": 512, "embed_batch_size": 4, "ingest_workers": 0}
    inputs = [IndexInput(make_pdf(tmp_path / "docs" / f"d{i}.pdf", 2, f"d{i}")) for i in range(3)]
    service = PagelensService(settings_factory(**values, token_index_min_pages=0))
    first = service.indexer.index("c", inputs, workers=0)
    assert first.pages_indexed == 6 and first.repaired and service.search_status("c").current
    events: list[tuple[str, dict[str, Any]]] = []
    noop = service.indexer.index("c", inputs, workers=0, progress=lambda e, i: events.append((e, i)))
    assert noop.pages_indexed == 0 and noop.repaired == [] and "optimize_start" not in [e for e, _ in events]
    service.close()
    # what a kill during the closing optimize leaves: no optimized mark, no token index (due from 4 pages)
    settings = settings_factory(**values, token_index_min_pages=4)
    (settings.edge_dir / "c" / OPTIMIZED_FILE).unlink(missing_ok=True)  # the indexer's repair leaves it to optimize

    service = PagelensService(settings)
    assert set(service.search_status("c").codes) == {TOKEN_INDEX}
    events.clear()
    rerun = service.indexer.index("c", inputs, workers=0, progress=lambda e, i: events.append((e, i)))
    assert rerun.pages_indexed == 0 and rerun.count("skipped") == 3
    assert "token index built" in rerun.repaired and rerun.to_dict()["search_structures_rebuilt"] == rerun.repaired
    start = next(i for e, i in events if e == "optimize_start")
    assert any("no token index" in s for s in start["stale"])
    assert service.search_status("c").current
    first_id = next(iter(service.store.iter_payloads("c")))[0]
    q = service.store.get_full_vectors("c", [first_id])[first_id][:8]
    same_as_exact(service.store, "c", q, 6)
    hits = service.store.search("c", q, 6, mode="exact")
    # its own tokens find the page (first, or tied with a page holding the same tokens: float16 storage)
    assert {h.id: h.score for h in hits}[first_id] == pytest.approx(hits[0].score, abs=1e-3)
    service.close()


def test_a_failed_cache_append_stays_stale_across_a_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 26.5: the stale-rerank flag is persisted (``rerank_stale``), so a reopened store still says the
    cache missed a write even when the ids match (a page written again whose cache append failed)."""
    from pagelens.index.ann.fast_rerank import RerankCache
    from pagelens.index.stores.edge_store import RERANK_STALE_FILE

    points, _ = planted_corpus(20)
    root = tmp_path / "edge"
    store = QdrantEdgeStore(root)
    store.create_collection(manifest("fast"))
    store.upsert("fast", points)
    assert store.repair("fast").after.current

    def failing_append(self: Any, items: Any, prepared: Any = None) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(RerankCache, "append", failing_append)
    store.upsert("fast", points[:3])  # the same pages again: the ids stay in the cache, the write failed
    monkeypatch.undo()
    assert RERANK_CACHE in store.search_status("fast").codes
    assert (root / "fast" / RERANK_STALE_FILE).exists()
    store.close()
    store = QdrantEdgeStore(root)  # a restart: the flag is read back, not lost
    status = store.search_status("fast")
    assert RERANK_CACHE in status.codes and "a write to the rerank cache failed" in "; ".join(status.stale)
    assert store.repair("fast").after.current
    assert not (root / "fast" / RERANK_STALE_FILE).exists()
    store.close()
    store = QdrantEdgeStore(root)
    assert store.search_status("fast").current
    store.close()
