"""What the UI does besides reading: turning uploaded files into a persistent index job (type checked
by content, as the REST API does)."""

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
    rejected files ``{collection, name, error}``. ``password`` is for the encrypted PDFs of this upload
    (kept in memory only, as for the API's ``password`` form field)."""
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
    the job and the rejected files recorded; Gradio's copies of ``paths`` are discarded (the job holds its
    own copies, and a rejected file is not needed)."""
    for path in paths:
        ctx.discard_upload(path)
    return {"jobs": [*sess.get("jobs", []), *([job.id] if job is not None else [])],
            "rejected": [*sess.get("rejected", []), *rejected]}


def retry_with_password(ctx: UIContext, p: Principal, job_id: str, index: int, password: str) -> Job:
    """Index again, with ``password``, a file of job ``job_id`` that failed because its PDF is
    password-protected: its kept upload moves into a new job (``pagelens.app.jobs.JobWorker`` keeps the
    files of such failures), and the old row is marked ``retried_by`` the new job. Same access rule as an
    upload: write access to the job's collection."""
    from pagelens.app.jobs import needs_password

    job = ctx.jobs.get(job_id)
    if job is None or not p.can_read(job.collection):
        raise UIError("this upload is no longer in the job table; upload the file again")
    check_write(p, job.collection)
    if not 0 <= index < len(job.documents):
        raise UIError("this upload has no such file; upload it again")
    doc = job.documents[index]
    if not job.finished:  # the worker still writes this job's row
        raise UIError(f"wait for the upload of '{doc['name']}' to finish, then retry it")
    if doc.get("retried_by"):
        raise UIError(f"'{doc['name']}' was already retried; see its newer row")
    if not needs_password(doc):
        raise UIError(f"'{doc['name']}' did not fail for a password; upload it again to retry")
    if not (password or "").strip():
        raise UIError(f"type the password of '{doc['name']}' first, then press Retry")
    src = Path(doc.get("path") or "")
    if not src.is_file():
        raise UIError(f"'{doc['name']}' is no longer kept on the server: upload it again with its password "
                      "in the PDF password box")
    new_id = ctx.jobs.new_id()
    dest = ctx.jobs.upload_dir(new_id)
    dest.mkdir(parents=True, exist_ok=False)
    target = dest / src.name
    try:
        src.replace(target)
        new = ctx.jobs.create(new_id, job.collection,
                              [JobFile(name=doc["name"], path=target, size=int(doc.get("size") or 0),
                                       sha256=str(doc.get("sha256") or ""))],
                              metadata=job.metadata, force=job.force, password=password, keep_for_retry=True)
    except BaseException:
        with contextlib.suppress(OSError):
            target.replace(src)
        ctx.jobs.remove_uploads(new_id)
        raise
    doc["retried_by"] = new.id
    ctx.jobs.save(job)
    with contextlib.suppress(OSError):  # the old folder, once empty
        src.parent.rmdir()
    ctx.notify_worker()
    log.info("ui: retrying '%s' of job %s with a password as job %s by %s", doc["name"], job.id, new.id, p.name)
    return new


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
