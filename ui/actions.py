"""What the UI does besides reading: turning uploaded files into a persistent index job (type checked
by content, as the REST API does; the refused files are kept in the job store for the principal), and the
uploads rows' actions: cancel, retry with a password, upload a cancelled file again (the new row replaces
the old one: ``retry_of``), dismiss a refused file."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from pathlib import Path
from typing import Any

from pagelens.ingest.discover import DEFAULT_INCLUDE
from pagelens.ingest.sniff import EXTENSIONS, sniff_head, sniff_path
from pagelens.ui.state import UIContext, UIError, check_write

from pagelens.app.access import Principal
from pagelens.app.jobs import Job, JobFile
from pagelens.app.uploads import ACCEPTED, display_name, safe_stem
from pagelens.core.errors import PagelensError

log = logging.getLogger("pagelens.ui.app")

# the extensions the file picker offers (the same as `pagelens index DIR` takes); the type is still
# decided by content (ingest/sniff.py)
ACCEPTED_TYPES = [pattern.removeprefix("*") for pattern in DEFAULT_INCLUDE]


def enqueue_files(
    ctx: UIContext, p: Principal, collection: str, paths: list[str], password: str | None = None
) -> tuple[Job | None, list[dict[str, str]]]:
    """Copy the uploaded files into a new job's folder (type checked by content, as the API does) and
    queue one job for the good ones. Returns the job (None when no file was acceptable) and the
    rejected files ``{id, collection, name, error}``, also recorded in the job store for ``p`` (the
    uploads table keeps them across reloads until dismissed: ``JobStore.rejected_for``). ``password`` is
    for the encrypted PDFs of this upload (kept in memory only, as for the API's ``password`` form field)."""
    check_write(p, collection)
    if ctx.service.store.get_manifest(collection) is None:
        raise UIError(f"collection '{collection}' does not exist (any more)")
    if len(paths) > ctx.settings.max_files_per_request:
        raise UIError(f"at most {ctx.settings.max_files_per_request} files per upload; split it")
    job_id = ctx.jobs.new_id()
    dest = ctx.jobs.upload_dir(job_id)
    dest.mkdir(parents=True, exist_ok=False)
    files: list[JobFile] = []
    rejected: list[dict[str, str]] = []
    max_bytes = min(ctx.settings.max_file_bytes, ctx.settings.max_upload_bytes)
    total = 0
    try:
        for n, raw in enumerate(paths, start=1):
            src = Path(raw)
            name = display_name(src.name)
            try:
                size = src.stat().st_size
                if size == 0:
                    raise UIError(f"'{name}' is empty (0 bytes)")
                if size > max_bytes:
                    raise UIError(f"'{name}' is over {max_bytes} bytes")
                total += size
                if total > ctx.settings.max_upload_bytes:
                    raise UIError(f"'{name}': the upload is over {ctx.settings.max_upload_bytes} bytes")
                with open(src, "rb") as fh:
                    head = fh.read(1 << 20)
                kind = sniff_head(head)
                if kind is not None and kind not in ("pdf", "png", "jpeg", "tiff"):
                    try:  # office containers are opened to tell a DOCX from a ZIP (ingest/sniff.py)
                        kind = sniff_path(src, name, head)
                    except PagelensError as exc:
                        raise UIError(str(exc)) from None
                if kind is None:
                    raise UIError(f"'{name}' is not {ACCEPTED} (checked by content)")
                target = dest / f"{n:03d}_{safe_stem(name)}.{EXTENSIONS[kind]}"
                digest = hashlib.sha256()
                with open(src, "rb") as fin, open(target, "xb") as fout:
                    for chunk in iter(lambda: fin.read(1 << 20), b""):
                        digest.update(chunk)
                        fout.write(chunk)
                files.append(JobFile(name=name, path=target, size=size, sha256=digest.hexdigest()))
            except (UIError, OSError) as exc:
                reason = str(exc) if isinstance(exc, UIError) else f"'{name}' could not be read"
                rejected.append({"collection": collection, "name": name, "error": reason})
        if rejected:
            ids = ctx.jobs.add_rejected(p.name, collection, rejected)
            rejected = [{**item, "id": str(ident)} for item, ident in zip(rejected, ids, strict=True)]
        if not files:
            ctx.jobs.remove_uploads(job_id)
            return None, rejected
        job = ctx.jobs.create(job_id, collection, files, password=password or None, keep_for_retry=True)
    except BaseException:
        ctx.jobs.remove_uploads(job_id)
        raise
    ctx.notify_worker()
    log.info("ui: queued job %s (%d files) for %s by %s", job.id, len(files), collection, p.name)
    return job, rejected


def record_upload(ctx: UIContext, paths: list[str], sess: dict[str, Any], job: Job | None,
                  rejected: list[dict[str, str]]) -> dict[str, Any]:
    """The tab's session after ``enqueue_files`` (a new dict: the Gradio state is not changed in place) with
    the job recorded (the rejected files are in the job store, not in the session: a reload keeps them);
    Gradio's copies of ``paths`` are discarded (the job holds its own copies, and a rejected file is not
    needed)."""
    for path in paths:
        ctx.discard_upload(path)
    return {"jobs": [*sess.get("jobs", []), *([job.id] if job is not None else [])], "rejected": []}


def _replacement(ctx: UIContext, job: Job, index: int) -> str | None:
    """The newer job that replaced file ``index`` of ``job`` (a retry or an upload again), if any."""
    doc = job.documents[index]
    if doc.get("retried_by"):
        return str(doc["retried_by"])
    ref = f"{job.id}:{index}"
    for other in ctx.jobs.list_jobs(collection=job.collection, limit=200):
        if any(d.get("retry_of") == ref for d in other.documents):
            return other.id
    return None


def _requeue(ctx: UIContext, job: Job, index: int, password: str | None) -> Job:
    """Move the kept upload of file ``index`` of ``job`` into a new queued job (same metadata and force)
    whose row replaces the old one (``retry_of``); the old row is marked ``retried_by`` too once its job is
    finished (the worker rewrites a running job's rows)."""
    doc = job.documents[index]
    src = Path(doc.get("path") or "")
    new_id = ctx.jobs.new_id()
    dest = ctx.jobs.upload_dir(new_id)
    dest.mkdir(parents=True, exist_ok=False)
    target = dest / src.name
    try:
        src.replace(target)
        new = ctx.jobs.create(new_id, job.collection,
                              [JobFile(name=doc["name"], path=target, size=int(doc.get("size") or 0),
                                       sha256=str(doc.get("sha256") or ""), retry_of=f"{job.id}:{index}")],
                              metadata=job.metadata, force=job.force, password=password, keep_for_retry=True)
    except BaseException:
        with contextlib.suppress(OSError):
            target.replace(src)
        ctx.jobs.remove_uploads(new_id)
        raise
    if job.finished:
        doc["retried_by"] = new.id
        ctx.jobs.save(job)
    with contextlib.suppress(OSError):  # the old folder, once empty
        src.parent.rmdir()
    ctx.notify_worker()
    return new


def _row_of(ctx: UIContext, p: Principal, job_id: str, index: int) -> tuple[Job, dict[str, Any]]:
    """The job and file row an action names, with the upload's access rule (write access)."""
    job = ctx.jobs.get(job_id)
    if job is None or not p.can_read(job.collection):
        raise UIError("this upload is no longer in the job table; upload the file again")
    check_write(p, job.collection)
    if not 0 <= index < len(job.documents):
        raise UIError("this upload has no such file; upload it again")
    return job, job.documents[index]


def retry_with_password(ctx: UIContext, p: Principal, job_id: str, index: int, password: str) -> Job:
    """Index again, with ``password``, a file of job ``job_id`` that failed because its PDF is
    password-protected, as soon as it failed (its job may still index its other files): its kept upload
    moves into a new job (``pagelens.app.jobs.JobWorker`` keeps the files of such failures) whose row
    replaces the failed one. Same access rule as an upload: write access to the job's collection."""
    from pagelens.app.jobs import needs_password

    job, doc = _row_of(ctx, p, job_id, index)
    if _replacement(ctx, job, index):
        raise UIError(f"'{doc['name']}' was already retried; see its newer row")
    if not needs_password(doc):  # also while it waits or runs: not failed (yet)
        raise UIError(f"'{doc['name']}' did not fail for a password; upload it again to retry")
    if not (password or "").strip():
        raise UIError(f"type the password of '{doc['name']}' first, then press Retry")
    if not Path(doc.get("path") or "").is_file():
        raise UIError(f"'{doc['name']}' is no longer kept on the server: upload it again with its password "
                      "in the PDF password box")
    new = _requeue(ctx, job, index, password)
    log.info("ui: retrying '%s' of job %s with a password as job %s by %s", doc["name"], job.id, new.id, p.name)
    return new


def upload_again(ctx: UIContext, p: Principal, job_id: str, index: int) -> Job:
    """Queue a cancelled file of job ``job_id`` again from its kept upload (a web-UI upload keeps the files
    it cancelled: ``JobWorker._cleanup``); the new row replaces the cancelled one. ``UIError`` asking to pick
    the file again when its upload is no longer kept. Same access rule as an upload."""
    job, doc = _row_of(ctx, p, job_id, index)
    if doc.get("status") != "cancelled" and not (doc.get("status") == "queued" and job.finished):
        raise UIError(f"'{doc['name']}' was not cancelled; nothing to upload again")
    if _replacement(ctx, job, index):
        raise UIError(f"'{doc['name']}' was already uploaded again; see its newer row")
    if not Path(doc.get("path") or "").is_file():
        raise UIError(f"'{doc['name']}' is no longer kept on the server: pick the file again in the file box "
                      "above and press Upload and index")
    new = _requeue(ctx, job, index, None)
    log.info("ui: '%s' of job %s uploaded again as job %s by %s", doc["name"], job.id, new.id, p.name)
    return new


def dismiss_rejected(ctx: UIContext, p: Principal, rejected_id: str) -> None:
    """Forget a file refused before queueing from ``p``'s uploads list (only ``p``'s own)."""
    try:
        ident = int(rejected_id)
    except ValueError:
        raise UIError("this refused file is no longer listed") from None
    if not ctx.jobs.dismiss_rejected(p.name, ident):
        raise UIError("this refused file is no longer listed")


def cancel_job(ctx: UIContext, p: Principal, job_id: str) -> Job:
    """Cancel an unfinished job (at once when queued, at its next page when running), with the API's
    access rule: write access to the job's collection."""
    job = ctx.jobs.get(job_id)
    if job is None or not p.can_read(job.collection):
        raise UIError("this upload is no longer in the job table")
    check_write(p, job.collection)
    if job.finished:
        raise UIError("this upload already finished; nothing to cancel")
    updated = ctx.jobs.request_cancel(job_id)
    assert updated is not None
    log.info("ui: cancel of job %s requested by %s", job_id, p.name)
    return updated
