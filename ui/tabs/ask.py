"""The Ask tab: a document chat on Gradio's own ``gr.Chatbot`` (messages): the question box under the
conversation, the answer streamed into the newest message (the Chatbot scrolls to it), Copy on each answer,
Retry (the last question again) and Undo (the last turn taken back) from the Chatbot's own events, the
numbered sources with the cited pages' thumbnails inside each answer (a click opens the page viewer), a
page viewer (any page of a cited document: zoom, previous/next, its text, download) and the similarity map
of the top page.

The handlers are module-level functions over the app state (``UIContext``) and plain values, tested without
a browser (``tests/test_ui_ask_handlers.py``): ``ask`` streams ``AskView`` values (the conversation, whether
an answer is being written, the top hit for the map, a message); ``stop`` ends the session's answer at its
next token (server-side: the model's generation is closed, not only the browser's stream); ``undo``,
``restore``, ``similarity`` and ``open_ref`` likewise. ``AskTab.wire`` only maps them to components.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import gradio as gr
from pagelens.ui.conversations import MAX_CONVERSATIONS
from pagelens.ui.render import page_copy, similarity_overlay
from pagelens.ui.state import (
    UIContext,
    UIError,
    UIShell,
    can_read,
    check_read,
    err,
    msg,
    require_collection,
    require_principal,
)
from pagelens.ui.tabs.ask_assets import (
    CITE_CLICKS_JS,
    CONVERSATION_URL_JS,
    SCROLL_TO_ANSWER_JS,
)
from pagelens.ui.thread import (
    Cite,
    Turn,
    answer_text,
    cite_regions,
    cited_page,
    indexing_note,
    push_turn,
    regions_of,
    set_last,
    sources_html,
    turns_from_json,
    turns_to_json,
)
from pagelens.ui.viewer import (
    PageView,
    download_copy,
    draw_regions,
    find_page,
    legend_html,
    parse_page_ref,
    viewer_text,
    viewer_title,
)

from pagelens.app.access import Principal
from pagelens.app.visibility import search_visible
from pagelens.core.errors import EmptyCollectionError
from pagelens.core.types import PageFilter

if TYPE_CHECKING:
    from pagelens.ui.screen import Screen

MODE_ANSWER = "Answer"
MODE_SEARCH = "Search only"
# Retrieval modes (see retrieve/hybrid.py): "default" keeps PAGELENS_RETRIEVAL_MODE.
RETRIEVAL_DEFAULT = "default"
RETRIEVAL_CHOICES = [RETRIEVAL_DEFAULT, "hybrid", "visual", "text"]
BUSY = "An answer is still being written: wait for it, or press Stop."
SIM_IDLE = "Ask a question to see which parts of the top page matched it."
SIM_STOPPED = "Stopped: no similarity map for an unfinished answer."
# the browser's id (gr.BrowserState, local storage): whose conversations these are without API keys
BROWSER_KEY = "pl-browser"


# --------------------------------------------------------------------------------------------------
# The handlers: plain functions over the app state
# --------------------------------------------------------------------------------------------------


@dataclass
class AskView:
    """What an Ask event shows. ``turns``: the conversation (the last turn is the newest answer);
    ``busy``: an answer is being written (Ask disabled, Stop shown); ``top_hits``: the hit the similarity map
    is drawn for (empty: no map); ``message``: a refusal shown under the question box ("" none);
    ``question``: the question box's new text (None: unchanged)."""

    turns: list[Turn]
    busy: bool = False
    top_hits: list[Any] = field(default_factory=list)
    message: str = ""
    question: str | None = None


def _foot(n_pages: int, retrieve_s: float, first_s: float, total_s: float, attempt: int) -> str:
    return (f"<small>{n_pages} page(s) read · search {retrieve_s:.2f} s · first word after {first_s:.2f} s · "
            f"total {total_s:.2f} s" + (f" · answer {attempt} (retried)" if attempt > 1 else "") + "</small>")


def ask(ctx: UIContext, p: Principal | None, collection: str | None, question: str, mode: str, k: int,
        retrieval: str | None, turns: list[Turn], session: str, replace_last: bool = False,
        doc_ids: list[str] | None = None) -> Iterator[AskView]:
    """Answer ``question`` in ``collection`` as ``p`` as a new turn of ``turns`` (instead of the last one when
    ``replace_last``: Retry), streaming: the first view has the question and a "reading" answer (busy), then
    one per generated piece, then the finished turn with its citations (or a message). ``doc_ids``: search
    only these documents (the API's filter). One answer at a time per browser ``session``: a second is
    refused (``BUSY``); ``stop(ctx, session)`` ends this one at its next token, server-side, and the turn
    is kept as stopped, without citations or map."""
    question = (question or "").strip()
    if not question:  # refused before anything changes: the conversation stays
        yield AskView(turns, message="Type a question first: nothing was asked.")
        return
    if session in ctx.answers:
        yield AskView(turns, busy=True, message=BUSY)
        return
    stop_event = threading.Event()
    ctx.answers[session] = stop_event
    try:
        yield from _answer(ctx, p, collection, question, mode, k, retrieval, turns, replace_last, doc_ids,
                           stop_event)
    finally:
        if ctx.answers.get(session) is stop_event:
            del ctx.answers[session]


def _answer(ctx: UIContext, p: Principal | None, collection: str | None, q: str, mode: str, k: int,
            retrieval: str | None, turns: list[Turn], replace_last: bool, doc_ids: list[str] | None,
            stop_event: threading.Event) -> Iterator[AskView]:
    attempt = turns[-1].attempt + 1 if replace_last and turns else 1
    scope = tuple(doc_ids or ())
    turn = Turn(question=q, collection=collection or "", mode=mode, k=k, retrieval=retrieval, attempt=attempt,
                doc_ids=scope)
    turns = push_turn(turns, turn, replace_last)
    yield AskView(turns, busy=True, question="")
    try:
        p = require_principal(p)
        collection = require_collection(collection)
        check_read(p, collection)
        note = indexing_note(ctx.jobs, collection)
        turn = Turn(question=q, collection=collection, mode=mode, k=k, retrieval=retrieval, note=note,
                    attempt=attempt, doc_ids=scope)
        t0 = time.perf_counter()
        query_mode = None if retrieval in (None, RETRIEVAL_DEFAULT) else retrieval
        page_filter = PageFilter(doc_ids=list(scope)) if scope else None
        hits = search_visible(ctx, collection, q, k, query_mode, page_filter)  # type: ignore[arg-type]
        search_s = time.perf_counter() - t0
    except EmptyCollectionError:
        text = ("No pages found yet." if turn.note else
                "This collection has no pages yet: upload documents in the **Documents** tab.")
        yield AskView(set_last(turns, turn.with_answer(text, "message")))
        return
    except Exception as exc:  # noqa: BLE001
        yield AskView(set_last(turns, turn.with_answer(f"⚠ {err(exc)}", "message")))
        return
    if not hits:
        text = ("No pages found." if turn.note else
                "No pages found: the collection has no searchable pages; upload documents in the **Documents** tab.")
        yield AskView(set_last(turns, turn.with_answer(text, "message")))
        return
    cites = tuple(Cite(h.doc_id, h.doc_name, h.page_no, thumb=page_copy(ctx, h.image_path, collection) or "",
                       regions=regions_of(getattr(h, "regions", None)))
                  for h in hits)
    if mode == MODE_SEARCH:
        text = f"Top {len(hits)} page(s) in {search_s * 1000:.0f} ms (search only, no answer)."
        yield AskView(set_last(turns, turn.with_answer(text, "message", cites=cites)), top_hits=hits[:1])
        return
    turns = set_last(turns, turn)
    yield AskView(turns, busy=True)
    text = ""
    stream = ctx.service.answerer.stream(q, hits, k=k, retrieve_s=search_s)
    try:
        for event in stream:
            if stop_event.is_set():
                break
            if event.kind == "token":
                text += event.text
                yield AskView(set_last(turns, turn.with_answer(text, "running")), busy=True)
            elif event.kind == "done" and event.answer is not None:
                answer = event.answer
                t = answer.timings
                # citation n is the n-th page shown to the model (answer/types.py Citation)
                done = turn.with_answer(answer.text, "done", foot=_foot(
                    len(answer.citations), t.retrieve_s, t.preprocess_s + t.prefill_s, t.total_s, attempt),
                    cites=tuple(Cite(c.doc_id, c.doc_name, c.page_no,
                                     thumb=page_copy(ctx, c.image_path, collection) or "",
                                     regions=regions_of(getattr(c, "regions", None)))
                                for c in answer.citations))
                yield AskView(set_last(turns, done), top_hits=hits[:1])
                return
    except Exception as exc:  # noqa: BLE001
        yield AskView(set_last(turns, turn.with_answer((text + f"\n\n⚠ {err(exc)}").strip(), "message")))
        return
    finally:
        getattr(stream, "close", lambda: None)()  # ends generation at the next token when the loop left early (Stop)
    yield AskView(set_last(turns, turn.with_answer(text, "stopped", cites=())))


def stop(ctx: UIContext, session: str) -> bool:
    """Stop the answer browser ``session`` is being written (it ends at its next token); False when none."""
    event = ctx.answers.get(session)
    if event is None:
        return False
    event.set()
    return True


def undo(turns: list[Turn]) -> tuple[list[Turn], str]:
    """The conversation without its last turn, and that turn's question (back in the question box)."""
    if not turns:
        return [], ""
    return list(turns[:-1]), turns[-1].question


def restore(ctx: UIContext, p: Principal | None, stored: str | None) -> list[Turn]:
    """The conversation the browser kept (``turns_to_json``), only its turns in collections ``p`` may read;
    a thumbnail is kept only when this server made it for that collection (the browser sent the path)."""
    turns = []
    for t in turns_from_json(stored):
        if not can_read(p, t.collection):
            continue
        cites = tuple(c if not c.thumb or t.collection in ctx.page_collections(c.thumb)
                      else Cite(c.doc_id, c.doc_name, c.page_no) for c in t.cites)
        turns.append(replace(t, cites=cites))
    return turns


def owner_of(ctx: UIContext, p: Principal | None, browser: str | None) -> str | None:
    """Whose conversations: the signed-in key (``key:<name>``), or without keys this browser
    (``browser:<id>``); None when neither is known."""
    if p is None:
        return None
    if ctx.keys.enabled:
        return f"key:{p.name}"
    return f"browser:{browser}" if browser else None


def persist(ctx: UIContext, owner: str | None, conversation: str, turns: list[Turn]) -> str:
    """Save ``turns`` as the owner's ``conversation`` (a new one, titled by its first question, when
    ``conversation`` is ""); returns its id ("" when nothing is kept: no owner, no turns)."""
    if owner is None or not turns:
        return conversation
    conversation = conversation or ctx.conversations.new_id()
    if not ctx.conversations.save(owner, conversation, turns[0].question, turns_to_json(turns)):
        conversation = ctx.conversations.new_id()  # not this owner's (a link from someone else): a new one
        ctx.conversations.save(owner, conversation, turns[0].question, turns_to_json(turns))
    return conversation


def conversation_choices(ctx: UIContext, owner: str | None) -> list[tuple[str, str]]:
    """The sidebar's list: (title, id) of the owner's conversations, most recent first."""
    return [] if owner is None else [(c.title, c.id) for c in ctx.conversations.list(owner)]


def open_conversation(ctx: UIContext, p: Principal | None, owner: str | None, conversation: str | None) -> list[Turn]:
    """The turns of the owner's ``conversation`` that ``p`` may read (``restore``); [] when it is not the
    owner's."""
    if owner is None or not conversation:
        return []
    return restore(ctx, p, ctx.conversations.get(owner, conversation))


def similarity(ctx: UIContext, p: Principal | None, turns: list[Turn], hits: list[Any]) -> tuple[str | None, str]:
    """(image, caption) of the similarity map of the last turn's top page, in the collection it was asked in
    (the picker may show another by now); no image after a stopped, failed or empty answer."""
    last = turns[-1] if turns else None
    if last is None or not can_read(p, last.collection):
        return None, SIM_IDLE
    if last.status == "stopped":
        return None, SIM_STOPPED
    if not hits or not last.cites:
        return None, SIM_IDLE
    try:
        image, text = similarity_overlay(ctx, last.collection, last.question, hits[0])
    except Exception as exc:  # noqa: BLE001
        return None, f"No similarity map: {err(exc)}"
    return image, text


def ref_of(turns: list[Turn], ref: str) -> tuple[str, str, int]:
    """(collection, doc_id, page_no) a clicked source names: a citation id (``pl-t<i>-cite-<n>``) or a
    ``viewer.page_ref``; ``UIError`` when it names nothing."""
    found = cited_page(turns, ref)
    return found if found is not None else parse_page_ref(ref)


def open_page(ctx: UIContext, p: Principal | None, collection: str, doc_id: str, page_no: int) -> PageView:
    """The page ``p`` asked to see, after the read check; ``UIError``/``PagelensError`` saying why not."""
    p = require_principal(p)
    check_read(p, collection)
    return find_page(ctx, collection, doc_id, page_no)


# --------------------------------------------------------------------------------------------------
# The chat's messages
# --------------------------------------------------------------------------------------------------


def question_markdown(turn: Turn) -> str:
    """The user's message: the question (escaped: shown as typed) and the collection it was asked in."""
    question = html.escape(turn.question)
    only = f", {len(turn.doc_ids)} document(s) only" if turn.doc_ids else ""
    return (f"{question}\n\n<span class=\"pl-turn-coll\">in {html.escape(turn.collection)}{only}</span>"
            if turn.collection else question)


def chat_messages(turns: list[Turn], conversation: str = "") -> list[dict[str, Any]]:
    """The Chatbot's messages for ``turns``: per turn the question, the answer (Markdown: Copy copies it),
    and, for a finished answer with citations, its sources (an HTML component with the thumbnails; with a
    saved ``conversation``, a link that opens this answer)."""
    out: list[dict[str, Any]] = []
    for i, turn in enumerate(turns, start=1):
        out.append({"role": "user", "content": question_markdown(turn)})
        out.append({"role": "assistant", "content": answer_text(turn)})
        link = f"?collection={quote(turn.collection)}&c={conversation}&a={i}" if conversation else ""
        sources = sources_html(turn, i, link)
        if sources:
            out.append({"role": "assistant", "content": gr.HTML(sources, js_on_load=None, padding=False)})
    return out


# --------------------------------------------------------------------------------------------------
# The tab
# --------------------------------------------------------------------------------------------------


@dataclass
class AskTab:
    """The Ask tab's components. ``turns``: the conversation (``list[Turn]``), ``conv_id`` its id on the
    server ("" until its first answer is saved), ``convs`` the sidebar's list, ``browser`` this browser's id
    (the owner without API keys); ``top_hits``: the top ``SearchHit`` of the last answer, for the similarity map;
    ``view``: the ``PageView`` open in the viewer; ``heading``: the tab's heading, which also carries the
    clicks on the sources to the server (``CITE_CLICKS_JS``)."""

    heading: gr.HTML
    chat: gr.Chatbot
    question: gr.Textbox
    ask_btn: gr.Button
    stop_btn: gr.Button
    new_btn: gr.Button
    mode: gr.Radio
    retrieval: gr.Dropdown
    k_slider: gr.Slider
    scope: gr.Dropdown
    ask_msg: gr.HTML
    browser: gr.BrowserState
    conv_id: gr.State
    convs: gr.Radio
    conv_title: gr.Textbox
    rename_btn: gr.Button
    delete_conv_btn: gr.Button
    conv_msg: gr.HTML
    top_hits: gr.State
    turns: gr.State
    view: gr.State
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
    regions_toggle: gr.Checkbox
    # the regions' legend; its ``data-focus`` names the region the browser zooms to when the page opens
    regions_md: gr.HTML
    sim_img: gr.Image
    sim_caption: gr.Markdown

    # -- the viewer ---------------------------------------------------------------------------------
    def viewer_outputs(self) -> list[Any]:
        return [self.viewer, self.viewer_title, self.viewer_msg, self.viewer_img, self.page_text_md, self.download,
                self.prev_btn, self.next_btn, self.view, self.regions_toggle, self.regions_md]

    def show_page(self, view: PageView, shell: UIShell, regions: bool = True) -> dict[Any, Any]:
        """Viewer updates showing ``view``, its cited regions drawn over it when ``regions`` (the toggle), and
        the first of them as the region to focus (``viewer.legend_html``)."""
        shown = draw_regions(shell.ctx, view) if regions else view.image
        return {
            self.regions_toggle: gr.update(visible=bool(view.regions), value=regions),
            self.regions_md: gr.update(value=legend_html(view, shown), visible=bool(view.regions)),
            self.viewer: gr.update(visible=True),
            self.viewer_title: viewer_title(view),
            self.viewer_msg: gr.update(value="", visible=False) if view.image else gr.update(value=msg(
                f"The image of {view.doc_name}, page {view.page_no} is not on this server: index the document "
                "again to see it.", ok=False), visible=True),
            self.viewer_img: gr.update(value=shown,
                                       label=f"{view.doc_name} — page {view.page_no}",
                                       alt_text=f"Page {view.page_no} of {view.doc_name}"),
            self.page_text_md: gr.update(value=viewer_text(view), visible=True),
            self.download: gr.update(value=download_copy(shell.ctx, view), interactive=bool(view.image)),
            self.prev_btn: gr.update(interactive=view.page_no > 1),
            self.next_btn: gr.update(interactive=view.page_no < view.page_count),
            self.view: view,
        }

    def open_in_viewer(self, shell: UIShell, p: Principal | None, collection: str, doc_id: str,
                       page_no: int, turns: list[Turn] | None = None, regions: bool = True) -> dict[Any, Any]:
        """Viewer updates for page ``page_no`` of ``doc_id`` as ``p`` may see it (with the regions an answer
        of ``turns`` highlighted on it), or the reason it cannot."""
        try:
            view = open_page(shell.ctx, p, collection, doc_id, page_no)
            view = replace(view, regions=cite_regions(turns or [], collection, doc_id, view.page_no))
            return self.show_page(view, shell, regions)
        except Exception as exc:  # noqa: BLE001
            return {self.viewer: gr.update(visible=True), self.regions_md: gr.update(value="", visible=False),
                    self.viewer_msg: gr.update(value=msg(err(exc), ok=False), visible=True)}

    def shown(self, v: AskView) -> dict[Any, Any]:
        """Component updates for an ``AskView`` (a refusal while an answer streams: only its message)."""
        if v.busy and v.message:
            return {self.ask_msg: gr.update(value=msg(v.message, ok=False), visible=True)}
        out: dict[Any, Any] = {
            self.chat: chat_messages(v.turns), self.turns: v.turns, self.top_hits: v.top_hits,
            self.ask_btn: gr.update(interactive=not v.busy), self.stop_btn: gr.update(visible=v.busy, interactive=True),
            self.ask_msg: gr.update(value=msg(v.message, ok=False) if v.message else "", visible=bool(v.message)),
        }
        if v.question is not None:
            out[self.question] = v.question
        if not v.busy and v.turns and v.turns[-1].status == "stopped":  # no map follows a stopped answer
            out[self.sim_img] = gr.update(value=None, visible=False)
            out[self.sim_caption] = SIM_STOPPED
        return out

    def saved(self, v: AskView, ctx: UIContext, owner: str | None, conversation: str) -> dict[Any, Any]:
        """``shown(v)``, and once the answer is finished the conversation saved (``persist``) with the
        sidebar's list and the chat's links naming it."""
        out = self.shown(v)
        if v.busy or self.chat not in out:
            return out
        conversation = persist(ctx, owner, conversation, v.turns)
        out[self.chat] = chat_messages(v.turns, conversation)
        out[self.conv_id] = conversation
        out[self.convs] = gr.update(choices=conversation_choices(ctx, owner), value=conversation or None)
        return out

    def ask_outputs(self) -> list[Any]:
        return [self.chat, self.turns, self.top_hits, self.ask_btn, self.stop_btn, self.ask_msg,
                self.question, self.conv_id, self.convs, self.sim_img, self.sim_caption]

    # -- events -------------------------------------------------------------------------------------
    def wire_load(self, shell: UIShell, demo: gr.Blocks) -> None:
        """On page load (also after a browser restart) the sidebar lists this owner's conversations and the
        one a link names (``?c=<id>&a=<answer>``, only the owner's) or else the most recent one comes back
        (the turns in collections the principal may read), scrolled to the linked answer."""
        ctx = shell.ctx

        def on_load(browser: str | None, request: gr.Request) -> dict[Any, Any]:
            p = shell.who(request)
            browser = browser or ctx.conversations.new_id() + ctx.conversations.new_id()
            owner = owner_of(ctx, p, browser)
            choices = conversation_choices(ctx, owner)
            params = getattr(request, "query_params", None) or {}
            wanted = str(params.get("c") or "")
            conversation = wanted if any(cid == wanted for _, cid in choices) else (choices[0][1] if choices else "")
            turns = open_conversation(ctx, p, owner, conversation)
            out = self.shown(AskView(turns))
            out.update({self.browser: browser, self.conv_id: conversation if turns else "",
                        self.chat: chat_messages(turns, conversation if turns else ""),
                        self.convs: gr.update(choices=choices, value=conversation or None)})
            return out

        demo.load(on_load, [self.browser], [*self.ask_outputs(), self.browser], show_progress="hidden",
                  api_visibility="private").then(None, None, None, js=CONVERSATION_URL_JS, queue=False,
                                                 api_visibility="private").then(
            None, None, None, js=SCROLL_TO_ANSWER_JS, queue=False, api_visibility="private")

    def wire(self, shell: UIShell, screen: Screen) -> None:
        """Connect Ask/Enter, Retry and Undo to the streamed answer (then the similarity map and the viewer on
        the top page); Stop; New conversation; a click on a source; the viewer's controls."""
        ctx = shell.ctx
        default_k = ctx.settings.answer_top_k

        def session_of(request: gr.Request) -> str:
            return str(getattr(request, "session_hash", None) or id(request))

        def ask_on_ask(collection: str | None, q: str, how: str, k: float, retrieval: str | None,
                       scope: list[str] | None, turns: list[Turn] | None, browser: str | None, conversation: str,
                       request: gr.Request) -> Iterator[dict[Any, Any]]:
            p = shell.who(request)
            owner = owner_of(ctx, p, browser)
            for v in ask(ctx, p, collection, q, how, int(k or default_k), retrieval, turns or [],
                         session_of(request), doc_ids=[str(d) for d in scope or []]):
                yield self.saved(v, ctx, owner, conversation)

        def ask_on_retry(turns: list[Turn] | None, browser: str | None, conversation: str,
                         request: gr.Request) -> Iterator[dict[Any, Any]]:
            """The last question again, in the collection, mode and settings it was asked with; its answer
            replaces the last one."""
            if not turns:
                yield self.shown(AskView([], message="Nothing to retry: ask a question first."))
                return
            last = turns[-1]
            p = shell.who(request)
            for v in ask(ctx, p, last.collection, last.question, last.mode, last.k, last.retrieval,
                         turns, session_of(request), replace_last=True, doc_ids=list(last.doc_ids)):
                yield self.saved(v, ctx, owner_of(ctx, p, browser), conversation)

        def ask_on_undo(turns: list[Turn] | None, browser: str | None, conversation: str,
                        request: gr.Request) -> dict[Any, Any]:
            if session_of(request) in ctx.answers:
                return self.shown(AskView(turns or [], busy=True, message=BUSY))
            kept, question = undo(turns or [])
            owner = owner_of(ctx, shell.who(request), browser)
            if kept:
                return self.saved(AskView(kept, question=question), ctx, owner, conversation)
            if conversation and owner is not None:
                ctx.conversations.delete(owner, conversation)  # nothing left of it
            return {**self.shown(AskView([], question=question)), self.conv_id: "",
                    self.convs: gr.update(choices=conversation_choices(ctx, owner), value=None)}

        def ask_on_stop(request: gr.Request) -> Any:
            stop(ctx, session_of(request))
            return gr.update(interactive=False)  # the answer's own last update hides it

        def ask_on_similarity(turns: list[Turn] | None, hits: list[Any], request: gr.Request) -> tuple[Any, str]:
            image, text = similarity(ctx, shell.who(request), turns or [], hits or [])
            return gr.update(value=image, visible=image is not None), text

        def view_top(turns: list[Turn] | None, request: gr.Request) -> dict[Any, Any]:
            """The viewer on the last answer's first page, when it finished with citations."""
            last = turns[-1] if turns else None
            if last is None or last.status != "done" or not last.cites:
                return {self.view: gr.skip()}
            c = last.cites[0]
            return self.open_in_viewer(shell, shell.who(request), last.collection, c.doc_id, c.page_no, turns)

        def ask_on_open_source(turns: list[Turn] | None, regions: bool, evt: gr.EventData,
                               request: gr.Request) -> dict[Any, Any]:
            """A click on a source (``CITE_CLICKS_JS`` sends its ``data-ref`` or id as ``ref``)."""
            ref = str(getattr(evt, "_data", {}).get("ref") or "") if evt is not None else ""
            try:
                collection, doc_id, page_no = ref_of(turns or [], ref)
            except UIError as exc:
                return {self.viewer: gr.update(visible=True), self.regions_md: gr.update(value="", visible=False),
                        self.viewer_msg: gr.update(value=msg(str(exc), ok=False), visible=True)}
            return self.open_in_viewer(shell, shell.who(request), collection, doc_id, page_no, turns, regions)

        def step(delta: int) -> Any:
            def go(view: PageView | None, turns: list[Turn] | None, regions: bool, request: gr.Request) -> dict[Any, Any]:
                if view is None:
                    return {self.view: gr.skip()}
                return self.open_in_viewer(shell, shell.who(request), view.collection, view.doc_id,
                                           view.page_no + delta, turns, regions)
            return go

        def ask_on_regions(view: PageView | None, regions: bool) -> Any:
            """The toggle: the page with or without its highlighted regions."""
            if view is None or not view.image:
                return gr.skip()
            return draw_regions(ctx, view) if regions else view.image

        def cleared(owner: str | None, note: str = "") -> dict[Any, Any]:
            """An empty chat (a new conversation, kept once its first answer is), no map, no viewer."""
            return {**self.shown(AskView([])), self.sim_img: gr.update(value=None, visible=False),
                    self.sim_caption: SIM_IDLE, self.viewer: gr.update(visible=False), self.view: None,
                    self.page_text_md: gr.update(value="", visible=False), self.conv_id: "",
                    self.convs: gr.update(choices=conversation_choices(ctx, owner), value=None),
                    self.conv_msg: note, self.conv_title: ""}

        def ask_on_new(browser: str | None, request: gr.Request) -> dict[Any, Any]:
            """New conversation: the chat, the map and the viewer are cleared (the old one stays listed)."""
            if session_of(request) in ctx.answers:
                return {self.ask_msg: gr.update(value=msg(BUSY, ok=False), visible=True)}
            return cleared(owner_of(ctx, shell.who(request), browser))

        def ask_on_pick(picked: str | None, browser: str | None, request: gr.Request) -> dict[Any, Any]:
            """A conversation picked in the sidebar comes back."""
            if session_of(request) in ctx.answers:
                return {self.ask_msg: gr.update(value=msg(BUSY, ok=False), visible=True)}
            p = shell.who(request)
            owner = owner_of(ctx, p, browser)
            turns = open_conversation(ctx, p, owner, picked)
            if not turns:
                return cleared(owner, msg("That conversation is gone (deleted in another tab?).", ok=False))
            return {**cleared(owner), **self.shown(AskView(turns)), self.chat: chat_messages(turns, picked or ""),
                    self.conv_id: picked, self.convs: gr.update(choices=conversation_choices(ctx, owner), value=picked)}

        def ask_on_rename(title: str | None, browser: str | None, conversation: str,
                          request: gr.Request) -> dict[Any, Any]:
            owner = owner_of(ctx, shell.who(request), browser)
            if owner is None or not conversation or not ctx.conversations.rename(owner, conversation, title or ""):
                return {self.conv_msg: msg("Type a new name for the open conversation first.", ok=False)}
            return {self.conv_msg: msg("Renamed."), self.conv_title: "",
                    self.convs: gr.update(choices=conversation_choices(ctx, owner), value=conversation)}

        def ask_on_delete_conv(browser: str | None, conversation: str, request: gr.Request) -> dict[Any, Any]:
            if session_of(request) in ctx.answers:
                return {self.ask_msg: gr.update(value=msg(BUSY, ok=False), visible=True)}
            owner = owner_of(ctx, shell.who(request), browser)
            if owner is None or not conversation or not ctx.conversations.delete(owner, conversation):
                return {self.conv_msg: msg("Open a saved conversation first.", ok=False)}
            return cleared(owner, msg("Deleted the conversation."))

        outputs = self.ask_outputs()
        conv = [self.browser, self.conv_id]
        asking = gr.on([self.ask_btn.click, self.question.submit], ask_on_ask,
                       [shell.coll_dd, self.question, self.mode, self.k_slider, self.retrieval, self.scope, self.turns,
                        *conv], outputs, api_visibility="private", trigger_mode="once", show_progress="hidden")
        retrying = self.chat.retry(ask_on_retry, [self.turns, *conv], outputs, api_visibility="private",
                                   trigger_mode="once", show_progress="hidden")
        for event in (asking, retrying):
            event.then(ask_on_similarity, [self.turns, self.top_hits], [self.sim_img, self.sim_caption],
                       api_visibility="private", show_progress="hidden").then(
                view_top, [self.turns], self.viewer_outputs(), api_visibility="private", show_progress="hidden").then(
                None, [self.regions_md], None, js=focus_js("viewer"), queue=False, api_visibility="private")
        undoing = self.chat.undo(ask_on_undo, [self.turns, *conv], outputs, api_visibility="private")
        self.stop_btn.click(ask_on_stop, None, [self.stop_btn], queue=False, api_visibility="private")
        new_outputs = [*outputs, self.viewer, self.view, self.page_text_md,
                       self.conv_msg, self.conv_title]
        conv_events = [
            asking, retrying, undoing,
            self.new_btn.click(ask_on_new, [self.browser], new_outputs, api_visibility="private"),
            self.chat.clear(ask_on_new, [self.browser], new_outputs, api_visibility="private"),
            self.convs.input(ask_on_pick, [self.convs, self.browser], new_outputs, api_visibility="private"),
            self.delete_conv_btn.click(ask_on_delete_conv, conv, new_outputs, api_visibility="private"),
        ]
        for event in conv_events:  # the open conversation's id in the URL
            event.then(None, None, None, js=CONVERSATION_URL_JS, queue=False, api_visibility="private")
        self.rename_btn.click(ask_on_rename, [self.conv_title, *conv], [self.conv_msg, self.conv_title, self.convs],
                              api_visibility="private")
        self.conv_title.submit(ask_on_rename, [self.conv_title, *conv], [self.conv_msg, self.conv_title, self.convs],
                               api_visibility="private")

        # the viewer: a click on a source (CITE_CLICKS_JS) opens the page zoomed to its first region, centred
        # on screen (focus_js); previous/next (zoomed likewise, inside the viewer), zoom, close
        self.heading.click(ask_on_open_source, [self.turns, self.regions_toggle], self.viewer_outputs(), api_visibility="private").then(
            None, [self.regions_md], None, js=focus_js("page"), queue=False, api_visibility="private")
        for button, delta in ((self.prev_btn, -1), (self.next_btn, 1)):
            button.click(step(delta), [self.view, self.turns, self.regions_toggle], self.viewer_outputs(),
                         api_visibility="private").then(
                None, [self.regions_md], None, js=focus_js("viewer"), queue=False, api_visibility="private")
        self.regions_toggle.input(ask_on_regions, [self.view, self.regions_toggle], [self.viewer_img],
                                  api_visibility="private", show_progress="hidden")
        for button, how in ((self.zoom_in, "in"), (self.zoom_out, "out"), (self.zoom_fit, "fit")):
            button.click(None, None, None, js=f"() => {{ if (window.plZoom) window.plZoom('{how}'); return []; }}",
                         queue=False, api_visibility="private")
        self.close_btn.click(lambda: gr.update(visible=False), None, [self.viewer], queue=False,
                             api_visibility="private")


def focus_js(scroll: str) -> str:
    """The js of the step after a page opens: ``plFocus`` (``ask_assets.VIEWER_JS``) with the regions'
    legend (``viewer.legend_html``: its ``data-focus``), ``scroll`` "page" (the region centred on screen) or
    "viewer" (centred inside the viewer only)."""
    return f"(legend) => {{ if (window.plFocus) window.plFocus(legend, '{scroll}'); return []; }}"


def build_ask_tab(shell: UIShell) -> AskTab:
    """Lay out the Ask tab inside the current ``gr.Tabs``."""
    default_k = shell.ctx.settings.answer_top_k
    with gr.Tab("Ask", id="ask", elem_id="pl-tab-ask"):
        with gr.Sidebar(label="Conversations", open=False, elem_id="pl-sidebar"):
            new_btn = gr.Button("＋ New conversation", size="sm", elem_id="pl-new-conv", elem_classes="pl-btn")
            convs = gr.Radio([], value=None, label="Your conversations", elem_id="pl-convs")
            with gr.Row(elem_classes="pl-bar-row"):
                conv_title = gr.Textbox(label="Rename the open conversation", max_lines=1, max_length=80,
                                        scale=3, min_width=120, elem_id="pl-conv-title")
                rename_btn = gr.Button("Rename", size="sm", scale=0, min_width=70, elem_id="pl-conv-rename",
                                       elem_classes="pl-btn")
            delete_conv_btn = gr.Button("Delete the open conversation", size="sm", variant="stop",
                                        elem_id="pl-conv-delete", elem_classes="pl-btn")
            conv_msg = gr.HTML("", elem_id="pl-conv-msg")
            gr.Markdown(f"Kept on the server for your API key (without keys: this browser), the "
                        f"{MAX_CONVERSATIONS} most recent.", elem_classes="pl-note")
        heading = gr.HTML('<h2 class="pl-tab-h">Ask your documents</h2>', js_on_load=CITE_CLICKS_JS,
                          elem_id="pl-ask-h")
        with gr.Row():
            with gr.Column(scale=3, min_width=300):
                # inside a tab, never directly under gr.Tabs (they would count as tabs)
                top_hits = gr.State([])
                turns = gr.State([])
                view = gr.State(None)
                conv_id = gr.State("")
                # not a secret (only an id): a fixed key, so it survives a server restart
                browser = gr.BrowserState("", storage_key=BROWSER_KEY, secret="pagelens-browser-id")
                chat = gr.Chatbot(label="Conversation", elem_id="pl-chat", height="62vh", min_height=260,
                                  autoscroll=True, buttons=["copy"], feedback_options=None,
                                  group_consecutive_messages=False, sanitize_html=True, render_markdown=True,
                                  placeholder="Ask a question about the documents of this collection: the "
                                              "answer cites the pages it was read from.")
                with gr.Row(elem_classes="pl-bar-row pl-ask-row"):
                    question = gr.Textbox(label="Question", lines=1, max_lines=6, scale=6, min_width=200,
                                          placeholder="e.g. What is the total amount due? (Enter asks, "
                                                      "Shift+Enter: a new line)", elem_id="pl-question")
                    ask_btn = gr.Button("Ask", variant="primary", scale=0, min_width=80, elem_id="pl-ask",
                                        elem_classes="pl-btn")
                    stop_btn = gr.Button("■ Stop", variant="stop", scale=0, min_width=80, visible=False,
                                         elem_id="pl-stop", elem_classes="pl-btn")
                ask_msg = gr.HTML("", elem_id="pl-ask-msg", visible=False)
                with gr.Accordion("Options", open=False, elem_id="pl-ask-options"), \
                        gr.Row(elem_classes="pl-bar-row"):
                        mode = gr.Radio([MODE_ANSWER, MODE_SEARCH], value=MODE_ANSWER, label="Mode",
                                        scale=2, min_width=200, elem_id="pl-mode")
                        retrieval = gr.Dropdown(RETRIEVAL_CHOICES, value=RETRIEVAL_DEFAULT, label="Retrieval",
                                                scale=1, min_width=120, elem_id="pl-retrieval")
                        k_slider = gr.Slider(1, 16, value=default_k, step=1, label="Pages (k)",
                                             scale=2, min_width=160, elem_id="pl-k")
                        scope = gr.Dropdown([], value=[], multiselect=True, label="Only these documents "
                                            "(empty: all)", scale=3, min_width=200, elem_id="pl-scope")
            with gr.Column(scale=2, min_width=280):
                with gr.Column(visible=False, elem_id="pl-viewer") as viewer:
                    viewer_title = gr.Markdown("", elem_id="pl-viewer-title")
                    with gr.Row(elem_classes="pl-viewer-bar"):
                        prev_btn = gr.Button("◀ Prev", size="sm", min_width=60, elem_id="pl-prev",
                                             elem_classes="pl-btn")
                        next_btn = gr.Button("Next ▶", size="sm", min_width=60, elem_id="pl-next",
                                             elem_classes="pl-btn")
                        zoom_out = gr.Button("− Zoom", size="sm", min_width=40, elem_id="pl-zoom-out",
                                             elem_classes="pl-btn")
                        zoom_fit = gr.Button("Fit page", size="sm", min_width=50, elem_id="pl-zoom-fit",
                                             elem_classes="pl-btn")
                        zoom_in = gr.Button("+ Zoom", size="sm", min_width=40, elem_id="pl-zoom-in", elem_classes="pl-btn")
                        download = gr.DownloadButton("⬇ Download PNG", size="sm", min_width=70, elem_id="pl-download",
                                                     elem_classes="pl-btn")
                        close_btn = gr.Button("✕ Close", size="sm", min_width=40, elem_id="pl-viewer-close",
                                              elem_classes="pl-btn")
                    viewer_msg = gr.HTML("", elem_id="pl-viewer-msg", padding=False, visible=False)
                    with gr.Row(elem_classes="pl-bar-row"):
                        regions_toggle = gr.Checkbox(True, label="Highlight the cited regions", visible=False,
                                                     scale=0, min_width=200, elem_id="pl-regions")
                        regions_md = gr.HTML("", visible=False, elem_classes="pl-note", elem_id="pl-regions-legend",
                                             padding=False)
                    viewer_img = gr.Image(label="Page", type="filepath", interactive=False, elem_id="pl-viewer-img",
                                          buttons=["fullscreen"], show_label=False)
                    page_text_md = gr.Markdown("", elem_id="pl-page-text", elem_classes="pl-note", max_height=360,
                                               visible=False)
                sim_img = gr.Image(label="Similarity map (top page)", type="pil", visible=False,
                                   alt_text="Similarity map: the top page with the parts that matched the question",
                                   interactive=False, elem_id="pl-sim", buttons=["fullscreen"])
                sim_caption = gr.Markdown(SIM_IDLE, elem_classes="pl-note", elem_id="pl-sim-caption")
    return AskTab(heading=heading, chat=chat, question=question, ask_btn=ask_btn, stop_btn=stop_btn, new_btn=new_btn,
                  mode=mode, retrieval=retrieval, k_slider=k_slider, scope=scope, ask_msg=ask_msg, browser=browser,
                  conv_id=conv_id, convs=convs, conv_title=conv_title, rename_btn=rename_btn,
                  delete_conv_btn=delete_conv_btn, conv_msg=conv_msg,
                  top_hits=top_hits, turns=turns, view=view, viewer=viewer, viewer_title=viewer_title,
                  viewer_msg=viewer_msg, viewer_img=viewer_img, prev_btn=prev_btn, next_btn=next_btn,
                  zoom_out=zoom_out, zoom_fit=zoom_fit, zoom_in=zoom_in, download=download, close_btn=close_btn,
                  page_text_md=page_text_md, regions_toggle=regions_toggle, regions_md=regions_md, sim_img=sim_img, sim_caption=sim_caption)
