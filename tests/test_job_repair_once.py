"""Issue 26.3 (in part): the search structures are rebuilt once per job, not once per document. A job of
three documents through the real job worker (tiny models, embedded store) calls the store's ``repair`` /
``optimize`` once, at the end of its last document (whose row shows "finishing" meanwhile); one CLI-style
``index`` call of three files likewise."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest
from pagelens.index.pipeline.indexer import IndexInput

from pagelens.app.jobs import JobFile, JobStore, JobWorker
from pagelens.app.service import PagelensService


def _pdfs(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        doc = pymupdf.open()
        page = doc.new_page(width=300, height=400)
        page.insert_text((40, 60), f"document number {i} about invoices and totals {i * 37}")
        path = folder / f"{i:03d}_doc{i}.pdf"
        doc.save(path)
        doc.close()
        paths.append(path)
    return paths


@pytest.fixture
def counted(settings_factory, monkeypatch):
    """A service on the embedded store whose ``repair`` and ``optimize`` calls are counted."""
    from pagelens.index.stores.edge_store import QdrantEdgeStore

    calls = {"repair": 0, "repair_ran": 0, "optimize": 0}
    real_repair, real_optimize = QdrantEdgeStore.repair, QdrantEdgeStore.optimize

    def repair(self, collection, force=False):  # type: ignore[no-untyped-def]
        calls["repair"] += 1
        result = real_repair(self, collection, force=force)
        calls["repair_ran"] += int(bool(result.rebuilt) or force)
        return result

    def optimize(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["optimize"] += 1
        return real_optimize(self, *args, **kwargs)

    monkeypatch.setattr(QdrantEdgeStore, "repair", repair)
    monkeypatch.setattr(QdrantEdgeStore, "optimize", optimize)
    service = PagelensService(settings_factory(page_longest_edge=256, ingest_workers=0))
    yield service, calls
    service.close()


def test_a_three_document_job_repairs_once(counted, tmp_path: Path) -> None:
    service, calls = counted
    service.indexer.ensure_collection("c")
    store = JobStore(tmp_path / "jobs")
    job_id = store.new_id()
    folder = store.upload_dir(job_id)
    files = [JobFile(name=p.name, path=p, size=p.stat().st_size, sha256=f"{i}" * 64)
             for i, p in enumerate(_pdfs(folder, 3))]
    job = store.create(job_id, "c", files)
    worker = JobWorker(store, service)
    phases_during_repair: list[tuple[str | None, str | None]] = []  # (job phase, document phase) as it starts
    real_progress = worker._progress

    def watched(job_: object, doc: dict) -> object:  # type: ignore[type-arg]
        callback = real_progress(job_, doc)  # type: ignore[arg-type]

        def wrapped(event: str, info: dict) -> None:  # type: ignore[type-arg]
            callback(event, info)
            if event == "optimize_start":
                seen = store.get(job.id).to_dict()  # type: ignore[union-attr]  # what GET /v1/jobs/{id} says
                phases_during_repair.append((seen["phase"], seen["documents"][doc["index"]]["phase"]))

        return wrapped

    worker._progress = watched  # type: ignore[method-assign]
    worker.run_job(job)
    done = store.get(job.id)
    assert done is not None and done.status == "done"
    assert [d["status"] for d in done.documents] == ["indexed"] * 3
    assert service.store.count("c") == 3
    assert calls["repair"] == 1 and calls["repair_ran"] == 1  # not 3: once, after the last document
    assert phases_during_repair == [("finishing", "finishing")]  # once, on the last document's row
    assert service.store.search_status("c").current  # the structures are settled at the end
    assert [h.doc_name for h in service.search("c", "document number 1", k=3)]  # and searchable
    store.close()


def test_one_index_run_of_three_files_repairs_once(counted, tmp_path: Path) -> None:
    """The CLI (``pagelens index``) indexes all its inputs in one ``Indexer.index`` call."""
    service, calls = counted
    report = service.index("c", [IndexInput(path=p) for p in _pdfs(tmp_path / "in", 3)])
    assert report.count("indexed") == 3
    assert calls["repair"] == 1
    assert report.repaired  # what was rebuilt is reported
