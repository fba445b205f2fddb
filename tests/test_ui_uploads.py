"""The Documents tab's uploads list (issue 28) as plain functions over a real job store, without a browser:
files refused before queueing stay listed per principal across a reopen until dismissed; Retry with
password as soon as the file failed, and the retry replaces its failed row; finished rows are collapsed
under "N finished"; a cancelled file keeps the pages it had done and can be uploaded again; the rate and
time left appear only after enough samples. Fast: no models (a stand-in service for the worker)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pagelens.ui.state import UIContext, UIError
from pagelens.ui.tabs.documents import apply_row_action, upload, uploads_updates
from pagelens.ui.uploads_view import rate_text, uploads_view

from pagelens.app.access import Principal
from pagelens.app.job_progress import document_timing
from pagelens.app.jobs import MAX_REJECTED_KEPT, Job, JobFile, JobStore, JobWorker
from pagelens.core.settings import Settings

ALICE = Principal("alice", "rw")
BOB = Principal("bob", "rw")
READER = Principal("reader", "r")
ENCRYPTED = [{"page": None, "code": "encrypted_document", "error": "PDF is encrypted"}]


def _ctx(tmp_path: Path, store: JobStore | None = None) -> UIContext:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    service = SimpleNamespace(store=SimpleNamespace(get_manifest=lambda name: {"name": name}))
    return UIContext(settings=settings, service=service, jobs=store or JobStore(tmp_path / "data"),  # type: ignore[arg-type]
                     cache_dir=tmp_path / "cache")


def _job(store: JobStore, names: list[str], keep_for_retry: bool = True) -> Job:
    job_id = store.new_id()
    folder = store.upload_dir(job_id)
    folder.mkdir(parents=True)
    files = []
    for n, name in enumerate(names):
        path = folder / f"{n:03d}_{name}"
        path.write_bytes(b"%PDF-1.4 " + name.encode())
        files.append(JobFile(name=name, path=path, size=path.stat().st_size, sha256=f"{n:02d}" * 32))
    return store.create(job_id, "c", files, keep_for_retry=keep_for_retry)


def _act(act: str, job: str, doc: int = 0, name: str = "") -> str:
    import json

    return json.dumps({"act": act, "job": job, "doc": doc, "name": name})


def test_refused_files_stay_listed_per_principal_across_a_reopen_until_dismissed(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    notes = tmp_path / "notes.pdf"
    notes.write_bytes(b"just some text, not a PDF")
    text, ok, sess = upload(ctx, ALICE, "c", [str(empty), str(notes)], None, {"jobs": [], "rejected": []})
    assert not ok and "2 file(s) rejected" in text and sess["rejected"] == []  # kept server-side, not in the page
    ctx.jobs.close()

    ctx = _ctx(tmp_path)  # a reload, even a restart: the job store still has them
    rows = ctx.jobs.rejected_for("alice", "c")
    assert [(r["name"], r["collection"]) for r in rows] == [("notes.pdf", "c"), ("empty.pdf", "c")]
    assert "empty (0 bytes)" in rows[1]["error"] and "checked by content" in rows[0]["error"]
    view = uploads_view(ctx, "c", "alice", writable=True)
    assert view.open.count("pl-row-rejected") == 2 and "empty (0 bytes)" in view.open
    assert view.open.count('data-act="dismiss"') == 2 and view.finished_count == 0
    assert "pl-row-rejected" not in uploads_view(ctx, "c", "bob", writable=True).open  # another key's
    assert "pl-row-rejected" not in uploads_view(ctx, "other", "alice", writable=True).open  # another collection

    with pytest.raises(UIError, match="no longer listed"):  # only its owner dismisses it
        apply_row_action(ctx, BOB, _act("dismiss", str(rows[1]["id"]), name="empty.pdf"))
    text, target = apply_row_action(ctx, ALICE, _act("dismiss", str(rows[1]["id"]), name="empty.pdf"))  # type: ignore[misc]
    assert text == "Removed 'empty.pdf' from the uploads list." and target is None
    assert [r["name"] for r in ctx.jobs.rejected_for("alice", "c")] == ["notes.pdf"]
    with pytest.raises(UIError, match="no longer listed"):
        apply_row_action(ctx, ALICE, _act("dismiss", str(rows[1]["id"])))

    # bounded per owner and collection: the newest are kept
    ctx.jobs.add_rejected("alice", "c", [{"name": f"f{n}.pdf", "error": "x"} for n in range(MAX_REJECTED_KEPT + 5)])
    kept = ctx.jobs.rejected_for("alice", "c")
    assert len(kept) == MAX_REJECTED_KEPT and kept[0]["name"] == f"f{MAX_REJECTED_KEPT + 4}.pdf"
    # pruned with the finished jobs past the retention
    from datetime import datetime, timedelta, timezone

    ctx.jobs.retention_days = 1
    assert ctx.jobs.prune(datetime.now(timezone.utc) + timedelta(days=2)) == 0
    assert ctx.jobs.rejected_for("alice", "c") == []
    ctx.jobs.close()


def test_retry_with_password_as_soon_as_the_file_failed_replaces_its_row(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    job = _job(ctx.jobs, ["locked.pdf", "big.pdf"])
    job.status = "running"  # the job still indexes its second file
    job.documents[0].update(status="failed", page_count=0, errors=list(ENCRYPTED))
    job.documents[1].update(status="running", phase="indexing", page_count=40, pages_done=3)
    ctx.jobs.save(job)
    view = uploads_view(ctx, "c", "alice", writable=True)
    assert 'data-act="retry"' in view.open and "Retry with password" in view.open  # not only after the batch
    assert 'data-act="cancel"' in view.open
    assert 'data-act="retry"' not in uploads_view(ctx, "c", "reader", writable=False).open

    question, target = apply_row_action(ctx, ALICE, _act("retry", job.id, 0))  # type: ignore[misc]
    assert "locked.pdf" in question and target == {"job": job.id, "doc": 0, "name": "locked.pdf"}
    from pagelens.ui.tabs.documents import retry

    sess = retry(ctx, ALICE, target, "secret", {"jobs": [], "rejected": []})
    new = ctx.jobs.get(sess["jobs"][-1])
    assert new is not None and new.documents[0]["retry_of"] == f"{job.id}:0" and ctx.jobs.password(new.id) == "secret"
    view = uploads_view(ctx, "c", "alice", writable=True)
    assert view.open.count('pl-file">locked.pdf') == 1 and "pl-row-failed" not in view.open  # the new row, queued
    assert 'data-act="retry"' not in view.open and "big.pdf" in view.open

    # the worker then finishes the old job, rewriting its rows (without any retry mark): still replaced
    job.documents[1].update(status="indexed", pages_done=40, phase=None)
    job.status = "done"
    ctx.jobs.save(job)
    view = uploads_view(ctx, "c", "alice", writable=True)
    assert view.open.count('pl-file">locked.pdf') == 1 and "pl-row-failed" not in view.open
    with pytest.raises(UIError, match="already retried"):
        retry(ctx, ALICE, target, "secret", {})
    ctx.jobs.close()


def test_finished_rows_are_collapsed_under_a_count(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    names = [f"doc{n:02d}.pdf" for n in range(12)] + ["broken.pdf", "slow.pdf"]
    job = _job(ctx.jobs, names)
    job.status = "running"
    for doc in job.documents[:12]:
        doc.update(status="indexed" if doc["index"] % 2 else "skipped", page_count=3, pages_done=3)
    job.documents[12].update(status="failed", page_count=0, errors=[{"page": 2, "code": "ingest_error",
                                                                     "error": "broken.pdf: page 2 unreadable"}])
    job.documents[13].update(status="running", phase="indexing", page_count=9, pages_done=1)
    ctx.jobs.save(job)
    view = uploads_view(ctx, "c", "alice", writable=True)
    assert view.open.count('<tr class="pl-row') == 2 and "broken.pdf: page 2 unreadable" in view.open
    assert "slow.pdf" in view.open and "doc00.pdf" not in view.open
    assert view.finished_count == 12 and view.finished.count('<tr class="pl-row') == 12 and view.active
    prog, active, accordion, finished = uploads_updates(ctx, ALICE, "c")
    assert prog == view.open and active and finished == view.finished
    assert accordion["label"] == "12 finished" and accordion["visible"] is True and "open" not in accordion

    for doc in job.documents[12:]:
        doc.update(status="indexed", page_count=9, pages_done=9, errors=[])
    job.status = "done"
    ctx.jobs.save(job)
    view = uploads_view(ctx, "c", "alice", writable=True)
    assert "Nothing running or failed" in view.open and view.finished_count == 14 and not view.active
    prog, active, accordion, finished = uploads_updates(ctx, ALICE, "empty-coll")
    assert "No uploads to this collection yet" in prog and accordion["visible"] is False and finished == ""
    ctx.jobs.close()


class _Service:
    """The worker's view of the service: indexing pages until the job's cancel is noticed."""

    def __init__(self, pages: int, cancel_after: int, jobs: JobStore) -> None:
        self.pages, self.cancel_after, self.jobs = pages, cancel_after, jobs
        self.deleted: list[str] = []
        self.store = SimpleNamespace(get_manifest=lambda name: {"name": name}, count=lambda c, f: cancel_after)

    def index(self, collection: str, items: list[Any], force: bool, progress: Any, repair: bool) -> Any:
        progress("document_start", {"page_count": self.pages})
        for n in range(self.pages):
            if n + 1 == self.cancel_after:  # noticed at that page, once it is written
                self.jobs.request_cancel(self.job_id)
            progress("page_done", {"page_count": self.pages})
        raise AssertionError("not cancelled")

    def delete_document(self, collection: str, doc_id: str) -> int:
        self.deleted.append(doc_id)
        return self.cancel_after


def test_a_cancelled_file_keeps_its_page_count_and_can_be_uploaded_again(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    job = _job(ctx.jobs, ["long.pdf", "next.pdf"])
    service = _Service(pages=352, cancel_after=88, jobs=ctx.jobs)
    service.job_id = job.id  # type: ignore[attr-defined]
    JobWorker(ctx.jobs, service).run_job(ctx.jobs.get(job.id))  # type: ignore[arg-type]
    saved = ctx.jobs.get(job.id)
    assert saved is not None and saved.status == "cancelled" and service.deleted == [saved.documents[0]["doc_id"]]
    first = saved.documents[0]
    assert first["status"] == "cancelled" and first["cancelled_at_page"] == 88 and first["pages_done"] == 0
    assert all(Path(d["path"]).is_file() for d in saved.documents)  # a UI upload keeps its cancelled files
    from pagelens.api.schemas import JobOut

    out = JobOut.model_validate(saved.to_dict()).model_dump()["documents"]  # what GET /v1/jobs/{id} says
    assert [(d["status"], d["pages_done"], d["cancelled_at_page"]) for d in out] == [
        ("cancelled", 0, 88), ("cancelled", 0, None)]
    view = uploads_view(ctx, "c", "alice", writable=True)
    assert "88 / 352" in view.open and view.open.count('data-act="again"') == 2
    assert "Upload again" not in uploads_view(ctx, "c", "reader", writable=False).open

    with pytest.raises(UIError, match="may not modify"):
        apply_row_action(ctx, READER, _act("again", job.id, 0))
    text, target = apply_row_action(ctx, ALICE, _act("again", job.id, 0))  # type: ignore[misc]
    assert text == "Queued 'long.pdf' for indexing again." and target is None
    new = ctx.jobs.list_jobs(collection="c", limit=1)[0]
    assert new.status == "queued" and new.documents[0]["retry_of"] == f"{job.id}:0"
    assert JobOut.model_validate(new.to_dict()).documents[0].retry_of == f"{job.id}:0"
    assert Path(new.documents[0]["path"]).is_file()
    view = uploads_view(ctx, "c", "alice", writable=True)
    assert view.open.count('pl-file">long.pdf') == 1 and "88 / 352" not in view.open  # the new row replaces it
    with pytest.raises(UIError, match="already uploaded again"):
        apply_row_action(ctx, ALICE, _act("again", job.id, 0))

    ctx.jobs.remove_uploads(job.id)  # the upload is gone (pruned): pick the file again
    with pytest.raises(UIError, match="pick the file again"):
        apply_row_action(ctx, ALICE, _act("again", job.id, 1))
    api = _job(ctx.jobs, ["api.pdf"], keep_for_retry=False)  # an API upload cancelled while queued: removed
    ctx.jobs.request_cancel(api.id)
    assert not ctx.jobs.upload_dir(api.id).exists()
    ctx.jobs.close()


def test_rate_and_time_left_only_after_enough_samples() -> None:
    t0 = time.time()
    doc = {"status": "running", "phase": "indexing", "page_count": 100, "started_s": t0 - 10}
    burst = {**doc, "pages_done": 4, "first_page_s": t0 - 0.001, "last_page_s": t0}  # 4,316 pages/s-like burst
    assert rate_text(burst) == "measuring speed…"
    assert rate_text({**doc, "pages_done": 2, "first_page_s": t0 - 5, "last_page_s": t0}) == "measuring speed…"
    assert rate_text({**doc, "pages_done": 3, "first_page_s": t0 - 1.9, "last_page_s": t0}) == "measuring speed…"
    assert rate_text({**doc, "pages_done": 3, "first_page_s": t0 - 2, "last_page_s": t0}) == (
        "1.0 pages/s · about 1 min 37 s left")
    assert document_timing(burst)[0] == pytest.approx(3000, rel=0.01)  # the API's figure is unchanged
