"""The web UI's pure views (ui/render.py): numbered citations and the answer's [n] links."""

from __future__ import annotations

from pagelens.ui.render import caption, citations_html, link_citation_markers


def test_citations_are_numbered_in_order_with_full_names_and_pages() -> None:
    long_name = "Annual report 2025 of the Example Group with a very long file name & more.pdf"
    out = citations_html([(long_name, 12), ("inv.pdf", 1)])
    assert out.count('<li class="pl-cite"') == 2
    assert '<li class="pl-cite" id="pl-cite-1"><span class="pl-cite-n">[1]</span>' in out
    assert "Annual report 2025 of the Example Group with a very long file name &amp; more.pdf</span> — page 12" in out
    assert 'id="pl-cite-2"><span class="pl-cite-n">[2]</span><span class="pl-cite-doc">inv.pdf</span> — page 1' in out
    assert citations_html([]) == ""


def test_markers_link_to_their_citation_and_others_stay_text() -> None:
    text = "The total is 42 USD [1], due on 1 May [2]; see also [7] and [0]."
    out = link_citation_markers(text, 2)
    assert '42 USD <a class="pl-ref" href="#pl-cite-1">[1]</a>' in out
    assert '1 May <a class="pl-ref" href="#pl-cite-2">[2]</a>' in out
    assert "see also [7] and [0]." in out  # no such citation: left alone
    assert "Sources:" not in out


def test_an_answer_without_markers_gets_a_sources_line() -> None:
    out = link_citation_markers("The total is 42 USD.", 3)
    assert out == ("The total is 42 USD.\n\nSources: " + " ".join(
        f'<a class="pl-ref" href="#pl-cite-{n}">[{n}]</a>' for n in (1, 2, 3)))
    assert link_citation_markers("Only [5] here.", 2).endswith('href="#pl-cite-2">[2]</a>')
    assert link_citation_markers("no pages", 0) == "no pages"


def test_caption_numbers_the_page() -> None:
    assert caption("inv.pdf", 3, 0.5, 2) == "[2] inv.pdf — page 3 (maxsim 0.50)"
    assert caption("inv.pdf", 3, 0.5) == "inv.pdf — page 3 (maxsim 0.50)"
    assert caption("inv.pdf", 3, 0.5, 1, "rrf") == "[1] inv.pdf — page 3 (rrf 0.50)"
