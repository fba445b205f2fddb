"""The Gradio web UI: collections, uploads with live progress, questions with visible sources.

One server, one port: ``mount_ui(app, settings, service, jobs)`` mounts the UI at ``/ui`` on the FastAPI
app of ``api.main.create_app`` and shares its ``Pagelens`` service, job table, worker and API keys, so an
upload from the UI is the same persistent job as one from the REST API (it survives restarts) and an
API key means the same thing in both. ``create_ui_app(settings)`` builds a server with only the UI (and
the index worker) for ``pagelens ui``.

Nothing here re-implements pipeline logic: collections, documents, search and answers go through
``Pagelens``; uploads become ``pagelens.jobs`` jobs; access checks use ``api.auth.Principal``; search hides
half-indexed documents with ``api.visibility.search_visible`` like the API does.

Auth: when ``PAGELENS_API_KEYS`` is set the UI shows only a key box until a valid key is entered; the
principal is kept server-side in the session (``gr.State``) and every handler checks it (read vs write
per collection), and write controls are hidden where the key may not write.
"""

from __future__ import annotations

import hashlib
import html
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from api.auth import OPEN, ApiKeys, Principal
from api.deps import COLLECTION_PATTERN
from api.uploads import display_name, safe_stem, sniff_type
from api.visibility import search_visible
from pagelens.errors import EmptyCollectionError, PagelensError
from pagelens.jobs import JobFile, JobStore
from pagelens.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from pagelens.jobs import Job, JobWorker
    from pagelens.service import Pagelens
    from retrieve.types import SearchHit

log = logging.getLogger(__name__)

UI_PATH = "/ui"
ACCEPTED_TYPES = [".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff"]
_EXT = {"pdf": "pdf", "png": "png", "jpeg": "jpg", "tiff": "tif"}
_COLLECTION_RE = re.compile(COLLECTION_PATTERN)
MODE_ANSWER = "Answer"
MODE_SEARCH = "Search only"
# Retrieval modes (see retrieve/hybrid.py): "default" keeps PAGELENS_RETRIEVAL_MODE.
RETRIEVAL_DEFAULT = "default"
RETRIEVAL_CHOICES = [RETRIEVAL_DEFAULT, "hybrid", "visual", "text"]
TIMER_S = 1.0
MAX_JOBS_SHOWN = 6

CSS = """
.pl-header h1 { margin: 0; font-size: 1.5rem; }
.pl-header p { margin: 0.15rem 0 0; opacity: 0.75; }
.pl-note { font-size: 0.9rem; opacity: 0.85; }
.pl-msg-error { color: var(--error-text-color, #b91c1c); font-weight: 600; }
.pl-msg-ok { color: var(--color-green-600, #15803d); }
.pl-bar-row { align-items: flex-end !important; }
.pl-btn { white-space: nowrap; }
.pl-bar-row > .pl-btn { align-self: flex-end; flex-grow: 0 !important; height: auto; margin-bottom: 0.1rem; }
.pl-confirm { padding: 0.5rem 0.75rem; border: 1px solid #fca5a5; border-radius: 8px; background: rgba(254, 226, 226, 0.35); align-items: center !important; }
.pl-confirm > .pl-btn { align-self: center; }
.prose table.pl-table, table.pl-table { width: 100%; border-collapse: collapse; font-size: 0.9rem; margin: 0; border: none !important; }
table.pl-table th, table.pl-table td { text-align: left; padding: 0.4rem 0.5rem; border: none !important; border-bottom: 1px solid var(--border-color-primary, #e5e7eb) !important; vertical-align: top; }
table.pl-table th { font-weight: 600; opacity: 0.8; background: var(--background-fill-secondary, #f9fafb); }
table.pl-table td.pl-file { word-break: break-word; }
.pl-mono { font-family: var(--font-mono, monospace); font-size: 0.8rem; }
.pl-bar { background: var(--neutral-200, #e5e7eb); border-radius: 4px; height: 0.55rem; min-width: 4rem; overflow: hidden; }
.pl-bar > span { display: block; height: 100%; background: var(--color-accent, #2563eb); }
.pl-status { font-weight: 600; white-space: nowrap; }
.pl-status-failed, .pl-status-rejected, .pl-status-partial { color: #b91c1c; }
.pl-status-indexed, .pl-status-skipped, .pl-status-complete { color: #15803d; }
.pl-status-incomplete, .pl-status-cancelled { color: #b45309; }
.pl-err { color: #b91c1c; font-size: 0.85rem; margin-top: 0.2rem; word-break: break-word; }
.pl-empty { opacity: 0.7; font-size: 0.9rem; }
@media (max-width: 640px) {
  table.pl-table th.pl-hide-sm, table.pl-table td.pl-hide-sm { display: none; }
  .pl-header h1 { font-size: 1.25rem; }
}
"""


# --------------------------------------------------------------------------------------------------
# Context and small helpers
# --------------------------------------------------------------------------------------------------


@dataclass
class UIContext:
    """What the handlers share: the service, the job table (and worker), the key table.

    Has the ``settings`` / ``service`` / ``jobs`` attributes ``api.visibility`` reads."""

    settings: Settings
    service: Pagelens
    jobs: JobStore
    worker: JobWorker | None = None
    keys: ApiKeys = field(default_factory=lambda: ApiKeys(None))
    image_cache: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "pagelens-ui" / "pages")

    def notify_worker(self) -> None:
        if self.worker is not None:
            self.worker.notify()


class UIError(Exception):
    """A message for the person using the UI."""


def _err(exc: BaseException) -> str:
    if isinstance(exc, (PagelensError, UIError)):
        return str(exc)
    log.exception("UI handler failed")
    return f"internal error ({type(exc).__name__}); see the server log"


def _msg(text: str, ok: bool = True) -> str:
    cls = "pl-msg-ok" if ok else "pl-msg-error"
    return f'<span class="{cls}">{html.escape(text)}</span>'


def _require_principal(principal: Principal | None) -> Principal:
    if principal is None:
        raise UIError("sign in with an API key first")
    return principal


def _require_collection(collection: str | None) -> str:
    if not collection:
        raise UIError("pick a collection first (or create one in the Collections tab)")
    return collection


def _can_read(p: Principal | None, collection: str | None) -> bool:
    return p is not None and bool(collection) and p.can_read(collection or "")


def _can_write(p: Principal | None, collection: str | None) -> bool:
    return p is not None and bool(collection) and p.can_write(collection or "")


def _can_create(p: Principal | None) -> bool:
    return p is not None and p.role in ("admin", "rw")


def _check_read(p: Principal, collection: str) -> None:
    if not p.can_read(collection):
        raise UIError(f"this API key has no access to collection '{collection}'")


def _check_write(p: Principal, collection: str) -> None:
    _check_read(p, collection)
    if not p.can_write(collection):
        raise UIError(f"this API key may not modify collection '{collection}'")


# --------------------------------------------------------------------------------------------------
# Views (pure functions of the service state -> component values)
# --------------------------------------------------------------------------------------------------


def visible_collections(ctx: UIContext, p: Principal | None) -> list[str]:
    if p is None:
        return []
    readable = p.readable()
    return [n for n in ctx.service.store.list_collections() if readable is None or n in readable]


def collections_rows(ctx: UIContext, p: Principal | None) -> list[list[Any]]:
    rows = []
    for name in visible_collections(ctx, p):
        try:
            info = ctx.service.collection_info(name)
        except PagelensError:
            continue
        access = "read-write" if p is not None and p.can_write(name) else "read-only"
        rows.append([info.name, info.documents, info.pages, access, Path(info.model_id).name,
                     info.created_at.replace("T", " ")[:19]])
    return rows


def documents_rows(ctx: UIContext, collection: str) -> tuple[list[list[Any]], list[tuple[str, str]]]:
    """Table rows (name, pages, status, indexed at, id) and the delete picker choices."""
    inflight = ctx.jobs.inflight_doc_ids(collection)
    rows: list[list[Any]] = []
    choices: list[tuple[str, str]] = []
    for doc in ctx.service.documents(collection):
        status = "indexing" if doc.doc_id in inflight else doc.status
        pages = f"{doc.pages_indexed}/{doc.page_count}" if doc.pages_indexed != doc.page_count else str(
            doc.page_count)
        rows.append([doc.doc_name, pages, status, doc.indexed_at.replace("T", " ")[:19], doc.doc_id])
        if doc.doc_id not in inflight:
            choices.append((f"{doc.doc_name} ({doc.page_count} p.)", doc.doc_id))
    return rows, choices


def docs_html(rows: list[list[Any]]) -> str:
    """The documents table (name, pages, status, indexed at, id); the last two hidden on phones."""
    if not rows:
        return '<p class="pl-empty">No documents in this collection.</p>'
    body = "".join(
        f'<tr class="pl-doc pl-doc-{html.escape(str(status))}"><td class="pl-file">{html.escape(str(name))}</td>'
        f"<td>{html.escape(str(pages))}</td>"
        f'<td class="pl-status pl-status-{html.escape(str(status))}">{html.escape(str(status))}</td>'
        f'<td class="pl-hide-sm">{html.escape(str(when))}</td>'
        f'<td class="pl-hide-sm pl-mono">{html.escape(str(doc_id))}</td></tr>'
        for name, pages, status, when, doc_id in rows
    )
    return ('<table class="pl-table" id="pl-docs-table"><thead><tr><th>Document</th><th>Pages</th>'
            '<th>Status</th><th class="pl-hide-sm">Indexed (UTC)</th><th class="pl-hide-sm">ID</th></tr>'
            f"</thead><tbody>{body}</tbody></table>")


def _jobs_for_view(ctx: UIContext, collection: str, session: dict[str, Any]) -> list[Job]:
    """This session's jobs in the collection, plus any unfinished job of it (another tab, the API, a
    job resumed after a restart), newest first."""
    seen: dict[str, Job] = {}
    for job in ctx.jobs.active_for(collection):
        seen[job.id] = job
    for job_id in reversed(session.get("jobs", [])):
        if job_id in seen:
            continue
        found = ctx.jobs.get(job_id)
        if found is not None and found.collection == collection:
            seen[job_id] = found
    jobs = sorted(seen.values(), key=lambda j: j.created_at, reverse=True)
    return jobs[:MAX_JOBS_SHOWN]


def progress_html(ctx: UIContext, collection: str | None, session: dict[str, Any]) -> tuple[str, bool]:
    """The uploads table (one row per file) and whether any job is still active."""
    if not collection:
        return '<p class="pl-empty">Pick a collection to see its uploads.</p>', False
    rows: list[str] = []
    active = False
    for item in reversed(session.get("rejected", [])):
        if item["collection"] != collection:
            continue
        rows.append(_row(item["name"], "rejected", None, None, [item["error"]]))
    for job in _jobs_for_view(ctx, collection, session):
        active = active or not job.finished
        for doc in job.documents:
            errors = [e.get("error", "") for e in doc.get("errors") or []]
            if job.status == "failed" and job.error and not errors and doc["status"] == "failed":
                errors = [job.error]
            status = doc["status"]
            if status == "queued" and job.status == "running":
                status = "waiting"
            rows.append(_row(doc["name"], status, doc.get("pages_done"), doc.get("page_count"), errors))
    if not rows:
        return '<p class="pl-empty">No uploads in this session yet.</p>', active
    head = ('<table class="pl-table pl-uploads" id="pl-uploads"><thead><tr><th>File</th><th>Status</th>'
            '<th>Pages</th><th class="pl-hide-sm">Progress</th></tr></thead><tbody>')
    return head + "".join(rows) + "</tbody></table>", active


def _row(name: str, status: str, done: int | None, total: int | None, errors: list[str]) -> str:
    pages = "–"
    bar = ""
    if total:
        done = min(int(done or 0), int(total))
        pages = f"{done} / {total}"
        pct = 100 * done / total
        bar = f'<div class="pl-bar" title="{pct:.0f}%"><span style="width:{pct:.1f}%"></span></div>'
    elif status in ("running", "queued", "waiting"):
        pages = "…"
    err = "".join(f'<div class="pl-err">{html.escape(e)}</div>' for e in errors if e)
    return (f'<tr class="pl-row pl-row-{status}"><td class="pl-file">{html.escape(name)}{err}</td>'
            f'<td class="pl-status pl-status-{status}">{html.escape(status)}</td>'
            f'<td>{pages}</td><td class="pl-hide-sm">{bar}</td></tr>')


# --------------------------------------------------------------------------------------------------
# Actions
# --------------------------------------------------------------------------------------------------


def enqueue_files(
    ctx: UIContext, p: Principal, collection: str, paths: list[str], password: str | None = None
) -> tuple[Job | None, list[dict[str, str]]]:
    """Copy the uploaded files into a new job's folder (type checked by content, as the API does) and
    queue one job for the good ones. Returns the job (None when no file was acceptable) and the
    rejected files ``{collection, name, error}``. ``password`` is for the encrypted PDFs of this upload
    (kept in memory only, as for the API's ``password`` form field)."""
    _check_write(p, collection)
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
                    kind = sniff_type(fh.read(1024))
                if kind is None:
                    raise UIError(f"'{name}' is not a PDF, PNG, JPEG or TIFF file (checked by content)")
                target = dest / f"{n:03d}_{safe_stem(name)}.{_EXT[kind]}"
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
        job = ctx.jobs.create(job_id, collection, files, password=password or None)
    except BaseException:
        ctx.jobs.remove_uploads(job_id)
        raise
    ctx.notify_worker()
    log.info("ui: queued job %s (%d files) for %s by %s", job.id, len(files), collection, p.name)
    return job, rejected


def page_copy(ctx: UIContext, image_path: str | None) -> str | None:
    """A copy of a stored page image in a temp folder Gradio may serve (the data dir is never exposed)."""
    if not image_path:
        return None
    src = Path(image_path)
    if not src.is_file():
        return None
    digest = hashlib.sha1(str(src.resolve()).encode()).hexdigest()[:20]
    target = ctx.image_cache / digest[:2] / f"{digest}.png"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, target)
    return str(target)


PAGE_TEXT_CHARS = 6000  # characters of a page's text shown beside its image
TEXT_SOURCES = {"pdf": "the PDF's text layer", "ocr": "OCR (Tesseract)", "none": "none: no text layer and no OCR"}


def page_text_markdown(hit: SearchHit) -> str:
    """Markdown of a page's extracted text and where it came from (text layer or OCR) and its detected
    language, shown beside the top page's image; the text is HTML-escaped in a <pre> block."""
    source = hit.text_source or ("pdf" if (hit.text or "").strip() else "none")
    language = hit.language or "unknown"
    head = (f"**Text of {html.escape(hit.doc_name)}, page {hit.page_no}** · source: "
            f"{TEXT_SOURCES.get(source, source)} · language: `{html.escape(language)}`")
    text = (hit.text or "").strip()
    if not text:
        return head + ("\n\nThis page has no text: it is found by its image only. Install Tesseract "
                       "(scripts/install-system-deps.sh) and re-index to read scans." if source == "none" else "")
    more = (f"\n\n<small>first {PAGE_TEXT_CHARS} of {len(text)} characters</small>"
            if len(text) > PAGE_TEXT_CHARS else "")
    return f'{head}\n\n<pre class="pl-page-text">{html.escape(text[:PAGE_TEXT_CHARS])}</pre>{more}'


def caption(doc_name: str, page_no: int, score: float) -> str:
    return f"{doc_name} — page {page_no} ({score:.2f})"


def similarity_overlay(ctx: UIContext, collection: str, question: str, hit: SearchHit) -> tuple[Any, str]:
    """(overlay image or None, caption) for one hit: per-patch max similarity of the query tokens."""
    from PIL import Image

    from ui.similarity import overlay_heatmap, page_layout, query_token_mask, similarity_grid

    if not hit.image_path or not Path(hit.image_path).is_file():
        return None, "The page image is not stored on this server, so no similarity map."
    embedder = ctx.service.embedder
    processor = getattr(embedder, "processor", None)
    if processor is None or not hasattr(processor, "process_images"):
        return None, "This retriever exposes no processor: similarity maps are not available."
    vectors = ctx.service.store.get_full_vectors(collection, [hit.point_id])
    page_vec = vectors.get(hit.point_id)
    if page_vec is None:
        return None, "The page's vectors are gone (deleted meanwhile?)."
    query = embedder.embed_queries([question])[0]  # [n_q, 128]
    with Image.open(hit.image_path) as im:
        image = im.convert("RGB")
    try:
        layout = page_layout(processor, image)
        grid = similarity_grid(query, page_vec, layout, query_token_mask(processor, question, len(query)))
    except ValueError as exc:
        log.warning("similarity map of %s p.%d: %s", hit.doc_name, hit.page_no, exc)
        return None, f"No similarity map for this page: {exc}"
    r, c = layout.tile_grid
    text = (f"**{html.escape(hit.doc_name)} — page {hit.page_no}** (score {hit.score:.2f}). Each patch is "
            f"coloured by its best match with a question token (red: strongest), over a "
            f"{grid.shape[0]} x {grid.shape[1]} patch grid ({r} x {c} tiles).")
    return overlay_heatmap(image, grid), text


# --------------------------------------------------------------------------------------------------
# The Blocks
# --------------------------------------------------------------------------------------------------


def build_ui(
    service: Pagelens,
    jobs: JobStore,
    settings: Settings,
    worker: JobWorker | None = None,
    keys: ApiKeys | None = None,
) -> gr.Blocks:
    """The UI over ``service`` and the job table ``jobs``. ``keys`` defaults to ``settings.api_keys``."""
    if keys is None:
        keys = ApiKeys(settings.api_keys.get_secret_value() if settings.api_keys else None)
    ctx = UIContext(settings=settings, service=service, jobs=jobs, worker=worker, keys=keys)
    auth_on = keys.enabled
    default_k = settings.answer_top_k

    with gr.Blocks(title="pagelens", fill_width=True, analytics_enabled=False) as demo:
        principal = gr.State(None if auth_on else OPEN)
        session = gr.State({"jobs": [], "rejected": []})
        top_hits = gr.State([])

        with gr.Row(elem_classes="pl-header"):
            gr.HTML("<h1>pagelens</h1><p>Ask your documents; see the pages behind every answer.</p>",
                    padding=False)

        # -- key gate ------------------------------------------------------------------------------
        with gr.Column(visible=auth_on, elem_id="pl-gate") as gate:
            gr.Markdown("This server needs an **API key** (the same keys as the REST API).")
            with gr.Row(elem_classes="pl-bar-row"):
                key_box = gr.Textbox(label="API key", type="password", placeholder="your key",
                                     elem_id="pl-key", scale=4, min_width=200)
                sign_in = gr.Button("Sign in", variant="primary", scale=0, min_width=100, elem_id="pl-sign-in",
                                    elem_classes="pl-btn")
            gate_msg = gr.HTML("", elem_id="pl-gate-msg")

        # -- main ----------------------------------------------------------------------------------
        with gr.Column(visible=not auth_on, elem_id="pl-main") as main:
            with gr.Row(elem_classes="pl-bar-row"):
                coll_dd = gr.Dropdown(label="Collection", choices=[], value=None, scale=4, min_width=180,
                                      elem_id="pl-collection", allow_custom_value=False)
                refresh_btn = gr.Button("↻ Refresh", scale=0, min_width=90, size="md", elem_id="pl-refresh",
                                        elem_classes="pl-btn")
                sign_out = gr.Button("Sign out", scale=0, min_width=90, size="md", visible=auth_on,
                                     elem_id="pl-sign-out", elem_classes="pl-btn")
            coll_summary = gr.Markdown("", elem_classes="pl-note", elem_id="pl-coll-summary")

            with gr.Tabs(elem_id="pl-tabs"):
                # ---- Ask -------------------------------------------------------------------------
                with gr.Tab("Ask", id="ask", elem_id="pl-tab-ask"), gr.Row():
                    with gr.Column(scale=3, min_width=300):
                        question = gr.Textbox(label="Question", lines=2, max_lines=6,
                                              placeholder="e.g. What is the total amount due?",
                                              elem_id="pl-question")
                        with gr.Row(elem_classes="pl-bar-row"):
                            mode = gr.Radio([MODE_ANSWER, MODE_SEARCH], value=MODE_ANSWER, label="Mode",
                                            scale=2, min_width=200, elem_id="pl-mode")
                            retrieval = gr.Dropdown(RETRIEVAL_CHOICES, value=RETRIEVAL_DEFAULT, label="Retrieval",
                                                    scale=1, min_width=120, elem_id="pl-retrieval")
                            k_slider = gr.Slider(1, 16, value=default_k, step=1, label="Pages (k)",
                                                 scale=2, min_width=160, elem_id="pl-k")
                            ask_btn = gr.Button("Ask", variant="primary", scale=1, min_width=100,
                                                elem_id="pl-ask", elem_classes="pl-btn")
                        answer_md = gr.Markdown("", label="Answer", elem_id="pl-answer",
                                                container=True, min_height=60)
                        gallery = gr.Gallery(label="Cited pages (click to enlarge)", columns=3, height=340,
                                             object_fit="contain", allow_preview=True, preview=False,
                                             fit_columns=False, elem_id="pl-gallery", interactive=False,
                                             visible=False, buttons=["download", "fullscreen"])
                    with gr.Column(scale=2, min_width=280):
                        sim_img = gr.Image(label="Similarity map (top page)", type="pil", visible=False,
                                           interactive=False, elem_id="pl-sim", buttons=["fullscreen"])
                        sim_caption = gr.Markdown("Ask a question to see which parts of the top page "
                                                  "matched it.", elem_classes="pl-note", elem_id="pl-sim-caption")
                        page_text_md = gr.Markdown("", elem_id="pl-page-text", elem_classes="pl-note",
                                                   max_height=360, visible=False)

                # ---- Documents -------------------------------------------------------------------
                with gr.Tab("Documents", id="docs", elem_id="pl-tab-docs"):
                    with gr.Column(visible=True, elem_id="pl-upload-group") as upload_group:
                        files = gr.File(label="Drop PDFs or page images (PNG, JPEG, TIFF)", file_count="multiple",
                                        file_types=ACCEPTED_TYPES, type="filepath", elem_id="pl-files",
                                        height=140)
                        pdf_password = gr.Textbox(label="PDF password (optional, for encrypted PDFs of this upload)",
                                                  type="password", elem_id="pl-pdf-password", max_lines=1)
                        with gr.Row(elem_classes="pl-bar-row"):
                            upload_btn = gr.Button("Upload and index", variant="primary", min_width=190,
                                                   elem_id="pl-upload", scale=0)
                            upload_msg = gr.HTML("", elem_id="pl-upload-msg")
                    readonly_note = gr.Markdown("Read-only access: this key cannot upload or delete here.",
                                                visible=False, elem_classes="pl-note")
                    gr.Markdown("#### Uploads")
                    progress = gr.HTML(progress_html(ctx, None, {})[0], elem_id="pl-progress")
                    gr.Markdown("#### Documents")
                    docs_df = gr.HTML(docs_html([]), elem_id="pl-docs")
                    with gr.Row(visible=False, elem_id="pl-doc-delete", elem_classes="pl-bar-row") as doc_delete_group:
                        doc_pick = gr.Dropdown(label="Document", choices=[], value=None, scale=4, min_width=200,
                                               elem_id="pl-doc-pick")
                        doc_del_btn = gr.Button("Delete document…", variant="stop", scale=0, min_width=190,
                                                elem_id="pl-doc-delete-btn", elem_classes="pl-btn")
                    with gr.Row(visible=False, elem_id="pl-doc-confirm", elem_classes="pl-bar-row pl-confirm") as doc_confirm_row:
                        doc_confirm_md = gr.Markdown("")
                        doc_confirm_btn = gr.Button("Yes, delete it", variant="stop", scale=0, min_width=140,
                                                    elem_id="pl-doc-confirm-btn")
                        doc_cancel_btn = gr.Button("Cancel", scale=0, min_width=100, elem_id="pl-doc-cancel-btn")
                    docs_msg = gr.HTML("", elem_id="pl-docs-msg")

                # ---- Collections -----------------------------------------------------------------
                with gr.Tab("Collections", id="colls", elem_id="pl-tab-colls"):
                    with gr.Row(visible=_can_create(None if auth_on else OPEN), elem_classes="pl-bar-row",
                                elem_id="pl-create-group") as create_group:
                        new_name = gr.Textbox(label="New collection", placeholder="letters, digits, . _ -",
                                              max_length=64, scale=4, min_width=200, elem_id="pl-new-name")
                        create_btn = gr.Button("Create", variant="primary", scale=0, min_width=110,
                                               elem_id="pl-create", elem_classes="pl-btn")
                    coll_table = gr.Dataframe(headers=["Collection", "Documents", "Pages", "Access", "Model",
                                                       "Created (UTC)"], value=[], interactive=False,
                                              wrap=True, elem_id="pl-collections")
                    with gr.Row(visible=False, elem_id="pl-coll-delete") as coll_delete_group:
                        coll_del_btn = gr.Button("Delete the selected collection…", variant="stop", scale=0,
                                                 min_width=220, elem_id="pl-coll-delete-btn")
                    with gr.Row(visible=False, elem_id="pl-coll-confirm", elem_classes="pl-bar-row pl-confirm") as coll_confirm_row:
                        coll_confirm_md = gr.Markdown("")
                        coll_confirm_btn = gr.Button("Yes, delete it", variant="stop", scale=0, min_width=140,
                                                     elem_id="pl-coll-confirm-btn")
                        coll_cancel_btn = gr.Button("Cancel", scale=0, min_width=100, elem_id="pl-coll-cancel-btn")
                    coll_msg = gr.HTML("", elem_id="pl-coll-msg")

        timer = gr.Timer(TIMER_S, active=False)

        # -------------------------------------------------------------------------------------------
        # handlers
        # -------------------------------------------------------------------------------------------
        view_outputs = [coll_summary, docs_df, doc_pick, upload_group, readonly_note, doc_delete_group,
                        doc_confirm_row, progress, timer, coll_delete_group, coll_confirm_row]
        all_outputs = [coll_dd, coll_table, create_group, *view_outputs, upload_msg, docs_msg]

        def view(p: Principal | None, collection: str | None, sess: dict[str, Any]) -> list[Any]:
            readable = _can_read(p, collection)
            writable = _can_write(p, collection)
            summary = ""
            rows: list[list[Any]] = []
            choices: list[tuple[str, str]] = []
            if readable and collection:
                try:
                    info = ctx.service.collection_info(collection)
                    summary = (f"**{info.documents}** document(s), **{info.pages}** page(s) · model "
                               f"`{Path(info.model_id).name}`" + ("" if writable else " · read-only"))
                    rows, choices = documents_rows(ctx, collection)
                except PagelensError as exc:
                    summary = f"⚠ {exc}"
            elif p is not None and not visible_collections(ctx, p):
                summary = ("No collections yet: create one in the **Collections** tab." if _can_create(p)
                           else "This key can read no collection.")
            prog, active = progress_html(ctx, collection if readable else None, sess)
            return [
                summary,
                docs_html(rows) if readable else "",
                gr.update(choices=choices, value=choices[0][1] if choices else None),
                gr.update(visible=writable),
                gr.update(visible=readable and not writable),
                gr.update(visible=writable and bool(choices)),
                gr.update(visible=False),
                prog,
                gr.Timer(active=active),
                gr.update(visible=writable),
                gr.update(visible=False),
            ]

        def refresh_all(p: Principal | None, selected: str | None, sess: dict[str, Any]) -> list[Any]:
            names = visible_collections(ctx, p)
            value = selected if selected in names else (names[0] if names else None)
            return [
                gr.update(choices=names, value=value),
                gr.update(value=collections_rows(ctx, p)),
                gr.update(visible=_can_create(p)),
                *view(p, value, sess),
                "",
                "",
            ]

        def switch_collection(p: Principal | None, collection: str | None, sess: dict[str, Any]) -> list[Any]:
            return [*view(p, collection, sess), "", ""]

        def do_sign_in(key: str) -> tuple[Any, ...]:
            key = (key or "").strip()
            try:
                who = ctx.keys.authenticate(f"Bearer {key}") if key else None
            except PagelensError:
                who = None
            if who is None:
                time.sleep(0.5)  # slow down guessing a little
                return None, gr.update(), gr.update(visible=True), gr.update(visible=False), _msg(
                    "That key is not valid.", ok=False)
            return who, gr.update(value=""), gr.update(visible=False), gr.update(visible=True), ""

        def do_sign_out() -> tuple[Any, ...]:
            return None, gr.update(visible=True), gr.update(visible=False), "", {"jobs": [], "rejected": []}

        def do_create(p: Principal | None, name: str, current: str | None, sess: dict[str, Any]) -> tuple[Any, ...]:
            name = (name or "").strip()
            try:
                p = _require_principal(p)
                if not _COLLECTION_RE.match(name):
                    raise UIError("a collection name is 1-64 letters, digits, '.', '_' or '-', starting with a "
                                  "letter or digit")
                _check_write(p, name)
                ctx.service.create_collection(name)
            except Exception as exc:  # noqa: BLE001 - shown to the user
                return _msg(_err(exc), ok=False), gr.update(), *refresh_all(p, current, sess)
            return _msg(f"Created collection '{name}'."), "", *refresh_all(p, name, sess)

        def ask_delete_collection(p: Principal | None, collection: str | None) -> tuple[Any, ...]:
            if not _can_write(p, collection):
                return gr.update(visible=False), "", _msg("this key may not delete this collection", ok=False)
            info = ctx.service.collection_info(collection or "")
            return (gr.update(visible=True),
                    f"Delete collection **{collection}** with its {info.documents} document(s) and "
                    f"{info.pages} page(s)? This cannot be undone.", "")

        def do_delete_collection(p: Principal | None, collection: str | None, sess: dict[str, Any]) -> tuple[Any, ...]:
            try:
                p = _require_principal(p)
                collection = _require_collection(collection)
                _check_write(p, collection)
                active = ctx.jobs.active_for(collection)
                if active:
                    raise UIError(f"collection '{collection}' has {len(active)} unfinished upload job(s); "
                                  "wait for them to finish")
                ctx.service.delete_collection(collection)
            except Exception as exc:  # noqa: BLE001
                return _msg(_err(exc), ok=False), *refresh_all(p, collection, sess)
            return _msg(f"Deleted collection '{collection}'."), *refresh_all(p, None, sess)

        def do_upload(p: Principal | None, collection: str | None, paths: list[str] | None,
                      sess: dict[str, Any], password: str | None = None) -> tuple[Any, ...]:
            sess = {"jobs": list(sess.get("jobs", [])), "rejected": list(sess.get("rejected", []))}
            try:
                p = _require_principal(p)
                collection = _require_collection(collection)
                if not paths:
                    raise UIError("choose or drop some files first")
                job, rejected = enqueue_files(ctx, p, collection, list(paths), password or None)
            except Exception as exc:  # noqa: BLE001
                return gr.update(), _msg(_err(exc), ok=False), sess
            sess["rejected"].extend(rejected)
            if job is not None:
                sess["jobs"].append(job.id)
            parts = []
            if job is not None:
                parts.append(f"Queued {len(job.documents)} file(s) for indexing.")
            if rejected:
                parts.append(f"{len(rejected)} file(s) rejected (see below).")
            return None, _msg(" ".join(parts), ok=not rejected), sess

        def tick(p: Principal | None, collection: str | None, sess: dict[str, Any]) -> list[Any]:
            readable = _can_read(p, collection)
            prog, active = progress_html(ctx, collection if readable else None, sess)
            if not readable or not collection:
                return [prog, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.Timer(active=False)]
            try:
                rows, choices = documents_rows(ctx, collection)
                info = ctx.service.collection_info(collection)
                summary = (f"**{info.documents}** document(s), **{info.pages}** page(s) · model "
                           f"`{Path(info.model_id).name}`")
            except PagelensError:
                return [prog, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.Timer(active=False)]
            writable = _can_write(p, collection)
            return [prog, docs_html(rows), gr.update(choices=choices, value=choices[0][1] if choices else None),
                    gr.update(visible=writable and bool(choices)), summary, gr.Timer(active=active)]

        def ask_delete_document(p: Principal | None, collection: str | None, doc_id: str | None) -> tuple[Any, ...]:
            if not _can_write(p, collection) or not doc_id:
                return gr.update(visible=False), "", _msg("pick a document you may delete", ok=False)
            name = next((d.doc_name for d in ctx.service.documents(collection or "") if d.doc_id == doc_id), doc_id)
            return gr.update(visible=True), f"Delete **{name}** from **{collection}**?", ""

        def do_delete_document(p: Principal | None, collection: str | None, doc_id: str | None,
                               sess: dict[str, Any]) -> list[Any]:
            try:
                p = _require_principal(p)
                collection = _require_collection(collection)
                _check_write(p, collection)
                if not doc_id:
                    raise UIError("pick a document first")
                if doc_id in ctx.jobs.inflight_doc_ids(collection):
                    raise UIError("that document is being indexed right now; wait for its upload to finish")
                name = next((d.doc_name for d in ctx.service.documents(collection) if d.doc_id == doc_id), doc_id)
                pages = ctx.service.delete_document(collection, doc_id)
                msg = _msg(f"Deleted '{name}' ({pages} page(s)).")
            except Exception as exc:  # noqa: BLE001
                msg = _msg(_err(exc), ok=False)
            return [msg, *view(p, collection, sess)]

        def do_ask(p: Principal | None, collection: str | None, q: str, how: str, k: float,
                   retrieval_mode: str | None = RETRIEVAL_DEFAULT) -> Iterator[tuple[Any, ...]]:
            q = (q or "").strip()
            k = int(k or default_k)
            no_pages = gr.update(value=[], visible=False)
            no_sim = gr.update(value=None, visible=False)
            try:
                p = _require_principal(p)
                collection = _require_collection(collection)
                _check_read(p, collection)
                if not q:
                    raise UIError("type a question first")
                t0 = time.perf_counter()
                query_mode = None if retrieval_mode in (None, RETRIEVAL_DEFAULT) else retrieval_mode
                hits = search_visible(ctx, collection, q, k, query_mode, None)  # type: ignore[arg-type]
                search_s = time.perf_counter() - t0
            except EmptyCollectionError:
                yield ("This collection has no pages yet: upload documents in the **Documents** tab.", no_pages,
                       [], no_sim, "")
                return
            except Exception as exc:  # noqa: BLE001
                yield f"⚠ {_err(exc)}", no_pages, [], no_sim, ""
                return
            if not hits:
                yield "No pages found: is the collection empty, or still indexing?", no_pages, [], no_sim, ""
                return
            pages = [(page_copy(ctx, h.image_path), caption(h.doc_name, h.page_no, h.score)) for h in hits]
            page_list = [(img, cap) for img, cap in pages if img]
            pages_upd = gr.update(value=page_list, visible=True)
            sim_wait = "Computing the similarity map…"
            if how == MODE_SEARCH:
                yield (f"Top {len(hits)} page(s) in {search_s * 1000:.0f} ms (search only, no answer).",
                       pages_upd, hits[:1], no_sim, sim_wait)
                return
            yield "*Reading the pages…*", pages_upd, hits[:1], no_sim, "The similarity map follows the answer."
            text = ""
            try:
                for event in ctx.service.answerer.stream(q, hits, k=k, retrieve_s=search_s):
                    if event.kind == "token":
                        text += event.text
                        yield text + " ▍", gr.skip(), gr.skip(), gr.skip(), gr.skip()
                    elif event.kind == "done" and event.answer is not None:
                        answer = event.answer
                        copies = [(page_copy(ctx, c.image_path), caption(c.doc_name, c.page_no, c.score))
                                  for c in answer.citations]
                        cited = [(img, cap) for img, cap in copies if img] or page_list
                        t = answer.timings
                        foot = (f"\n\n<small>{len(answer.citations)} page(s) read · search "
                                f"{t.retrieve_s:.2f} s · first token {t.preprocess_s + t.prefill_s:.2f} s · "
                                f"total {t.total_s:.2f} s</small>")
                        body = answer.text.strip() or "*(the model gave an empty answer)*"
                        yield body + foot, gr.update(value=cited, visible=True), gr.skip(), gr.skip(), sim_wait
            except Exception as exc:  # noqa: BLE001
                yield (text + f"\n\n⚠ {_err(exc)}").strip(), gr.skip(), gr.skip(), gr.skip(), sim_wait

        def do_similarity(p: Principal | None, collection: str | None, q: str, hits: list[Any]) -> tuple[Any, str]:
            if not hits or not collection or not _can_read(p, collection):
                return gr.skip(), gr.skip()
            try:
                image, text = similarity_overlay(ctx, collection, (q or "").strip(), hits[0])
            except Exception as exc:  # noqa: BLE001
                return gr.update(value=None, visible=False), f"No similarity map: {_err(exc)}"
            return gr.update(value=image, visible=image is not None), text

        # -- wiring --------------------------------------------------------------------------------
        load_inputs = [principal, coll_dd, session]
        demo.load(refresh_all, load_inputs, all_outputs, show_progress="hidden", api_visibility="private")
        sign_in_ev = dict(fn=do_sign_in, inputs=[key_box], outputs=[principal, key_box, gate, main, gate_msg],
                          api_visibility="private")
        for trigger in (sign_in.click, key_box.submit):
            trigger(**sign_in_ev).then(refresh_all, load_inputs, all_outputs, api_visibility="private")  # type: ignore[arg-type]
        sign_out.click(do_sign_out, None, [principal, gate, main, gate_msg, session], api_visibility="private")
        refresh_btn.click(refresh_all, load_inputs, all_outputs, api_visibility="private")
        coll_dd.input(switch_collection, load_inputs, [*view_outputs, upload_msg, docs_msg], api_visibility="private")

        create_btn.click(do_create, [principal, new_name, coll_dd, session], [coll_msg, new_name, *all_outputs],
                         api_visibility="private")
        new_name.submit(do_create, [principal, new_name, coll_dd, session], [coll_msg, new_name, *all_outputs],
                        api_visibility="private")
        coll_del_btn.click(ask_delete_collection, [principal, coll_dd], [coll_confirm_row, coll_confirm_md, coll_msg],
                           api_visibility="private")
        coll_cancel_btn.click(lambda: gr.update(visible=False), None, [coll_confirm_row], api_visibility="private")
        coll_confirm_btn.click(do_delete_collection, [principal, coll_dd, session], [coll_msg, *all_outputs],
                               api_visibility="private")

        upload_btn.click(lambda: "", None, [docs_msg], api_visibility="private", queue=False)
        upload_btn.click(do_upload, [principal, coll_dd, files, session, pdf_password], [files, upload_msg, session],
                         api_visibility="private").then(view, load_inputs, view_outputs, api_visibility="private")
        timer.tick(tick, load_inputs, [progress, docs_df, doc_pick, doc_delete_group, coll_summary, timer],
                   show_progress="hidden", api_visibility="private")

        doc_del_btn.click(ask_delete_document, [principal, coll_dd, doc_pick],
                          [doc_confirm_row, doc_confirm_md, docs_msg], api_visibility="private")
        doc_cancel_btn.click(lambda: gr.update(visible=False), None, [doc_confirm_row], api_visibility="private")
        doc_confirm_btn.click(do_delete_document, [principal, coll_dd, doc_pick, session], [docs_msg, *view_outputs],
                              api_visibility="private")

        ask_inputs = [principal, coll_dd, question, mode, k_slider, retrieval]
        ask_outputs = [answer_md, gallery, top_hits, sim_img, sim_caption]
        for trigger in (ask_btn.click, question.submit):
            trigger(do_ask, ask_inputs, ask_outputs, api_visibility="private").then(  # type: ignore[operator]
                do_similarity, [principal, coll_dd, question, top_hits], [sim_img, sim_caption],
                api_visibility="private").then(
                lambda hits: gr.update(value=page_text_markdown(hits[0]) if hits else "", visible=bool(hits)),
                [top_hits], [page_text_md], api_visibility="private")
    return demo


# --------------------------------------------------------------------------------------------------
# Mounting and the standalone server
# --------------------------------------------------------------------------------------------------


def mount_ui(
    app: FastAPI,
    settings: Settings,
    service: Pagelens,
    jobs: JobStore | None = None,
    worker: JobWorker | None = None,
    keys: ApiKeys | None = None,
    path: str = UI_PATH,
) -> None:
    """Mount the UI at ``path`` on ``app``. Job table, worker and keys default to those ``create_app`` keeps
    on ``app.state.pagelens`` (so UI uploads are the API's jobs)."""
    state = getattr(app.state, "pagelens", None)
    jobs = jobs or getattr(state, "jobs", None) or JobStore(settings.data_dir)
    worker = worker or getattr(state, "worker", None)
    keys = keys or getattr(state, "keys", None)
    demo = build_ui(service, jobs, settings, worker=worker, keys=keys)
    demo.queue(default_concurrency_limit=4)
    gr.mount_gradio_app(
        app,
        demo,
        path=path,
        css=CSS,
        footer_links=[],
        run_history=False,
        max_file_size=min(settings.max_file_bytes, settings.max_upload_bytes),
        ssr_mode=False,
        show_error=False,
    )


def create_ui_app(settings: Settings, service: Pagelens | None = None) -> FastAPI:
    """A server with only the UI (at ``/ui``, ``/`` redirects there) and the index worker: ``pagelens ui``."""
    from fastapi import FastAPI
    from fastapi.responses import RedirectResponse

    from api.main import worker_lifespan
    from pagelens.jobs import JobWorker
    from pagelens.service import Pagelens

    owns_service = service is None
    service = service or Pagelens(settings)
    jobs = JobStore(settings.data_dir)
    worker = JobWorker(jobs, service, keep_uploads=settings.job_keep_uploads)

    lifespan = worker_lifespan(worker, service, owns_service)

    app = FastAPI(title="pagelens UI", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(UI_PATH + "/")

    mount_ui(app, settings, service, jobs, worker=worker)
    return app
