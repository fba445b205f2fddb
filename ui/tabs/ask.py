"""The Ask tab: a question, the answer streamed as it is generated, the pages behind it and the similarity
map of the top page."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr
from pagelens.ui.render import (
    caption,
    citations_html,
    link_citation_markers,
    page_copy,
    page_text_markdown,
    similarity_overlay,
)
from pagelens.ui.state import (
    UIShell,
    can_read,
    check_read,
    err,
    msg,
    require_collection,
    require_principal,
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

# Enter in the question box asks (clicks Ask), Shift+Enter adds a newline: the reverse of Gradio's multi-line
# textbox, as in every chat app. A capture listener on the window runs before Gradio's own (delegated) key
# handler and stops it; an IME composition's Enter is left alone. Run once per page load (mount_ui's js).
ASK_KEYS_JS = """() => {
  if (window.__plAskKeys) return;
  window.__plAskKeys = true;
  const onKey = (e) => {
    const box = e.target;
    if (e.key !== 'Enter' || e.isComposing || !box || !box.closest || !box.closest('#pl-question')) return;
    e.preventDefault();
    e.stopImmediatePropagation();
    if (e.type !== 'keydown') return;
    if (e.shiftKey) {
      box.setRangeText('\\n', box.selectionStart, box.selectionEnd, 'end');
      box.dispatchEvent(new Event('input', {bubbles: true}));
    } else {
      const ask = document.querySelector('#pl-ask');
      if (ask) ask.click();
    }
  };
  window.addEventListener('keydown', onKey, true);
  window.addEventListener('keypress', onKey, true);
  // an answer's [n] link shows citation n in place (the page has a <base>: a plain #anchor would load a new page)
  window.addEventListener('click', (e) => {
    const ref = e.target && e.target.closest ? e.target.closest('a.pl-ref') : null;
    if (!ref) return;
    e.preventDefault();
    e.stopImmediatePropagation();
    const id = (ref.getAttribute('href') || '').replace(/^.*#/, '');
    const cite = id ? document.getElementById(id) : null;
    if (!cite) return;
    document.querySelectorAll('.pl-cite-on').forEach((el) => el.classList.remove('pl-cite-on'));
    cite.classList.add('pl-cite-on');
    cite.scrollIntoView({block: 'center'});
  }, true);
}"""


@dataclass
class AskTab:
    """The Ask tab's components (``top_hits``: the state holding the top ``SearchHit`` for the map)."""

    question: gr.Textbox
    mode: gr.Radio
    retrieval: gr.Dropdown
    k_slider: gr.Slider
    ask_btn: gr.Button
    stop_btn: gr.Button
    ask_msg: gr.HTML
    answer_md: gr.Markdown
    citations: gr.HTML
    gallery: gr.Gallery
    sim_img: gr.Image
    sim_caption: gr.Markdown
    top_hits: gr.State
    page_text_md: gr.Markdown

    def wire(self, shell: UIShell, screen: Screen) -> None:
        """Connect Ask and Enter to the streamed answer, then the similarity map."""
        ctx = shell.ctx
        who = shell.who
        default_k = ctx.settings.answer_top_k

        def do_ask(collection: str | None, q: str, how: str, k: float, retrieval_mode: str | None,
                   request: gr.Request) -> Iterator[tuple[Any, ...]]:
            """Yields (answer, gallery, top hits, similarity image, its caption, ask message, stop button,
            citations)."""
            p: Principal | None = who(request)
            q = (q or "").strip()
            k = int(k or default_k)
            no_pages = gr.update(value=[], visible=False)
            no_sim = gr.update(value=None, visible=False)
            skip = gr.skip()
            running = gr.update(visible=True)
            idle = gr.update(visible=False)
            if not q:  # refused here, before anything is cleared: the last answer and its pages stay
                yield skip, skip, skip, skip, skip, msg("Type a question first: nothing was asked.", ok=False), idle, skip
                return
            try:
                p = require_principal(p)
                collection = require_collection(collection)
                check_read(p, collection)
                t0 = time.perf_counter()
                query_mode = None if retrieval_mode in (None, RETRIEVAL_DEFAULT) else retrieval_mode
                hits = search_visible(ctx, collection, q, k, query_mode, None)  # type: ignore[arg-type]
                search_s = time.perf_counter() - t0
            except EmptyCollectionError:
                yield ("This collection has no pages yet: upload documents in the **Documents** tab.", no_pages,
                       [], no_sim, "", "", idle, "")
                return
            except Exception as exc:  # noqa: BLE001
                yield f"⚠ {err(exc)}", no_pages, [], no_sim, "", "", idle, ""
                return
            if not hits:
                yield ("No pages found: is the collection empty, or still indexing?", no_pages, [], no_sim, "", "",
                       idle, "")
                return
            pages = [(page_copy(ctx, h.image_path), caption(h.doc_name, h.page_no, h.score, n, h.score_kind))
                     for n, h in enumerate(hits, start=1)]
            hit_cites = citations_html([(h.doc_name, h.page_no) for h in hits])
            page_list = [(img, cap) for img, cap in pages if img]
            pages_upd = gr.update(value=page_list, visible=True)
            sim_wait = "Computing the similarity map…"
            if how == MODE_SEARCH:
                yield (f"Top {len(hits)} page(s) in {search_s * 1000:.0f} ms (search only, no answer).",
                       pages_upd, hits[:1], no_sim, sim_wait, "", idle, hit_cites)
                return
            yield (READING, pages_upd, hits[:1], no_sim, "The similarity map follows the answer.", "",
                   running, hit_cites)
            text = ""
            try:
                for event in ctx.service.answerer.stream(q, hits, k=k, retrieve_s=search_s):
                    if event.kind == "token":
                        text += event.text
                        yield text + STREAM_CURSOR, skip, skip, skip, skip, skip, skip, skip
                    elif event.kind == "done" and event.answer is not None:
                        answer = event.answer
                        # citation n is the n-th page shown to the model (answer/types.py Citation)
                        copies = [(page_copy(ctx, c.image_path), caption(c.doc_name, c.page_no, c.score, n, c.score_kind))
                                  for n, c in enumerate(answer.citations, start=1)]
                        cites = citations_html([(c.doc_name, c.page_no) for c in answer.citations])
                        cited = [(img, cap) for img, cap in copies if img] or page_list
                        t = answer.timings
                        foot = (f"\n\n<small>{len(answer.citations)} page(s) read · search "
                                f"{t.retrieve_s:.2f} s · first token {t.preprocess_s + t.prefill_s:.2f} s · "
                                f"total {t.total_s:.2f} s</small>")
                        body = link_citation_markers(answer.text.strip() or "*(the model gave an empty answer)*",
                                                     len(answer.citations))
                        yield (body + foot, gr.update(value=cited, visible=True), skip, skip, sim_wait, skip, idle,
                               cites)
            except Exception as exc:  # noqa: BLE001
                yield (text + f"\n\n⚠ {err(exc)}").strip(), skip, skip, skip, sim_wait, skip, idle, skip
            yield skip, skip, skip, skip, skip, skip, idle, skip

        def do_stop(answer: str | None) -> tuple[Any, Any, Any]:
            """Stop pressed: the answer so far stays, marked as stopped; no similarity map for it."""
            text = (answer or "").removesuffix(STREAM_CURSOR).rstrip()
            if text == READING:  # stopped before the first word
                text = ""
            return (f"{text}\n\n*(stopped)*".strip(), gr.update(visible=False),
                    "Stopped: no similarity map for an unfinished answer.")

        def do_similarity(collection: str | None, q: str, hits: list[Any], request: gr.Request) -> tuple[Any, str]:
            p = who(request)
            if not hits or not collection or not (q or "").strip() or not can_read(p, collection):
                return gr.skip(), gr.skip()
            try:
                image, text = similarity_overlay(ctx, collection, (q or "").strip(), hits[0])
            except Exception as exc:  # noqa: BLE001
                return gr.update(value=None, visible=False), f"No similarity map: {err(exc)}"
            return gr.update(value=image, visible=image is not None), text

        ask_inputs = [shell.coll_dd, self.question, self.mode, self.k_slider, self.retrieval]
        ask_outputs = [self.answer_md, self.gallery, self.top_hits, self.sim_img, self.sim_caption, self.ask_msg,
                       self.stop_btn, self.citations]
        # Enter in the question box clicks Ask (ASK_KEYS_JS), Shift+Enter is a newline
        asking = gr.on([self.ask_btn.click, self.question.submit], do_ask, ask_inputs, ask_outputs,
                       api_visibility="private")
        similarity = asking.then(do_similarity, [shell.coll_dd, self.question, self.top_hits],
                                 [self.sim_img, self.sim_caption], api_visibility="private").then(
            lambda hits: gr.update(value=page_text_markdown(hits[0]) if hits else "", visible=bool(hits)),
            [self.top_hits], [self.page_text_md], api_visibility="private")
        # cancel first, then mark the answer: the mark comes after the last streamed token
        self.stop_btn.click(None, None, None, cancels=[asking, similarity], queue=False,
                            api_visibility="private").then(
            do_stop, [self.answer_md], [self.answer_md, self.stop_btn, self.sim_caption], api_visibility="private")


def build_ask_tab(shell: UIShell) -> AskTab:
    """Lay out the Ask tab inside the current ``gr.Tabs``."""
    default_k = shell.ctx.settings.answer_top_k
    with gr.Tab("Ask", id="ask", elem_id="pl-tab-ask"), gr.Row():
        with gr.Column(scale=3, min_width=300):
            top_hits = gr.State([])  # inside a tab, never directly under gr.Tabs (it would count as a tab)
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
            answer_md = gr.Markdown("", label="Answer", elem_id="pl-answer",
                                    container=True, min_height=60)
            citations = gr.HTML("", elem_id="pl-citations")
            gallery = gr.Gallery(label="Cited pages (click to enlarge)", columns=3, height=340,
                                 object_fit="contain", allow_preview=True, preview=False,
                                 fit_columns=False, elem_id="pl-gallery", interactive=False,
                                 visible=False, buttons=["download", "fullscreen"])
        with gr.Column(scale=2, min_width=280):
            sim_img = gr.Image(label="Similarity map (top page)", type="pil", visible=False,
                               interactive=False, elem_id="pl-sim", buttons=["fullscreen"])
            sim_caption = gr.Markdown("Ask a question to see which parts of the top page "
                                      "matched it.", elem_classes="pl-note", elem_id="pl-sim-caption")
            page_text_md = gr.Markdown("", elem_id="pl-page-text", elem_classes="pl-note", max_height=360,
                                       visible=False)
    return AskTab(question=question, mode=mode, retrieval=retrieval, k_slider=k_slider, ask_btn=ask_btn, stop_btn=stop_btn, ask_msg=ask_msg,
                  answer_md=answer_md, citations=citations, gallery=gallery, sim_img=sim_img, sim_caption=sim_caption,
                  top_hits=top_hits, page_text_md=page_text_md)
