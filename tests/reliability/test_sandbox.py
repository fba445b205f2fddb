"""The killable rendering child (``ingest/sandbox.py``, ``Settings.isolate_rendering``)."""

from __future__ import annotations

import pagelens.ingest.sandbox as sandbox
import pytest
from conftest import REAL_PDFS
from pagelens.ingest.loader import open_document

TWO_PAGES = REAL_PDFS / "fr_demolition_minutes_2023.pdf"
MANY = REAL_PDFS / "rpt_federal_register_2020-17221.pdf"


def test_page_past_the_time_limit_is_killed_and_later_pages_render(settings_factory, monkeypatch) -> None:
    monkeypatch.setattr(sandbox, "TEST_SLEEP_PAGES", {2: 30.0})
    settings = settings_factory(page_longest_edge=128, isolate_rendering=True, render_timeout_s=2)
    doc = open_document(MANY, settings)
    pages = list(doc.pages())  # the sleeping page is killed (the error below), not waited for
    assert [p.page_no for p in pages] == [1, *range(3, doc.page_count + 1)]
    (err,) = doc.page_errors
    assert err.page == 2 and MANY.name in str(err) and "page 2" in str(err), str(err)
    assert "time limit of 2 s" in str(err) and "PAGELENS_RENDER_TIMEOUT_S" in str(err)


def test_per_document_limit_interrupts_a_stuck_page(settings_factory, monkeypatch) -> None:
    monkeypatch.setattr(sandbox, "TEST_SLEEP_PAGES", {1: 30.0})
    settings = settings_factory(page_longest_edge=128, isolate_rendering=True, render_timeout_s=0,
                                max_seconds_per_document=1)
    doc = open_document(TWO_PAGES, settings)
    with pytest.raises(Exception) as info:  # page 1 killed at 1 s, then the document is over its limit
        list(doc.pages())
    assert doc.page_errors[0].page == 1 and "per document" in str(doc.page_errors[0])
    assert TWO_PAGES.name in str(info.value)


def test_memory_limit_turns_an_oversize_render_into_an_error(settings_factory) -> None:
    settings = settings_factory(page_longest_edge=12000, max_pixels_per_page=200_000_000,
                                isolate_rendering=True, render_memory_mb=600)
    doc = open_document(TWO_PAGES, settings)
    assert list(doc.pages()) == []
    assert [e.page for e in doc.page_errors] == [1, 2]
    for err in doc.page_errors:
        assert TWO_PAGES.name in str(err) and "memory limit of 600 MiB" in str(err), str(err)
    ok = open_document(TWO_PAGES, settings_factory(page_longest_edge=256, isolate_rendering=True,
                                                   render_memory_mb=600))
    assert len(list(ok.pages())) == 2 and not ok.page_errors


@pytest.mark.parametrize("name", ["inv_qualityhosting_de.pdf", "scan_huckfinn_page_en.pdf",
                                  "ja_kampo_gazette_vertical.pdf", "fr_demolition_minutes_2023.pdf"])
def test_isolated_renders_are_identical(settings_factory, name) -> None:
    path = REAL_PDFS / name
    inproc = open_document(path, settings_factory(page_longest_edge=512, isolate_rendering=False))
    isolated = open_document(path, settings_factory(page_longest_edge=512, isolate_rendering=True))
    a, b = list(inproc.pages()), list(isolated.pages())
    assert len(a) == len(b) == inproc.page_count
    for pa, pb in zip(a, b, strict=True):
        assert pa.size == pb.size and pa.image.tobytes() == pb.image.tobytes(), (name, pa.page_no)
        assert pa.text == pb.text


@pytest.mark.slow
def test_all_real_pdfs_render_isolated(settings_factory) -> None:
    settings = settings_factory(page_longest_edge=256, isolate_rendering=True)
    pdfs = sorted(REAL_PDFS.glob("*.pdf"))
    assert len(pdfs) == 30
    for path in pdfs:
        doc = open_document(path, settings)
        assert sum(1 for _ in doc.pages()) == doc.page_count and not doc.page_errors, path.name
