"""The job store can evolve (issue 26.4): schema version and numbered migrations (a database of the previous
schema, built here with its DDL, is migrated and its jobs stay readable), retention of finished jobs, and
per-page progress written as integer counters instead of the whole documents JSON. Fast: no models."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from pagelens.app.jobs import SCHEMA_VERSION, JobFile, JobStore, JobStoreVersionError, JobWorker

# The job table before versioning (pagelens up to issue 26): user_version 0, no counter columns.
PREVIOUS_DDL = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    collection TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    pages_done INTEGER NOT NULL DEFAULT 0,
    pages_total INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    force INTEGER NOT NULL DEFAULT 0,
    metadata TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    documents TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, seq);
CREATE INDEX IF NOT EXISTS jobs_collection ON jobs(collection, seq);
"""


def _old_database(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(data_dir / "jobs.sqlite3")
    conn.executescript(PREVIOUS_DDL)
    docs = [{"index": 0, "name": "a.pdf", "path": "/gone/a.pdf", "size": 10, "sha256": "a" * 64, "doc_id": "a" * 16,
             "status": "indexed", "page_count": 3, "pages_done": 3, "errors": []},
            {"index": 1, "name": "b.pdf", "path": "/gone/b.pdf", "size": 10, "sha256": "b" * 64, "doc_id": "b" * 16,
             "status": "queued", "page_count": None, "pages_done": 0, "errors": []}]
    conn.execute("INSERT INTO jobs (id, collection, status, created_at, updated_at, pages_done, pages_total, metadata,"
                 " documents) VALUES ('old1', 'c', 'queued', '2026-11-01T10:00:00.000+00:00',"
                 " '2026-11-01T10:00:00.000+00:00', 3, 3, '{\"year\": \"2026\"}', ?)", (json.dumps(docs),))
    conn.commit()
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    conn.close()


def _columns(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[1] for r in conn.execute("PRAGMA table_info(jobs)")}


def test_a_database_of_the_previous_schema_is_migrated_and_readable(tmp_path: Path) -> None:
    _old_database(tmp_path)
    store = JobStore(tmp_path)
    assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert {"doc_index", "doc_pages_done", "doc_page_count", "doc_first_page_s", "doc_last_page_s"} <= _columns(store.path)
    assert store._conn.execute("SELECT count(*) FROM rejected_uploads").fetchone()[0] == 0  # schema 3: refused files
    job = store.get("old1")
    assert job is not None and job.status == "queued" and job.metadata == {"year": "2026"}
    assert [d["status"] for d in job.documents] == ["indexed", "queued"] and job.pages_done == 3
    out = job.to_dict()
    assert out["documents_total"] == 2 and out["documents_done"] == 1 and out["phase"] == "queued"
    assert [j.id for j in store.list_jobs()] == ["old1"] and store.next_queued().id == "old1"  # type: ignore[union-attr]
    # the migrated row takes the new writes: counters, then a full save folding them in
    doc = job.documents[1]
    doc.update(status="running", page_count=4, pages_done=1, first_page_s=1.0, last_page_s=1.0)
    job.pages_done, job.pages_total = 4, 7
    store.page_done(job, doc)
    assert store.get("old1").documents[1]["pages_done"] == 1  # type: ignore[union-attr]
    store.close()
    again = JobStore(tmp_path)  # a second open migrates nothing and keeps the data
    assert again.get("old1").pages_done == 4  # type: ignore[union-attr]
    again.close()


def test_a_database_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    JobStore(tmp_path).close()
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(JobStoreVersionError, match="newer release"):
        JobStore(tmp_path)


def _make(store: JobStore, status: str, age_days: float, now: datetime) -> str:
    job_id = store.new_id()
    folder = store.upload_dir(job_id)
    folder.mkdir(parents=True)
    (folder / "001_x.pdf").write_bytes(b"%PDF")
    store.create(job_id, "c", [JobFile(name="x.pdf", path=folder / "001_x.pdf", size=4, sha256="c" * 64)])
    stamp = (now - timedelta(days=age_days)).isoformat(timespec="milliseconds")
    store._conn.execute("UPDATE jobs SET status = ?, updated_at = ? WHERE id = ?", (status, stamp, job_id))
    return job_id


def test_retention_prunes_old_and_surplus_finished_jobs(tmp_path: Path) -> None:
    now = datetime.now(timezone.utc)
    store = JobStore(tmp_path, retention_days=30, retention_max_jobs=3)
    old_done = _make(store, "done", 31, now)
    old_failed = _make(store, "failed", 40, now)
    old_queued = _make(store, "queued", 90, now)  # never pruned: not finished
    old_running = _make(store, "running", 90, now)
    recent = [_make(store, status, 1, now) for status in ("done", "cancelled", "done", "failed")]
    assert store.prune(now) == 3  # the two old finished ones, and the oldest of the 4 recent past the cap of 3
    left = {j.id for j in store.list_jobs(limit=100)}
    assert left == {old_queued, old_running, *recent[1:]}
    for gone in (old_done, old_failed, recent[0]):
        assert store.get(gone) is None and not store.upload_dir(gone).exists()
    assert store.upload_dir(old_queued).exists()
    assert store.prune(now) == 0
    store.close()


def test_the_worker_prunes_at_start_and_periodically(tmp_path: Path) -> None:
    now = datetime.now(timezone.utc)
    store = JobStore(tmp_path, retention_days=1, retention_max_jobs=0)
    first = _make(store, "done", 2, now)
    worker = JobWorker(store, SimpleNamespace(settings=None))  # type: ignore[arg-type]
    worker.prune_interval_s = 0.05
    worker.poll_s = 0.05
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while store.get(first) is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.get(first) is None  # at start
        second = _make(store, "cancelled", 5, now)
        while store.get(second) is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.get(second) is None  # by the running worker
    finally:
        worker.stop()
        store.close()


def test_page_progress_is_a_counter_not_a_rewrite_of_the_documents(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    folder = store.upload_dir("j")
    folder.mkdir(parents=True)
    files = []
    for n in range(3):
        (folder / f"{n}.pdf").write_bytes(b"%PDF")
        files.append(JobFile(name=f"{n}.pdf", path=folder / f"{n}.pdf", size=4, sha256=f"{n}" * 64))
    job = store.create("j", "c", files)
    worker = JobWorker(store, SimpleNamespace())  # type: ignore[arg-type]
    job.status = "running"
    doc = job.documents[1]
    doc.update(status="running", phase="indexing", started_s=time.time())
    store.save(job)
    callback = worker._progress(job, doc)
    callback("document_start", {"page_count": 50})
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    for _ in range(50):
        callback("page_done", {"page_count": 50})
    store._conn.set_trace_callback(None)
    writes = [s for s in statements if s.lstrip().upper().startswith("UPDATE")]
    assert len(writes) == 50 and not any("documents" in w for w in writes), writes[:2]
    seen = store.get("j")
    assert seen is not None and seen.pages_done == 50 and seen.pages_total == 50
    assert seen.documents[1]["pages_done"] == 50 and seen.documents[1]["page_count"] == 50
    assert seen.documents[1]["last_page_s"] >= seen.documents[1]["first_page_s"] > 0
    assert [d["pages_done"] for d in seen.documents] == [0, 50, 0]
    assert seen.to_dict()["documents"][1]["phase"] == "indexing"
    # a full save folds the counters into the JSON and clears them
    doc.update(status="indexed", phase=None)
    store.save(job)
    row = store._conn.execute("SELECT doc_index, documents FROM jobs WHERE id = 'j'").fetchone()
    assert row["doc_index"] is None and json.loads(row["documents"])[1]["pages_done"] == 50
    # cancel is still noticed at the next page
    store.request_cancel("j")
    from pagelens.app.jobs import _Interrupted

    doc.update(status="running")
    with pytest.raises(_Interrupted):
        callback("page_done", {"page_count": 50})
    store.close()
