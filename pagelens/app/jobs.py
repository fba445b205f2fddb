"""Persistent index jobs: a SQLite job table under the data dir and one background worker thread.

A job is one upload request: files already written to ``data_dir/uploads/<job_id>/`` and a row in
``data_dir/jobs.sqlite3`` committed *before* the API answers ``202``. The worker takes queued jobs
oldest first and indexes their documents one at a time through ``PagelensService.index``; progress and
per-file results are written back to the row after every page, so a job survives a crash: on the next
start, jobs left ``running`` go back to ``queued`` and are resumed (the indexer is idempotent, so a
document interrupted half-way is re-indexed without duplicates, and finished ones are skipped).

Job row::

    id, collection, status (queued | running | done | failed | cancelled), created_at, updated_at,
    pages_done, pages_total, cancel_requested, force, metadata (json), error,
    documents (json list): {index, name, file, size, sha256, doc_id, status, page_count,
                            pages_done, errors: [{page, code, error}], phase, started_s,
                            first_page_s, last_page_s, retried_by}

Schema: ``PRAGMA user_version`` of jobs.sqlite3 is the schema number (``SCHEMA_VERSION``); a database of an
older one is migrated at open by the numbered ``MIGRATIONS`` (each in its own transaction), one of a newer
one is refused (``JobStoreVersionError``). Per-page progress is written as integer columns (``doc_index``,
``doc_pages_done``, ``doc_page_count``, ``doc_first_page_s``, ``doc_last_page_s``: ``JobStore.page_done``),
folded into the documents JSON by the next full ``save`` (per document, not per page); readers see them
applied. Finished jobs are pruned at start and hourly (``JobStore.prune``: ``job_retention_days``,
``job_retention_max_jobs``).

``phase`` (``indexing`` | ``finishing``: all pages written, the closing index build runs) and the
timestamps (seconds since the epoch) are set by the worker as it goes; rows written before they existed
lack them and read as before (``pagelens.app.job_progress`` turns them into pages/s and an ETA).
``retried_by``: the job that retried this file (a password-protected PDF retried with its password), set
on the old row once its job is finished; ``retry_of`` (``"<job id>:<file index>"``) on the new job's row names
the row it replaces (a password retry or an upload again of a cancelled file), so readers can hide the old
row even while its job still runs (the worker rewrites a running job's documents). ``cancelled_at_page``:
the pages a cancelled file had written when it stopped (they are removed again; ``pages_done`` is 0).

Refused files: a file refused before any job (empty, not a document, too large: the web UI's checks) is a
row of ``rejected_uploads`` (owner: the principal's name, collection, name, error), newest
``MAX_REJECTED_KEPT`` per owner and collection, pruned with the finished jobs (``job_retention_days``);
the owner dismisses it (``JobStore.dismiss_rejected``).

Document status: queued -> running -> indexed | updated | skipped | partial | failed | cancelled
(``updated``: the same bytes were already indexed; the new name or metadata was applied to their pages).
``pages_total`` is the sum of the page counts of the documents opened so far (a document's page
count is known once it is opened), so it is exact when the job is finished.

A job is ``done`` when every document was processed (some may have failed: see ``documents``), and
``failed`` only when the job itself could not run (e.g. the collection was deleted or the retriever
model does not match it).

Passwords: an upload may carry a password for its encrypted PDFs. It is kept **in this process's memory
only** (``JobStore._passwords``), never written to the job table, never logged, never returned; the
document rows only say ``password_given: true``. It is dropped when the job finishes. If the server
restarts before such a job ran, the password is gone: its documents are still tried without it, and an
encrypted one fails with "password needed again after a restart: re-upload with the password".
A web-UI upload (``keep_for_retry``) keeps the file of a PDF that failed for want of its password after
its job (even without ``job_keep_uploads``), so that the UI can retry it with a password from its row
(``pagelens.ui.actions.retry_with_password`` moves it into the new job), and the files it cancelled (the
row's "Upload again": ``pagelens.ui.actions.upload_again``) until the job is pruned; every other file, and
every file of an API upload, goes when the job finishes, as before.

While a document is being indexed it is partly in the store; ``JobStore.inflight_doc_ids`` names
those documents so the API can keep them out of search results.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pagelens.app.job_progress import document_phase, document_timing, job_phase
from pagelens.core.cpu_priority import lower_thread_priority
from pagelens.core.errors import PagelensError, StoreUnavailableError

if TYPE_CHECKING:
    from pagelens.app.service import PagelensService

log = logging.getLogger(__name__)

JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE_STATUSES = ("queued", "running")
FINAL_DOC_STATUSES = ("indexed", "updated", "skipped", "partial", "failed", "cancelled")
PRUNE_INTERVAL_S = 3600.0  # s: how often a running worker prunes finished jobs past the retention
MAX_REJECTED_KEPT = 50  # refused files kept per owner and collection (``JobStore.add_rejected``): the newest

# The job table as it was before versioning (schema 1, ``PRAGMA user_version`` 0 on disk): every later
# change is a numbered migration below, applied in order in one transaction each at open.
_SCHEMA_V1 = """
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

MIGRATIONS: dict[int, tuple[str, str]] = {
    1: ("the job table", _SCHEMA_V1),
    2: ("per-page progress counters of the running document; an index for retention", """
ALTER TABLE jobs ADD COLUMN doc_index INTEGER;
ALTER TABLE jobs ADD COLUMN doc_pages_done INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN doc_page_count INTEGER;
ALTER TABLE jobs ADD COLUMN doc_first_page_s REAL;
ALTER TABLE jobs ADD COLUMN doc_last_page_s REAL;
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs(status, updated_at);
"""),
    3: ("the files refused before a job (the web UI's uploads list keeps them across reloads)", """
CREATE TABLE IF NOT EXISTS rejected_uploads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    collection TEXT NOT NULL,
    name TEXT NOT NULL,
    error TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rejected_uploads_owner ON rejected_uploads(owner, collection, id);
"""),
}
SCHEMA_VERSION = max(MIGRATIONS)
"""The schema this code writes (``PRAGMA user_version`` of jobs.sqlite3)."""


def indexing_nice(service: Any) -> int:
    """The ``indexing_nice`` setting of ``service`` (0 for a service without settings, as in some tests)."""
    settings = getattr(service, "settings", None)
    return int(settings.tuning.indexing_nice) if settings is not None else 0


class JobStoreVersionError(PagelensError):
    """jobs.sqlite3 was written by a newer pagelens (a schema this version does not know)."""

    code = "job_store_version"
    http_status = 500


def migrate(conn: sqlite3.Connection, path: Path) -> tuple[int, int]:
    """Bring the job database on ``conn`` (autocommit mode) to ``SCHEMA_VERSION``: each missing migration
    in its own transaction, ``user_version`` set with it. Returns (version before, version after).
    Raises ``JobStoreVersionError`` for a database of a newer schema (never downgraded)."""
    before = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if before > SCHEMA_VERSION:
        raise JobStoreVersionError(
            f"{path} has job schema {before}, newer than this pagelens knows ({SCHEMA_VERSION}): it was written by a "
            "newer release. Run that release, or move the file away to start an empty job table.",
            path=str(path), version=before)
    for version in range(before + 1, SCHEMA_VERSION + 1):
        what, sql = MIGRATIONS[version]
        statements = [stmt.strip() for stmt in sql.split(";") if stmt.strip()]
        conn.execute("BEGIN IMMEDIATE")
        try:
            if int(conn.execute("PRAGMA user_version").fetchone()[0]) >= version:  # another process was first
                conn.execute("COMMIT")
                continue
            for stmt in statements:
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {int(version)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if before:
            log.info("%s: job schema migrated to %d (%s)", path, version, what)
    return before, SCHEMA_VERSION


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class JobFile:
    """One accepted upload, already on disk."""

    name: str  # the display name (the client's file name, sanitised)
    path: Path  # where it was written (under uploads/<job_id>/)
    size: int
    sha256: str
    retry_of: str | None = None  # "<job id>:<file index>": the failed or cancelled row this file replaces


@dataclass
class Job:
    id: str
    collection: str
    status: str
    created_at: str
    updated_at: str
    pages_done: int = 0
    pages_total: int = 0
    cancel_requested: bool = False
    force: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    documents: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status not in ACTIVE_STATUSES

    @property
    def phase(self) -> str | None:
        """queued | indexing | finishing (the closing index build) | None when finished."""
        return job_phase(self.status, self.documents)

    def to_dict(self) -> dict[str, Any]:
        """Public view (no server paths); with the phase, pages/s and seconds left of the job and of
        each document (``pagelens.app.job_progress``)."""
        docs = []
        for d in self.documents:
            out = {k: v for k, v in d.items() if k != "path"}
            rate, eta = document_timing(d)
            out.update(phase=document_phase(d, self.status), pages_per_s=rate, eta_s=eta)
            docs.append(out)
        running = [d for d in docs if d["status"] == "running"]
        return {
            "id": self.id,
            "collection": self.collection,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "pages_done": self.pages_done,
            "pages_total": self.pages_total,
            "phase": self.phase,
            "pages_per_s": running[0]["pages_per_s"] if running else None,
            "eta_s": running[0]["eta_s"] if running else None,
            "cancel_requested": self.cancel_requested,
            "force": self.force,
            "metadata": self.metadata,
            "error": self.error,
            "documents_total": len(docs),
            "documents_done": sum(1 for d in docs if d["status"] in FINAL_DOC_STATUSES),
            "documents_failed": sum(1 for d in docs if d["status"] in ("failed", "partial")),
            "documents": docs,
        }


class JobStore:
    """The job table. One SQLite connection guarded by a lock (safe from any thread); WAL mode."""

    def __init__(self, data_dir: Path, *, retention_days: float = 30.0, retention_max_jobs: int = 10_000) -> None:
        """Open (create, migrate: ``migrate``) ``<data_dir>/jobs.sqlite3``. ``retention_days`` /
        ``retention_max_jobs``: what ``prune`` keeps of finished jobs (0: no limit)."""
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.uploads_dir = self.data_dir / "uploads"
        self.path = self.data_dir / "jobs.sqlite3"
        self.retention_days = float(retention_days)
        self.retention_max_jobs = int(retention_max_jobs)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._passwords: dict[str, str] = {}  # job id -> upload password (memory only, never stored)
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            try:
                migrate(self._conn, self.path)
            except BaseException:
                self._conn.close()
                raise

    # -- uploads ---------------------------------------------------------------------------------
    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def upload_dir(self, job_id: str) -> Path:
        return self.uploads_dir / job_id

    def remove_uploads(self, job_id: str) -> None:
        shutil.rmtree(self.upload_dir(job_id), ignore_errors=True)

    # -- rows ------------------------------------------------------------------------------------
    def create(
        self,
        job_id: str,
        collection: str,
        files: list[JobFile],
        metadata: dict[str, Any] | None = None,
        force: bool = False,
        password: str | None = None,
        keep_for_retry: bool = False,
    ) -> Job:
        """Record a queued job whose files are already on disk (committed when this returns).

        ``password`` (for its encrypted PDFs) is kept in memory only: see the module docstring.
        ``keep_for_retry``: keep the file of a PDF that fails for its password (the web UI's Retry)."""
        now = _now()
        if password:
            self._passwords[job_id] = password
        documents: list[dict[str, Any]] = [
            {
                "index": i,
                "name": f.name,
                "path": str(f.path),
                "size": f.size,
                "sha256": f.sha256,
                "doc_id": f.sha256[:16],
                "status": "queued",
                "page_count": None,
                "pages_done": 0,
                "errors": [],
                "password_given": bool(password),
                "keep_for_retry": keep_for_retry,
                **({"retry_of": f.retry_of} if f.retry_of else {}),
            }
            for i, f in enumerate(files)
        ]
        with self._lock:
            self._conn.execute(
                "INSERT INTO jobs (id, collection, status, created_at, updated_at, force, metadata, documents)"
                " VALUES (?, ?, 'queued', ?, ?, ?, ?, ?)",
                (job_id, collection, now, now, int(force), json.dumps(metadata or {}), json.dumps(documents)),
            )
        job = self.get(job_id)
        assert job is not None
        return job

    def password(self, job_id: str) -> str | None:
        """The upload password of ``job_id`` while this process holds it (None after a restart)."""
        return self._passwords.get(job_id)

    def forget_password(self, job_id: str) -> None:
        self._passwords.pop(job_id, None)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row_to_job(row) if row else None

    def list_jobs(
        self,
        collection: str | None = None,
        status: str | None = None,
        collections: set[str] | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Newest first. ``collections`` restricts to those names (a scoped API key)."""
        sql = "SELECT * FROM jobs WHERE 1=1"
        args: list[Any] = []
        if collection is not None:
            sql += " AND collection = ?"
            args.append(collection)
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        if collections is not None:
            if not collections:
                return []
            sql += f" AND collection IN ({','.join('?' * len(collections))})"
            args.extend(sorted(collections))
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [_row_to_job(r) for r in rows]

    def next_queued(self) -> Job | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1"
            ).fetchone()
        return _row_to_job(row) if row else None

    def save(self, job: Job) -> None:
        """Write the mutable fields of ``job`` back (status, progress, documents, error); the per-page
        counters (``page_done``) are folded into the documents JSON and cleared.

        ``cancel_requested`` is only ever set by ``request_cancel`` and is re-read here."""
        job.updated_at = _now()
        with self._lock:
            self._conn.execute(
                "UPDATE jobs SET status = ?, updated_at = ?, pages_done = ?, pages_total = ?, error = ?,"
                " documents = ?, doc_index = NULL, doc_pages_done = 0, doc_page_count = NULL,"
                " doc_first_page_s = NULL, doc_last_page_s = NULL WHERE id = ?",
                (job.status, job.updated_at, job.pages_done, job.pages_total, job.error,
                 json.dumps(job.documents), job.id),
            )
            row = self._conn.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job.id,)).fetchone()
        if row is not None:
            job.cancel_requested = bool(row["cancel_requested"])

    def page_done(self, job: Job, doc: dict[str, Any]) -> None:
        """One more page of ``doc`` (a document of ``job``, already counted in memory) written: an UPDATE
        of integer columns (O(1), not a rewrite of the documents JSON); readers see the counters applied to
        that document (``_row_to_job``) until the next ``save``. Re-reads ``cancel_requested``."""
        job.updated_at = _now()
        with self._lock:
            self._conn.execute(
                "UPDATE jobs SET updated_at = ?, pages_done = ?, pages_total = ?, doc_index = ?, doc_pages_done = ?,"
                " doc_page_count = ?, doc_first_page_s = ?, doc_last_page_s = ? WHERE id = ?",
                (job.updated_at, job.pages_done, job.pages_total, int(doc["index"]), int(doc.get("pages_done") or 0),
                 doc.get("page_count"), doc.get("first_page_s"), doc.get("last_page_s"), job.id),
            )
            row = self._conn.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job.id,)).fetchone()
        if row is not None:
            job.cancel_requested = bool(row["cancel_requested"])

    def prune(self, now: datetime | None = None) -> int:
        """Delete finished jobs (done, failed, cancelled) older than ``retention_days`` (by their last
        update) and, past ``retention_max_jobs`` finished jobs, the oldest; with their upload folders.
        Queued and running jobs are never pruned. Returns how many were deleted."""
        from datetime import timedelta

        finished = "('done', 'failed', 'cancelled')"
        doomed: list[str] = []
        with self._lock:
            if self.retention_days > 0:
                cutoff = ((now or datetime.now(timezone.utc)) - timedelta(days=self.retention_days))
                rows = self._conn.execute(
                    f"SELECT id FROM jobs WHERE status IN {finished} AND updated_at < ?",
                    (cutoff.isoformat(timespec="milliseconds"),)).fetchall()
                doomed += [r["id"] for r in rows]
            if self.retention_max_jobs > 0:
                rows = self._conn.execute(
                    f"SELECT id FROM jobs WHERE status IN {finished} ORDER BY seq DESC LIMIT -1 OFFSET ?",
                    (self.retention_max_jobs,)).fetchall()
                doomed += [r["id"] for r in rows]
            doomed = sorted(set(doomed))
            if self.retention_days > 0:
                self._conn.execute("DELETE FROM rejected_uploads WHERE created_at < ?",
                                   (cutoff.isoformat(timespec="milliseconds"),))
            for start in range(0, len(doomed), 500):
                chunk = doomed[start:start + 500]
                self._conn.execute(f"DELETE FROM jobs WHERE id IN ({','.join('?' * len(chunk))})", chunk)
        for job_id in doomed:
            self.remove_uploads(job_id)
            self.forget_password(job_id)
        if doomed:
            log.info("pruned %d finished job(s) (retention: %g days, %d jobs)", len(doomed), self.retention_days,
                     self.retention_max_jobs)
        return len(doomed)

    # -- files refused before a job ------------------------------------------------------------------
    def add_rejected(self, owner: str, collection: str, items: list[dict[str, str]]) -> list[int]:
        """Record files refused before queueing (``{name, error}`` each) for ``owner`` (a principal's name)
        in ``collection``; only the newest ``MAX_REJECTED_KEPT`` per owner and collection are kept. Returns
        the rows' ids, in the order of ``items``."""
        if not items:
            return []
        now = _now()
        ids: list[int] = []
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for item in items:
                    cur = self._conn.execute(
                        "INSERT INTO rejected_uploads (owner, collection, name, error, created_at) VALUES (?, ?, ?, ?, ?)",
                        (owner, collection, str(item["name"]), str(item["error"]), now))
                    ids.append(int(cur.lastrowid or 0))
                self._conn.execute(
                    "DELETE FROM rejected_uploads WHERE owner = ? AND collection = ? AND id NOT IN (SELECT id FROM "
                    "rejected_uploads WHERE owner = ? AND collection = ? ORDER BY id DESC LIMIT ?)",
                    (owner, collection, owner, collection, MAX_REJECTED_KEPT))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return ids

    def rejected_for(self, owner: str, collection: str) -> list[dict[str, Any]]:
        """The files refused for ``owner`` in ``collection``, newest first: ``{id, collection, name, error,
        created_at}``."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, collection, name, error, created_at FROM rejected_uploads WHERE owner = ? AND "
                "collection = ? ORDER BY id DESC LIMIT ?", (owner, collection, MAX_REJECTED_KEPT)).fetchall()
        return [dict(r) for r in rows]

    def dismiss_rejected(self, owner: str, rejected_id: int) -> bool:
        """Forget one refused file of ``owner``; False when there is no such row of theirs."""
        with self._lock:
            cur = self._conn.execute("DELETE FROM rejected_uploads WHERE id = ? AND owner = ?",
                                     (int(rejected_id), owner))
        return cur.rowcount > 0

    def request_cancel(self, job_id: str) -> Job | None:
        """Flag a job for cancellation. A queued job is cancelled at once; a running one stops at the
        next page. Finished jobs are returned unchanged."""
        with self._lock:
            job = self.get(job_id)
            if job is None or job.finished:
                return job
            self._conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
            if job.status == "queued":
                self._conn.execute(
                    "UPDATE jobs SET status = 'cancelled', updated_at = ? WHERE id = ? AND status = 'queued'",
                    (_now(), job_id),
                )
                job = self.get(job_id)
                assert job is not None
                for doc in job.documents:
                    if doc["status"] not in FINAL_DOC_STATUSES:
                        doc["status"] = "cancelled"
                self.save(job)
                if not any(doc.get("keep_for_retry") for doc in job.documents):  # a UI upload keeps its files
                    self.remove_uploads(job_id)
                self.forget_password(job_id)
            return self.get(job_id)

    def is_cancel_requested(self, job_id: str) -> bool:
        with self._lock:
            row = self._conn.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row["cancel_requested"])

    def reset_running(self) -> int:
        """After a restart: jobs left ``running`` go back to ``queued`` (resumed in order)."""
        with self._lock:
            cur = self._conn.execute(
                "UPDATE jobs SET status = 'queued', updated_at = ? WHERE status = 'running'", (_now(),)
            )
            return cur.rowcount

    def active_for(self, collection: str) -> list[Job]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM jobs WHERE collection = ? AND status IN ('queued', 'running') ORDER BY seq",
                (collection,),
            ).fetchall()
        return [_row_to_job(r) for r in rows]

    def inflight_doc_ids(self, collection: str) -> set[str]:
        """Documents of ``collection`` that an unfinished job has started but not finished indexing:
        they may be partly in the store and must stay out of search results."""
        ids: set[str] = set()
        for job in self.active_for(collection):
            for doc in job.documents:
                if doc["status"] == "running" and doc.get("doc_id"):
                    ids.add(doc["doc_id"])
        return ids

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _row_to_job(row: sqlite3.Row) -> Job:
    documents = json.loads(row["documents"] or "[]")
    index = row["doc_index"]
    if index is not None and 0 <= int(index) < len(documents):  # per-page counters newer than the JSON
        doc = documents[int(index)]
        doc["pages_done"] = int(row["doc_pages_done"])
        for key, column in (("page_count", "doc_page_count"), ("first_page_s", "doc_first_page_s"),
                            ("last_page_s", "doc_last_page_s")):
            if row[column] is not None:
                doc[key] = row[column]
    return Job(
        id=row["id"],
        collection=row["collection"],
        status=row["status"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        pages_done=row["pages_done"],
        pages_total=row["pages_total"],
        cancel_requested=bool(row["cancel_requested"]),
        force=bool(row["force"]),
        metadata=json.loads(row["metadata"] or "{}"),
        error=row["error"],
        documents=documents,
    )


class _Interrupted(Exception):
    """Raised from the progress callback to stop indexing (cancel or shutdown)."""


class JobWorker:
    """One background thread that runs queued jobs in order through ``PagelensService.index``."""

    def __init__(self, jobs: JobStore, service: PagelensService, keep_uploads: bool = False,
                 poll_s: float = 2.0) -> None:
        self.jobs = jobs
        self.service = service
        self.keep_uploads = keep_uploads
        self.poll_s = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_job_finished: Callable[[Job], None] | None = None  # hook for tests
        # The vector store down (server unreachable, embedded store locked): the job goes back to
        # ``queued`` and is retried after a backoff doubling from ``store_retry_base_s`` up to
        # ``store_retry_max_s``; it never fails because of an outage.
        self.store_retry_base_s = 1.0
        self.store_retry_max_s = 30.0
        self.store_outage: str | None = None  # the last outage message while retrying, else None
        self._store_failures = 0
        self.prune_interval_s = PRUNE_INTERVAL_S  # finished jobs past the retention are pruned this often
        self._pruned_at = 0.0
        # One worker per job table: it resets "running" jobs of a crashed run and keeps upload
        # passwords in memory, so a second process's worker must not run on the same data dir.
        from pagelens.core.datadir import DataDirLock

        settings = getattr(service, "settings", None)
        self.data_dir_lock = DataDirLock(jobs.data_dir, getattr(service, "role", None),
                                         purpose="jobs" if settings is not None and bool(settings.qdrant_url) else "store")

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Take the data dir's one-process lock (``pagelens/core/datadir.py``; raises ``DataDirInUseError``
        naming the process that holds it), reset jobs interrupted by a crash to ``queued`` and start
        consuming."""
        if self._thread is not None and self._thread.is_alive():
            return
        self.data_dir_lock.acquire()
        reset = self.jobs.reset_running()
        if reset:
            log.info("resuming %d interrupted job(s)", reset)
        self._prune()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pagelens-jobs", daemon=True)
        self._thread.start()
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the current page; an interrupted job goes back to ``queued``."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            alive = self._thread.is_alive()
            self._thread = None
            if alive:  # still inside a page: keep the data dir until the process exits
                log.warning("the job worker did not stop within %.0f s; the data dir stays locked", timeout)
                return
        self.data_dir_lock.release()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def notify(self) -> None:
        """A job was queued."""
        self._wake.set()

    # -- loop ----------------------------------------------------------------------------------------
    def _prune(self) -> None:
        """Prune finished jobs past the retention (``JobStore.prune``); never fails the worker."""
        self._pruned_at = time.monotonic()
        try:
            self.jobs.prune()
        except Exception:  # pragma: no cover - a locked or damaged database: tried again later
            log.exception("pruning finished jobs failed")

    def _run(self) -> None:
        # Searches first on a contended CPU: this thread embeds, renders (through the sandbox's processes)
        # and writes; everything it starts inherits the lower priority (pagelens/core/cpu_priority.py).
        lower_thread_priority(indexing_nice(self.service))
        while not self._stop.is_set():
            if time.monotonic() - self._pruned_at >= self.prune_interval_s:
                self._prune()
            try:
                job = self.jobs.next_queued()
            except Exception:  # pragma: no cover - the database went away
                log.exception("job table unreadable")
                job = None
            if job is None:
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            try:
                self.run_job(job)
                self._store_failures = 0
                self.store_outage = None
            except StoreUnavailableError as exc:
                self._store_down(job, exc)
                continue
            except Exception:  # never let one job kill the worker
                log.exception("job %s crashed", job.id)
                for doc in job.documents:
                    if doc["status"] not in FINAL_DOC_STATUSES:
                        doc["status"] = "failed"
                job.status = "failed"
                job.error = "internal error while indexing; see the server log"
                self._safe_save(job)
                self.jobs.forget_password(job.id)
            if job.finished and job.status != "done":  # a done job was repaired by its last document (run_job)
                self._repair(job.collection)
            if job.finished and self.on_job_finished is not None:
                self.on_job_finished(job)

    def _repair(self, collection: str) -> None:
        """After a job: rebuild the collection's search structures if they are stale (a document's
        closing optimize interrupted, a failed cache write...; ``pagelens.index.stores.search_status``). Never fails
        the job or the worker."""
        try:
            result = self.service.optimize(collection, force=False)[0]
        except PagelensError as exc:  # deleted meanwhile, store down: the next job or start repairs
            log.info("search structures of %s not checked after the job: %s", collection, exc.message)
            return
        except Exception:
            log.exception("repairing the search structures of %s failed; run `pagelens optimize`", collection)
            return
        if result.ran:
            log.warning("search structures of collection '%s' were stale after a job (%s): rebuilt in %.1f s: %s",
                        collection, "; ".join(result.before.stale), result.seconds, "; ".join(result.rebuilt))

    def _store_down(self, job: Job, exc: StoreUnavailableError) -> None:
        """Put ``job`` back in the queue and wait (stop-aware) before the next try."""
        delay = min(self.store_retry_max_s, self.store_retry_base_s * (2 ** min(self._store_failures, 16)))
        self._store_failures += 1
        self.store_outage = exc.message
        log.warning("vector store unavailable; job %s waits %.1f s and resumes (try %d): %s",
                    job.id, delay, self._store_failures, exc.message)
        job.status = "queued"
        self._recount(job)
        self._safe_save(job)
        self._stop.wait(delay)

    def _safe_save(self, job: Job) -> None:
        try:
            self.jobs.save(job)
        except Exception:  # pragma: no cover
            log.exception("could not save job %s", job.id)

    def run_job(self, job: Job) -> None:
        """Index every document of ``job`` not finished yet; updates the row as it goes."""
        from pagelens.core.errors import CollectionNotFoundError
        from pagelens.index.pipeline.indexer import IndexInput

        job.status = "running"
        job.error = None
        self.jobs.save(job)
        if self.service.store.get_manifest(job.collection) is None:  # deleted while queued
            exc = CollectionNotFoundError(job.collection)
            for doc in job.documents:
                if doc["status"] not in FINAL_DOC_STATUSES:
                    doc["status"] = "failed"
            job.status = "failed"
            job.error = exc.message
            self.jobs.save(job)
            self._cleanup(job)
            return
        pending = [doc for doc in job.documents if doc["status"] not in FINAL_DOC_STATUSES]
        last = pending[-1] if pending else None  # its index call ends with the job's one repair (phase "finishing")
        for doc in job.documents:
            if doc["status"] in FINAL_DOC_STATUSES:
                continue
            if self._stop.is_set():
                job.status = "queued"  # resumed on the next start
                self.jobs.save(job)
                return
            if job.cancel_requested or self.jobs.is_cancel_requested(job.id):
                self._cancel_rest(job)
                return
            doc["status"] = "running"
            doc["pages_done"] = 0
            doc["errors"] = []
            doc.update(phase="indexing", started_s=time.time(), first_page_s=None, last_page_s=None)
            self._recount(job)
            self.jobs.save(job)
            password = self.jobs.password(job.id)
            item = IndexInput(path=Path(doc["path"]), name=doc["name"], metadata=dict(job.metadata),
                              password=password)
            try:
                report = self.service.index(  # the search structures are rebuilt once per job: by its last document
                    job.collection, [item], force=job.force, progress=self._progress(job, doc), repair=doc is last
                )
            except _Interrupted:
                written = int(doc.get("pages_done") or 0)  # before the partial document is removed again
                self._drop_partial(job, doc)
                if self._stop.is_set() and not self.jobs.is_cancel_requested(job.id):
                    doc["status"] = "queued"
                    job.status = "queued"
                    self._recount(job)
                    self.jobs.save(job)
                    return
                doc["status"] = "cancelled"
                if written:
                    doc["cancelled_at_page"] = written
                self._cancel_rest(job)
                return
            except StoreUnavailableError:
                # An outage, not a property of the job: the document stays "running" (kept out of
                # search results while partly written) and the whole job is retried by ``_run``.
                doc["pages_done"] = 0
                raise
            except PagelensError as exc:
                # The job as a whole cannot run (collection gone, model mismatch...).
                doc["status"] = "failed"
                doc["errors"].append({"page": None, "code": exc.code, "error": exc.message})
                for other in job.documents:
                    if other["status"] not in FINAL_DOC_STATUSES:
                        other["status"] = "failed"
                job.status = "failed"
                job.error = exc.message
                self._recount(job)
                self.jobs.save(job)
                self._cleanup(job)
                return
            doc["phase"] = None
            self._apply_report(doc, report, password_lost=bool(doc.get("password_given")) and password is None)
            if doc["status"] == "partial" and doc.get("doc_id"):  # resumed: count what is really stored
                from pagelens.core.types import PageFilter

                with contextlib.suppress(PagelensError):
                    doc["pages_done"] = self.service.store.count(job.collection, PageFilter(doc_ids=[doc["doc_id"]]))
            self._recount(job)
            self.jobs.save(job)
        if last is None:  # nothing left to index (a resumed job): still leave the structures current
            self._repair(job.collection)
        job.status = "done"
        self._recount(job)
        self.jobs.save(job)
        self._cleanup(job)

    # -- helpers -------------------------------------------------------------------------------------
    def _progress(self, job: Job, doc: dict[str, Any]) -> Callable[[str, dict[str, Any]], None]:
        def callback(event: str, info: dict[str, Any]) -> None:
            if event == "document_start":
                doc["page_count"] = int(info.get("page_count") or 0)
            elif event == "page_done":
                now = time.time()
                doc["pages_done"] = int(doc.get("pages_done") or 0) + 1
                doc["first_page_s"] = doc.get("first_page_s") or now
                doc["last_page_s"] = now
                if doc.get("page_count") is None:
                    doc["page_count"] = int(info.get("page_count") or 0)
            elif event == "optimize_start":  # every page written: the closing index build runs
                doc["phase"] = "finishing"
                self.jobs.save(job)
                return
            else:
                return
            self._recount(job)
            if event == "page_done":
                self.jobs.page_done(job, doc)  # integer columns only; also refreshes job.cancel_requested
            else:
                self.jobs.save(job)  # also refreshes job.cancel_requested
            if self._stop.is_set() or job.cancel_requested:
                raise _Interrupted()

        return callback

    @staticmethod
    def _recount(job: Job) -> None:
        job.pages_total = sum(int(d.get("page_count") or 0) for d in job.documents)
        job.pages_done = sum(int(d.get("pages_done") or 0) for d in job.documents)

    @staticmethod
    def _apply_report(doc: dict[str, Any], report: Any, password_lost: bool = False) -> None:
        result = report.documents[0] if report.documents else None
        if result is not None:
            doc["status"] = result.status
            if result.doc_id:
                doc["doc_id"] = result.doc_id
            if result.page_count:
                doc["page_count"] = result.page_count
            if result.status in ("skipped", "updated", "indexed"):
                # complete in the collection; a resumed document wrote only its missing pages, so
                # pages_indexed alone would undercount it
                doc["pages_done"] = result.page_count
            else:
                doc["pages_done"] = result.pages_indexed
        else:
            doc["status"] = "failed"
        for err in report.errors:
            message = _public_error(err.error, doc)
            if err.code == "encrypted_document":
                message = _api_password_hint(message, password_lost)
            doc["errors"].append({"page": err.page, "code": err.code, "error": message})
        if doc["status"] == "failed" and doc["page_count"] is None:
            doc["page_count"] = 0

    def _drop_partial(self, job: Job, doc: dict[str, Any]) -> None:
        """A document interrupted half-way is removed again (unless it was complete before)."""
        from pagelens.core.types import PageFilter

        doc_id = doc.get("doc_id")
        page_count = int(doc.get("page_count") or 0)
        if not doc_id:
            return
        try:
            present = self.service.store.count(job.collection, PageFilter(doc_ids=[doc_id]))
            if 0 < present < page_count:
                self.service.delete_document(job.collection, doc_id)
        except PagelensError:
            log.warning("could not remove the partly indexed document %s of job %s", doc_id, job.id)
        doc["pages_done"] = 0

    def _cancel_rest(self, job: Job) -> None:
        for doc in job.documents:
            if doc["status"] not in FINAL_DOC_STATUSES:
                doc["status"] = "cancelled"
        job.status = "cancelled"
        self._recount(job)
        self.jobs.save(job)
        self._cleanup(job)

    def _cleanup(self, job: Job) -> None:
        """Forget the password; remove the uploaded files unless kept (``keep_uploads``). The file of a
        password-protected PDF that failed for want of its password, and of a cancelled file, stays when its
        upload asked for it (``keep_for_retry``: the web UI), so it can be retried with the password or
        uploaded again from its row (until the job is pruned)."""
        self.jobs.forget_password(job.id)
        if self.keep_uploads:
            return
        keep = {Path(d["path"]).name for d in job.documents
                if (needs_password(d) or d.get("status") == "cancelled") and d.get("keep_for_retry") and d.get("path")}
        if not keep:
            self.jobs.remove_uploads(job.id)
            return
        folder = self.jobs.upload_dir(job.id)
        for path in folder.glob("*") if folder.is_dir() else []:
            if path.name not in keep:
                with contextlib.suppress(OSError):
                    path.unlink()


def needs_password(doc: dict[str, Any]) -> bool:
    """A document row that failed because its PDF is password-protected (no or a wrong password)."""
    return doc.get("status") == "failed" and any(
        e.get("code") == "encrypted_document" for e in doc.get("errors") or [])


API_PASSWORD_HINT = ("upload it again with its password in the 'password' form field of the upload "
                     "(UI: the PDF password box)")


def _api_password_hint(message: str, password_lost: bool) -> str:
    """An encrypted-PDF error as seen by an API/UI client: how to pass the password there."""
    from pagelens.ingest.pdf import PASSWORD_HINT

    if password_lost:
        head = message.split(";", 1)[0]
        return (f"{head}; password needed again after a restart: re-upload with the password (the server keeps "
                "upload passwords in memory only and restarted before this file was indexed)")
    return message.replace(PASSWORD_HINT, API_PASSWORD_HINT)


def _public_error(message: str, doc: dict[str, Any]) -> str:
    """Error messages name the uploaded file by its display name, not its server path."""
    path = doc.get("path")
    return message.replace(path, doc["name"]) if path else message
