"""One status vocabulary for every table of the web UI (uploads and documents): ``queued``, ``indexing``,
``finishing`` (all pages embedded, the search index is being built), ``done``, ``partial``, ``failed``,
``cancelled`` and ``skipped`` (always with its reason), plus the words people read for errors that the job
table records in API wording (a password-protected PDF)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

NOTHING_TO_ASK = "nothing to ask yet: upload files in the **Documents** tab"

STATUS_WORDS = ("queued", "indexing", "finishing", "done", "partial", "failed", "cancelled", "skipped")

SKIPPED_REASON = "already indexed (same content)"
UPDATED_REASON = "already indexed (same content): its name and details were updated"
FINISHING_NOTE = "finishing (building the search index)"

PASSWORD_RETRY = ("This PDF is password-protected: press \u201cRetry with password\u201d on this row and type its "
                  "password.")
PASSWORD_WRONG = ("The password given did not open this PDF: press \u201cRetry with password\u201d on this row and "
                  "type the right one.")
PASSWORD_REUPLOAD = ("This PDF is password-protected and its file is no longer kept on the server: upload it again "
                     "with its password in the PDF password box.")
PASSWORD_RETRIED = "Retried with a password: see its newer row."


def upload_status(doc: dict[str, Any], job_status: str) -> tuple[str, str]:
    """(status word, reason or "") of one file of an upload job (a document row of the job table)."""
    raw = str(doc.get("status") or "")
    if raw == "queued":
        return ("queued", "") if job_status in ("queued", "running") else ("cancelled", "")
    if raw == "running":
        return ("finishing", "") if doc.get("phase") == "finishing" else ("indexing", "")
    if raw == "indexed":
        return "done", ""
    if raw == "updated":
        return "done", UPDATED_REASON
    if raw == "skipped":
        return "skipped", SKIPPED_REASON
    if raw in ("partial", "failed", "cancelled"):
        return raw, ""
    return "failed", ""  # rejected before a job (empty, too large, not a document): the error says why


def document_status(registry_status: str, inflight: bool) -> str:
    """The word for a document of the collection (the registry's ``complete`` / ``incomplete``)."""
    if inflight:
        return "indexing"
    return {"complete": "done", "incomplete": "partial"}.get(registry_status, registry_status)


def password_retry_state(doc: dict[str, Any]) -> str | None:
    """For a file that failed because its PDF is password-protected: ``retry`` (its upload is kept: the
    row offers Retry with password), ``reupload`` (the file is gone), ``retried``; None otherwise."""
    if doc.get("status") != "failed" or not any(
            e.get("code") == "encrypted_document" for e in doc.get("errors") or []):
        return None
    if doc.get("retried_by"):
        return "retried"
    path = doc.get("path")
    return "retry" if path and Path(path).is_file() else "reupload"


def upload_errors(doc: dict[str, Any]) -> list[str]:
    """The error lines of a file for people: a password-protected PDF says what to do on the row; other
    errors as the job table has them (they name the file and the page)."""
    state = password_retry_state(doc)
    errors = [str(e.get("error") or "") for e in doc.get("errors") or []]
    if state is None:
        return errors
    if state == "retried":
        return [PASSWORD_RETRIED]
    if state == "reupload":
        return [PASSWORD_REUPLOAD]
    return [PASSWORD_WRONG if doc.get("password_given") else PASSWORD_RETRY]


def collection_summary(documents: int, pages: int, model_id: str, writable: bool) -> str:
    """The line under the collection picker: counts and model; an empty collection points to the upload
    (nothing to ask yet)."""
    line = f"**{documents}** document(s), **{pages}** page(s) · model `{Path(model_id).name}`"
    if not writable:
        line += " · read-only"
    if not pages:
        line += " · " + (NOTHING_TO_ASK if writable else "nothing to ask yet: no pages are indexed")
    return line
