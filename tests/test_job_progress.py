"""Upload progress that explains itself (issue 18): the job phase (queued / indexing / finishing), pages/s
and time left recorded by the worker and returned by the REST API, the UI's status vocabulary and the
human wording of a password-protected PDF. Fast: no models, except the one API round trip."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from pagelens.app.job_progress import (
    document_phase,
    eta_seconds,
    format_duration,
    job_phase,
    pages_per_second,
)
from pagelens.app.jobs import JobFile, JobStore, JobWorker, needs_password


def test_rate_and_eta() -> None:
    assert pages_per_second(0, None, None) is None
    assert pages_per_second(1, 10.0, 10.0) is None  # one page says nothing about the rate
    assert pages_per_second(5, 10.0, 12.0) == pytest.approx(2.0)  # 4 pages after the first in 2 s
    assert pages_per_second(3, 12.0, 10.0) is None  # clock went backwards
    assert eta_seconds(5, 9, 2.0) == pytest.approx(2.0)
    assert eta_seconds(9, 9, None) == 0.0
    assert eta_seconds(3, None, 2.0) is None
    assert eta_seconds(3, 9, None) is None
    assert [format_duration(s) for s in (None, 0.4, 12, 65, 3725)] == ["", "0 s", "12 s", "1 min 05 s", "1 h 02 min"]


def test_phases() -> None:
    queued = {"status": "queued"}
    running = {"status": "running", "phase": "indexing"}
    finishing = {"status": "running", "phase": "finishing"}
    old_row = {"status": "running"}  # written before the phase existed
    assert document_phase(queued, "running") == "queued"
    assert document_phase(queued, "cancelled") is None
    assert document_phase(old_row, "running") == "indexing"
    assert document_phase({"status": "indexed", "phase": "finishing"}, "done") is None
    assert job_phase("queued", [queued]) == "queued"
    assert job_phase("running", [running, queued]) == "indexing"
    assert job_phase("running", [{"status": "indexed"}, finishing]) == "finishing"
    assert job_phase("done", [{"status": "indexed"}]) is None


def _job(store: JobStore, tmp_path: Path, name: str = "a.pdf") -> object:
    job_id = store.new_id()
    folder = store.upload_dir(job_id)
    folder.mkdir(parents=True)
    path = folder / "001_a.pdf"
    path.write_bytes(b"%PDF-1.4 x")
    return store.create(job_id, "c", [JobFile(name=name, path=path, size=10, sha256="ab" * 32)])


def test_worker_records_timing_and_the_finishing_phase(tmp_path: Path) -> None:
    """The progress callback stamps the pages and switches to ``finishing`` at the closing optimize; the
    job row (what GET /v1/jobs/{id} returns) carries phase, pages/s and the time left."""
    from pagelens.api.schemas import JobOut

    store = JobStore(tmp_path)
    job = _job(store, tmp_path)
    worker = JobWorker(store, SimpleNamespace())  # type: ignore[arg-type]
    job.status = "running"  # type: ignore[attr-defined]
    doc = job.documents[0]  # type: ignore[attr-defined]
    doc.update(status="running", phase="indexing", started_s=time.time())
    callback = worker._progress(job, doc)  # type: ignore[arg-type]
    callback("document_start", {"page_count": 6})
    out = JobOut.model_validate(store.get(job.id).to_dict()).model_dump()  # type: ignore[attr-defined, union-attr]
    assert out["phase"] == "indexing" and out["pages_per_s"] is None and out["eta_s"] is None
    for _ in range(3):
        callback("page_done", {"page_count": 6})
        time.sleep(0.05)
    saved = store.get(job.id)  # type: ignore[attr-defined]
    assert saved is not None
    out = JobOut.model_validate(saved.to_dict()).model_dump()
    assert out["phase"] == "indexing" and out["pages_done"] == 3
    assert out["pages_per_s"] and out["pages_per_s"] > 0
    assert out["eta_s"] == pytest.approx(3 / out["pages_per_s"])
    assert out["documents"][0]["phase"] == "indexing" and out["documents"][0]["eta_s"] == out["eta_s"]
    for _ in range(3):
        callback("page_done", {"page_count": 6})
    callback("optimize_start", {"stale": ["hnsw"]})
    out = JobOut.model_validate(store.get(job.id).to_dict()).model_dump()  # type: ignore[attr-defined, union-attr]
    assert out["phase"] == "finishing" and out["documents"][0]["phase"] == "finishing"
    assert out["eta_s"] == 0.0
    store.close()


def test_old_job_rows_stay_readable(tmp_path: Path) -> None:
    """A row written before phases and timestamps: no phase for the finished job, no rate, no ETA."""
    from pagelens.api.schemas import JobOut

    store = JobStore(tmp_path)
    job = _job(store, tmp_path)
    old_docs = [{"index": 0, "name": "a.pdf", "path": "/x", "size": 1, "sha256": "a", "doc_id": "a",
                 "status": "running", "page_count": 4, "pages_done": 2, "errors": []}]
    store._conn.execute("UPDATE jobs SET status='running', documents=? WHERE id=?",
                        (json.dumps(old_docs), job.id))  # type: ignore[attr-defined]
    out = JobOut.model_validate(store.get(job.id).to_dict()).model_dump()  # type: ignore[attr-defined, union-attr]
    assert out["phase"] == "indexing" and out["pages_per_s"] is None and out["eta_s"] is None
    store.close()


def test_password_failures_keep_their_file_others_are_removed(tmp_path: Path) -> None:
    """After a UI job (``keep_for_retry``), the upload of a PDF that failed for its password stays (Retry
    with password); the rest is removed as before (``job_keep_uploads`` off), and all of an API job's."""
    store = JobStore(tmp_path)
    job_id = store.new_id()
    folder = store.upload_dir(job_id)
    folder.mkdir(parents=True)
    files = []
    for n in (1, 2):
        path = folder / f"00{n}_f.pdf"
        path.write_bytes(b"%PDF")
        files.append(JobFile(name=f"f{n}.pdf", path=path, size=4, sha256=f"{n}" * 64))
    job = store.create(job_id, "c", files, keep_for_retry=True)
    job.documents[0].update(status="failed", errors=[{"page": None, "code": "encrypted_document", "error": "x"}])
    job.documents[1].update(status="failed", errors=[{"page": None, "code": "ingest_error", "error": "y"}])
    assert needs_password(job.documents[0]) and not needs_password(job.documents[1])
    JobWorker(store, SimpleNamespace())._cleanup(job)  # type: ignore[arg-type]
    assert sorted(p.name for p in folder.iterdir()) == ["001_f.pdf"]
    for doc in job.documents:
        doc["keep_for_retry"] = False  # an API upload
    JobWorker(store, SimpleNamespace())._cleanup(job)  # type: ignore[arg-type]
    assert not folder.exists()
    store.close()


def test_status_vocabulary_and_human_password_errors(tmp_path: Path) -> None:
    from pagelens.ui.status import (
        PASSWORD_RETRY,
        PASSWORD_REUPLOAD,
        PASSWORD_WRONG,
        SKIPPED_REASON,
        STATUS_WORDS,
        document_status,
        upload_errors,
        upload_status,
    )
    from pagelens.ui.uploads_view import parse_row_action, rate_text, upload_row

    cases = {
        ("queued", None, "running"): ("queued", ""),
        ("queued", None, "cancelled"): ("cancelled", ""),
        ("running", "indexing", "running"): ("indexing", ""),
        ("running", "finishing", "running"): ("finishing", ""),
        ("indexed", None, "done"): ("done", ""),
        ("skipped", None, "done"): ("skipped", SKIPPED_REASON),
        ("failed", None, "done"): ("failed", ""),
        ("cancelled", None, "cancelled"): ("cancelled", ""),
    }
    for (raw, phase, job_status), want in cases.items():
        assert upload_status({"status": raw, "phase": phase}, job_status) == want
        assert want[0] in STATUS_WORDS
    word, reason = upload_status({"status": "updated"}, "done")
    assert word == "done" and "already indexed" in reason
    assert [document_status("complete", False), document_status("incomplete", False),
            document_status("complete", True)] == ["done", "partial", "indexing"]

    kept = tmp_path / "kept.pdf"
    kept.write_bytes(b"%PDF")
    enc = {"status": "failed", "path": str(kept), "errors": [{"code": "encrypted_document",
                                                              "error": "PDF is encrypted; upload it again with ..."}]}
    assert upload_errors(enc) == [PASSWORD_RETRY]
    assert "password-protected" in PASSWORD_RETRY and "form field" not in PASSWORD_RETRY
    assert upload_errors({**enc, "password_given": True}) == [PASSWORD_WRONG]
    assert upload_errors({**enc, "path": str(tmp_path / "gone.pdf")}) == [PASSWORD_REUPLOAD]
    assert upload_errors({"status": "failed", "errors": [{"code": "x", "error": "bad.pdf: page 2 unreadable"}]}) == [
        "bad.pdf: page 2 unreadable"]

    row = upload_row("s.pdf", "skipped", {"pages_done": 2, "page_count": 2}, [], "done")
    assert "pl-status-skipped" in row and SKIPPED_REASON in row
    t0 = time.time()
    doc = {"status": "running", "phase": "indexing", "pages_done": 5, "page_count": 9, "started_s": t0 - 3,
           "first_page_s": t0 - 2, "last_page_s": t0}
    assert rate_text(doc) == "2.0 pages/s · about 2 s left"
    assert rate_text({**doc, "pages_done": 1}) == "measuring speed…"
    assert rate_text({"status": "running", "pages_done": 3, "page_count": 9}) == ""  # an old row
    row = upload_row("b.pdf", "running", {**doc, "phase": "finishing"}, [], "running")
    assert "finishing (building the search index)" in row
    from pagelens.ui.status import collection_summary

    assert collection_summary(2, 5, "/m/retriever", True) == "**2** document(s), **5** page(s) · model `retriever`"
    assert "nothing to ask yet: upload files in the **Documents** tab" in collection_summary(0, 0, "m", True)
    assert "read-only" in collection_summary(0, 0, "m", False)
    assert parse_row_action('{"act": "cancel", "job": "j1", "doc": "2"}') == {"act": "cancel", "job": "j1", "doc": 2}
    assert parse_row_action('{"act": "rm", "job": "j1"}') is None and parse_row_action("nope") is None


def test_api_job_status_exposes_the_phase(settings_factory) -> None:  # noqa: ANN001
    """GET /v1/jobs/{id}: ``phase`` ``queued`` while waiting (worker not started), per file too; null once
    cancelled; the fields are in the OpenAPI schema."""
    from api_helpers import upload
    from conftest import REAL_PDFS
    from fastapi.testclient import TestClient

    from pagelens.server import create_app

    settings = settings_factory()
    app = create_app(settings)
    client = TestClient(app)  # worker not started: the job stays queued
    assert client.post("/v1/collections", json={"name": "c"}).status_code == 201
    job_id = upload(client, "c", [REAL_PDFS / "inv_aws_invoice_en.pdf"]).json()["id"]
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["phase"] == "queued" and job["pages_per_s"] is None and job["eta_s"] is None
    assert job["documents"][0]["phase"] == "queued"
    assert client.post(f"/v1/jobs/{job_id}/cancel").json()["phase"] is None
    props = client.get("/openapi.json").json()["components"]["schemas"]["JobOut"]["properties"]
    assert {"phase", "pages_per_s", "eta_s"} <= set(props)
    app.state.pagelens.service.close()


def test_row_actions_check_access_and_retry_moves_the_kept_file(tmp_path: Path) -> None:
    """Cancel and Retry with password from a row: the API's rule (write access to the job's collection);
    a retry, as soon as the file failed (its job may still run), moves the kept upload into a new job that
    carries the password and replaces the old row (``retry_of``; ``retried_by`` once the old job is
    finished); a file no longer kept asks for a new upload."""
    from pagelens.ui.actions import cancel_job, retry_with_password
    from pagelens.ui.state import UIContext, UIError

    from pagelens.app.access import Principal

    store = JobStore(tmp_path)
    ctx = UIContext(settings=SimpleNamespace(), service=SimpleNamespace(), jobs=store)  # type: ignore[arg-type]
    reader, other, writer = Principal("r", "r", frozenset({"c"})), Principal("o", "rw", frozenset({"x"})), Principal("w", "rw")
    job = _job(store, tmp_path, "locked.pdf")
    for p in (reader, other):
        with pytest.raises(UIError):
            cancel_job(ctx, p, job.id)  # type: ignore[attr-defined]
    assert store.get(job.id).status == "queued"  # type: ignore[attr-defined, union-attr]

    job.status = "running"  # type: ignore[attr-defined]
    store.save(job)  # type: ignore[arg-type]
    with pytest.raises(UIError, match="did not fail for a password"):  # still waiting: nothing to retry
        retry_with_password(ctx, writer, job.id, 0, "pw")  # type: ignore[attr-defined]
    running = _job(store, tmp_path, "early.pdf")  # failed while its job still indexes other files
    running.status = "running"  # type: ignore[attr-defined]
    running.documents[0].update(status="failed", errors=[{"page": None, "code": "encrypted_document", "error": "x"}])  # type: ignore[attr-defined]
    store.save(running)  # type: ignore[arg-type]
    early = retry_with_password(ctx, writer, running.id, 0, "pw")  # type: ignore[attr-defined]
    assert early.documents[0]["retry_of"] == f"{running.id}:0" and store.password(early.id) == "pw"  # type: ignore[attr-defined]
    assert "retried_by" not in store.get(running.id).documents[0]  # type: ignore[attr-defined, union-attr]  # the worker owns the row
    with pytest.raises(UIError, match="already retried"):
        retry_with_password(ctx, writer, running.id, 0, "pw")  # type: ignore[attr-defined]
    job.documents[0].update(status="failed", errors=[{"page": None, "code": "encrypted_document", "error": "x"}])  # type: ignore[attr-defined]
    job.status = "done"  # type: ignore[attr-defined]
    store.save(job)  # type: ignore[arg-type]
    with pytest.raises(UIError, match="may not modify"):
        retry_with_password(ctx, reader, job.id, 0, "pw")  # type: ignore[attr-defined]
    with pytest.raises(UIError, match="type the password"):
        retry_with_password(ctx, writer, job.id, 0, " ")  # type: ignore[attr-defined]
    new = retry_with_password(ctx, writer, job.id, 0, "pw")  # type: ignore[attr-defined]
    assert new.status == "queued" and store.password(new.id) == "pw" and new.documents[0]["name"] == "locked.pdf"
    assert Path(new.documents[0]["path"]).is_file() and not store.upload_dir(job.id).exists()  # type: ignore[attr-defined]
    assert store.get(job.id).documents[0]["retried_by"] == new.id  # type: ignore[attr-defined, union-attr]
    with pytest.raises(UIError, match="already retried"):
        retry_with_password(ctx, writer, job.id, 0, "pw")  # type: ignore[attr-defined]
    assert cancel_job(ctx, writer, new.id).status == "cancelled"

    gone = _job(store, tmp_path, "gone.pdf")
    gone.status = "done"  # type: ignore[attr-defined]
    gone.documents[0].update(status="failed", errors=[{"page": None, "code": "encrypted_document", "error": "x"}])  # type: ignore[attr-defined]
    store.save(gone)  # type: ignore[arg-type]
    store.remove_uploads(gone.id)  # type: ignore[attr-defined]
    with pytest.raises(UIError, match="upload it again"):
        retry_with_password(ctx, writer, gone.id, 0, "pw")  # type: ignore[attr-defined]
    store.close()


def test_first_run_panel_for_a_creator_and_for_a_reader_without_collections(tmp_path: Path) -> None:
    """No collection visible: the first-run panel replaces the tabs; its create+upload controls only for a
    key that may create one (a reader of nothing gets a line saying so)."""
    import gradio as gr
    from pagelens.ui.app import build_ui

    from pagelens.core.settings import Settings

    settings = Settings(_env_file=None, data_dir=tmp_path / "data", api_keys="adm-k3y:admin;ro-k3y:r:nothing")  # type: ignore[call-arg]
    service = SimpleNamespace(store=SimpleNamespace(list_collections=lambda: []))
    demo = build_ui(service, JobStore(tmp_path / "data"), settings, cache_dir=tmp_path / "cache")  # type: ignore[arg-type]
    fns = {f.fn.__name__: f.fn for f in demo.fns.values() if f.fn is not None}
    session = {"jobs": [], "rejected": []}
    admin = fns["on_refresh"](None, session, gr.Request(username="key#1"))
    group, intro, controls, tabs = admin[-5:-1]  # then what the poll compares with
    assert group["visible"] is True and tabs["visible"] is False and controls["visible"] is True
    assert "Create a collection and upload" in intro
    reader = fns["on_refresh"](None, session, gr.Request(username="key#2"))
    group, intro, controls, tabs = reader[-5:-1]
    assert group["visible"] is True and controls["visible"] is False and "ask for access" in intro
