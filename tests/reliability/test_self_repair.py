"""SIGKILL of ``pagelens index`` during its closing optimize and between a Qdrant upsert and the
rerank-cache append (made deterministic by ``PAGELENS_TUNING__DEBUG_PAUSE_AT``, pagelens/core/debug_hooks.py); then a
no-op rerun, a server start and ``pagelens optimize`` each restore the fast path: the store's own
status is current, the token index serves the searches again, and two-stage results equal exact MaxSim.

A small collection exercises the token index: ``token_index_min_pages`` 9 (the 8 pages indexed first
stay below it, the killed run's 2 more pass it), its searches told to take the token path."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
OPTIONS = {"page_longest_edge": 512, "embed_batch_size": 4, "ingest_workers": 0,
           "token_index_min_pages": 9}
QUESTIONS = ["doc1 page 2", "invoice total", "d"]


def make_docs(root: Path) -> tuple[list[Path], Path]:
    """Four 2-page PDFs indexed first, and a fifth the killed run adds (2 pages: one upsert)."""
    from test_batch import make_pdf

    base = [make_pdf(root / f"doc{i}.pdf", 2, f"doc{i}") for i in range(4)]
    return base, make_pdf(root / "doc4.pdf", 2, "doc4")


def settings_for(data: Path, tiny_models: dict[str, Path]) -> Any:
    from pagelens.core.settings import Settings

    return Settings(_env_file=None, data_dir=data, retriever_model=str(tiny_models["retriever"]),  # type: ignore[call-arg]
                    answer_model=str(tiny_models["answerer"]), device="cpu", **OPTIONS)


def cli_env(data: Path, tiny_models: dict[str, Path], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGELENS_")}
    env.update({f"PAGELENS_{k.upper()}": str(v) for k, v in OPTIONS.items()})
    env.update(PAGELENS_DATA_DIR=str(data), PAGELENS_RETRIEVER_MODEL=str(tiny_models["retriever"]),
               PAGELENS_DEVICE="cpu", PAGELENS_DTYPE="float32", PAGELENS_OCR="off", HF_HUB_OFFLINE="1", **extra)
    return env


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]) -> dict[str, Any]:
    """The docs, and a data dir holding the first 8 pages, indexed and optimized (current)."""
    from pagelens.index.pipeline.indexer import IndexInput

    from pagelens.app.service import PagelensService

    root = tmp_path_factory.mktemp("self-repair")
    base, extra = make_docs(root / "docs")
    service = PagelensService(settings_for(root / "base", tiny_models))
    report = service.indexer.index("c", [IndexInput(p) for p in base], workers=0)
    assert report.ok and report.pages_indexed == 8 and service.search_status("c").current
    service.close()
    return {"root": root, "docs": root / "docs", "inputs": [*base, extra], "base": root / "base"}


def kill_at(point: str, corpus: dict[str, Any], tiny_models: dict[str, Path]) -> Path:
    """A copy of the base data dir after ``pagelens index`` of all five documents was SIGKILLed at
    ``point`` (PAGELENS_TUNING__DEBUG_PAUSE_AT): the fifth document's two pages are in Qdrant."""
    data = corpus["root"] / f"killed-{point}"
    shutil.copytree(corpus["base"], data)
    log = corpus["root"] / f"killed-{point}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "pagelens.cli", "index", str(corpus["docs"]), "-c", "c"],
                                env=cli_env(data, tiny_models, PAGELENS_TUNING__DEBUG_PAUSE_AT=point), cwd=REPO,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while f"paused at {point}" not in log.read_text(errors="replace"):
            assert proc.poll() is None, f"exited {proc.returncode} before pausing:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(60)
    assert proc.returncode == -signal.SIGKILL
    return data


@pytest.fixture(scope="module")
def killed(corpus: dict[str, Any], tiny_models: dict[str, Path]) -> dict[str, Path]:
    return {point: kill_at(point, corpus, tiny_models) for point in ("optimize", "cache_append")}


STALE_AFTER_KILL = {
    # the closing repair (cache in step: Edge's segment optimizer is not needed), killed before the token
    # index due at 9 pages was built
    "optimize": {"token_index"},
    # the cache append: the fifth document is in Qdrant only (the cache holds 8 pages: no token index due)
    "cache_append": {"optimize_pending", "rerank_cache"},
}


def check_fast_path(data: Path, tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The status is current, the token index covers all 10 pages and serves unfiltered searches,
    whose results equal exact MaxSim (ids, order, scores)."""
    from pagelens.app.service import PagelensService

    service = PagelensService(settings_for(data, tiny_models))
    try:
        status = service.search_status("c")
        assert status.current and status.stale == () and status.points == 10, status
        from pagelens.index.stores.base import backend_of

        store: Any = backend_of(service.store)
        cache = store._rerank_file("c")
        assert cache.token_index_ready() and len(cache) == 10
        from pagelens.index.ann.self_check import SearchPlan

        store.set_plan("c", SearchPlan(first_stage="tokens", candidates=8, rerank_keep=10, recall=1.0, pages=10))
        calls: list[int] = []
        real = cache.token_search

        def counting_search(*args: Any, **kwargs: Any) -> Any:
            search = real(*args, **kwargs)
            return lambda q, m: calls.append(m) or search(q, m)

        monkeypatch.setattr(cache, "token_search", counting_search)
        for question in QUESTIONS:
            for k in (3, 10):
                fast = service.search("c", question, k=k, mode="two_stage")
                exact = service.search("c", question, k=k, mode="exact")
                assert len(fast) == k
                assert [(h.doc_id, h.page_no) for h in fast] == [(h.doc_id, h.page_no) for h in exact]
                assert [h.score for h in fast] == pytest.approx([h.score for h in exact], abs=1e-4)
        assert len(calls) == 2 * len(QUESTIONS)  # every two-stage search took the token path
    finally:
        service.close()


@pytest.mark.parametrize("point", ["optimize", "cache_append"])
def test_after_the_kill_the_collection_is_stale_and_searches_stay_exact(
    point: str, killed: dict[str, Path], tiny_models: dict[str, Path], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pagelens.app.service import PagelensService

    data = shutil.copytree(killed[point], tmp_path / "data")
    service = PagelensService(settings_for(data, tiny_models))
    try:
        status = service.search_status("c")
        assert not status.current and set(status.codes) == STALE_AFTER_KILL[point], status
        assert status.points == 10  # Edge replayed its write-ahead log: no page lost
        if point == "cache_append":
            assert any("2 of 10 pages missing from it" in s for s in status.stale), status
        caplog.set_level(logging.WARNING)
        for question in QUESTIONS:
            fast = service.search("c", question, k=10, mode="two_stage")
            exact = service.search("c", question, k=10, mode="exact")
            assert [(h.doc_id, h.page_no) for h in fast] == [(h.doc_id, h.page_no) for h in exact]
        warned = [r.getMessage() for r in caplog.records if "are stale" in r.getMessage()]
        assert len(warned) == 1 and "run `pagelens optimize --collection c`" in warned[0], warned
        assert all(reason in warned[0] for reason in status.stale)
    finally:
        service.close()


@pytest.mark.parametrize("point", ["optimize", pytest.param("cache_append", marks=pytest.mark.extended)])
def test_a_noop_rerun_restores_the_fast_path(
    point: str, killed: dict[str, Path], corpus: dict[str, Any], tiny_models: dict[str, Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = shutil.copytree(killed[point], tmp_path / "data")
    proc = subprocess.run([sys.executable, "-m", "pagelens.cli", "index", str(corpus["docs"]), "-c", "c", "--json"],
                          env=cli_env(data, tiny_models), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["pages_indexed"] == 0 and report["documents_skipped"] == 5  # nothing new: a no-op rerun
    rebuilt = report["search_structures_rebuilt"]
    assert "token index built" in rebuilt, rebuilt
    if point == "cache_append":
        assert "rerank cache: 2 pages added, 0 deleted pages dropped" in rebuilt, rebuilt
    check_fast_path(data, tiny_models, monkeypatch)


@pytest.mark.parametrize("point", ["optimize", "cache_append"])
def test_a_server_start_restores_the_fast_path(
    point: str, killed: dict[str, Path], tiny_models: dict[str, Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fastapi.testclient import TestClient

    from pagelens.server import create_app

    data = shutil.copytree(killed[point], tmp_path / "data")
    app = create_app(settings_for(data, tiny_models), web_ui=False)
    with TestClient(app) as client:
        repair = app.state.startup_repair
        assert repair.done.wait(600)
        [result] = repair.results
        assert set(result.before.codes) == STALE_AFTER_KILL[point] and result.after.current
        assert "token index built" in result.rebuilt
        info = client.get("/v1/collections/c").json()
        structures = info["search_structures"]
        assert structures["current"] is True and structures["stale"] == [] and info["pages"] == 10
        assert structures["self_check"]["pages"] == 10
        hits = client.post("/v1/collections/c/search", json={"question": "doc4 page 1", "k": 10,
                                                             "mode": "two_stage"}).json()["results"]
        assert len(hits) == 10
    check_fast_path(data, tiny_models, monkeypatch)


@pytest.mark.parametrize("point", ["optimize", "cache_append"])
def test_pagelens_optimize_restores_the_fast_path(
    point: str, killed: dict[str, Path], tiny_models: dict[str, Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = shutil.copytree(killed[point], tmp_path / "data")
    proc = subprocess.run([sys.executable, "-m", "pagelens.cli", "optimize", "--collection", "c", "--json"],
                          env=cli_env(data, tiny_models), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [entry] = json.loads(proc.stdout)["collections"]
    assert entry["before"]["current"] is False
    assert entry["after"]["current"] is True and entry["after"]["stale"] == []
    assert entry["after"]["self_check"]["recall"] >= 0.95  # the index measured its own recall (issue 25)
    assert "token index built" in entry["rebuilt"]
    check_fast_path(data, tiny_models, monkeypatch)
