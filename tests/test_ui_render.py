"""The web UI's pure views (ui/render.py): numbered citations and the answer's [n] links."""

from __future__ import annotations

import re

from pagelens.ui.originals import original_href
from pagelens.ui.render import (
    caption,
    citations_html,
    distinct_labels,
    docs_html,
    link_citation_markers,
    score_details,
)


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


def test_caption_numbers_the_page_and_names_what_matched_in_words() -> None:
    """Issue 28.7: no raw fusion score ("rrf 0.03") in a caption; the number stays in a details view."""
    assert caption("inv.pdf", 3, 0.5, 2) == "[2] inv.pdf — page 3 (matched by its image)"
    assert caption("inv.pdf", 3, 0.5) == "inv.pdf — page 3 (matched by its image)"
    assert caption("inv.pdf", 3, 0.0328, 1, "rrf") == "[1] inv.pdf — page 3 (matched by its words and image)"
    assert caption("inv.pdf", 3, 7.5, 1, "bm25") == "[1] inv.pdf — page 3 (matched by its words)"
    assert score_details("rrf", 0.0328) == "reciprocal-rank fusion score 0.0328 (rrf)"
    assert score_details("maxsim", 12.25) == "MaxSim (image late-interaction) score 12.25 (maxsim)"


def test_documents_table_shows_names_and_download_links_never_raw_ids() -> None:
    """Issue 28.4 and 28.7: the document id only in the name's tooltip; a kept original is a download
    link, a missing one says "not kept" with how to get one in its tooltip."""
    rows = [["inv & co.pdf", "3", "complete", "2026-12-06 10:00:00", "0123456789abcdef", "original/inv/0123456789abcdef"],
            ["old.pdf", "1", "complete", "2026-12-01 10:00:00", "fedcba9876543210", ""]]
    out = docs_html(rows)
    assert out.count("<tr") == 3 and "<th>Original</th>" in out and ">ID<" not in out
    cells = re.sub(r'title="[^"]*"', "", out)  # what is on screen (tooltips aside)
    assert "0123456789abcdef</td>" not in cells and ">fedcba9876543210<" not in cells
    assert 'title="Document ID: 0123456789abcdef">inv &amp; co.pdf</td>' in out
    assert ('<a class="pl-download" href="original/inv/0123456789abcdef" download '
            'title="Download the original file of inv &amp; co.pdf"') in out
    assert out.count('class="pl-download"') == 1
    assert '<span class="pl-no-original" title="No original file is kept' in out and ">not kept</span>" in out
    assert "upload the file again" in out


def test_original_links_are_relative_to_the_ui_and_quoted() -> None:
    assert original_href("inv", "0123456789abcdef") == "original/inv/0123456789abcdef"
    assert original_href("a.b-c_d", "x_y-z") == "original/a.b-c_d/x_y-z"


def test_document_picker_tells_documents_of_the_same_name_apart_without_ids() -> None:
    choices = [("scan.pdf (1 p.)", "aaaa"), ("scan.pdf (1 p.)", "bbbb"), ("inv.pdf (2 p.)", "cccc"),
               ("dup.pdf (1 p.)", "dddd"), ("dup.pdf (1 p.)", "eeee")]
    when = {"aaaa": "2026-12-01T09:30:00", "bbbb": "2026-12-06T10:00:05", "dddd": "2026-12-06T10:00:00",
            "eeee": "2026-12-06T10:00:59"}
    out = distinct_labels(choices, when)
    assert out == [("scan.pdf (1 p.) · indexed 2026-12-01 09:30", "aaaa"),
                   ("scan.pdf (1 p.) · indexed 2026-12-06 10:00", "bbbb"), ("inv.pdf (2 p.)", "cccc"),
                   ("dup.pdf (1 p.) · indexed 2026-12-06 10:00 (1 of 2)", "dddd"),
                   ("dup.pdf (1 p.) · indexed 2026-12-06 10:00 (2 of 2)", "eeee")]
    assert not any(doc_id in label for label, doc_id in out)
