"""OCR of pages without a usable text layer (ingest/ocr.py) with the real Tesseract (CI installs it with
scripts/install-system-deps.sh; the tests that need it skip, saying so, where it is absent), the
text_source / language payload through the indexer, the Tesseract-missing path, and the API's
document languages, text sources and language filter (tiny random models)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import HOSTILE_PDFS
from pagelens.ingest import open_document
from pagelens.ingest.ocr import needs_ocr, ocr_image, ocr_status, suspicious_share, usable_text

HAVE_TESSERACT = shutil.which("tesseract") is not None and "deu" in ocr_status("tesseract", "deu").languages
needs_tesseract = pytest.mark.skipif(
    not HAVE_TESSERACT, reason="Tesseract with German data is not installed: run scripts/install-system-deps.sh")


@pytest.fixture(scope="module")
def invoices(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The synthetic German and Polish invoices (text layer) and scanned copies of their first pages:
    rendered at 200 dpi, rotated 1-2 degrees, noise, JPEG; an image-only PDF and a PNG turned 90 degrees."""
    from make_known_items import scan_copy, write_scan
    from multilingual_docs import write_pdfs

    root = tmp_path_factory.mktemp("invoices")
    files = {p.name: p for p in write_pdfs(root / "text", ("de", "pl"))}
    de, pl = files["syn_rechnung_moebelhaus_de.pdf"], files["syn_faktura_hurtownia_pl.pdf"]
    scan_pdf = root / "scan_rechnung_de.pdf"
    write_scan(scan_copy(de, 1, seed=3), scan_pdf)
    sideways = root / "scan_faktura_pl.png"
    write_scan(scan_copy(pl, 1, seed=4).rotate(90, expand=True, fillcolor=255), sideways)
    return {"de": de, "pl": pl, "scan_pdf": scan_pdf, "scan_png": sideways}


def test_text_layer_usability() -> None:
    good = "Rechnung Nr. 2024-0815 für die Lieferung vom 12. März; Gesamtbetrag 4.141,20 EUR."
    assert usable_text(good, 32) and not needs_ocr(good, _s(ocr="auto"))
    assert not usable_text("Seite 1", 32)  # a page number is no text layer
    assert not usable_text("", 32) and needs_ocr("", _s(ocr="auto"))
    assert needs_ocr(good, _s(ocr="force")) and not needs_ocr("", _s(ocr="off"))
    broken = "3HQČåQt\x03SURVWĜHGN\\\x03QD\x03~þWHFK \x19\x12 " * 4  # a font without a Unicode map
    assert suspicious_share(broken) > 0.05 and not usable_text(broken, 32)


def test_hostile_font_layers_count_as_unusable() -> None:
    import pymupdf

    for name in ("h_font_non_unicode_cmap.pdf", "h_font_type3_no_unicode.pdf"):
        path = HOSTILE_PDFS / name
        if not path.is_file():
            pytest.skip(f"{path} not found")
        with pymupdf.open(path) as doc:
            text = doc[0].get_text()
        assert text.strip() and not usable_text(text, 32), name


def _s(**values: Any) -> Any:
    from types import SimpleNamespace

    base = {"ocr": "auto", "ocr_min_chars": 32, "ocr_languages": "eng+deu+pol", "ocr_dpi": 200,
            "ocr_timeout_s": 120.0, "tesseract_cmd": "tesseract", "isolate_rendering": False, "render_memory_mb": 0}
    base.update(values)
    return SimpleNamespace(**base)


@needs_tesseract
@pytest.mark.parametrize("isolate", [False, True])
def test_scanned_pdf_is_read_by_ocr(invoices: dict[str, Path], settings_factory: Any, isolate: bool) -> None:
    settings = settings_factory(ocr="auto", ocr_dpi=200, ocr_languages="eng+deu+pol", isolate_rendering=isolate)
    doc = open_document(invoices["scan_pdf"], settings)
    (page,) = list(doc.pages())
    assert page.text_source == "ocr" and not doc.page_notices
    words = page.text.lower()
    for word in ("rechnung", "kassel", "esstisch", "sparkasse"):
        assert word in words, (word, page.text[:300])
    text_doc = open_document(invoices["de"], settings)
    assert [p.text_source for p in text_doc.pages()] == ["pdf", "pdf"]  # a text layer is never OCRed


@needs_tesseract
def test_sideways_photo_is_turned_upright(invoices: dict[str, Path]) -> None:
    from pagelens.ingest.images import image_dpi
    from PIL import Image

    with Image.open(invoices["scan_png"]) as im:
        assert image_dpi(im) == 200
        result = ocr_image(im, _s(), 200)
    assert result.error == "" and result.rotation in (90, 270)  # OSD turned it upright
    assert "pol" in result.languages.split("+") and "jpn" not in result.languages
    assert "faktura" in result.text.lower() and "gdańsk" in result.text.lower(), result.text[:300]


def test_script_picks_the_languages() -> None:
    from pagelens.ingest.ocr import languages_for_script

    installed = ("eng", "deu", "pol", "jpn", "rus")
    assert languages_for_script("Japanese", installed) == "jpn"
    assert languages_for_script("Latin", installed) == "eng+deu+pol"
    assert languages_for_script("Cyrillic", installed) == "eng+deu+pol+rus"  # OSD may mistake Polish for it
    assert languages_for_script("", ("eng", "deu")) == "eng+deu"


@needs_tesseract
def test_ocr_time_limit_is_a_page_notice(invoices: dict[str, Path], settings_factory: Any) -> None:
    settings = settings_factory(ocr="auto", ocr_timeout_s=0.05)
    doc = open_document(invoices["scan_pdf"], settings)
    (page,) = list(doc.pages())
    assert page.text_source == "none" and page.text == ""
    (notice,) = doc.page_notices
    assert notice[0] == 1 and "scan_rechnung_de.pdf page 1" in notice[1] and "PAGELENS_OCR_TIMEOUT_S" in notice[1]


@needs_tesseract
def test_indexer_payload_language_text_source_and_search(invoices: dict[str, Path], settings_factory: Any,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    from pagelens.index.pipeline.indexer import IndexInput

    from pagelens.app.service import PagelensService

    settings = settings_factory(ocr="auto", page_longest_edge=512, ingest_workers=0, ocr_dpi=200,
                                ocr_languages="eng+deu+pol")
    service = PagelensService(settings)
    try:
        with caplog.at_level(logging.WARNING):
            report = service.index("inv", [IndexInput(path=invoices[k]) for k in ("de", "pl", "scan_pdf", "scan_png")])
        assert report.ok and not report.notices and not any("Tesseract" in r.getMessage() for r in caplog.records)
        payloads = {(p["doc_name"], p["page_no"]): p for _, p in service.store.iter_payloads("inv")}
        assert payloads[("syn_rechnung_moebelhaus_de.pdf", 1)]["text_source"] == "pdf"
        assert payloads[("scan_rechnung_de.pdf", 1)]["text_source"] == "ocr"
        assert payloads[("scan_faktura_pl.png", 1)]["text_source"] == "ocr"
        assert payloads[("scan_rechnung_de.pdf", 1)]["language"] == "de"
        assert payloads[("scan_faktura_pl.png", 1)]["language"] == "pl"
        assert payloads[("syn_faktura_hurtownia_pl.pdf", 2)]["language"] == "pl"
        # a scan is found by an inflected form of a word printed on it (German stem), in text mode
        hits = service.search("inv", "Rechnungen Esstische Sparkasse", k=3, mode="text")
        assert {h.doc_name for h in hits[:2]} == {"scan_rechnung_de.pdf", "syn_rechnung_moebelhaus_de.pdf"}
        scan_hit = next(h for h in hits if h.doc_name == "scan_rechnung_de.pdf")
        assert scan_hit.text_source == "ocr" and scan_hit.language == "de"
        docs = {d.doc_name: d.to_dict() for d in service.documents("inv")}
        assert docs["syn_rechnung_moebelhaus_de.pdf"]["languages"] == {"de": 2}
        assert docs["syn_rechnung_moebelhaus_de.pdf"]["text_sources"] == {"pdf": 2}
        assert docs["scan_faktura_pl.png"]["text_sources"] == {"ocr": 1}
        only_pl = service.search("inv", "faktury przelewem", k=5, mode="text",
                                 page_filter=__import__("pagelens.core.types").core.types.PageFilter(languages=["pl"]))
        assert only_pl and {h.language for h in only_pl} == {"pl"}
    finally:
        service.close()


def test_tesseract_missing_indexing_goes_on_and_says_so_once(invoices: dict[str, Path], settings_factory: Any,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    from pagelens.index.pipeline.indexer import IndexInput

    from pagelens.app.service import PagelensService

    settings = settings_factory(ocr="auto", page_longest_edge=256, ingest_workers=0,
                                tesseract_cmd="/nonexistent/tesseract")
    service = PagelensService(settings)
    try:
        with caplog.at_level(logging.WARNING):
            first = service.index("scans", [IndexInput(path=invoices["scan_pdf"])])
            second = service.index("scans", [IndexInput(path=invoices["scan_png"]), IndexInput(path=invoices["de"])])
        assert first.ok and second.ok and first.pages_indexed == 1 and second.pages_indexed == 3
        for report in (first, second):  # every report says it, with the fix
            assert len(report.notices) == 1 and "found visually only" in report.notices[0]
            assert "install-system-deps.sh" in report.notices[0] and "PAGELENS_OCR=off" in report.notices[0]
        logged = [r for r in caplog.records if "Tesseract OCR is not installed" in r.getMessage()]
        assert len(logged) == 1  # the log says it once per process
        payloads = {p["doc_name"]: p for _, p in service.store.iter_payloads("scans")}
        assert payloads["scan_rechnung_de.pdf"]["text_source"] == "none"
        assert payloads["scan_rechnung_de.pdf"]["text"] == ""
        assert payloads["syn_rechnung_moebelhaus_de.pdf"]["text_source"] == "pdf"
        # OCR off: nothing is said
        quiet = PagelensService(settings_factory(page_longest_edge=256, ingest_workers=0, ocr="off",
                                          tesseract_cmd="/nonexistent/tesseract", data_dir=settings.data_dir / "q"))
        try:
            assert quiet.index("q", [IndexInput(path=invoices["scan_pdf"])]).notices == []
        finally:
            quiet.close()
    finally:
        service.close()


def test_api_lists_languages_and_text_sources_and_filters_by_language(invoices: dict[str, Path],
                                                                      settings_factory: Any) -> None:
    from api_helpers import assert_error, upload, wait_job
    from fastapi.testclient import TestClient

    from pagelens.server import create_app

    settings = settings_factory(page_longest_edge=256, ocr="off")
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/collections", json={"name": "inv"}).status_code == 201
        r = upload(client, "inv", [invoices["de"], invoices["pl"]])
        assert wait_job(client, r.json()["id"])["status"] == "done"
        docs = {d["doc_name"]: d for d in client.get("/v1/collections/inv/documents").json()}
        assert docs["syn_rechnung_moebelhaus_de.pdf"]["languages"] == {"de": 2}
        assert docs["syn_faktura_hurtownia_pl.pdf"]["languages"] == {"pl": 2}
        assert docs["syn_faktura_hurtownia_pl.pdf"]["text_sources"] == {"pdf": 2}
        body = {"question": "2024", "k": 10, "mode": "text", "with_text": True}
        r = client.post("/v1/collections/inv/search", json={**body, "filter": {"languages": ["pl"]}})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert results and {h["language"] for h in results} == {"pl"} and {h["text_source"] for h in results} == {"pdf"}
        r = client.post("/v1/collections/inv/search", json={**body, "question": "Rechnungen"})
        assert r.json()["results"][0]["doc_name"] == "syn_rechnung_moebelhaus_de.pdf"
        bad = client.post("/v1/collections/inv/search", json={**body, "filter": {"languages": ["Deutsch!"]}})
        assert "ISO 639-1" in assert_error(bad, bad.status_code)["message"] and bad.status_code in (400, 422)


def test_ui_shows_a_pages_text_and_its_source() -> None:
    from pagelens.retrieve.types import SearchHit
    from pagelens.ui.render import page_text_markdown

    hit = SearchHit(rank=1, doc_id="d", doc_name="scan<1>.pdf", page_no=2, page_count=3, score=1.0, image_path=None,
                    text="Rechnung <b>Nr. 7</b> ist bis zum Ende des Monats zu bezahlen. Vielen Dank für Ihren Auftrag.",
                    language="de", text_source="ocr")
    md = page_text_markdown(hit)
    assert "source: OCR (Tesseract)" in md and "language: `de`" in md and "scan&lt;1&gt;.pdf, page 2" in md
    assert '<pre class="pl-page-text">Rechnung &lt;b&gt;Nr. 7&lt;/b&gt; ist' in md  # escaped, never HTML
    empty = SearchHit(rank=1, doc_id="d", doc_name="s.png", page_no=1, page_count=1, score=1.0, image_path=None,
                      text="", language="und", text_source="none")
    assert "found by its image only" in page_text_markdown(empty) and "install-system-deps.sh" in page_text_markdown(empty)
    old = SearchHit(rank=1, doc_id="d", doc_name="a.pdf", page_no=1, page_count=1, score=1.0, image_path=None,
                    text="Invoice total")  # indexed before languages and OCR
    # no language is named without one detected with confidence (ui/render.shown_language)
    assert "the PDF's text layer" in page_text_markdown(old) and "language" not in page_text_markdown(old)
