"""The Ask tab's handlers (ui/tabs/ask.py) as plain functions over the app state, without a browser: one
answer at a time per browser session, Stop ends the generation server-side (the answer's stream is closed at
its next token) and nothing (citations, map) follows a stopped answer, Undo, the restored conversation keeps
only readable turns and this server's thumbnails, the chat's messages. The search and the answerer's stream
are stand-ins here (the real pipeline: tests/test_ui_thread.py in a browser)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from pagelens.answer.types import Answer, AnswerEvent, Citation, Timings
from pagelens.ui.tabs import ask as ask_mod
from pagelens.ui.tabs.ask import AskView, ask, chat_messages, restore, similarity, stop, undo
from pagelens.ui.thread import Cite, Turn, turns_to_json

from pagelens.app.access import OPEN, Principal


class Stream:
    """An answer stream like ``Answerer.stream``: ``n`` token events, then done; records ``close()``
    (which, in the real one, sets the generation's stop event)."""

    def __init__(self, n: int, gate: threading.Event | None = None) -> None:
        self.n, self.gate, self.closed, self.sent = n, gate, False, 0

    def __iter__(self) -> Iterator[AnswerEvent]:
        return self._gen()

    def _gen(self) -> Iterator[AnswerEvent]:
        try:
            for i in range(self.n):
                if self.gate is not None and i == 2:
                    self.gate.wait(5)
                self.sent += 1
                yield AnswerEvent(kind="token", text=f"w{i} ")
            cites = [Citation("d1", "inv.pdf", 1, 0.5, None)]
            yield AnswerEvent(kind="done", answer=Answer(text="w0 w1", citations=cites, timings=Timings()))
        finally:
            self.closed = True


def _ctx(stream: Stream) -> SimpleNamespace:
    class Answerer:
        def stream(self, q, hits, k=None, retrieve_s=0.0):  # noqa: ANN001, ANN201
            it = iter(stream)
            stream.iterator = it  # type: ignore[attr-defined]
            return it

    jobs = SimpleNamespace(active_for=lambda collection: [])
    return SimpleNamespace(answers={}, page_owners={}, jobs=jobs, service=SimpleNamespace(answerer=Answerer()),
                           page_collections=lambda copy: set(), own_page=lambda copy, c: None)


@pytest.fixture
def hits(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    hit = SimpleNamespace(doc_id="d1", doc_name="inv.pdf", page_no=1, image_path=None, score=0.5)
    monkeypatch.setattr(ask_mod, "search_visible", lambda *a, **k: [hit])
    return [hit]


def test_an_answer_streams_then_finishes_with_its_citations(hits) -> None:  # noqa: ANN001
    stream = Stream(3)
    ctx = _ctx(stream)
    views = list(ask(ctx, OPEN, "inv", " What is due? ", "Answer", 1, None, [], "s1"))  # type: ignore[arg-type]
    assert views[0].busy and views[0].question == "" and views[0].turns[0].question == "What is due?"
    assert [v.turns[-1].answer for v in views[2:5]] == ["w0 ", "w0 w1 ", "w0 w1 w2 "]
    assert all(v.busy for v in views[:-1])
    last = views[-1]
    assert not last.busy and last.turns[-1].status == "done" and last.turns[-1].answer == "w0 w1"
    assert last.turns[-1].cites == (Cite("d1", "inv.pdf", 1),) and last.top_hits == hits
    assert ctx.answers == {}  # the session may ask again
    messages = chat_messages(last.turns)
    assert [m["role"] for m in messages] == ["user", "assistant", "assistant"]
    assert messages[1]["content"] == "w0 w1"  # Copy copies the answer as written
    assert 'id="pl-t1-cite-1"' in messages[2]["content"].value


def test_one_answer_at_a_time_and_stop_ends_generation_server_side(hits) -> None:  # noqa: ANN001
    gate = threading.Event()
    stream = Stream(1000, gate)
    ctx = _ctx(stream)
    answering = ask(ctx, OPEN, "inv", "q", "Answer", 1, None, [], "s1")  # type: ignore[arg-type]
    for _ in range(4):  # the question, "reading", two tokens: generation is under way
        view = next(answering)
    assert view.busy and "s1" in ctx.answers
    # a second question from the same browser session while it streams: refused, nothing added
    second = list(ask(ctx, OPEN, "inv", "again", "Answer", 1, None, view.turns, "s1"))  # type: ignore[arg-type]
    assert len(second) == 1 and second[0].message == ask_mod.BUSY and second[0].turns == view.turns
    # another session is not blocked by this one
    assert stop(ctx, "s1") is True and stop(ctx, "other") is False  # type: ignore[arg-type]
    gate.set()
    rest = list(answering)
    assert stream.closed and stream.sent <= 3  # at most the token already being produced
    final = rest[-1]
    assert not final.busy and final.turns[-1].status == "stopped" and final.turns[-1].cites == ()
    assert final.top_hits == []  # no similarity map
    assert chat_messages(final.turns)[-1]["content"].endswith("*(stopped)*")  # no sources message
    assert ctx.answers == {}
    image, caption = similarity(ctx, OPEN, final.turns, hits)  # type: ignore[arg-type]
    assert image is None and caption == ask_mod.SIM_STOPPED


def test_empty_questions_are_refused_and_retry_replaces_the_last_turn(hits) -> None:  # noqa: ANN001
    ctx = _ctx(Stream(1))
    turns = [Turn("old", "inv", "Answer", 1, None, answer="a", status="done")]
    assert list(ask(ctx, OPEN, "inv", "   ", "Answer", 1, None, turns, "s")) == [  # type: ignore[arg-type]
        AskView(turns, message="Type a question first: nothing was asked.")]
    done = list(ask(ctx, OPEN, "inv", "old", "Answer", 1, None, turns, "s", replace_last=True))[-1]  # type: ignore[arg-type]
    assert len(done.turns) == 1 and done.turns[0].attempt == 2 and "answer 2 (retried)" in done.turns[0].foot


def test_no_access_and_search_only(hits) -> None:  # noqa: ANN001
    ctx = _ctx(Stream(1))
    scoped = Principal(name="k", role="r", collections=frozenset({"mine"}))
    last = list(ask(ctx, scoped, "inv", "q", "Answer", 1, None, [], "s"))[-1]  # type: ignore[arg-type]
    assert last.turns[-1].status == "message" and "no access to collection 'inv'" in last.turns[-1].answer
    assert last.top_hits == [] and not last.busy
    found = list(ask(ctx, OPEN, "inv", "q", "Search only", 1, None, [], "s"))[-1]  # type: ignore[arg-type]
    assert "search only" in found.turns[-1].answer and found.turns[-1].cites[0].doc_id == "d1"
    assert found.top_hits == hits


def test_undo_and_restore() -> None:
    a = Turn("first", "inv", "Answer", 1, None, answer="x", status="done",
             cites=(Cite("d1", "inv.pdf", 1, thumb="/cache/pages/aa/mine.png"),
                    Cite("d2", "b.pdf", 2, thumb="/etc/passwd")))
    b = Turn("second", "secret", "Answer", 1, None, answer="y", status="done")
    assert undo([a, b]) == ([a], "second") and undo([]) == ([], "")
    ctx = SimpleNamespace(page_collections=lambda copy: {"inv"} if copy == "/cache/pages/aa/mine.png" else set())
    scoped = Principal(name="k", role="r", collections=frozenset({"inv"}))
    restored = restore(ctx, scoped, turns_to_json([a, b]))  # type: ignore[arg-type]
    assert [t.question for t in restored] == ["first"]  # not the turn in a collection the key cannot read
    # a thumbnail path only when this server made it for that collection (the browser sent it)
    assert [c.thumb for c in restored[0].cites] == ["/cache/pages/aa/mine.png", ""]
    assert restore(ctx, None, turns_to_json([a])) == []  # type: ignore[arg-type]


def test_regions_of_hits_and_citations_travel_with_the_turn(hits) -> None:  # noqa: ANN001
    """Read with getattr: before issue 27 lands hits have no ``regions``; after, they are kept per source."""
    hits[0].regions = [{"x0": 0.1, "y0": 0.2, "x1": 0.3, "y1": 0.4, "source": "visual", "score": 0.7}]
    found = list(ask(_ctx(Stream(1)), OPEN, "inv", "q", "Search only", 1, None, [], "s"))[-1]  # type: ignore[arg-type]
    assert found.turns[-1].cites[0].regions == ({"x0": 0.1, "y0": 0.2, "x1": 0.3, "y1": 0.4, "source": "visual",
                                                 "score": 0.7},)
    answered = list(ask(_ctx(Stream(1)), OPEN, "inv", "q", "Answer", 1, None, [], "s"))[-1]  # type: ignore[arg-type]
    assert answered.turns[-1].cites[0].regions == ()  # this Citation has none (issue 27 not in it)
