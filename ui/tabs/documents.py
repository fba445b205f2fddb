"""The Documents tab: upload files (one persistent index job per upload), follow their progress (pages/s,
time left, the finishing phase; the finished files collapsed under "N finished"), cancel an upload, retry a
password-protected PDF, upload a cancelled file again or dismiss a refused one from its row, see and delete
the documents of the collection. The handlers are module-level functions over the app state (``upload``,
``delete_document_question``, ``delete_document``, ``apply_row_action``, ``retry``, ``uploads_updates``);
``DocumentsTab.wire`` maps them to components."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gradio as gr
from pagelens.ui.actions import (
    ACCEPTED_TYPES,
    cancel_job,
    dismiss_rejected,
    enqueue_files,
    record_upload,
    retry_with_password,
    upload_again,
)
from pagelens.ui.render import (
    DOCS_PAGE,
    SORTS,
    ask_button,
    docs_html,
    documents_rows,
    last_page_offset,
    pager_updates,
)
from pagelens.ui.state import (
    UIContext,
    UIError,
    UIShell,
    can_read,
    can_write,
    check_write,
    err,
    msg,
    require_collection,
    require_principal,
)
from pagelens.ui.status import collection_summary
from pagelens.ui.uploads_view import finished_label, parse_row_action, uploads_view

from pagelens.core.errors import PagelensError

if TYPE_CHECKING:
    from pagelens.ui.screen import Screen

    from pagelens.app.access import Principal


@dataclass
class DocumentsTab:
    """The Documents tab's components."""

    upload_group: gr.Column
    files: gr.File
    pdf_password: gr.Textbox
    upload_btn: gr.Button
    upload_msg: gr.HTML
    readonly_note: gr.Markdown
    progress: gr.HTML
    docs_df: gr.HTML
    doc_delete_group: gr.Row
    doc_pick: gr.Dropdown
    doc_del_btn: gr.Button
    doc_confirm_row: gr.Row
    doc_confirm_md: gr.Markdown
    doc_confirm_btn: gr.Button
    doc_cancel_btn: gr.Button
    docs_msg: gr.HTML
    # the row-action bridge (``pagelens.ui.uploads_view.ROW_ACTIONS_JS``) and the Retry-with-password form
    row_action: gr.Textbox
    row_action_btn: gr.Button
    retry_group: gr.Column
    retry_md: gr.Markdown
    retry_password: gr.Textbox
    retry_btn: gr.Button
    retry_cancel_btn: gr.Button
    retry_target: gr.State
    # the documents table's pages (``pagelens.ui.render.DOCS_PAGE`` each) and what the poll last drew
    docs_pager: gr.Row
    docs_prev: gr.Button
    docs_next: gr.Button
    docs_offset: gr.State
    docs_seen: gr.State
    # the table's name filter and order (``render.SORTS``)
    docs_filter: gr.Textbox
    docs_sort: gr.Dropdown
    # the finished uploads, collapsed under "N finished" (``uploads_view.UploadsView.finished``)
    done_group: gr.Accordion
    done_html: gr.HTML

    def wire(self, shell: UIShell, screen: Screen) -> None:
        """Connect upload, the progress timer and document deletion."""
        ctx = shell.ctx
        who = shell.who

        def do_upload(collection: str | None, paths: list[str] | None, sess: dict[str, Any],
                      password: str | None, request: gr.Request) -> tuple[Any, ...]:
            try:
                text, ok, sess = upload(ctx, who(request), collection, paths, password, sess)
            except Exception as exc:  # noqa: BLE001
                return gr.update(), msg(err(exc), ok=False), sess, gr.update()
            return None, msg(text, ok=ok), sess, ""  # the password is not kept in the page

        def tick(collection: str | None, sess: dict[str, Any], picked: str | None, offset: int | None,
                 seen: str | None, name_filter: str | None, sort: str | None, request: gr.Request) -> list[Any]:
            """The uploads, documents and summary of ``collection`` now (the progress timer while a job
            runs, the idle poll otherwise: documents added by any door appear without Refresh); keeps the
            document picked for deletion while it is still there. The documents part is redrawn only when
            the collection's listing changed since this tab last drew it (``listing_version``: one SQLite
            pragma) or a document started or stopped indexing, so an idle tab costs no listing."""
            p = who(request)
            readable = can_read(p, collection)
            writable = can_write(p, collection)
            prog, active, *done = uploads_updates(ctx, p, collection if readable else None)

            def documents_unchanged(timer_on: bool) -> list[Any]:
                """The uploads now, everything else as drawn (the timer on while a job runs)."""
                skip = gr.skip()
                return [prog, skip, skip, skip, skip, gr.Timer(active=timer_on), skip, skip, skip, skip, skip, skip,
                        *done]

            if not readable or not collection:
                return documents_unchanged(False)
            page = documents_page(ctx, collection, writable, active, offset, seen, name_filter, sort)
            if page is None:
                return documents_unchanged(False)
            if page.unchanged:
                return documents_unchanged(active)
            return [prog, page.html(), gr.update(choices=page.choices, value=page.picked(picked)),
                    gr.update(visible=writable and bool(page.choices)), page.summary, gr.Timer(active=active),
                    *pager_updates(page.offset, page.total), page.offset, page.mark, ask_button(page.pages, active),
                    *done]

        def turn_page(collection: str | None, offset: int | None, step: int, picked: str | None,
                      name_filter: str | None, sort: str | None, request: gr.Request) -> list[Any]:
            """Previous / Next: the documents table ``step`` pages on (clamped), drawn now."""
            p = who(request)
            if not can_read(p, collection) or not collection:
                return [gr.skip()] * 7
            try:
                page = turned_page(ctx, collection, offset, step, name_filter, sort)
            except PagelensError as exc:
                return [msg(err(exc), ok=False), *[gr.skip()] * 6]
            return [page.html(), gr.update(choices=page.choices, value=page.picked(picked)),
                    *pager_updates(page.offset, page.total), page.offset, ""]

        def ask_delete_document(collection: str | None, doc_id: str | None, request: gr.Request) -> tuple[Any, ...]:
            try:
                question = delete_document_question(ctx, who(request), collection, doc_id)
            except Exception as exc:  # noqa: BLE001
                return gr.update(visible=False), "", msg(err(exc), ok=False)
            return gr.update(visible=True), question, ""

        def do_delete_document(collection: str | None, doc_id: str | None, sess: dict[str, Any],
                               request: gr.Request) -> list[Any]:
            p = who(request)
            try:
                text = msg(delete_document(ctx, p, collection, doc_id))
            except Exception as exc:  # noqa: BLE001
                text = msg(err(exc), ok=False)
            return [text, *screen.view(p, collection, sess)]

        def row_action(collection: str | None, raw: str | None, sess: dict[str, Any],
                       request: gr.Request) -> list[Any]:
            """A row's button: Cancel (the upload stops; same rule as the API: write access) or Retry with
            password (opens the password form naming the file)."""
            hide = gr.update(visible=False)
            p = who(request)
            try:
                result = apply_row_action(ctx, p, raw)
            except Exception as exc:  # noqa: BLE001
                return [msg(err(exc), ok=False), gr.update(), gr.update(), hide, "", None]
            if result is None:
                return [gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), gr.update()]
            text, target = result
            if target is None:  # cancelled, queued again or dismissed: the table now (the timer redraws the rest
                # while a job is active; a dismissal alone starts no timer, hence no "indexing finished" notice)
                prog, active, *_ = uploads_updates(ctx, p, collection if can_read(p, collection) else None)
                return [msg(text), prog, gr.Timer(active=active), hide, "", None]
            return ["", gr.update(), gr.update(), gr.update(visible=True), text, target]

        def do_retry(collection: str | None, target: dict[str, Any] | None, password: str | None,
                     sess: dict[str, Any], request: gr.Request) -> list[Any]:
            p = who(request)
            try:
                sess = retry(ctx, p, target, password, sess)
            except Exception as exc:  # noqa: BLE001
                return [msg(err(exc), ok=False), gr.update(), gr.update(), gr.update(), gr.update(), target, gr.update()]
            assert target is not None  # noqa: S101 - retry refuses a missing target
            prog = uploads_updates(ctx, p, collection if can_read(p, collection) else None)[0]
            return [msg(f"Retrying '{target['name']}' with the password."), prog, gr.Timer(active=True),
                    gr.update(visible=False), "", None, sess]

        retry_outputs = [self.upload_msg, self.progress, shell.timer, self.retry_group, self.retry_md,
                         self.retry_target]
        self.row_action_btn.click(row_action, [shell.coll_dd, self.row_action, shell.session], retry_outputs,
                                  show_progress="hidden", api_visibility="private")
        self.retry_btn.click(do_retry, [shell.coll_dd, self.retry_target, self.retry_password, shell.session],
                             [*retry_outputs[:5], self.retry_target, shell.session], show_progress="minimal",
                             api_visibility="private").then(lambda: "", None, [self.retry_password],
                                                            api_visibility="private", queue=False)
        self.retry_password.submit(do_retry, [shell.coll_dd, self.retry_target, self.retry_password, shell.session],
                                   [*retry_outputs[:5], self.retry_target, shell.session],
                                   api_visibility="private").then(lambda: "", None, [self.retry_password],
                                                                  api_visibility="private", queue=False)
        self.retry_cancel_btn.click(lambda: (gr.update(visible=False), "", None), None,
                                    [self.retry_group, self.retry_password, self.retry_target],
                                    api_visibility="private", queue=False)

        load_inputs = [shell.coll_dd, shell.session]
        self.upload_btn.click(lambda: "", None, [self.docs_msg], api_visibility="private", queue=False)
        self.upload_btn.click(do_upload, [shell.coll_dd, self.files, shell.session, self.pdf_password],
                              [self.files, self.upload_msg, shell.session, self.pdf_password],
                              # hidden: a chain's first event's progress shows on its follow-up's outputs
                              # (the tables) while that runs; the upload's own row says what happens
                              show_progress="hidden", api_visibility="private").then(
            screen.on_view, load_inputs, screen.view_outputs, show_progress="hidden", api_visibility="private")
        tick_outputs = [self.progress, self.docs_df, self.doc_pick, self.doc_delete_group, shell.coll_summary,
                        shell.timer, self.docs_pager, self.docs_prev, self.docs_next, self.docs_offset, self.docs_seen,
                        screen.ask.ask_btn, self.done_group, self.done_html]
        def tick_progress(collection: str | None, sess: dict[str, Any], picked: str | None, offset: int | None,
                          seen: str | None, name_filter: str | None, sort: str | None,
                          request: gr.Request) -> list[Any]:
            """The progress timer's tick (it runs only while an upload runs): when it stops, the uploads are
            done, and a notice says so (whatever tab is open)."""
            out = tick(collection, sess, picked, offset, seen, name_filter, sort, request)
            if not getattr(out[5], "active", True) and can_read(who(request), collection):
                gr.Info(finished_notice(collection or ""))
            return out

        tick_inputs = [*load_inputs, self.doc_pick, self.docs_offset, self.docs_seen, self.docs_filter, self.docs_sort]
        shell.timer.tick(tick_progress, tick_inputs, tick_outputs, show_progress="hidden", api_visibility="private")
        if shell.poll is not None:
            shell.poll.tick(tick, tick_inputs, tick_outputs, show_progress="hidden", api_visibility="private")
        page_outputs = [self.docs_df, self.doc_pick, self.docs_pager, self.docs_prev, self.docs_next,
                        self.docs_offset, self.docs_seen]
        def page_prev(collection: str | None, offset: int | None, picked: str | None, name_filter: str | None,
                      sort: str | None, request: gr.Request) -> list[Any]:
            return turn_page(collection, offset, -1, picked, name_filter, sort, request)

        def page_next(collection: str | None, offset: int | None, picked: str | None, name_filter: str | None,
                      sort: str | None, request: gr.Request) -> list[Any]:
            return turn_page(collection, offset, 1, picked, name_filter, sort, request)

        def page_first(collection: str | None, picked: str | None, name_filter: str | None, sort: str | None,
                       request: gr.Request) -> list[Any]:
            """A new filter or order: its first page, drawn now."""
            return turn_page(collection, 0, 0, picked, name_filter, sort, request)

        page_inputs = [shell.coll_dd, self.docs_offset, self.doc_pick, self.docs_filter, self.docs_sort]
        self.docs_prev.click(page_prev, page_inputs, page_outputs, show_progress="hidden", api_visibility="private")
        self.docs_next.click(page_next, page_inputs, page_outputs, show_progress="hidden", api_visibility="private")
        for control in (self.docs_filter.input, self.docs_sort.input):
            control(page_first, [shell.coll_dd, self.doc_pick, self.docs_filter, self.docs_sort], page_outputs,
                    show_progress="hidden", api_visibility="private", trigger_mode="always_last")

        self.doc_del_btn.click(ask_delete_document, [shell.coll_dd, self.doc_pick],
                               [self.doc_confirm_row, self.doc_confirm_md, self.docs_msg], api_visibility="private")
        self.doc_cancel_btn.click(lambda: gr.update(visible=False), None, [self.doc_confirm_row],
                                  api_visibility="private")
        self.doc_confirm_btn.click(do_delete_document, [shell.coll_dd, self.doc_pick, shell.session],
                                   [self.docs_msg, *screen.view_outputs], show_progress="minimal",
                                   api_visibility="private")


# --------------------------------------------------------------------------------------------------
# The handlers: plain functions over the app state (tests/test_ui_handlers.py)
# --------------------------------------------------------------------------------------------------


@dataclass
class DocumentsPage:
    """One page of the Documents table as a handler draws it: its rows and the delete picker's choices
    (``render.documents_rows``), where it starts (``offset``), how many documents match (``total``), the
    collection's summary line and page count, and ``mark``, what the idle poll compares with to skip an
    unchanged redraw (``unchanged``: it was the same as the caller's)."""

    rows: list[list[Any]] = field(default_factory=list)
    choices: list[tuple[str, str]] = field(default_factory=list)
    offset: int = 0
    total: int = 0
    filtered: bool = False
    sort: str = "name"
    summary: str = ""
    pages: int = 0
    mark: str = ""
    unchanged: bool = False

    def html(self) -> str:
        return docs_html(self.rows, self.offset, self.total, filtered=self.filtered, sort=self.sort)

    def picked(self, picked: str | None) -> str | None:
        """The document to keep selected in the delete picker: ``picked`` while this page still offers
        it, else the page's first."""
        ids = [doc_id for _, doc_id in self.choices]
        return picked if picked in ids else (ids[0] if ids else None)


def documents_page(ctx: UIContext, collection: str, writable: bool, active: bool, offset: int | None,
                   seen: str | None, name_filter: str | None, sort: str | None) -> DocumentsPage | None:
    """The Documents table's page at ``offset`` for the timer and the idle poll: ``unchanged`` (nothing
    read but one SQLite pragma) when the collection's listing, the documents being indexed, the page, the
    filter and the order are what the tab drew last (``seen``); clamped to the last page when documents
    went; None when the collection cannot be read now (deleted meanwhile)."""
    offset = max(0, int(offset or 0))
    name_filter, sort = name_filter or "", sort or "name"
    try:
        inflight = ctx.jobs.inflight_doc_ids(collection)
        mark = (f"{collection}|{writable}|{offset}|{active}|{ctx.service.listing_version(collection)}|"
                f"{','.join(sorted(inflight))}|{sort}|{name_filter}")
        if mark == seen:
            return DocumentsPage(mark=mark, unchanged=True)
        info = ctx.service.collection_info(collection)
        offset = min(offset, last_page_offset(info.documents))  # the page is gone (documents deleted)
        rows, choices, matched = documents_rows(ctx, collection, offset, inflight=inflight,
                                                name_filter=name_filter, sort=sort)
        if matched is not None and offset > last_page_offset(matched):
            offset = last_page_offset(matched)
            rows, choices, matched = documents_rows(ctx, collection, offset, inflight=inflight,
                                                    name_filter=name_filter, sort=sort)
    except PagelensError:
        return None
    return DocumentsPage(rows=rows, choices=choices, offset=offset,
                         total=info.documents if matched is None else matched, filtered=bool(name_filter.strip()),
                         sort=sort, summary=collection_summary(info.documents, info.pages, info.model_id, writable),
                         pages=info.pages, mark=mark)


def turned_page(ctx: UIContext, collection: str, offset: int | None, step: int, name_filter: str | None,
                sort: str | None) -> DocumentsPage:
    """Previous / Next (``step`` -1 / 1) or a new filter or order (``step`` 0 from offset 0): the page
    ``step`` pages on, clamped to the pages there are. Raises ``PagelensError``."""
    name_filter, sort = name_filter or "", sort or "name"
    _, _, matched = documents_rows(ctx, collection, 0, limit=0, name_filter=name_filter, sort=sort)
    total = ctx.service.document_count(collection) if matched is None else matched
    offset = min(max(0, int(offset or 0) + step * DOCS_PAGE), last_page_offset(total))
    rows, choices, _ = documents_rows(ctx, collection, offset, name_filter=name_filter, sort=sort)
    return DocumentsPage(rows=rows, choices=choices, offset=offset, total=total, filtered=bool(name_filter.strip()),
                         sort=sort)


def upload(ctx: UIContext, p: Principal | None, collection: str | None, paths: list[str] | None,
           password: str | None, sess: dict[str, Any]) -> tuple[str, bool, dict[str, Any]]:
    """Queue the files Gradio received (``paths``) as one index job of ``collection`` for ``p``; returns
    (the message, True when no file was refused, the session with the job and the refused files recorded).
    ``UIError`` (nothing queued) without a collection, files or write access."""
    p = require_principal(p)
    collection = require_collection(collection)
    if not paths:
        raise UIError("choose or drop some files first")
    job, rejected = enqueue_files(ctx, p, collection, list(paths), password or None)
    sess = record_upload(ctx, list(paths), sess, job, rejected)
    parts = []
    if job is not None:
        parts.append(f"Queued {len(job.documents)} file(s) for indexing.")
    if rejected:
        parts.append(f"{len(rejected)} file(s) rejected (see below).")
    return " ".join(parts), not rejected, sess


def finished_notice(collection: str) -> str:
    """The notice shown when the uploads of ``collection`` this page follows are done."""
    return f"Indexing finished in '{collection}': see the Uploads table for each file; the new pages can be asked now."


def _doc_name(ctx: UIContext, collection: str, doc_id: str) -> str:
    return next((d.doc_name for d in ctx.service.documents(collection) if d.doc_id == doc_id), doc_id)


def delete_document_question(ctx: UIContext, p: Principal | None, collection: str | None,
                             doc_id: str | None) -> str:
    """The confirmation naming the document picked for deletion; ``UIError`` when there is none or ``p``
    may not delete it."""
    if not can_write(p, collection) or not doc_id:
        raise UIError("pick a document you may delete")
    return f"Delete **{_doc_name(ctx, collection or '', doc_id)}** from **{collection}**?"


def delete_document(ctx: UIContext, p: Principal | None, collection: str | None, doc_id: str | None) -> str:
    """Delete ``doc_id`` from ``collection`` as ``p`` (after the confirmation); returns the message naming it
    and its pages. Refused while the document is being indexed."""
    p = require_principal(p)
    collection = require_collection(collection)
    check_write(p, collection)
    if not doc_id:
        raise UIError("pick a document first")
    if doc_id in ctx.jobs.inflight_doc_ids(collection):
        raise UIError("that document is being indexed right now; wait for its upload to finish")
    name = _doc_name(ctx, collection, doc_id)
    pages = ctx.service.delete_document(collection, doc_id)
    return f"Deleted '{name}' ({pages} page(s))."


def uploads_updates(ctx: UIContext, p: Principal | None, collection: str | None) -> list[Any]:
    """The uploads of ``collection`` as ``p`` sees them (``collection`` None: ``p`` may not read it): the
    table of what needs attention, whether a job is active, the "N finished" accordion's update and its
    table (the accordion keeps its open or closed state)."""
    view = uploads_view(ctx, collection, p.name if p is not None else None, can_write(p, collection))
    return [view.open, view.active, gr.update(label=finished_label(view.finished_count),
                                              visible=bool(view.finished_count)), view.finished]


def apply_row_action(ctx: UIContext, p: Principal | None, raw: str | None) -> tuple[str, dict[str, Any] | None] | None:
    """An uploads row's button (``uploads_view.parse_row_action`` of what the page sent), with the API's rule
    (write access to the job's collection): Cancel -> (message, None) after cancelling; Upload again ->
    (message, None) after queueing the cancelled file again; Dismiss (a refused file, ``p``'s own) ->
    (message, None); Retry with password -> (the form's question, the target ``{job, doc, name}``); None
    for an unreadable action."""
    action = parse_row_action(raw)
    if action is None:
        return None
    p = require_principal(p)
    if action["act"] == "dismiss":
        dismiss_rejected(ctx, p, action["job"])
        name = str(action.get("name") or "the refused file")
        return f"Removed '{name}' from the uploads list.", None
    job = ctx.jobs.get(action["job"])
    if job is None:
        raise UIError("this upload is no longer in the job table")
    check_write(p, job.collection)
    if action["act"] == "again":
        new = upload_again(ctx, p, job.id, action["doc"])
        return f"Queued '{new.documents[0]['name']}' for indexing again.", None
    if action["act"] == "cancel":
        cancel_job(ctx, p, job.id)
        names = ", ".join(d["name"] for d in job.documents if d["status"] in ("queued", "running"))
        return f"Cancelling the upload of {names or 'these files'}: it stops at the next page.", None
    doc = job.documents[action["doc"]] if 0 <= action["doc"] < len(job.documents) else None
    if doc is None:
        raise UIError("this upload has no such file")
    question = f"Password for **{doc['name']}** (it is used for this file only and not kept after indexing):"
    return question, {"job": job.id, "doc": action["doc"], "name": doc["name"]}


def retry(ctx: UIContext, p: Principal | None, target: dict[str, Any] | None, password: str | None,
          sess: dict[str, Any]) -> dict[str, Any]:
    """Retry the file ``target`` (``apply_row_action``'s) with ``password``; returns the session with the
    new job recorded."""
    p = require_principal(p)
    if not target:
        raise UIError("press Retry with password on a row first")
    job = retry_with_password(ctx, p, target["job"], int(target["doc"]), password or "")
    return record_upload(ctx, [], sess, job, [])


def build_documents_tab(shell: UIShell) -> DocumentsTab:
    """Lay out the Documents tab inside the current ``gr.Tabs``."""
    with gr.Tab("Documents", id="docs", elem_id="pl-tab-docs"):
        with gr.Column(visible=True, elem_id="pl-upload-group") as upload_group:
            files = gr.File(label="Drop PDFs, page images (PNG, JPEG, TIFF) or office documents (DOCX, XLSX, "
                                  "PPTX, ODT, RTF, HTML, ...)", file_count="multiple",
                            file_types=ACCEPTED_TYPES, type="filepath", elem_id="pl-files")
            pdf_password = gr.Textbox(label="PDF password (optional, for encrypted PDFs of this upload)",
                                      type="password", elem_id="pl-pdf-password", max_lines=1)
            with gr.Row(elem_classes="pl-bar-row"):
                upload_btn = gr.Button("Upload and index", variant="primary", min_width=190,
                                       elem_id="pl-upload", scale=0)
                upload_msg = gr.HTML("", elem_id="pl-upload-msg")
        readonly_note = gr.Markdown("Read-only access: this key cannot upload or delete here.",
                                    visible=False, elem_classes="pl-note")
        gr.Markdown("#### Uploads")
        with gr.Column(elem_id="pl-progress"):  # what needs attention, then the finished files collapsed
            progress = gr.HTML(uploads_view(shell.ctx, None).open, elem_id="pl-progress-open")
            # so that many finished files do not push the documents table down
            with gr.Accordion(finished_label(0), open=False, visible=False,
                              elem_id="pl-uploads-finished") as done_group:
                done_html = gr.HTML("", elem_id="pl-progress-done")
        # the row-action bridge: in the page (the rows' script fills and presses them) but never shown
        row_action = gr.Textbox("", elem_id="pl-row-action", elem_classes="pl-hidden", container=False)
        row_action_btn = gr.Button("row action", elem_id="pl-row-action-btn", elem_classes="pl-hidden")
        retry_target = gr.State(None)
        with gr.Column(visible=False, elem_id="pl-retry", elem_classes="pl-confirm") as retry_group:
            retry_md = gr.Markdown("", elem_id="pl-retry-md")
            with gr.Row(elem_classes="pl-bar-row"):
                retry_password = gr.Textbox(label="PDF password", type="password", max_lines=1, scale=4,
                                            min_width=180, elem_id="pl-retry-password")
                retry_btn = gr.Button("Retry", variant="primary", scale=0, min_width=100, elem_id="pl-retry-btn",
                                      elem_classes="pl-btn")
                retry_cancel_btn = gr.Button("Close", scale=0, min_width=90, elem_id="pl-retry-close",
                                             elem_classes="pl-btn")
        gr.Markdown("#### Documents")
        with gr.Row(elem_classes="pl-bar-row"):
            docs_filter = gr.Textbox(label="Filter by name", placeholder="part of a file name", max_lines=1,
                                     scale=3, min_width=180, elem_id="pl-docs-filter")
            docs_sort = gr.Dropdown([(label, key) for key, label in SORTS.items()], value="name", label="Sort by",
                                    scale=1, min_width=140, elem_id="pl-docs-sort")
        docs_df = gr.HTML(docs_html([]), elem_id="pl-docs")
        docs_offset = gr.State(0)
        docs_seen = gr.State("")
        with gr.Row(visible=False, elem_id="pl-docs-pager", elem_classes="pl-bar-row") as docs_pager:
            docs_prev = gr.Button("‹ Previous", scale=0, min_width=110, elem_id="pl-docs-prev", elem_classes="pl-btn",
                                  interactive=False)
            docs_next = gr.Button("Next ›", scale=0, min_width=110, elem_id="pl-docs-next", elem_classes="pl-btn")
        with gr.Row(visible=False, elem_id="pl-doc-delete", elem_classes="pl-bar-row") as doc_delete_group:
            doc_pick = gr.Dropdown(label="Document", choices=[], value=None, scale=4, min_width=200,
                                   elem_id="pl-doc-pick")
            doc_del_btn = gr.Button("Delete document…", variant="stop", scale=0, min_width=190,
                                    elem_id="pl-doc-delete-btn", elem_classes="pl-btn")
        with gr.Row(visible=False, elem_id="pl-doc-confirm", elem_classes="pl-bar-row pl-confirm") as doc_confirm_row:
            doc_confirm_md = gr.Markdown("", elem_classes="pl-confirm-text")
            doc_confirm_btn = gr.Button("Yes, delete it", variant="stop", scale=0, min_width=140,
                                        elem_id="pl-doc-confirm-btn")
            doc_cancel_btn = gr.Button("Cancel", scale=0, min_width=100, elem_id="pl-doc-cancel-btn")
        docs_msg = gr.HTML("", elem_id="pl-docs-msg")
    return DocumentsTab(upload_group=upload_group, files=files, pdf_password=pdf_password, upload_btn=upload_btn,
                        upload_msg=upload_msg, readonly_note=readonly_note, progress=progress, docs_df=docs_df,
                        doc_delete_group=doc_delete_group, doc_pick=doc_pick, doc_del_btn=doc_del_btn,
                        doc_confirm_row=doc_confirm_row, doc_confirm_md=doc_confirm_md,
                        doc_confirm_btn=doc_confirm_btn, doc_cancel_btn=doc_cancel_btn, docs_msg=docs_msg,
                        row_action=row_action, row_action_btn=row_action_btn, retry_group=retry_group,
                        retry_md=retry_md, retry_password=retry_password, retry_btn=retry_btn,
                        retry_cancel_btn=retry_cancel_btn, retry_target=retry_target, docs_pager=docs_pager,
                        docs_prev=docs_prev, docs_next=docs_next, docs_offset=docs_offset, docs_seen=docs_seen,
                        docs_filter=docs_filter, docs_sort=docs_sort, done_group=done_group, done_html=done_html)
