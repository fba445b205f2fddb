"""The Ask tab's conversation: one ``Turn`` per question asked in this browser session (kept in a
``gr.State``, so it survives switching tabs, and as JSON in the browser tab's session storage, so it
survives a reload: ``turns_to_json`` / ``turns_from_json``), the Markdown of the earlier turns (each with its own
numbered citations and ``[n]`` links, ids prefixed by the turn), and the note on documents of the
collection that are still being indexed (their pages are not searched yet). Pure functions."""

from __future__ import annotations

import html
import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pagelens.ui.render import citations_html, link_citation_markers
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


def turn_cites_html(turn: Turn, prefix: str = "pl-cite") -> str:
    """The turn's numbered citations (``render.citations_html``), each item the target ``#<prefix>-<n>`` of
    the answer's ``[n]`` links and carrying the page it opens in the viewer (``data-ref``)."""
    return citations_html([(c.doc_name, c.page_no) for c in turn.cites], prefix=prefix,
                          refs=[page_ref(turn.collection, c.doc_id, c.page_no) for c in turn.cites])


def answer_markdown(turn: Turn, prefix: str = "pl-cite") -> str:
    """The turn's answer as shown: its ``[n]`` markers linked to ``#<prefix>-<n>`` (a ``Sources:`` line when
    it has none), then the timings line. Messages (no answer) are shown as they are."""
    note = f"> {turn.note}\n\n" if turn.note else ""
    if turn.status == "message":
        return note + turn.answer
    text = turn.answer.strip() or ("*(the model gave an empty answer)*" if turn.status == "done" else "")
    body = link_citation_markers(text, len(turn.cites), prefix=prefix) if text else ""
    if turn.status == "stopped":
        body = f"{body}\n\n*(stopped)*".strip()
    return note + body + turn.foot


def thread_markdown(turns: list[Turn]) -> str:
    """The earlier turns, oldest first, each a block ``#pl-turn-<i>`` (1-based): the question with its
    collection, the answer with links to the turn's own citations ``#pl-t<i>-cite-<n>``, the citations."""
    blocks = []
    for i, turn in enumerate(turns, start=1):
        prefix = f"pl-t{i}-cite"
        question = html.escape(turn.question).replace("\n", "<br>")
        head = (f'<div class="pl-turn-q"><span class="pl-turn-who">You</span> '
                f'<span class="pl-turn-coll">in {html.escape(turn.collection)}</span><br>{question}</div>')
        blocks.append(f'<div class="pl-turn" id="pl-turn-{i}">\n\n{head}\n\n{answer_markdown(turn, prefix)}\n\n'
                      f"{turn_cites_html(turn, prefix)}\n\n</div>")
    return "\n\n".join(blocks)


_CITE_ID = re.compile(r"^pl-(?:t(\d{1,4})-)?cite-(\d{1,3})$")


def cited_page(turns: list[Turn], cite_id: str) -> tuple[str, str, int] | None:
    """(collection, doc_id, page_no) that the citation element ``cite_id`` names: ``pl-cite-<n>`` (the
    current, last turn) or ``pl-t<i>-cite-<n>`` (earlier turn i, as ``thread_markdown`` numbers them);
    None when there is no such citation (the thread changed meanwhile)."""
    m = _CITE_ID.match(cite_id or "")
    if not m or not turns:
        return None
    turn = turns[-1] if m.group(1) is None else (turns[int(m.group(1)) - 1] if int(m.group(1)) <= len(turns) else None)
    n = int(m.group(2))
    if turn is None or not 1 <= n <= len(turn.cites):
        return None
    cite = turn.cites[n - 1]
    return turn.collection, cite.doc_id, cite.page_no


def plain_answer(turn: Turn) -> str:
    """The text the Copy button copies: the model's answer as written (no links, no timings)."""
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


def turns_to_json(turns: list[Turn]) -> str:
    """The conversation as JSON, for the browser's session storage (a reload reads it back)."""
    return json.dumps([asdict(t) for t in turns[-MAX_TURNS:]], ensure_ascii=False)


def _turn_of(d: Any) -> Turn | None:
    if not isinstance(d, dict) or not isinstance(d.get("question"), str) or not isinstance(d.get("collection"), str):
        return None
    try:
        cites = tuple(Cite(doc_id=str(c["doc_id"]), doc_name=str(c["doc_name"]), page_no=int(c["page_no"]))
                      for c in d.get("cites") or [])
        status = str(d.get("status") or "done")
        return Turn(question=d["question"], collection=d["collection"], mode=str(d.get("mode") or ""),
                    k=int(d.get("k") or 1), retrieval=None if d.get("retrieval") is None else str(d["retrieval"]),
                    answer=str(d.get("answer") or ""), foot=str(d.get("foot") or ""), cites=cites,
                    # an answer cut by the reload is shown as stopped
                    status="stopped" if status == "running" else status, note=str(d.get("note") or ""),
                    pages=tuple(str(r) for r in d.get("pages") or []), attempt=int(d.get("attempt") or 1))
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
