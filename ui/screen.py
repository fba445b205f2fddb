"""The whole UI put together: the tabs' components and the views that update several tabs at once (the
collection picker, the collections table, the Documents tab's controls and the progress timer after a
sign-in, a refresh, a collection switch, a create or a delete)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gradio as gr
from pagelens.ui.first_run import FirstRun, first_run_intro
from pagelens.ui.render import (
    ask_button,
    collections_mark,
    collections_rows,
    docs_html,
    documents_rows,
    pager_updates,
    scope_choices,
    visible_collections,
)
from pagelens.ui.state import UIShell, can_create, can_read, can_write
from pagelens.ui.status import collection_summary
from pagelens.ui.tabs.ask import MODE_ANSWER, MODE_SEARCH, AskTab
from pagelens.ui.tabs.collections import CollectionsTab
from pagelens.ui.tabs.documents import DocumentsTab, uploads_updates

from pagelens.app.access import Principal
from pagelens.core.errors import PagelensError

# The Sign out button: end the session on the server (POST <ui>/sign-out clears the cookie), then show the
# sign-in page. The page is served at <ui>/, so both URLs are relative to it.
SIGN_OUT_JS = """() => {
  document.querySelectorAll('#pl-upload-msg, #pl-docs-msg, #pl-coll-msg, #pl-first-msg, #pl-ask-msg')
    .forEach((el) => { el.textContent = ''; });  // no message of this session stays on screen
  const base = window.location.pathname.endsWith('/') ? window.location.pathname : window.location.pathname + '/';
  try { localStorage.removeItem('pl-thread'); sessionStorage.removeItem('pl-thread'); } catch (e) {}  // the Ask tab's conversation (tabs/ask.py THREAD_KEY)
  fetch(base + 'sign-out', {method: 'POST', credentials: 'same-origin', redirect: 'manual'})
    .finally(() => { window.location.assign(base + 'sign-in'); });
}"""


# Keeps the collection, the question and the mode in the page's URL (query parameters ``collection``,
# ``q``, ``mode=search``) as they change, without a reload or a server round trip: a reload or a shared
# link opens the same view (``Screen.on_load`` reads them back). Never the key: sign-in is a cookie.
URL_STATE_JS = """(collection, question, mode) => {
  const url = new URL(window.location.href);
  const put = (key, value) => { if (value) url.searchParams.set(key, value); else url.searchParams.delete(key); };
  put('collection', collection || '');
  put('q', (question || '').trim());
  put('mode', mode === 'Search only' ? 'search' : '');
  if (url.href !== window.location.href) window.history.replaceState(window.history.state, '', url);
}"""
# the longest question taken from a URL (characters)
MAX_URL_QUESTION = 2000


def poll_plan(mark: str, seen: str | None, selected: str | None) -> str:
    """What the idle poll redraws, given the collections now (``mark``: ``render.collections_mark``), as
    this tab last drew them (``seen``) and the picked collection as the poll saw it (``selected``):
    ``"nothing"`` (unchanged), ``"table"`` (only counts changed), ``"choices"`` (collections came or went
    but the picked one is still there: the table and the picker's choices, never the picker's value, since
    the poll's ``selected`` may be older than the picker when a create or delete is in flight) or ``"all"``
    (the picked collection is gone, or none was picked)."""
    if mark == seen:
        return "nothing"
    names = [line.split("|", 1)[0] for line in mark.split("\n") if line]
    if names == [line.split("|", 1)[0] for line in (seen or "").split("\n") if line]:
        return "table"
    return "choices" if selected and selected in names else "all"


@dataclass
class Screen:
    """The shell, the three tabs, and the header buttons; ``view``/``refresh_all`` compute the values of
    ``view_outputs``/``all_outputs`` for a principal and a collection."""

    shell: UIShell
    ask: AskTab
    docs: DocumentsTab
    colls: CollectionsTab
    refresh_btn: gr.Button
    sign_out: gr.Button
    # the first-run panel and the column holding the tabs (hidden while there is no collection)
    first: FirstRun | None = None
    tabs_wrap: gr.Column | None = None
    tabs: gr.Tabs | None = None
    # the collections (names and counts) this tab last drew (``render.collections_mark``): every redraw of
    # ``all_outputs`` sets it, so the idle poll redraws only what changed elsewhere
    seen: gr.State = field(default_factory=lambda: gr.State(""))

    @property
    def view_outputs(self) -> list[Any]:
        d, c = self.docs, self.colls
        return [self.shell.coll_summary, d.docs_df, d.doc_pick, d.upload_group, d.readonly_note,
                d.doc_delete_group, d.doc_confirm_row, d.progress, self.shell.timer, c.coll_delete_group,
                c.coll_confirm_row, d.docs_pager, d.docs_prev, d.docs_next, d.docs_offset, d.docs_seen,
                self.ask.ask_btn, self.ask.scope, d.docs_filter, d.docs_sort, d.done_group, d.done_html]

    @property
    def all_outputs(self) -> list[Any]:
        first = ([self.first.group, self.first.intro, self.first.controls, self.tabs_wrap]
                 if self.first and self.tabs_wrap else [])
        return [self.shell.coll_dd, self.colls.coll_table, self.colls.create_group, *self.view_outputs,
                self.docs.upload_msg, self.docs.docs_msg, *first, self.seen]

    def view(self, p: Principal | None, collection: str | None, sess: dict[str, Any]) -> list[Any]:
        """Values of ``view_outputs`` for ``collection`` as ``p`` sees it."""
        ctx = self.shell.ctx
        readable = can_read(p, collection)
        writable = can_write(p, collection)
        summary = ""
        rows: list[list[Any]] = []
        choices: list[tuple[str, str]] = []
        total = pages = 0
        scope: list[tuple[str, str]] = []
        if readable and collection:
            try:
                info = ctx.service.collection_info(collection)
                summary = collection_summary(info.documents, info.pages, info.model_id, writable)
                rows, choices, _ = documents_rows(ctx, collection)
                total, pages = info.documents, info.pages
                scope = scope_choices(ctx, collection)
            except PagelensError as exc:
                summary = f"⚠ {exc}"
        elif p is not None and not visible_collections(ctx, p):
            summary = ("No collections yet: create one and upload your documents below." if can_create(p)
                       else "This key can read no collection.")
        prog, active, *done = uploads_updates(ctx, p, collection if readable else None)
        return [
            summary,
            docs_html(rows, 0, total) if readable else "",
            gr.update(choices=choices, value=choices[0][1] if choices else None),
            gr.update(visible=writable),
            gr.update(visible=readable and not writable),
            gr.update(visible=writable and bool(choices)),
            gr.update(visible=False),
            prog,
            gr.Timer(active=active),
            gr.update(visible=writable),
            gr.update(visible=False),
            *pager_updates(0, total),
            0,  # the documents table's page: the first
            "",  # what the poll last drew: nothing yet (it draws at its next tick)
            ask_button(pages, bool(readable and collection and ctx.jobs.active_for(collection))),
            gr.update(choices=scope, value=[]),
            "",  # the documents table: no name filter,
            "name",  # sorted by name
            *done,  # the finished uploads: the accordion and its table
        ]

    def refresh_all(self, p: Principal | None, selected: str | None, sess: dict[str, Any]) -> list[Any]:
        """Values of ``all_outputs``: the picker keeps ``selected`` when it is still visible to ``p``."""
        ctx = self.shell.ctx
        names = visible_collections(ctx, p)
        value = selected if selected in names else (names[0] if names else None)
        first_run = p is not None and not names
        first = ([gr.update(visible=first_run), first_run_intro(can_create(p)), gr.update(visible=can_create(p)),
                  gr.update(visible=not first_run)] if self.first and self.tabs_wrap else [])
        rows = collections_rows(ctx, p)
        return [
            gr.update(choices=names, value=value),
            gr.update(value=rows),
            gr.update(visible=can_create(p)),
            *self.view(p, value, sess),
            "",
            "",
            *first,
            collections_mark(rows),
        ]

    def on_poll(self, selected: str | None, sess: dict[str, Any], seen: str | None,
                request: gr.Request) -> list[Any]:
        """The idle poll: collections created or deleted elsewhere (the API, the CLI, another tab) appear
        or go, and the collections table's counts stay fresh (``poll_plan`` says what to redraw)."""
        p = self.shell.who(request)
        rows = collections_rows(self.shell.ctx, p)
        mark = collections_mark(rows)
        plan = poll_plan(mark, seen, selected)
        if plan == "all":
            return self.refresh_all(p, selected, sess)
        out = [gr.skip()] * len(self.all_outputs)
        if plan == "nothing":
            return out
        out[self.all_outputs.index(self.colls.coll_table)] = gr.update(value=rows)
        out[-1] = mark
        if plan == "choices":
            out[0] = gr.update(choices=[str(r[0]) for r in rows])
        return out

    def on_refresh(self, selected: str | None, sess: dict[str, Any], request: gr.Request) -> list[Any]:
        return self.refresh_all(self.shell.who(request), selected, sess)

    def on_load(self, selected: str | None, sess: dict[str, Any], request: gr.Request) -> list[Any]:
        """Page load: ``all_outputs`` plus the question and the mode, from the URL's query parameters
        ``collection`` (kept only when this principal may read it), ``q`` and ``mode`` (``search``), and
        what the collections poll compares with (``collections_mark``)."""
        params = getattr(request, "query_params", None) or {}
        wanted = str(params.get("collection") or "") or selected
        question = str(params.get("q") or "")[:MAX_URL_QUESTION]
        mode = MODE_SEARCH if str(params.get("mode") or "").lower() == "search" else MODE_ANSWER
        p = self.shell.who(request)
        return [*self.refresh_all(p, wanted, sess), question, mode]

    def on_view(self, collection: str | None, sess: dict[str, Any], request: gr.Request) -> list[Any]:
        return self.view(self.shell.who(request), collection, sess)

    def switch_collection(self, collection: str | None, sess: dict[str, Any], request: gr.Request) -> list[Any]:
        return [*self.view(self.shell.who(request), collection, sess), "", ""]

    def wire(self, demo: gr.Blocks) -> None:
        """Connect the page load, the header controls, then each tab."""
        shell = self.shell
        load_inputs = [shell.coll_dd, shell.session]
        demo.load(self.on_load, load_inputs, [*self.all_outputs, self.ask.question, self.ask.mode],
                  show_progress="hidden", api_visibility="private")
        url_inputs = [shell.coll_dd, self.ask.question, self.ask.mode]
        for changed in (shell.coll_dd.change, self.ask.question.change, self.ask.mode.change):
            changed(None, url_inputs, None, js=URL_STATE_JS, queue=False, api_visibility="private")  # type: ignore[operator]
        if shell.auth_on:
            self.sign_out.click(None, None, None, js=SIGN_OUT_JS, api_visibility="private", queue=False)
        # no "processing 0.4s" timers over every table for a refresh or a switch: one small spinner
        self.refresh_btn.click(self.on_refresh, load_inputs, self.all_outputs, show_progress="minimal",
                               api_visibility="private")
        shell.coll_dd.input(self.switch_collection, load_inputs,
                            [*self.view_outputs, self.docs.upload_msg, self.docs.docs_msg], show_progress="minimal",
                            api_visibility="private")
        if shell.poll is not None:
            shell.poll.tick(self.on_poll, [*load_inputs, self.seen], self.all_outputs, show_progress="hidden",
                            api_visibility="private")
        self.colls.wire(shell, self)
        self.docs.wire(shell, self)
        if self.first is not None:
            self.first.wire(shell, self)
        self.ask.wire(shell, self)
        self.ask.wire_load(shell, demo)

