"""The Documents tab's uploads table: one row per file of the collection's latest upload jobs, with its
status (``pagelens.ui.status``), pages done / total, pages/s and time left (once measured: ``RATE_MIN_PAGES``
pages over ``RATE_MIN_SPAN_S`` or more), the ``finishing (building the search index)`` phase, the errors for
people, and the row's actions (Cancel while the upload runs or waits, Retry with password for a
password-protected PDF as soon as it failed, Upload again for a cancelled file, Dismiss for a file refused
before queueing); the actions are buttons that the row-action bridge (``ROW_ACTIONS_JS``) turns into one
server event carrying ``{act, job, doc}``.

The table shows what needs attention: the files still running or waiting, the failed, partial and
cancelled ones, and the files refused before queueing (kept in the job store per principal, so a reload
keeps them: ``JobStore.rejected_for``). Finished files (done, skipped) are drawn apart (``UploadsView.finished``,
shown collapsed under an "N finished" accordion). A row replaced by a retry or an upload again (a newer
row's ``retry_of``) is not drawn."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pagelens.ui.state import MAX_JOBS_SHOWN, UIContext
from pagelens.ui.status import FINISHING_NOTE, password_retry_state, upload_errors, upload_status

from pagelens.app.job_progress import document_timing, format_duration

if TYPE_CHECKING:
    from pagelens.app.jobs import Job

# A click on a row's action button (``button.pl-row-act``, in a table that the live refresh re-renders)
# writes ``{act, job, doc, name}`` into the hidden textbox ``#pl-row-action`` and presses the hidden
# ``#pl-row-action-btn``: one delegated listener, installed once at page load.
ROW_ACTIONS_JS = """() => {
  if (window.__plRowActions) return;
  window.__plRowActions = true;
  document.addEventListener('click', (ev) => {
    const btn = ev.target.closest && ev.target.closest('button.pl-row-act');
    if (!btn) return;
    ev.preventDefault();
    const box = document.querySelector('#pl-row-action textarea, #pl-row-action input');
    const go = document.querySelector('#pl-row-action-btn');
    if (!box || !go) return;
    box.value = JSON.stringify({act: btn.dataset.act, job: btn.dataset.job, doc: Number(btn.dataset.doc || 0),
                                name: btn.dataset.name || '', nonce: Date.now()});
    box.dispatchEvent(new Event('input', {bubbles: true}));
    setTimeout(() => go.click(), 0);
  });
}"""


def jobs_for_view(ctx: UIContext, collection: str, session: dict[str, Any]) -> list[Job]:
    """The collection's latest upload jobs from the job table (this tab's, another tab's, the API's or the
    CLI's, finished or not; so a reload or a collection switch keeps them), plus any older unfinished
    one, newest first, at most ``MAX_JOBS_SHOWN``."""
    active = ctx.jobs.active_for(collection)
    keep: dict[str, Job] = {job.id: job for job in active}
    for job in ctx.jobs.list_jobs(collection=collection, limit=MAX_JOBS_SHOWN):
        if len(keep) >= max(MAX_JOBS_SHOWN, len(active)):
            break
        keep.setdefault(job.id, job)
    return sorted(keep.values(), key=lambda j: j.created_at, reverse=True)


# the rate and time left appear once this many pages are written this many seconds apart (first to latest)
RATE_MIN_PAGES = 3
RATE_MIN_SPAN_S = 2.0
# the row words of files that are finished and need nothing more: drawn in the collapsed part
FINISHED_WORDS = ("done", "skipped")
ROW_ACTS = ("cancel", "retry", "again", "dismiss")


@dataclass
class UploadsView:
    """The uploads of a collection as drawn: ``open`` (the table of running, waiting, failed, cancelled and
    refused files, or a line saying there is none), ``finished`` (the table of the ``finished_count``
    finished files; ``""`` when none) and whether any job is still ``active``."""

    open: str
    finished: str
    finished_count: int
    active: bool


def replaced_rows(jobs: list[Job]) -> set[tuple[str, int]]:
    """The ``(job id, file index)`` rows that a newer row replaced (its ``retry_of``, or the old row's
    ``retried_by``)."""
    out: set[tuple[str, int]] = set()
    for job in jobs:
        for doc in job.documents:
            ref = str(doc.get("retry_of") or "")
            job_id, _, index = ref.partition(":")
            if job_id and index.isdigit():
                out.add((job_id, int(index)))
            if doc.get("retried_by"):
                out.add((job.id, int(doc.get("index", 0))))
    return out


def uploads_view(ctx: UIContext, collection: str | None, owner: str | None = None,
                 writable: bool = False) -> UploadsView:
    """The uploads of ``collection`` for the principal named ``owner`` (whose refused files are shown, with
    Dismiss); ``writable``: the principal may write to ``collection`` (the rows get their buttons)."""
    if not collection:
        return UploadsView('<p class="pl-empty">Pick a collection to see its uploads.</p>', "", 0, False)
    open_rows: list[str] = []
    done_rows: list[str] = []
    active = False
    for item in ctx.jobs.rejected_for(owner, collection) if owner else []:
        dismiss = _button("dismiss", str(item["id"]), {"name": item["name"]}, "Dismiss",
                          "Remove this refused file from the list")
        open_rows.append(upload_row(item["name"], "rejected", {}, [item["error"]], actions=dismiss))
    jobs = jobs_for_view(ctx, collection, {})
    replaced = replaced_rows(jobs)
    for job in jobs:
        active = active or not job.finished
        for doc in job.documents:
            if (job.id, int(doc.get("index", 0))) in replaced:
                continue
            errors = upload_errors(doc)
            if job.status == "failed" and job.error and not errors and doc["status"] == "failed":
                errors = [job.error]
            word, _ = upload_status(doc, job.status)
            actions = ""
            if writable and not job.finished and doc["status"] in ("queued", "running"):
                actions = _button("cancel", job.id, doc, "Cancel", "Cancel this upload (its files not indexed yet)")
            elif writable and password_retry_state(doc) == "retry":  # as soon as the file failed
                actions = _button("retry", job.id, doc, "Retry with password…",
                                  "Type the PDF's password and index it again")
            elif writable and word == "cancelled":
                actions = _button("again", job.id, doc, "Upload again", "Index this file again")
            note = ""
            if password_retry_state(doc) == "retried":  # not an error any more: the newer row says how it went
                note, errors = errors[0], []
            row = upload_row(doc["name"], doc["status"], doc, errors, job.status, actions, note)
            (done_rows if word in FINISHED_WORDS and not errors else open_rows).append(row)
    if open_rows:
        opened = _table(open_rows, "pl-uploads")
    elif done_rows:
        opened = '<p class="pl-empty">Nothing running or failed: the finished uploads are below.</p>'
    else:
        opened = '<p class="pl-empty">No uploads to this collection yet.</p>'
    return UploadsView(opened, _table(done_rows, "pl-uploads-done") if done_rows else "", len(done_rows), active)


def _table(rows: list[str], table_id: str) -> str:
    head = (f'<div class="pl-scroll"><table class="pl-table pl-uploads" id="{table_id}"><thead><tr><th>File</th>'
            '<th>Status</th><th>Pages</th><th class="pl-hide-sm">Progress</th></tr></thead><tbody>')
    return head + "".join(rows) + "</tbody></table></div>"


def finished_label(count: int) -> str:
    """The label of the collapsed finished uploads: ``12 finished``."""
    return f"{count} finished"


def progress_html(ctx: UIContext, collection: str | None, session: dict[str, Any] | None = None,
                  writable: bool = False, owner: str | None = None) -> tuple[str, bool]:
    """The uploads table of the files that need attention (``uploads_view``'s ``open``) and whether any
    job is still active."""
    view = uploads_view(ctx, collection, owner, writable)
    return view.open, view.active


def _button(act: str, job_id: str, doc: dict[str, Any], label: str, title: str) -> str:
    return (f'<button type="button" class="pl-row-act pl-row-{act}" data-act="{act}" '
            f'data-job="{html.escape(job_id)}" data-doc="{int(doc.get("index", 0))}" '
            f'data-name="{html.escape(str(doc.get("name", "")))}" title="{html.escape(title)}">'
            f"{html.escape(label)}</button>")


def upload_row(name: str, raw: str, doc: dict[str, Any], errors: list[str], job_status: str = "done",
               actions: str = "", note: str = "") -> str:
    """One row: file (with the reason, the errors and the actions), status word, pages (with pages/s and
    time left while indexing), a bar."""
    word, reason = upload_status({**doc, "status": raw}, job_status) if raw != "rejected" else ("failed", "")
    done, total = doc.get("pages_done"), doc.get("page_count")
    if raw == "cancelled" and doc.get("cancelled_at_page"):  # the pages it had written when it stopped
        done = doc["cancelled_at_page"]
    pages = "–"
    bar = ""
    rate_line = ""
    if total:
        done = min(int(done or 0), int(total))
        pages = f"{done} / {total}"
        pct = 100 * done / total
        bar = f'<div class="pl-bar" title="{pct:.0f}%"><span style="width:{pct:.1f}%"></span></div>'
    elif word in ("indexing", "queued"):
        pages = "…"
    if word == "indexing":
        rate_line = rate_text(doc)
    elif word == "finishing":
        rate_line = "all pages embedded"
    status_text = FINISHING_NOTE if word == "finishing" else word
    notes = "".join(f'<div class="pl-reason">{html.escape(r)}</div>' for r in (reason, note) if r)
    notes += "".join(f'<div class="pl-err">{html.escape(e)}</div>' for e in errors if e)
    rate_html = f'<div class="pl-rate">{html.escape(rate_line)}</div>' if rate_line else ""
    if actions:  # under the file's name and errors: one narrow column on a phone
        notes += f'<div class="pl-row-actions">{actions}</div>'
    return (f'<tr class="pl-row pl-row-{html.escape(raw)} pl-state-{word}"><td class="pl-file">{html.escape(name)}{notes}</td>'
            f'<td class="pl-status pl-status-{word}">{html.escape(status_text)}</td>'
            f'<td class="pl-pages">{pages}{rate_html}</td><td class="pl-hide-sm">{bar}</td></tr>')


def rate_text(doc: dict[str, Any]) -> str:
    """``1.4 pages/s · about 12 s left`` for a file being indexed; ``measuring speed…`` until
    ``RATE_MIN_PAGES`` pages are written ``RATE_MIN_SPAN_S`` or more apart (a first burst of pages is not a
    rate); ``""`` for rows without timestamps (written by an older version)."""
    if doc.get("started_s") is None:
        return ""
    rate, eta = document_timing(doc, min_pages=RATE_MIN_PAGES, min_span_s=RATE_MIN_SPAN_S)
    if rate is None:
        return "measuring speed…"
    text = f"{rate:.1f} pages/s" if rate >= 0.1 else f"{60 * rate:.1f} pages/min"
    if eta is not None and eta > 0:
        text += f" · about {format_duration(eta)} left"
    return text


def parse_row_action(raw: str | None) -> dict[str, Any] | None:
    """The ``{act, job, doc}`` a row button sent (None when malformed); ``act``: one of ``ROW_ACTS``
    (``job``: the refused file's id for ``dismiss``)."""
    try:
        data = json.loads(raw or "")
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("act") not in ROW_ACTS or not isinstance(data.get("job"), str):
        return None
    try:
        data["doc"] = int(data.get("doc") or 0)
    except (TypeError, ValueError):
        return None
    return data

