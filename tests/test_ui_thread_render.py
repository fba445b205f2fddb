"""The Ask tab's pure views (ui/thread.py, ui/viewer.py): the thread of earlier turns with their own
citations, the plain text Copy copies, the "still indexing" note, page references and download names."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pagelens.ui.render import citations_html
from pagelens.ui.state import UIError
from pagelens.ui.thread import (
    MAX_TURNS,
    Cite,
    Turn,
    answer_markdown,
    indexing_note,
    plain_answer,
    push_turn,
    set_last,
    thread_markdown,
    turn_cites_html,
)
from pagelens.ui.viewer import PageView, download_name, page_ref, parse_page_ref, viewer_text, viewer_title


def _turn(q: str, answer: str = "The total is 42 [1].", **kw: object) -> Turn:
    base = Turn(question=q, collection="inv", mode="Answer", k=2, retrieval=None,
                cites=(Cite("d1", "A very long report name.pdf", 3), Cite("d2", "inv.pdf", 1)))
    return base.with_answer(answer, str(kw.pop("status", "done")), foot=str(kw.pop("foot", "")))


def test_each_turn_has_its_own_citations_and_links() -> None:
    turns = [_turn("first <q>?"), _turn("second?", "No markers here.")]
    md = thread_markdown(turns)
    assert md.count('<div class="pl-turn"') == 2
    assert 'id="pl-turn-1"' in md and 'id="pl-turn-2"' in md
    assert "first &lt;q&gt;?" in md  # escaped
    assert 'The total is 42 <a class="pl-ref" href="#pl-t1-cite-1">[1]</a>.' in md
    assert 'id="pl-t1-cite-1" data-ref="3|d1|inv"' in md
    assert 'id="pl-t2-cite-2" data-ref="1|d2|inv"' in md
    assert 'Sources: <a class="pl-ref" href="#pl-t2-cite-1">[1]</a>' in md  # no markers: a Sources line
    assert "A very long report name.pdf</span> — page 3" in md
    assert thread_markdown([]) == ""


def test_current_answer_keeps_the_plain_ids() -> None:
    turn = _turn("q", foot="\n\n<small>t</small>")
    assert 'href="#pl-cite-1"' in answer_markdown(turn)
    assert answer_markdown(turn).endswith("<small>t</small>")
    assert 'id="pl-cite-1" data-ref="3|d1|inv" role="button"' in turn_cites_html(turn)
    assert citations_html([("a.pdf", 1)]) == citations_html([("a.pdf", 1)], refs=None)  # unchanged without refs
    assert "data-ref" not in citations_html([("a.pdf", 1)])


def test_plain_answer_stopped_empty_and_messages() -> None:
    assert plain_answer(_turn("q", "The total is 42 [1].")) == "The total is 42 [1]."
    assert "(stopped)" in answer_markdown(_turn("q", "Half", status="stopped"))
    assert "empty answer" in answer_markdown(_turn("q", "  "))
    msg = _turn("q", "No pages found.", status="message")
    assert answer_markdown(msg) == "No pages found." and plain_answer(msg) == ""
    noted = Turn("q", "inv", "Answer", 1, None, note="x.pdf is still indexing: 1/2 pages; its pages are not searched yet.")
    assert answer_markdown(noted.with_answer("No pages found.", "message")).startswith("> x.pdf is still indexing")


def test_turns_push_replace_and_cap() -> None:
    a, b, c = _turn("a"), _turn("b"), _turn("c")
    assert push_turn([a, b], c) == [a, b, c]
    assert push_turn([a, b], c, replace_last=True) == [a, c]  # Regenerate
    assert set_last([a, b], c) == [a, c] and set_last([], c) == [c]
    assert len(push_turn([a] * MAX_TURNS, b)) == MAX_TURNS


def test_indexing_note_names_documents_and_progress() -> None:
    job = SimpleNamespace(documents=[
        {"name": "report.pdf", "status": "running", "page_count": 352, "pages_done": 164},
        {"name": "annex.pdf", "status": "queued", "page_count": None, "pages_done": 0},
        {"name": "done.pdf", "status": "indexed", "page_count": 2, "pages_done": 2},
        {"name": "new.pdf", "status": "running", "page_count": None, "pages_done": 0},
    ])
    jobs = SimpleNamespace(active_for=lambda collection: [job] if collection == "big" else [])
    note = indexing_note(jobs, "big")  # type: ignore[arg-type]
    assert "report.pdf is still indexing: 164/352 pages; its pages are not searched yet." in note
    assert "annex.pdf is waiting to be indexed; its pages are not searched yet." in note
    assert "new.pdf is still indexing: starting" in note
    assert "done.pdf" not in note
    assert indexing_note(jobs, "other") == ""  # type: ignore[arg-type]


def test_page_refs_and_download_names() -> None:
    assert parse_page_ref(page_ref("my|coll", "abc", 4)) == ("my|coll", "abc", 4)
    for bad in ("", "x|abc|c", "4||c", "4|abc"):
        with pytest.raises(UIError):
            parse_page_ref(bad)
    assert download_name("Q3 report (final).pdf", 4) == "Q3_report_final-p4.png"
    assert download_name("inv_aws_invoice_en.pdf", 1) == "inv_aws_invoice_en-p1.png"
    assert download_name("../../etc/passwd", 2) == "passwd-p2.png"
    assert download_name("", 1) == "page-p1.png"


def test_viewer_title_and_text() -> None:
    view = PageView(collection="c", doc_id="d", doc_name="a_b.pdf", page_no=2, page_count=5, image=None,
                    text="Rechnung <7>", text_source="pdf", language="de")
    assert viewer_title(view) == r"**a\_b.pdf** · page 2 of 5"
    text = viewer_text(view)
    assert "page 2" in text and "language: `de`" in text and "Rechnung &lt;7&gt;" in text


def _tab() -> object:
    from dataclasses import fields

    from pagelens.ui.tabs.ask import AskTab

    return AskTab(**{f.name: f.name for f in fields(AskTab)})  # components stand-ins: the update keys


def test_the_viewer_checks_read_access_first() -> None:
    from pagelens.app.access import Principal

    tab = _tab()
    shell = SimpleNamespace(ctx=None)  # never reached: refused before any lookup
    scoped = Principal(name="k", role="r", collections=frozenset({"mine"}))
    out = tab.open_page(shell, scoped, "secret", "d1", 1)  # type: ignore[attr-defined]
    assert "no access to collection &#x27;secret&#x27;" in out["viewer_msg"]["value"] and "viewer_img" not in out
    out = tab.open_page(shell, None, "mine", "d1", 1)  # type: ignore[attr-defined]
    assert "sign in" in out["viewer_msg"]["value"] and out["viewer_msg"]["visible"]


def test_find_page_names_what_is_missing_or_busy(tmp_path) -> None:  # noqa: ANN001
    from pagelens.ui.viewer import find_page

    payload = {"doc_id": "d1", "doc_name": "inv.pdf", "page_no": 2, "page_count": 3, "image_path": "x.png",
               "text": "Total 42", "text_source": "pdf", "language": "en"}

    class Store:
        def iter_payloads(self, collection, page_filter, keys):  # noqa: ANN001, ANN202
            if page_filter.page_nos == [2]:
                yield "p2", payload

        def count(self, collection, page_filter):  # noqa: ANN001, ANN202
            return 3 if page_filter.doc_ids == ["d1"] else 0

    images = SimpleNamespace(resolve=lambda p: None, allowed=lambda p: True)
    ctx = SimpleNamespace(service=SimpleNamespace(store=Store(), images=images),
                          jobs=SimpleNamespace(inflight_doc_ids=lambda c: {"busy"}))
    view = find_page(ctx, "c", "d1", 2)  # type: ignore[arg-type]
    assert (view.doc_name, view.page_no, view.page_count, view.image, view.language) == ("inv.pdf", 2, 3, None, "en")
    with pytest.raises(UIError, match="has no page 4"):
        find_page(ctx, "c", "d1", 4)  # type: ignore[arg-type]
    with pytest.raises(UIError, match="'gone' is not in collection 'c'"):
        find_page(ctx, "c", "gone", 1)  # type: ignore[arg-type]
    with pytest.raises(UIError, match="still being indexed"):
        find_page(ctx, "c", "busy", 1)  # type: ignore[arg-type]
    with pytest.raises(UIError, match="pages start at 1"):
        find_page(ctx, "c", "d1", 0)  # type: ignore[arg-type]


def test_a_citation_id_names_its_page_in_the_conversation() -> None:
    from pagelens.ui.thread import cited_page

    first = _turn("a")
    last = Turn("b", "other", "Answer", 1, None, cites=(Cite("d9", "z.pdf", 7),))
    turns = [first, last]
    assert cited_page(turns, "pl-cite-1") == ("other", "d9", 7)  # the current answer
    assert cited_page(turns, "pl-t1-cite-2") == ("inv", "d2", 1)  # an earlier turn, its own collection
    for bad in ("pl-cite-2", "pl-t3-cite-1", "pl-t1-cite-0", "x", ""):
        assert cited_page(turns, bad) is None
    assert cited_page([], "pl-cite-1") is None


def test_the_conversation_round_trips_through_session_storage_json() -> None:
    from pagelens.ui.thread import turns_from_json, turns_to_json

    turns = [_turn("a <b>", foot="\n\n<small>t</small>"), Turn("b", "other", "Search only", 3, "text",
                                                            cites=(Cite("d9", "z.pdf", 7),), pages=("7|d9|other",), status="message")]
    assert turns_from_json(turns_to_json(turns)) == turns
    running = Turn("c", "inv", "Answer", 1, None, answer="half")
    assert turns_from_json(turns_to_json([running]))[0].status == "stopped"  # cut by the reload
    for bad in ("", "nope", "{}", '[{"question": 1}]', '[{"question": "q", "collection": "c", "cites": [{}]}]',
                "[" + " " * 2_000_001 + "]"):
        assert turns_from_json(bad) == []
    assert turns_from_json('[{"question": "q", "collection": "c"}, 5]') == [Turn("q", "c", "", 1, None, status="done")]
