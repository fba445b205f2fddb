"""The Ask tab's conversation: one ``Turn`` per question (kept in a ``gr.State``, so it survives switching
tabs, and stored for the browser: ``turns_to_json`` / ``turns_from_json``), what the chat shows of each turn
(``answer_text``: the answer bubble's Markdown; ``sources_html``: its numbered sources with the cited pages'
thumbnails, each opening the page viewer), and the note on documents of the collection that are still
being indexed (their pages are not searched yet). Pure functions.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pagelens.ui.viewer import page_ref

if TYPE_CHECKING:
    from pagelens.app.jobs import JobStore

# the most turns kept per browser session (the oldest go first)
MAX_TURNS = 50
# the most characters of a conversation read back from the browser's session storage
MAX_STORED_CHARS = 2_000_000


@dataclass(frozen=True)
class Cite:
    """Citation n of a turn: the n-th page shown to the model (or the n-th hit in search-only mode)."""

    doc_id: str
    doc_name: str
    page_no: int
    # the page's copy in the UI's cache (``render.page_copy``) shown as a thumbnail; "" when not on this server
    thumb: str = ""
    # the highlighted regions of the page that support the answer (issue 27: dicts with x0, y0, x1, y1 as
    # fractions 0..1 of the page's width/height from its top left, source "text" | "visual", score; "text"
    # on text regions), drawn by the viewer (``viewer.draw_regions``); empty when the search gave none
    regions: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Turn:
    """A question and its answer. ``answer``: the model's text (plain, with its ``[n]`` markers) or a
    message; ``foot``: the timings line; ``status``: running, done, stopped or message (no answer)."""

    question: str
    collection: str
    mode: str
    k: int
    retrieval: str | None
    answer: str = ""
    foot: str = ""
    cites: tuple[Cite, ...] = field(default_factory=tuple)
    status: str = "running"
    # documents of the collection still being indexed when it was asked (``indexing_note``)
    note: str = ""
    # the pages shown in the gallery (``viewer.page_ref``), in order: a click on item i opens pages[i]
    pages: tuple[str, ...] = field(default_factory=tuple)
    # 1 for a question as asked, n for its (n-1)-th Regenerate
    attempt: int = 1
    # the documents the question was limited to (empty: the whole collection)
    doc_ids: tuple[str, ...] = ()

    def with_answer(self, answer: str, status: str, foot: str = "", cites: tuple[Cite, ...] | None = None) -> Turn:
        return replace(self, answer=answer, status=status, foot=foot, cites=self.cites if cites is None else cites)


def push_turn(turns: list[Turn], turn: Turn, replace_last: bool = False) -> list[Turn]:
    """A new list: ``turns`` plus ``turn`` (instead of the last one when ``replace_last``), at most
    ``MAX_TURNS``."""
    kept = list(turns[:-1] if replace_last and turns else turns)
    return [*kept, turn][-MAX_TURNS:]


def set_last(turns: list[Turn], turn: Turn) -> list[Turn]:
    """A new list with the last turn replaced by ``turn`` (appended when ``turns`` is empty)."""
    return [*turns[:-1], turn] if turns else [turn]


STREAM_CURSOR = " ▍"
READING = "*Reading the pages…*"


def answer_text(turn: Turn) -> str:
    """The answer bubble's Markdown: the "still indexing" note (a quote), then the model's text as written
    (its ``[n]`` markers name the sources listed under it), ``*(stopped)*`` after a stopped answer, a cursor
    while it streams. Messages (no answer) are shown as they are."""
    note = f"> {turn.note}\n\n" if turn.note else ""
    if turn.status == "message":
        return note + turn.answer
    text = turn.answer.strip()
    if turn.status == "running":
        return note + (text + STREAM_CURSOR if text else READING)
    if turn.status == "stopped":
        return note + f"{text}\n\n*(stopped)*".strip()
    return note + (text or "*(the model gave an empty answer)*")


def file_url(path: str) -> str:
    """The URL (relative to the UI's page, ``<ui>/``) Gradio serves a cached file at."""
    return "gradio_api/file=" + quote(path, safe="/")


def sources_html(turn: Turn, index: int, link: str = "") -> str:
    """The sources under answer ``index`` (1-based turn number): numbered citations ``[n] <document> — page
    <N>`` with the cited page's thumbnail, each ``#pl-t<index>-cite-<n>`` and opening the page viewer on a
    click or Enter (``data-ref``: a ``viewer.page_ref``; ``ask_assets.CITE_CLICKS_JS``), then the timings
    line (with ``link``, a URL that opens this answer). "" for a turn without citations or one that did not
    finish (running, stopped)."""
    if turn.status not in ("done", "message") or not turn.cites:
        return ""
    items = []
    for n, c in enumerate(turn.cites, start=1):
        name = html.escape(c.doc_name)
        label = f"{name} — page {int(c.page_no)}"
        thumb = (f'<img class="pl-thumb" src="{html.escape(file_url(c.thumb))}" alt="Page {int(c.page_no)} of '
                 f'{name}" loading="lazy">' if c.thumb else "")
        items.append(
            f'<li class="pl-cite" id="pl-t{index}-cite-{n}" data-ref="{html.escape(page_ref(turn.collection, c.doc_id, c.page_no))}" '
            f'role="button" tabindex="0" title="Open {label} in the viewer" aria-label="Open source {n}: {label}">'
            f'{thumb}<span class="pl-cite-label"><span class="pl-cite-n">[{n}]</span> '
            f'<span class="pl-cite-doc">{name}</span> — page {int(c.page_no)}</span></li>')
    anchor = (f' · <a class="pl-answer-link" href="{html.escape(link)}" title="A link that opens this answer">'
              f"link to this answer</a>" if link else "")
    foot = f'<p class="pl-foot">{turn.foot}{anchor}</p>' if turn.foot or anchor else ""
    return (f'<div class="pl-sources" id="pl-t{index}-sources"><ol class="pl-cites" aria-label="Sources">'
            f'{"".join(items)}</ol>{foot}</div>')


def cited_page(turns: list[Turn], cite_id: str) -> tuple[str, str, int] | None:
    """(collection, doc_id, page_no) that the citation element ``pl-t<i>-cite-<n>`` names (turn i, 1-based,
    citation n); None when there is no such citation (the conversation changed meanwhile)."""
    m = _CITE_ID.match(cite_id or "")
    if not m or not 1 <= int(m.group(1)) <= len(turns):
        return None
    turn = turns[int(m.group(1)) - 1]
    n = int(m.group(2))
    if not 1 <= n <= len(turn.cites):
        return None
    cite = turn.cites[n - 1]
    return turn.collection, cite.doc_id, cite.page_no


_CITE_ID = re.compile(r"^pl-t(\d{1,4})-cite-(\d{1,3})$")


def cite_regions(turns: list[Turn], collection: str, doc_id: str, page_no: int) -> tuple[dict[str, Any], ...]:
    """The regions the newest answer citing that page highlighted on it (empty when none did)."""
    for turn in reversed(turns):
        if turn.collection != collection:
            continue
        for c in turn.cites:
            if c.doc_id == doc_id and c.page_no == page_no and c.regions:
                return c.regions
    return ()


def plain_answer(turn: Turn) -> str:
    """The model's answer as written (no note, no timings); "" for a message."""
    return turn.answer.strip() if turn.status != "message" else ""


def indexing_note(jobs: JobStore, collection: str) -> str:
    """One sentence per document of ``collection`` an unfinished job has not indexed yet (``report.pdf is
    still indexing: 164/352 pages; its pages are not searched yet``), or "" when there is none."""
    notes: list[str] = []
    for job in jobs.active_for(collection):
        for doc in job.documents:
            name = str(doc.get("name") or doc.get("doc_id") or "a document")
            status = doc.get("status")
            if status == "running":
                total = int(doc.get("page_count") or 0)
                done = min(int(doc.get("pages_done") or 0), total) if total else int(doc.get("pages_done") or 0)
                progress = f"{done}/{total} pages" if total else "starting"
                notes.append(f"{name} is still indexing: {progress}; its pages are not searched yet.")
            elif status == "queued":
                notes.append(f"{name} is waiting to be indexed; its pages are not searched yet.")
    return " ".join(notes)


def regions_of(value: Any) -> tuple[dict[str, Any], ...]:
    """The well-formed regions of ``value`` (a citation's or a hit's ``regions``, or what a stored
    conversation holds): dicts with numeric x0 < x1 and y0 < y1 inside 0..1, a source of "text" or
    "visual"; others are left out. At most 64."""
    out: list[dict[str, Any]] = []
    for r in list(value or [])[:64]:
        if not isinstance(r, dict):
            continue
        try:
            box = {k: min(1.0, max(0.0, float(r[k]))) for k in ("x0", "y0", "x1", "y1")}
        except (KeyError, TypeError, ValueError):
            continue
        if box["x1"] <= box["x0"] or box["y1"] <= box["y0"]:
            continue
        source = "text" if r.get("source") == "text" else "visual"
        region: dict[str, Any] = {**box, "source": source}
        if isinstance(r.get("score"), (int, float)):
            region["score"] = float(r["score"])
        if source == "text" and isinstance(r.get("text"), str):
            region["text"] = r["text"][:500]
        out.append(region)
    return tuple(out)


def turns_to_json(turns: list[Turn]) -> str:
    """The conversation as JSON, for the browser's session storage (a reload reads it back)."""
    return json.dumps([asdict(t) for t in turns[-MAX_TURNS:]], ensure_ascii=False)


def _turn_of(d: Any) -> Turn | None:
    if not isinstance(d, dict) or not isinstance(d.get("question"), str) or not isinstance(d.get("collection"), str):
        return None
    try:
        cites = tuple(Cite(doc_id=str(c["doc_id"]), doc_name=str(c["doc_name"]), page_no=int(c["page_no"]),
                           thumb=str(c.get("thumb") or ""), regions=regions_of(c.get("regions")))
                      for c in d.get("cites") or [])
        status = str(d.get("status") or "done")
        return Turn(question=d["question"], collection=d["collection"], mode=str(d.get("mode") or ""),
                    k=int(d.get("k") or 1), retrieval=None if d.get("retrieval") is None else str(d["retrieval"]),
                    answer=str(d.get("answer") or ""), foot=str(d.get("foot") or ""), cites=cites,
                    # an answer cut by the reload is shown as stopped
                    status="stopped" if status == "running" else status, note=str(d.get("note") or ""),
                    pages=tuple(str(r) for r in d.get("pages") or []), attempt=int(d.get("attempt") or 1),
                    doc_ids=tuple(str(i) for i in d.get("doc_ids") or []))
    except (KeyError, TypeError, ValueError):
        return None


def turns_from_json(text: str | None) -> list[Turn]:
    """The conversation stored by ``turns_to_json``; what does not parse is left out (the browser sent it)."""
    if not text or len(text) > MAX_STORED_CHARS:
        return []
    try:
        data = json.loads(text)
    except ValueError:
        return []
    if not isinstance(data, list):
        return []
    return [t for t in (_turn_of(d) for d in data[-MAX_TURNS:]) if t is not None]
