"""The Ask tab's pure views (ui/thread.py, ui/viewer.py): each answer's text and its sources (numbered
citations with thumbnails, each naming the page it opens), the plain text, the "still indexing" note, page
references and download names."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pagelens.ui.render import citations_html
from pagelens.ui.state import UIError
from pagelens.ui.thread import (
    MAX_TURNS,
    Cite,
    Turn,
    answer_text,
    indexing_note,
    plain_answer,
    push_turn,
    set_last,
    sources_html,
)
from pagelens.ui.viewer import PageView, download_name, page_ref, parse_page_ref, viewer_text, viewer_title


def _turn(q: str, answer: str = "The total is 42 [1].", **kw: object) -> Turn:
    base = Turn(question=q, collection="inv", mode="Answer", k=2, retrieval=None,
                cites=(Cite("d1", "A very long report name.pdf", 3), Cite("d2", "inv.pdf", 1)))
    return base.with_answer(answer, str(kw.pop("status", "done")), foot=str(kw.pop("foot", "")))


def test_each_answer_lists_its_own_sources_with_thumbnails() -> None:
    turn = _turn("first <q>?", foot="<small>t</small>")
    turn = Turn(**{**turn.__dict__, "cites": (Cite("d1", "A <very> long.pdf", 3, thumb="/c/pages/ab/x y.png"),
                                                Cite("d2", "inv.pdf", 1))})
    html = sources_html(turn, 2)
    assert 'id="pl-t2-sources"' in html
    assert 'id="pl-t2-cite-1" data-ref="3|d1|inv"' in html and 'id="pl-t2-cite-2" data-ref="1|d2|inv"' in html
    assert 'src="gradio_api/file=/c/pages/ab/x%20y.png"' in html  # the cached copy, URL-quoted
    assert 'alt="Page 3 of A &lt;very&gt; long.pdf"' in html  # escaped, and every thumbnail has an alt
    assert html.count("<img") == 1  # no copy on this server: no thumbnail, the citation stays
    assert "A &lt;very&gt; long.pdf</span> — page 3" in html and 'role="button" tabindex="0"' in html
    assert '<p class="pl-foot"><small>t</small></p>' in html
    # nothing follows an unfinished answer
    for status in ("running", "stopped"):
        assert sources_html(turn.with_answer("half", status), 1) == ""
    assert sources_html(Turn("q", "inv", "Answer", 1, None, status="done"), 1) == ""


def test_answer_text_stopped_running_empty_and_messages() -> None:
    assert answer_text(_turn("q", "The total is 42 [1].")) == "The total is 42 [1]."
    assert answer_text(_turn("q", "Half", status="stopped")) == "Half\n\n*(stopped)*"
    assert answer_text(_turn("q", "Half", status="running")).endswith("Half ▍")
    assert answer_text(_turn("q", "", status="running")) == "*Reading the pages…*"
    assert "empty answer" in answer_text(_turn("q", "  "))
    noted = Turn("q", "inv", "Answer", 1, None, note="a.pdf is still indexing").with_answer("x", "done")
    assert answer_text(noted) == "> a.pdf is still indexing\n\nx"
    assert plain_answer(_turn("q", "The total is 42 [1].")) == "The total is 42 [1]."
    msg = _turn("q", "No pages found.", status="message")
    assert answer_text(msg) == "No pages found." and plain_answer(msg) == ""
    assert citations_html([("a.pdf", 1)]) == citations_html([("a.pdf", 1)], refs=None)
    assert "data-ref" not in citations_html([("a.pdf", 1)])


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
    long_de = "Die Rechnung <7> ist bis zum Ende des Monats zu bezahlen. Vielen Dank für Ihren Auftrag."
    view = PageView(collection="c", doc_id="d", doc_name="a_b.pdf", page_no=2, page_count=5, image=None,
                    text=long_de, text_source="pdf", language="de")
    assert viewer_title(view) == r"**a\_b.pdf** · page 2 of 5"
    text = viewer_text(view)
    assert "page 2" in text and "language: `de`" in text and "Rechnung &lt;7&gt;" in text
    # the language is named only when the page's text confirms it with confidence
    for language, page_text in (("vo", long_de), ("de", "Rechnung <7>"), ("und", long_de), (None, long_de)):
        shown = viewer_text(PageView("c", "d", "a.pdf", 1, 1, None, text=page_text, language=language))
        assert "language" not in shown, (language, page_text)


def test_the_viewer_checks_read_access_first() -> None:
    from pagelens.ui.tabs.ask import open_page

    from pagelens.app.access import Principal

    scoped = Principal(name="k", role="r", collections=frozenset({"mine"}))
    with pytest.raises(UIError, match="no access to collection 'secret'"):
        open_page(None, scoped, "secret", "d1", 1)  # type: ignore[arg-type]  # refused before any lookup
    with pytest.raises(UIError, match="sign in"):
        open_page(None, None, "mine", "d1", 1)  # type: ignore[arg-type]


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
    assert cited_page(turns, "pl-t2-cite-1") == ("other", "d9", 7)  # the newest answer
    assert cited_page(turns, "pl-t1-cite-2") == ("inv", "d2", 1)  # an earlier turn, its own collection
    for bad in ("pl-cite-1", "pl-t2-cite-2", "pl-t3-cite-1", "pl-t1-cite-0", "x", ""):
        assert cited_page(turns, bad) is None
    assert cited_page([], "pl-t1-cite-1") is None


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


def test_cited_regions_are_validated_found_and_drawn(tmp_path) -> None:  # noqa: ANN001
    """Issue 27's regions (fractions of the page, text or visual): malformed ones are left out, the viewer
    finds those of the newest answer citing the page and draws them as translucent boxes, text blue and
    visual orange, recorded as a page of the collection."""
    from pagelens.ui.thread import cite_regions, regions_of, turns_from_json, turns_to_json
    from pagelens.ui.viewer import REGION_COLORS, draw_regions, regions_legend
    from PIL import Image

    raw = [{"x0": 0.1, "y0": 0.1, "x1": 0.4, "y1": 0.3, "source": "text", "score": 0.8, "text": "Total 42"},
           {"x0": 0.5, "y0": 0.6, "x1": 0.9, "y1": 0.9, "source": "visual", "score": 0.5},
           {"x0": 0.5, "y0": 0.5, "x1": 0.4, "y1": 0.9}, {"x0": "a"}, "junk"]
    regions = regions_of(raw)
    assert [r["source"] for r in regions] == ["text", "visual"] and regions[0]["text"] == "Total 42"
    assert regions_of(None) == () and regions_of([{"x0": -1, "y0": 0, "x1": 2, "y1": 1}])[0]["x1"] == 1.0
    old = Turn("a", "inv", "Answer", 1, None, status="done", cites=(Cite("d1", "inv.pdf", 2, regions=regions[:1]),))
    new = Turn("b", "inv", "Answer", 1, None, status="done", cites=(Cite("d1", "inv.pdf", 2, regions=regions),))
    assert cite_regions([old, new], "inv", "d1", 2) == regions  # the newest answer's
    assert cite_regions([old, new], "inv", "d1", 1) == () and cite_regions([old], "other", "d1", 2) == ()
    assert turns_from_json(turns_to_json([new]))[0].cites[0].regions == regions  # kept with the conversation

    page = tmp_path / "page.png"
    Image.new("RGB", (200, 100), (255, 255, 255)).save(page)
    owned: list[tuple[str, str]] = []
    ctx = SimpleNamespace(secret=b"k" * 32, image_cache=tmp_path / "cache",
                          own_page=lambda copy, c: owned.append((copy, c)))
    view = PageView(collection="inv", doc_id="d1", doc_name="inv.pdf", page_no=2, page_count=2, image=str(page),
                    regions=regions)
    drawn = draw_regions(ctx, view)  # type: ignore[arg-type]
    assert drawn != str(page) and owned == [(drawn, "inv")]
    with Image.open(drawn) as img:  # type: ignore[arg-type]
        inside_text, inside_visual, outside = img.getpixel((50, 20)), img.getpixel((140, 75)), img.getpixel((190, 50))
    assert outside == (255, 255, 255)
    assert inside_text[2] > inside_text[0] and inside_text != (255, 255, 255)  # translucent blue
    assert inside_visual[0] > inside_visual[2] and inside_visual != (255, 255, 255)  # translucent orange
    assert set(REGION_COLORS) == {"text", "visual"}
    assert draw_regions(ctx, PageView("inv", "d1", "inv.pdf", 1, 2, str(page))) == str(page)  # type: ignore[arg-type]
    assert "1 text region(s)" in regions_legend(view) and "1 visual region(s)" in regions_legend(view)


def test_the_first_region_is_what_an_opened_page_focuses() -> None:
    """Opening a cited page zooms to its first (best) region: the largest zoom step at which the region spans
    at most FOCUS_FILL of the viewer's width, never below the viewer's width (1); the JSON the browser reads
    names the region, that zoom and the file name of the image shown. No region, no image, or the regions
    hidden (the plain image shown): nothing to focus."""
    import json

    from pagelens.ui.viewer import FOCUS_FILL, ZOOM_STEPS, focus_of, focus_zoom

    word = {"x0": 0.1268, "y0": 0.8654, "x1": 0.2159, "y1": 0.8735, "source": "text", "score": 1.0}
    assert focus_zoom(word) == 3.0  # 0.089 of the width: the largest step
    assert focus_zoom({"x0": 0.2, "y0": 0, "x1": 0.6, "y1": 1}) == 2.0  # 0.4 wide: 2 x 0.4 = 0.8
    assert focus_zoom({"x0": 0.25, "y0": 0, "x1": 0.75, "y1": 1}) == 1.5
    assert focus_zoom({"x0": 0.0, "y0": 0, "x1": 1.0, "y1": 1}) == 1.0  # the whole width: never below 1
    for w in (0.05, 0.2, 0.3, 0.45, 0.55, 0.7, 0.9):
        z = focus_zoom({"x0": 0, "y0": 0, "x1": w, "y1": 1})
        assert z in ZOOM_STEPS and (z == 1.0 or z * w <= FOCUS_FILL)
        assert all(s * w > FOCUS_FILL for s in ZOOM_STEPS if s > z)

    visual = {"x0": 0.1, "y0": 0.1, "x1": 0.6, "y1": 0.4, "source": "visual", "score": 0.5}
    view = PageView("inv", "d1", "inv.pdf", 1, 1, "/cache/p/plain.png", regions=(word, visual))
    focus = json.loads(focus_of(view, "/cache/rg/abc123.png"))
    assert focus == {"x0": 0.1268, "y0": 0.8654, "x1": 0.2159, "y1": 0.8735, "source": "text", "zoom": 3.0,
                     "image": "abc123.png"}
    assert focus_of(view, "/cache/p/plain.png") == ""  # the regions hidden
    assert focus_of(view, None) == ""  # no image on this server
    assert focus_of(PageView("inv", "d1", "inv.pdf", 1, 1, "/cache/p/plain.png"), "/cache/p/plain.png") == ""

    # the legend carries it to the browser (data-focus, the JSON escaped as an attribute)
    from html.parser import HTMLParser

    from pagelens.ui.viewer import legend_html

    class Attrs(HTMLParser):
        found: dict[str, str | None] = {}

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "p":
                Attrs.found = dict(attrs)

    legend = legend_html(view, "/cache/rg/abc123.png")
    Attrs().feed(legend)
    assert json.loads(Attrs.found["data-focus"] or "") == focus
    assert "1 text region(s)" in legend and "1 visual region(s)" in legend
    Attrs().feed(legend_html(view, "/cache/p/plain.png"))
    assert Attrs.found["data-focus"] == ""  # regions hidden: the legend stays, nothing to focus
    assert legend_html(PageView("inv", "d1", "inv.pdf", 1, 1, "/cache/p/plain.png"), "/cache/p/plain.png") == ""
