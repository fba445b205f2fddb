"""The web UI's views: pure functions of the service state and the job table to HTML and table rows
(the documents table, the uploads table with progress bars, the collections table, page captions), the
page-image copies the browser may fetch, the similarity overlay, and the stylesheet."""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pagelens.ui.originals import original_href
from pagelens.ui.state import UIContext
from pagelens.ui.status import document_status
from pagelens.ui.uploads_view import jobs_for_view, progress_html, upload_row  # noqa: F401  (re-exported)

from pagelens.app.access import Principal
from pagelens.core.errors import PagelensError

if TYPE_CHECKING:
    from pagelens.retrieve.types import SearchHit

log = logging.getLogger("pagelens.ui.app")

CSS = """
/* the live parts (uploads, documents, the summary) update every few seconds: no "0.1s" timers over them */
#pl-progress .progress-text, #pl-docs .progress-text, #pl-coll-summary .progress-text { display: none !important; }

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
.pl-confirm { flex-wrap: wrap !important; }
.pl-confirm .pl-confirm-text { flex: 1 1 16rem !important; min-width: 12rem !important; }
.prose table.pl-table, table.pl-table { width: 100%; border-collapse: collapse; font-size: 0.9rem; margin: 0; border: none !important; }
table.pl-table th, table.pl-table td { text-align: left; padding: 0.4rem 0.5rem; border: none !important; border-bottom: 1px solid var(--border-color-primary, #e5e7eb) !important; vertical-align: top; }
table.pl-table th { font-weight: 600; opacity: 0.8; background: var(--background-fill-secondary, #f9fafb); }
table.pl-table td.pl-file { word-break: break-word; }
.pl-mono { font-family: var(--font-mono, monospace); font-size: 0.8rem; }
.pl-bar { background: var(--neutral-200, #e5e7eb); border-radius: 4px; height: 0.55rem; min-width: 4rem; overflow: hidden; }
.pl-bar > span { display: block; height: 100%; background: var(--color-accent, #2563eb); }
.pl-status { font-weight: 600; white-space: nowrap; }
.pl-status-failed, .pl-status-rejected, .pl-status-partial { color: #b91c1c; }
.pl-status-indexed, .pl-status-updated, .pl-status-skipped, .pl-status-complete { color: #15803d; }
.pl-status-incomplete, .pl-status-cancelled { color: #b45309; }
.pl-err { color: #b91c1c; font-size: 0.85rem; margin-top: 0.2rem; word-break: break-word; }
.pl-empty { opacity: 0.7; font-size: 0.9rem; }
.pl-cites { margin: 0.4rem 0 0; padding: 0; list-style: none; font-size: 0.9rem; }
.pl-cite { padding: 0.25rem 0; border-bottom: 1px solid var(--border-color-primary, #e5e7eb); overflow-wrap: anywhere; }
.pl-cite-n { font-weight: 600; margin-right: 0.35rem; }
.pl-cite-doc { font-weight: 600; }
.pl-cite:target, .pl-cite.pl-cite-on { background: rgba(250, 204, 21, 0.25); }
a.pl-ref { font-weight: 600; text-decoration: none; }
#pl-gallery .caption-label { white-space: normal !important; overflow: visible !important; text-overflow: clip !important;
  max-width: calc(100% - 2 * var(--block-label-margin, 4px)) !important; overflow-wrap: anywhere; }
.pl-status-done { color: #15803d; }
.pl-status-queued, .pl-status-indexing, .pl-status-finishing { color: var(--color-accent, #2563eb); }
.pl-status-finishing { white-space: normal; }
.pl-rate, .pl-reason { font-size: 0.8rem; opacity: 0.8; margin-top: 0.15rem; }
.pl-scroll { overflow-x: auto; max-width: 100%; }
table.pl-uploads td.pl-file { min-width: 8.5rem; overflow-wrap: anywhere; word-break: normal; }
.pl-row-actions { margin-top: 0.3rem; }
#pl-upload-msg, #pl-docs-msg, #pl-coll-msg, #pl-first-msg { overflow-wrap: anywhere; min-width: 0; }
table.pl-uploads td.pl-status-finishing { min-width: 7rem; }
table.pl-table th { white-space: nowrap; }
button.pl-row-act { white-space: nowrap; font-size: 0.8rem; padding: 0.2rem 0.55rem; border-radius: 6px; cursor: pointer;
  border: 1px solid var(--border-color-primary, #d1d5db); background: var(--background-fill-primary, #fff); }
button.pl-row-cancel { color: #b91c1c; border-color: #fca5a5; }
.pl-hidden { display: none !important; }
#pl-first-run { border: 1px solid var(--color-accent, #2563eb); border-radius: 10px; padding: 0.75rem; }
#pl-coll-selected { font-weight: 600; }
a.pl-download { font-weight: 600; white-space: nowrap; }
.pl-no-original { opacity: 0.7; font-size: 0.85rem; white-space: nowrap; cursor: help; border-bottom: 1px dotted currentColor; }
/* the Collections table's selected row (ui/tabs/collections.py COLL_SELECT_JS marks it), and only it */
#pl-collections .pl-row-selected [role=gridcell] {
  background: rgba(37, 99, 235, 0.14) !important; box-shadow: inset 0 2px 0 rgba(37, 99, 235, 0.55), inset 0 -2px 0 rgba(37, 99, 235, 0.55); font-weight: 600; }
#pl-collections th, #pl-collections th * { white-space: nowrap !important; word-break: normal !important; }
#pl-collections .table-wrap, #pl-collections .table-container { overflow-x: auto !important; }
#pl-files .file-preview-holder, #pl-first-files .file-preview-holder { max-height: none !important; overflow: visible !important; }
@media (max-width: 640px) {
  table.pl-table th.pl-hide-sm, table.pl-table td.pl-hide-sm { display: none; }
  .pl-header h1 { font-size: 1.25rem; }
}
"""



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


def collections_mark(rows: list[list[Any]]) -> str:
    """What the collections table shows, one ``name|documents|pages`` line per row: the idle poll redraws
    when it changes (``Screen.on_poll``)."""
    return "\n".join(f"{r[0]}|{r[1]}|{r[2]}" for r in rows)


SCOPE_MAX = 500  # documents offered in the Ask tab's "Only these documents" picker


def scope_choices(ctx: UIContext, collection: str) -> list[tuple[str, str]]:
    """The Ask tab's "Only these documents" choices: (name, id) of the collection's first ``SCOPE_MAX``
    documents by name (documents of the same name told apart by ``distinct_labels``, never by their id)."""
    docs = ctx.service.documents(collection, limit=SCOPE_MAX)
    return distinct_labels([(d.doc_name, d.doc_id) for d in docs], {d.doc_id: d.indexed_at for d in docs})


DOCS_PAGE = 50  # documents per page of the Documents table (the registry reads one page: O(page))


SORTS = {"name": "Name (A-Z)", "pages": "Most pages", "newest": "Newest first"}
ORDER_WORDS = {"name": "by name", "pages": "most pages first", "newest": "newest first"}


def documents_rows(ctx: UIContext, collection: str, offset: int = 0, limit: int = DOCS_PAGE,
                   inflight: set[str] | None = None, name_filter: str = "",
                   sort: str = "name") -> tuple[list[list[Any]], list[tuple[str, str]], int | None]:
    """One page of the documents table (rows: name, pages, status, indexed at, id, and the link to the kept
    original file or "" when none is kept: ``ui/originals.py``), the delete picker's
    choices (that page's documents that no job is indexing) and, when filtered or sorted otherwise than by
    name, the number of matching documents (None: all of the collection's, ``document_count``).
    ``name_filter``: only names containing it (case-insensitive); ``sort``: a key of ``SORTS``. By name
    without a filter the registry reads one page (O(page)); otherwise the whole listing is read, filtered
    and sorted here. ``inflight``: the documents a job is indexing, when the caller has read them already."""
    inflight = ctx.jobs.inflight_doc_ids(collection) if inflight is None else inflight
    needle = (name_filter or "").strip().casefold()
    matched: int | None = None
    if needle or sort != "name":
        docs = [d for d in ctx.service.documents(collection) if needle in d.doc_name.casefold()]
        if sort == "pages":
            docs.sort(key=lambda d: (-d.page_count, d.doc_name))
        elif sort == "newest":
            docs.sort(key=lambda d: d.indexed_at, reverse=True)
        matched = len(docs)
        docs = docs[max(0, offset):max(0, offset) + limit]
    else:
        docs = ctx.service.documents(collection, offset=max(0, offset), limit=limit)
    rows: list[list[Any]] = []
    choices: list[tuple[str, str]] = []
    for doc in docs:
        status = document_status(doc.status, doc.doc_id in inflight)
        pages = f"{doc.pages_indexed}/{doc.page_count}" if doc.pages_indexed != doc.page_count else str(
            doc.page_count)
        kept = bool(doc.sha256) and ctx.service.originals.find(doc.sha256) is not None
        rows.append([doc.doc_name, pages, status, doc.indexed_at.replace("T", " ")[:19], doc.doc_id,
                     original_href(collection, doc.doc_id) if kept else ""])
        if doc.doc_id not in inflight:
            choices.append((f"{doc.doc_name} ({doc.page_count} p.)", doc.doc_id))
    return rows, distinct_labels(choices, {d.doc_id: d.indexed_at for d in docs}), matched


def distinct_labels(choices: list[tuple[str, str]], indexed_at: dict[str, str]) -> list[tuple[str, str]]:
    """The picker's (label, doc_id) choices with documents of the same label told apart by when they were
    indexed (``· indexed 2026-12-06 10:00``), then by a counter: never by their raw id."""
    from collections import Counter

    seen = Counter(label for label, _ in choices)
    out: list[tuple[str, str]] = []
    for label, doc_id in choices:
        if seen[label] > 1:
            when = indexed_at.get(doc_id, "").replace("T", " ")[:16]
            label = f"{label} · indexed {when}" if when else label
        out.append((label, doc_id))
    again = Counter(label for label, _ in out)
    numbered: Counter[str] = Counter()
    final = []
    for label, doc_id in out:
        if again[label] > 1:
            numbered[label] += 1
            label = f"{label} ({numbered[label]} of {again[label]})"
        final.append((label, doc_id))
    return final


def ask_button(pages: int, uploads_active: bool) -> Any:
    """The Ask button's update: live when the collection has pages to search, or an upload is queued or
    running (the answer then says which document is still indexing and how far); on a collection with
    neither, nothing could be found, so it is not live (the summary line points to the upload)."""
    import gradio as gr

    return gr.update(interactive=pages > 0 or uploads_active)


def last_page_offset(total: int) -> int:
    """The offset of the documents table's last page for ``total`` documents (0 when there are none)."""
    return max(0, (total - 1) // DOCS_PAGE * DOCS_PAGE)


def pager_updates(offset: int, total: int) -> list[Any]:
    """(pager row, Previous, Next) updates for the documents table at ``offset`` of ``total`` documents."""
    import gradio as gr

    return [gr.update(visible=total > DOCS_PAGE), gr.update(interactive=offset > 0),
            gr.update(interactive=offset + DOCS_PAGE < total)]


NO_ORIGINAL = ("No original file is kept for this document (indexed before this server kept originals, or with "
               "PAGELENS_KEEP_ORIGINALS off): upload the file again to make it downloadable.")


def docs_html(rows: list[list[Any]], offset: int = 0, total: int | None = None, filtered: bool = False,
              sort: str = "name") -> str:
    """The documents table (name, pages, status, indexed at, the original file's download link; the date
    hidden on phones). The document id is never shown, only in the name's tooltip. Rows are
    ``documents_rows``'s (a sixth item, the link to the original, "" when none is kept: the cell says so
    and its tooltip how to get one). With ``total`` above the rows shown, a line says which of them these
    are (``offset`` + 1 to ...); ``filtered``: the rows are those matching the name filter (none: it says
    so); ``sort``: their order (a key of ``SORTS``)."""
    if not rows:
        return ('<p class="pl-empty">No document name matches the filter.</p>' if filtered
                else '<p class="pl-empty">No documents in this collection.</p>')

    def original_cell(name: str, href: str) -> str:
        if href:
            return (f'<a class="pl-download" href="{html.escape(href)}" download '
                    f'title="Download the original file of {html.escape(name)}" '
                    f'aria-label="Download the original file of {html.escape(name)}">Download</a>')
        return f'<span class="pl-no-original" title="{html.escape(NO_ORIGINAL)}">not kept</span>'

    body = "".join(
        f'<tr class="pl-doc pl-doc-{html.escape(str(status))}">'
        f'<td class="pl-file" title="Document ID: {html.escape(str(doc_id))}">{html.escape(str(name))}</td>'
        f"<td>{html.escape(str(pages))}</td>"
        f'<td class="pl-status pl-status-{html.escape(str(status))}">{html.escape(str(status))}</td>'
        f'<td class="pl-hide-sm">{html.escape(str(when))}</td>'
        f'<td class="pl-original">{original_cell(str(name), str(rest[0]) if rest else "")}</td></tr>'
        for name, pages, status, when, doc_id, *rest in rows
    )
    shown = ""
    if total is not None and total > len(rows):
        which = "Matching documents" if filtered else "Documents"
        shown = (f'<p class="pl-note" id="pl-docs-range">{which} {offset + 1:,}–{offset + len(rows):,} of '
                 f"{total:,}, {ORDER_WORDS.get(sort, 'by name')}</p>")
    return (shown + '<table class="pl-table" id="pl-docs-table"><thead><tr><th>Document</th><th>Pages</th>'
            '<th>Status</th><th class="pl-hide-sm">Indexed (UTC)</th><th>Original</th></tr>'
            f"</thead><tbody>{body}</tbody></table>")


def page_copy(ctx: UIContext, image_path: str | None, collection: str | None = None) -> str | None:
    """A copy (hard link when possible) of a stored page image in the UI's private cache, which Gradio may
    serve to signed-in users (the data dir is never exposed); its name is an HMAC of the source path. The
    copy is recorded as a page of ``collection`` (``UIContext.page_owners``): the UI serves it only to a
    principal that may read one of its collections (``ui/cache.py`` ``PageAccess``)."""
    if not image_path:
        return None
    src = Path(image_path)
    if not src.is_file():
        return None
    digest = hmac.new(ctx.secret, str(src.resolve()).encode(), hashlib.sha256).hexdigest()[:32]

    def link_or_copy(tmp: Path) -> None:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)

    return _cached_copy(ctx, ctx.image_cache / digest[:2] / f"{digest}.png", link_or_copy, collection)


def _cached_copy(ctx: UIContext, target: Path, write: Callable[[Path], object], collection: str | None) -> str:
    """``target`` in the UI's page-copy folder, written once (``write(tmp)``, then renamed into place) and
    recorded as a page of ``collection`` (``UIContext.own_page``) so ``ui/cache.PageAccess`` serves it only
    to a principal that may read that collection. Returns its path."""
    if not target.exists():
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        write(tmp)
        os.replace(tmp, target)
    if collection:
        ctx.own_page(str(target), collection)
    return str(target)


PAGE_TEXT_CHARS = 6000  # characters of a page's text shown beside its image
TEXT_SOURCES = {"pdf": "the PDF's text layer", "ocr": "OCR (Tesseract)", "none": "none: no text layer and no OCR"}


SHOWN_LANGUAGE_CONFIDENCE = 0.9  # the detector's confidence a page's language needs to be named in the viewer


def shown_language(stored: str | None, text: str | None) -> str:
    """The page's language as the viewer names it: the stored one only when the page's text confirms it
    with confidence (``SHOWN_LANGUAGE_CONFIDENCE``, ``text_analysis.detect_language``), else "" (not named:
    a short or mixed page's guess, like "vo" for an English invoice, says nothing useful)."""
    if not stored or stored == "und" or not (text or "").strip():
        return ""
    from pagelens.index.stores.text_analysis import detect_language

    code, confidence = detect_language(text)
    return stored if code == stored and confidence >= SHOWN_LANGUAGE_CONFIDENCE else ""


def page_text_markdown(hit: SearchHit) -> str:
    """Markdown of a page's extracted text and where it came from (text layer or OCR) and its detected
    language, shown beside the top page's image; the text is HTML-escaped in a <pre> block."""
    source = hit.text_source or ("pdf" if (hit.text or "").strip() else "none")
    language = shown_language(hit.language, hit.text)
    head = (f"**Text of {html.escape(hit.doc_name)}, page {hit.page_no}** · source: "
            f"{TEXT_SOURCES.get(source, source)}" + (f" · language: `{html.escape(language)}`" if language else ""))
    text = (hit.text or "").strip()
    if not text:
        return head + ("\n\nThis page has no text: it is found by its image only. Install Tesseract "
                       "(scripts/install-system-deps.sh) and re-index to read scans." if source == "none" else "")
    more = (f"\n\n<small>first {PAGE_TEXT_CHARS} of {len(text)} characters</small>"
            if len(text) > PAGE_TEXT_CHARS else "")
    return f'{head}\n\n<pre class="pl-page-text">{html.escape(text[:PAGE_TEXT_CHARS])}</pre>{more}'


# what ranked a page, in words (the raw score's kind: a fused score such as "rrf 0.03" means nothing to a reader)
MATCH_LABELS = {"maxsim": "matched by its image", "bm25": "matched by its words",
                "rrf": "matched by its words and image", "dbsf": "matched by its words and image"}
SCORE_NAMES = {"maxsim": "MaxSim (image late-interaction) score", "bm25": "BM25 (word) score",
               "rrf": "reciprocal-rank fusion score", "dbsf": "distribution-based fusion score"}


def match_label(kind: str) -> str:
    """Words for what ranked a page (``MATCH_LABELS``; "matched" for a kind without words)."""
    return MATCH_LABELS.get(kind, "matched")


def score_details(kind: str, score: float) -> str:
    """The raw score for a details view or tooltip: ``<what it is> <score>`` (e.g. ``reciprocal-rank fusion
    score 0.0328 (rrf)``)."""
    return f"{SCORE_NAMES.get(kind, 'score')} {score:.4g} ({kind})"


def caption(doc_name: str, page_no: int, score: float, number: int | None = None, kind: str = "maxsim") -> str:
    """A page's caption: ``[n] <document> — page <N> (<what matched>)``, ``[n]`` when the page is citation n;
    what ranked the page in words (``match_label``), never the raw score (``score_details`` gives it)."""
    head = f"[{number}] " if number is not None else ""
    return f"{head}{doc_name} — page {page_no} ({match_label(kind)})"


def citations_html(pages: list[tuple[str, int]], prefix: str = "pl-cite", refs: list[str] | None = None) -> str:
    """The numbered citations, ``[n] <document> — page <N>`` in full (wrapping, never cut), one per page
    in the order the pages were shown (citation n is ``pages[n-1]``: (document name, 1-based page)); each
    item is the target ``#<prefix>-<n>`` of the answer's ``[n]`` links. With ``refs`` (one per page), item n
    opens the page viewer on ``refs[n-1]`` when clicked (``data-ref``, ``ui/tabs/ask.py``)."""
    if not pages:
        return ""
    items = "".join(
        f'<li class="pl-cite" id="{prefix}-{n}"'
        + (f' data-ref="{html.escape(refs[n - 1])}" role="button" tabindex="0" title="Open this page"'
           if refs and n <= len(refs) else "")
        + f'><span class="pl-cite-n">[{n}]</span>'
        f'<span class="pl-cite-doc">{html.escape(name)}</span> — page {int(page_no)}</li>'
        for n, (name, page_no) in enumerate(pages, start=1)
    )
    return f'<ol class="pl-cites" aria-label="Citations">{items}</ol>'


_MARKER = re.compile(r"\[(\d{1,3})\]")


def link_citation_markers(text: str, count: int, prefix: str = "pl-cite") -> str:
    """The answer (Markdown) with each ``[n]`` marker (1 <= n <= ``count``) a link to citation n
    (``#<prefix>-<n>``); when the
    text has none, a ``Sources: [1] [2] ...`` line is added, so every answer ties to its numbered pages.
    Other bracketed numbers stay as they are."""
    if count <= 0:
        return text

    def link(m: re.Match[str]) -> str:
        n = int(m.group(1))
        return f'<a class="pl-ref" href="#{prefix}-{n}">[{n}]</a>' if 1 <= n <= count else m.group(0)

    linked, found = _MARKER.subn(link, text)
    if found and linked != text:
        return linked
    refs = " ".join(f'<a class="pl-ref" href="#{prefix}-{n}">[{n}]</a>' for n in range(1, count + 1))
    return f"{text}\n\nSources: {refs}"


def similarity_overlay(ctx: UIContext, collection: str, question: str, hit: SearchHit) -> tuple[str | None, str]:
    """(path of the overlay image or None, caption) for one hit of ``collection``: per-patch max similarity
    of the query tokens. The image is a page copy of ``collection`` (``owned_image``): the UI serves it only
    to a principal that may read that collection, like the page images (``ui/cache.PageAccess``)."""
    from pagelens.ui.similarity import overlay_heatmap, page_layout, query_token_mask, similarity_grid
    from PIL import Image

    if not hit.image_path or not Path(hit.image_path).is_file():
        return None, "The page image is not stored on this server, so no similarity map."
    embedder = ctx.service.embedder
    processor = getattr(embedder, "processor", None)
    if processor is None or not hasattr(processor, "process_images"):
        return None, "This retriever exposes no processor: similarity maps are not available."
    family = getattr(embedder, "family", None)  # pagelens.models.families: the maps need a tile layout
    if family is not None and not getattr(family, "tiled", True):
        return None, (f"Similarity maps are drawn for tiled retrievers (ColIdefics3, ColModernVBert); this "
                      f"retriever is {family.name}.")
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
    text = (f"**{html.escape(hit.doc_name)} — page {hit.page_no}** ({match_label(hit.score_kind)}). Each patch is "
            f"coloured by its best match with a question token (red: strongest), over a "
            f"{grid.shape[0]} x {grid.shape[1]} patch grid ({r} x {c} tiles).\n\n"
            f"<details><summary>Score</summary>{html.escape(score_details(hit.score_kind, hit.score))}</details>")
    return owned_image(ctx, overlay_heatmap(image, grid), collection), text


SIMILARITY_DIR = "sim"  # similarity maps, inside the page-copy folder (checked by ui/cache.PageAccess)


def owned_image(ctx: UIContext, image: Any, collection: str) -> str:
    """Save ``image`` (PIL) as a PNG in the UI's page-copy folder (``<cache>/pages/sim/<hmac>.png``) and record
    it as shown from ``collection`` (``UIContext.own_page``): ``ui/cache.PageAccess`` then serves it only to a
    principal that may read ``collection``. Returns its path (what a ``gr.Image`` takes as it is)."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=3)
    data = buffer.getvalue()
    digest = hmac.new(ctx.secret, data, hashlib.sha256).hexdigest()[:32]
    return _cached_copy(ctx, ctx.image_cache / SIMILARITY_DIR / f"{digest}.png", lambda tmp: tmp.write_bytes(data),
                        collection)

