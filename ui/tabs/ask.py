"""The Ask tab: a conversation (each question and its answer kept for the browser session, with its own
numbered citations), the answer streamed as it is generated, Copy and Regenerate, the pages behind it, a
page viewer (any page of a cited document: zoom, previous/next, its text, download) and the similarity map
of the top page."""

from __future__ import annotations

import html
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr
from pagelens.ui.render import caption, page_copy, similarity_overlay
from pagelens.ui.state import (
    UIError,
    UIShell,
    can_read,
    check_read,
    err,
    msg,
    require_collection,
    require_principal,
)
from pagelens.ui.tabs.ask_assets import COPY_JS, READ_THREAD_JS, SCROLL_TO_VIEWER_JS, STORE_THREAD_JS
from pagelens.ui.thread import (
    Cite,
    Turn,
    answer_markdown,
    cited_page,
    indexing_note,
    plain_answer,
    push_turn,
    set_last,
    thread_markdown,
    turn_cites_html,
    turns_from_json,
    turns_to_json,
)
from pagelens.ui.viewer import (
    PageView,
    download_copy,
    find_page,
    page_ref,
    parse_page_ref,
    viewer_text,
    viewer_title,
)

from pagelens.app.access import Principal
from pagelens.app.visibility import search_visible
from pagelens.core.errors import EmptyCollectionError

if TYPE_CHECKING:
    from pagelens.ui.screen import Screen

MODE_ANSWER = "Answer"
MODE_SEARCH = "Search only"
# Retrieval modes (see retrieve/hybrid.py): "default" keeps PAGELENS_RETRIEVAL_MODE.
RETRIEVAL_DEFAULT = "default"
RETRIEVAL_CHOICES = [RETRIEVAL_DEFAULT, "hybrid", "visual", "text"]
STREAM_CURSOR = " ▍"
READING = "*Reading the pages…*"


@dataclass
class AskTab:
    """The Ask tab's components. ``turns``: the conversation (``list[Turn]``, the last one shown as the
    current answer); ``top_hits``: the top ``SearchHit`` of the last question, for the similarity map;
    ``view``: the ``PageView`` open in the viewer."""

    question: gr.Textbox
    mode: gr.Radio
    retrieval: gr.Dropdown
    k_slider: gr.Slider
    ask_btn: gr.Button
    stop_btn: gr.Button
    ask_msg: gr.HTML
    thread_md: gr.Markdown
    new_btn: gr.Button
    current_q: gr.HTML
    answer_md: gr.Markdown
    actions: gr.Row
    copy_btn: gr.Button
    regen_btn: gr.Button
    plain: gr.Textbox
    thread_json: gr.Textbox
    citations: gr.HTML
    gallery: gr.Gallery
    sim_img: gr.Image
    sim_caption: gr.Markdown
    top_hits: gr.State
    turns: gr.State
    view: gr.State
    view_ref: gr.Textbox
    view_open: gr.Button
    viewer: gr.Column
    viewer_title: gr.Markdown
    viewer_msg: gr.HTML
    viewer_img: gr.Image
    prev_btn: gr.Button
    next_btn: gr.Button
    zoom_out: gr.Button
    zoom_fit: gr.Button
    zoom_in: gr.Button
    download: gr.DownloadButton
    close_btn: gr.Button
    page_text_md: gr.Markdown

    # -- the viewer ---------------------------------------------------------------------------------
    def viewer_outputs(self) -> list[Any]:
        return [self.viewer, self.viewer_title, self.viewer_msg, self.viewer_img, self.page_text_md, self.download,
                self.prev_btn, self.next_btn, self.view]

    def show_page(self, view: PageView, shell: UIShell) -> dict[Any, Any]:
        """Viewer updates showing ``view``."""
        return {
            self.viewer: gr.update(visible=True),
            self.viewer_title: viewer_title(view),
            self.viewer_msg: gr.update(value="", visible=False) if view.image else gr.update(value=msg(
                f"The image of {view.doc_name}, page {view.page_no} is not on this server: index the document "
                "again to see it.", ok=False), visible=True),
            self.viewer_img: gr.update(value=view.image, label=f"{view.doc_name} — page {view.page_no}"),
            self.page_text_md: gr.update(value=viewer_text(view), visible=True),
            self.download: gr.update(value=download_copy(shell.ctx, view), interactive=bool(view.image)),
            self.prev_btn: gr.update(interactive=view.page_no > 1),
            self.next_btn: gr.update(interactive=view.page_no < view.page_count),
            self.view: view,
        }

    def open_page(self, shell: UIShell, p: Principal | None, collection: str, doc_id: str,
                  page_no: int) -> dict[Any, Any]:
        """Viewer updates for page ``page_no`` of ``doc_id`` as ``p`` may see it, or the reason it cannot."""
        try:
            p = require_principal(p)
            check_read(p, collection)
            return self.show_page(find_page(shell.ctx, collection, doc_id, page_no), shell)
        except Exception as exc:  # noqa: BLE001
            return {self.viewer: gr.update(visible=True), self.viewer_msg: gr.update(value=msg(err(exc), ok=False), visible=True)}

    def wire_load(self, shell: UIShell, demo: gr.Blocks) -> None:
        """On page load, the conversation this browser tab kept in its session storage comes back (the
        turns in collections the principal may read; the viewer, the pages and the map do not)."""

        def restore(text: str | None, request: gr.Request) -> dict[Any, Any]:
            p = shell.who(request)
            turns = [t for t in turns_from_json(text) if can_read(p, t.collection)]
            if not turns:
                return {self.turns: gr.skip()}
            last = turns[-1]
            return {self.turns: turns, self.thread_json: turns_to_json(turns),
                    self.thread_md: gr.update(value=thread_markdown(turns[:-1]),
                                                                 visible=len(turns) > 1),
                    self.current_q: question_html(last), self.answer_md: answer_markdown(last),
                    self.citations: turn_cites_html(last), self.plain: plain_answer(last),
                    self.actions: gr.update(visible=True),
                    self.copy_btn: gr.update(visible=bool(plain_answer(last))),
                    self.regen_btn: gr.update(visible=True), self.new_btn: gr.update(visible=True)}

        demo.load(restore, [self.thread_json], [self.turns, self.thread_json, self.thread_md, self.current_q, self.answer_md,
                                                self.citations, self.plain, self.actions, self.copy_btn,
                                                self.regen_btn, self.new_btn],
                  js=READ_THREAD_JS, show_progress="hidden", api_visibility="private")

    # -- events -------------------------------------------------------------------------------------
    def wire(self, shell: UIShell, screen: Screen) -> None:
        """Connect Ask/Enter and Regenerate to the streamed answer, then the similarity map and the viewer
        on the top page; Stop, Copy, New conversation, and the viewer's controls."""
        ctx = shell.ctx
        who = shell.who
        default_k = ctx.settings.answer_top_k

        def after(t: Turn) -> dict[Any, Any]:
            """The buttons under a finished turn: Copy when it has an answer, Regenerate, New conversation."""
            return {self.copy_btn: gr.update(visible=bool(plain_answer(t))), self.regen_btn: gr.update(visible=True),
                    self.new_btn: gr.update(visible=True)}

        def run(p: Principal | None, collection: str | None, q: str, how: str, k: int, retrieval_mode: str | None,
                turns: list[Turn], replace_last: bool) -> Iterator[dict[Any, Any]]:
            """The streamed answer to ``q`` as a new turn (instead of the last one when ``replace_last``)."""
            running = gr.update(visible=True)
            idle = gr.update(visible=False)
            no_pages = gr.update(value=[], visible=False)
            no_sim = gr.update(value=None, visible=False)
            earlier = list(turns[:-1] if replace_last and turns else turns)
            attempt = turns[-1].attempt + 1 if replace_last and turns else 1
            turn = Turn(question=q, collection=collection or "", mode=how, k=k, retrieval=retrieval_mode,
                        attempt=attempt)
            turns = push_turn(turns, turn, replace_last)
            head = {
                self.thread_md: gr.update(value=thread_markdown(earlier), visible=bool(earlier)),
                self.current_q: question_html(turn),
                self.ask_msg: "",
                self.actions: gr.update(visible=True),
                self.copy_btn: gr.update(visible=False),
                self.regen_btn: gr.update(visible=False),
                self.new_btn: gr.update(visible=False),
                self.plain: "",
            }

            def finish(t: Turn, extra: dict[Any, Any]) -> dict[Any, Any]:
                nonlocal turns
                turns = set_last(turns, t)
                return {**head, self.answer_md: answer_markdown(t), self.citations: turn_cites_html(t),
                        self.turns: turns, self.thread_json: turns_to_json(turns), self.stop_btn: idle, **after(t),
                        **extra}

            try:
                p = require_principal(p)
                collection = require_collection(collection)
                check_read(p, collection)
                note = indexing_note(ctx.jobs, collection)
                turn = Turn(question=q, collection=collection, mode=how, k=k, retrieval=retrieval_mode, note=note,
                            attempt=attempt)
                t0 = time.perf_counter()
                query_mode = None if retrieval_mode in (None, RETRIEVAL_DEFAULT) else retrieval_mode
                hits = search_visible(ctx, collection, q, k, query_mode, None)  # type: ignore[arg-type]
                search_s = time.perf_counter() - t0
            except EmptyCollectionError:
                text = ("No pages found yet." if turn.note else
                        "This collection has no pages yet: upload documents in the **Documents** tab.")
                yield finish(turn.with_answer(text, "message"), {
                    self.gallery: no_pages, self.top_hits: [], self.sim_img: no_sim, self.sim_caption: ""})
                return
            except Exception as exc:  # noqa: BLE001
                yield finish(turn.with_answer(f"⚠ {err(exc)}", "message"), {
                    self.gallery: no_pages, self.top_hits: [], self.sim_img: no_sim, self.sim_caption: ""})
                return
            if not hits:
                text = ("No pages found." if turn.note else
                        "No pages found: the collection has no searchable pages; upload documents in the "
                        "**Documents** tab.")
                yield finish(turn.with_answer(text, "message"), {
                    self.gallery: no_pages, self.top_hits: [], self.sim_img: no_sim, self.sim_caption: ""})
                return
            pages = [(page_copy(ctx, h.image_path), caption(h.doc_name, h.page_no, h.score, n, h.score_kind),
                      page_ref(collection, h.doc_id, h.page_no)) for n, h in enumerate(hits, start=1)]
            shown = [(img, cap) for img, cap, _ in pages if img]
            turn = Turn(question=q, collection=collection, mode=how, k=k, retrieval=retrieval_mode, note=note,
                        attempt=attempt, cites=tuple(Cite(h.doc_id, h.doc_name, h.page_no) for h in hits),
                        pages=tuple(ref for img, _, ref in pages if img))
            pages_upd = gr.update(value=shown, visible=True)
            sim_wait = "Computing the similarity map…"
            if how == MODE_SEARCH:
                text = f"Top {len(hits)} page(s) in {search_s * 1000:.0f} ms (search only, no answer)."
                yield finish(turn.with_answer(text, "message"), {
                    self.gallery: pages_upd, self.top_hits: hits[:1], self.sim_img: no_sim,
                    self.sim_caption: sim_wait})
                return
            turns = set_last(turns, turn)
            yield {**head, self.answer_md: (f"> {note}\n\n" if note else "") + READING,
                   self.citations: turn_cites_html(turn), self.gallery: pages_upd, self.top_hits: hits[:1],
                   self.sim_img: no_sim, self.sim_caption: "The similarity map follows the answer.",
                   self.stop_btn: running, self.turns: turns}
            text = ""
            try:
                for event in ctx.service.answerer.stream(q, hits, k=k, retrieve_s=search_s):
                    if event.kind == "token":
                        text += event.text
                        turns = set_last(turns, turn.with_answer(text, "running"))
                        yield {self.answer_md: (f"> {note}\n\n" if note else "") + text + STREAM_CURSOR,
                               self.turns: turns}
                    elif event.kind == "done" and event.answer is not None:
                        answer = event.answer
                        # citation n is the n-th page shown to the model (answer/types.py Citation)
                        copies = [(page_copy(ctx, c.image_path),
                                   caption(c.doc_name, c.page_no, c.score, n, c.score_kind),
                                   page_ref(collection, c.doc_id, c.page_no))
                                  for n, c in enumerate(answer.citations, start=1)]
                        cited = [(img, cap) for img, cap, _ in copies if img]
                        t = answer.timings
                        foot = (f"\n\n<small>{len(answer.citations)} page(s) read · search "
                                f"{t.retrieve_s:.2f} s · first token {t.preprocess_s + t.prefill_s:.2f} s · "
                                f"total {t.total_s:.2f} s" + (f" · regenerated (answer {attempt})" if attempt > 1 else "")
                                + "</small>")
                        done = Turn(question=q, collection=collection, mode=how, k=k, retrieval=retrieval_mode,
                                    note=note, attempt=attempt, answer=answer.text, foot=foot, status="done",
                                    cites=tuple(Cite(c.doc_id, c.doc_name, c.page_no) for c in answer.citations),
                                    pages=tuple(ref for img, _, ref in copies if img) if cited else turn.pages)
                        yield finish(done, {self.gallery: gr.update(value=cited or shown, visible=True),
                                              self.sim_caption: sim_wait,
                                              self.plain: plain_answer(done)})
                        return
            except Exception as exc:  # noqa: BLE001
                failed = turn.with_answer((text + f"\n\n⚠ {err(exc)}").strip(), "message")
                yield finish(failed, {self.sim_caption: sim_wait})
                return
            yield {self.stop_btn: idle, **after(turns[-1])}

        def do_ask(collection: str | None, q: str, how: str, k: float, retrieval_mode: str | None,
                   turns: list[Turn] | None, request: gr.Request) -> Iterator[dict[Any, Any]]:
            q = (q or "").strip()
            if not q:  # refused here, before anything is cleared: the thread, the last answer and its pages stay
                yield {self.ask_msg: msg("Type a question first: nothing was asked.", ok=False),
                       self.stop_btn: gr.update(visible=False)}
                return
            yield from run(who(request), collection, q, how, int(k or default_k), retrieval_mode, turns or [], False)

        def do_regenerate(turns: list[Turn] | None, request: gr.Request) -> Iterator[dict[Any, Any]]:
            """The last question again, in the collection, mode and settings it was asked with; its answer
            replaces the last one."""
            if not turns:
                yield {self.ask_msg: msg("Nothing to regenerate: ask a question first.", ok=False)}
                return
            last = turns[-1]
            yield from run(who(request), last.collection, last.question, last.mode, last.k, last.retrieval,
                           turns, True)

        def do_stop(answer: str | None, turns: list[Turn] | None) -> dict[Any, Any]:
            """Stop pressed: the answer so far stays, marked as stopped; no similarity map for it."""
            text = (answer or "").removesuffix(STREAM_CURSOR).rstrip()
            if text.endswith(READING):  # stopped before the first word
                text = ""
            out: dict[Any, Any] = {self.stop_btn: gr.update(visible=False),
                                   self.sim_caption: "Stopped: no similarity map for an unfinished answer."}
            if turns and turns[-1].status == "running":
                stopped = turns[-1].with_answer(turns[-1].answer, "stopped")
                turns = set_last(turns, stopped)
                out.update({self.answer_md: answer_markdown(stopped), self.turns: turns, **after(stopped),
                            self.plain: plain_answer(stopped), self.thread_json: turns_to_json(turns)})
            else:
                out[self.answer_md] = f"{text}\n\n*(stopped)*".strip()
            return out

        def do_similarity(turns: list[Turn] | None, hits: list[Any], request: gr.Request) -> tuple[Any, str]:
            """The map of the top page, in the collection the question was asked in (kept in the turn: the
            picker may show another collection by now)."""
            p = who(request)
            last = turns[-1] if turns else None
            if not hits or last is None or not can_read(p, last.collection):
                return gr.skip(), gr.skip()
            try:
                image, text = similarity_overlay(ctx, last.collection, last.question, hits[0])
            except Exception as exc:  # noqa: BLE001
                return gr.update(value=None, visible=False), f"No similarity map: {err(exc)}"
            return gr.update(value=image, visible=image is not None), text

        def view_top(turns: list[Turn] | None, request: gr.Request) -> dict[Any, Any]:
            """The viewer on the last answer's first page (its text replaces the old top-page text)."""
            last = turns[-1] if turns else None
            if last is None or not last.cites:
                return {self.view: gr.skip()}
            c = last.cites[0]
            return self.open_page(shell, who(request), last.collection, c.doc_id, c.page_no)

        def do_open(ref: str, turns: list[Turn] | None, request: gr.Request) -> dict[Any, Any]:
            """Open a citation (its element id) or a gallery page (a ``page_ref``)."""
            try:
                found = cited_page(turns or [], ref)
                collection, doc_id, page_no = found if found is not None else parse_page_ref(ref)
            except UIError as exc:
                return {self.viewer: gr.update(visible=True), self.viewer_msg: gr.update(value=msg(str(exc), ok=False), visible=True)}
            return self.open_page(shell, who(request), collection, doc_id, page_no)

        def do_gallery(turns: list[Turn] | None, evt: gr.SelectData, request: gr.Request) -> dict[Any, Any]:
            last = turns[-1] if turns else None
            index = evt.index if isinstance(evt.index, int) else -1
            if last is None or not 0 <= index < len(last.pages):
                return {self.view: gr.skip()}
            return do_open(last.pages[index], turns, request)

        def step(delta: int) -> Any:
            def go(view: PageView | None, request: gr.Request) -> dict[Any, Any]:
                if view is None:
                    return {self.view: gr.skip()}
                return self.open_page(shell, who(request), view.collection, view.doc_id, view.page_no + delta)
            return go

        def do_new() -> dict[Any, Any]:
            """New conversation: the thread, the answer, its pages, the map and the viewer are cleared."""
            return {self.turns: [], self.thread_json: "", self.thread_md: gr.update(value="", visible=False),
                    self.new_btn: gr.update(visible=False), self.current_q: "", self.answer_md: "",
                    self.citations: "", self.gallery: gr.update(value=[], visible=False),
                    self.actions: gr.update(visible=False), self.plain: "", self.top_hits: [],
                    self.sim_img: gr.update(value=None, visible=False), self.ask_msg: "",
                    self.sim_caption: "Ask a question to see which parts of the top page matched it.",
                    self.viewer: gr.update(visible=False), self.view: None,
                    self.page_text_md: gr.update(value="", visible=False)}

        ask_outputs = [self.answer_md, self.gallery, self.top_hits, self.sim_img, self.sim_caption, self.ask_msg,
                       self.stop_btn, self.citations, self.thread_md, self.new_btn, self.current_q, self.actions,
                       self.plain, self.turns, self.copy_btn, self.regen_btn, self.thread_json]
        # Enter in the question box clicks Ask (ASK_KEYS_JS), Shift+Enter is a newline
        asking = gr.on([self.ask_btn.click, self.question.submit], do_ask,
                       [shell.coll_dd, self.question, self.mode, self.k_slider, self.retrieval, self.turns],
                       ask_outputs, api_visibility="private")
        regenerating = self.regen_btn.click(do_regenerate, [self.turns], ask_outputs, api_visibility="private")
        followups = []
        for event in (asking, regenerating):
            followups.append(event.then(do_similarity, [self.turns, self.top_hits], [self.sim_img, self.sim_caption],
                                        api_visibility="private").then(
                view_top, [self.turns], self.viewer_outputs(), api_visibility="private"))
        # cancel first, then mark the answer: the mark comes after the last streamed token
        self.stop_btn.click(None, None, None, cancels=[asking, regenerating, *followups], queue=False,
                            api_visibility="private").then(
            do_stop, [self.answer_md, self.turns],
            [self.answer_md, self.stop_btn, self.sim_caption, self.turns, self.plain, self.copy_btn, self.regen_btn,
             self.new_btn, self.thread_json],
            api_visibility="private")
        self.thread_json.change(None, [self.thread_json], None, js=STORE_THREAD_JS, queue=False,
                                api_visibility="private")
        self.copy_btn.click(None, [self.plain], None, js=COPY_JS, queue=False, api_visibility="private")
        self.new_btn.click(do_new, None, [*ask_outputs, self.viewer, self.view, self.page_text_md],
                           api_visibility="private")
        # the viewer: a citation's click (ASK_KEYS_JS), a gallery thumbnail, previous/next, zoom, close
        self.view_open.click(do_open, [self.view_ref, self.turns], self.viewer_outputs(), api_visibility="private").then(
            None, None, None, js=SCROLL_TO_VIEWER_JS, queue=False, api_visibility="private")
        self.gallery.select(do_gallery, [self.turns], self.viewer_outputs(), api_visibility="private")
        self.prev_btn.click(step(-1), [self.view], self.viewer_outputs(), api_visibility="private")
        self.next_btn.click(step(1), [self.view], self.viewer_outputs(), api_visibility="private")
        for button, how in ((self.zoom_in, "in"), (self.zoom_out, "out"), (self.zoom_fit, "fit")):
            button.click(None, None, None, js=f"() => {{ if (window.plZoom) window.plZoom('{how}'); return []; }}",
                         queue=False, api_visibility="private")
        self.close_btn.click(lambda: gr.update(visible=False), None, [self.viewer], queue=False,
                             api_visibility="private")


def question_html(turn: Turn) -> str:
    """The current question above its answer: who asked, in which collection, the question (escaped)."""
    if not turn.question:
        return ""
    question = html.escape(turn.question).replace("\n", "<br>")
    coll = f' <span class="pl-turn-coll">in {html.escape(turn.collection)}</span>' if turn.collection else ""
    return f'<div class="pl-current-q"><span class="pl-turn-who">You</span>{coll}<br>{question}</div>'


def build_ask_tab(shell: UIShell) -> AskTab:
    """Lay out the Ask tab inside the current ``gr.Tabs``."""
    default_k = shell.ctx.settings.answer_top_k
    with gr.Tab("Ask", id="ask", elem_id="pl-tab-ask"), gr.Row():
        with gr.Column(scale=3, min_width=300):
            # inside a tab, never directly under gr.Tabs (they would count as tabs)
            top_hits = gr.State([])
            turns = gr.State([])
            view = gr.State(None)
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
                stop_btn = gr.Button("■ Stop", variant="stop", scale=0, min_width=90, visible=False,
                                     elem_id="pl-stop", elem_classes="pl-btn")
            ask_msg = gr.HTML("", elem_id="pl-ask-msg")
            thread_md = gr.Markdown("", elem_id="pl-thread", visible=False)
            current_q = gr.HTML("", elem_id="pl-current-q", padding=False)
            answer_md = gr.Markdown("", label="Answer", elem_id="pl-answer",
                                    container=True, min_height=60)
            with gr.Row(elem_classes="pl-bar-row", visible=False) as actions:
                copy_btn = gr.Button("Copy answer", size="sm", scale=0, min_width=120, elem_id="pl-copy",
                                     elem_classes="pl-btn")
                regen_btn = gr.Button("↻ Regenerate", size="sm", scale=0, min_width=120, elem_id="pl-regenerate",
                                      elem_classes="pl-btn")
                new_btn = gr.Button("New conversation", size="sm", scale=0, min_width=140,
                                    elem_id="pl-new-conv", elem_classes="pl-btn")
            citations = gr.HTML("", elem_id="pl-citations")
            gallery = gr.Gallery(label="Cited pages (click to open in the viewer)", columns=3, height=340,
                                 object_fit="contain", allow_preview=True, preview=False,
                                 fit_columns=False, elem_id="pl-gallery", interactive=False,
                                 visible=False, buttons=["fullscreen"])  # download: the viewer's, named <doc>-p<N>.png
            # what the browser sends: the plain answer (Copy) and the page a citation opens (ASK_KEYS_JS)
            plain = gr.Textbox("", visible="hidden", elem_id="pl-answer-plain", show_label=False)
            view_ref = gr.Textbox("", visible="hidden", elem_id="pl-view-ref", show_label=False)
            thread_json = gr.Textbox("", visible="hidden", elem_id="pl-thread-json", show_label=False)
            view_open = gr.Button("open", visible="hidden", elem_id="pl-view-open")
        with gr.Column(scale=2, min_width=280):
            with gr.Column(visible=False, elem_id="pl-viewer") as viewer:
                viewer_title = gr.Markdown("", elem_id="pl-viewer-title")
                with gr.Row(elem_classes="pl-viewer-bar"):
                    prev_btn = gr.Button("◀ Prev", size="sm", min_width=60, elem_id="pl-prev", elem_classes="pl-btn")
                    next_btn = gr.Button("Next ▶", size="sm", min_width=60, elem_id="pl-next", elem_classes="pl-btn")
                    zoom_out = gr.Button("−", size="sm", min_width=40, elem_id="pl-zoom-out", elem_classes="pl-btn")
                    zoom_fit = gr.Button("Fit", size="sm", min_width=50, elem_id="pl-zoom-fit", elem_classes="pl-btn")
                    zoom_in = gr.Button("+", size="sm", min_width=40, elem_id="pl-zoom-in", elem_classes="pl-btn")
                    download = gr.DownloadButton("⬇ PNG", size="sm", min_width=70, elem_id="pl-download",
                                                 elem_classes="pl-btn")
                    close_btn = gr.Button("✕", size="sm", min_width=40, elem_id="pl-viewer-close",
                                          elem_classes="pl-btn")
                viewer_msg = gr.HTML("", elem_id="pl-viewer-msg", padding=False, visible=False)
                viewer_img = gr.Image(label="Page", type="filepath", interactive=False, elem_id="pl-viewer-img",
                                      buttons=["fullscreen"], show_label=False)
                page_text_md = gr.Markdown("", elem_id="pl-page-text", elem_classes="pl-note", max_height=360,
                                           visible=False)
            sim_img = gr.Image(label="Similarity map (top page)", type="pil", visible=False,
                               interactive=False, elem_id="pl-sim", buttons=["fullscreen"])
            sim_caption = gr.Markdown("Ask a question to see which parts of the top page "
                                      "matched it.", elem_classes="pl-note", elem_id="pl-sim-caption")
    return AskTab(question=question, mode=mode, retrieval=retrieval, k_slider=k_slider, ask_btn=ask_btn,
                  stop_btn=stop_btn, ask_msg=ask_msg, thread_md=thread_md, new_btn=new_btn, current_q=current_q,
                  answer_md=answer_md, actions=actions, copy_btn=copy_btn, regen_btn=regen_btn, plain=plain, thread_json=thread_json,
                  citations=citations, gallery=gallery, sim_img=sim_img, sim_caption=sim_caption,
                  top_hits=top_hits, turns=turns, view=view, view_ref=view_ref, view_open=view_open, viewer=viewer,
                  viewer_title=viewer_title, viewer_msg=viewer_msg, viewer_img=viewer_img, prev_btn=prev_btn,
                  next_btn=next_btn, zoom_out=zoom_out, zoom_fit=zoom_fit, zoom_in=zoom_in, download=download,
                  close_btn=close_btn, page_text_md=page_text_md)
