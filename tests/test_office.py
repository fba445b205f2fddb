"""Office and web documents: sniffing by content, LibreOffice conversion (ingest/office.py), and the
doors they come in by (directory walks, the indexer, API uploads).

Office files are built here (python-docx, python-pptx, openpyxl, msoffcrypto-tool, hand-made ODF/RTF/HTML
and OLE2). Tests that convert need LibreOffice (scripts/install-system-deps.sh) and skip without it;
the process handling (timeout, kill, environment, limits, cache) is tested with a stand-in ``soffice``
script, which needs no LibreOffice.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pymupdf
import pytest
from pagelens.ingest import discover_inputs, open_document
from pagelens.ingest.office import ConverterUnavailableError, converted_pdf_path, find_soffice
from pagelens.ingest.sniff import ENCRYPTED_OFFICE, sniff_head, sniff_path

from pagelens.core.errors import (
    DocumentTooLargeError,
    EncryptedDocumentError,
    IngestError,
    UnsupportedFileError,
)
from pagelens.core.settings import Settings

SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")
needs_lo = pytest.mark.skipif(SOFFICE is None, reason="LibreOffice (soffice) not installed; run "
                              "scripts/install-system-deps.sh")
EDGE = 384


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": tmp_path / "data", "page_longest_edge": EDGE}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- documents ------------------------------------------------------------------------------------------


def make_docx(path: Path, title: str = "Quarterly report", body: str = "Revenue grew by 12 percent.") -> Path:
    import docx

    document = docx.Document()
    document.add_heading(title, 0)
    document.add_paragraph(body)
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Region", "Sales"
    table.cell(1, 0).text, table.cell(1, 1).text = "Nord", "4711"
    document.save(path)
    return path


def make_xlsx(path: Path, rows: int = 5) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["invoice", "amount"])
    for i in range(rows):
        sheet.append([f"INV-{i:05d}", i * 10])
    book.save(path)
    return path


def make_pptx(path: Path, title: str = "Roadmap 2027") -> Path:
    import pptx

    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = title
    slide.placeholders[1].text = "Ship office documents"
    deck.save(path)
    return path


def make_odf(path: Path, mimetype: str, body: str, manifest_extra: str = "") -> Path:
    """A minimal hand-made OpenDocument package (mimetype first and stored, as the spec wants)."""
    ns = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
          'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
          'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"')
    content = f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {ns} office:version="1.2">' \
              f"<office:body>{body}</office:body></office:document-content>"
    manifest = ('<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="urn:oasis:names:tc:'
                'opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
                f'<manifest:file-entry manifest:full-path="/" manifest:media-type="{mimetype}"/>'
                f'<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml">'
                f"{manifest_extra}</manifest:file-entry></manifest:manifest>")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), mimetype, compress_type=zipfile.ZIP_STORED)
        zf.writestr("META-INF/manifest.xml", manifest, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("content.xml", content, compress_type=zipfile.ZIP_DEFLATED)
    return path


def make_odt(path: Path, text: str = "Protokoll der Sitzung vom 3. März") -> Path:
    return make_odf(path, "application/vnd.oasis.opendocument.text",
                    f"<office:text><text:p>{text}</text:p></office:text>")


RTF = rb"{\rtf1\ansi\deff0{\fonttbl{\f0 Helvetica;}}\f0\pard Lettre de voiture num\'e9ro 88\par}"
HTML = ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Faktura</title></head><body>'
        "<h1>Faktura VAT nr 12/2026</h1><p>Zażółć gęślą jaźń: do zapłaty 1 234,56 zł</p></body></html>")


def make_encrypted_docx(path: Path, password: str = "s3cret") -> Path:
    from msoffcrypto.format.ooxml import OOXMLFile

    plain = make_docx(path.with_suffix(".plain.docx"))
    with plain.open("rb") as src, path.open("wb") as out:
        OOXMLFile(src).encrypt(password, out)
    plain.unlink()
    return path


def make_pdf(path: Path, text: str = "A plain PDF page") -> Path:
    doc = pymupdf.open()
    page = doc.new_page(width=300, height=200)
    page.insert_text((20, 50), text)
    doc.save(path)
    doc.close()
    return path


# -- sniffing (no LibreOffice needed) -------------------------------------------------------------------


def test_office_formats_are_told_by_content_not_by_name(tmp_path: Path) -> None:
    built = {
        "docx": make_docx(tmp_path / "a.docx"),
        "xlsx": make_xlsx(tmp_path / "b.xlsx"),
        "pptx": make_pptx(tmp_path / "c.pptx"),
        "odt": make_odt(tmp_path / "d.odt"),
        "ods": make_odf(tmp_path / "e.ods", "application/vnd.oasis.opendocument.spreadsheet",
                        "<office:spreadsheet/>"),
        "odp": make_odf(tmp_path / "f.odp", "application/vnd.oasis.opendocument.presentation",
                        "<office:presentation/>"),
    }
    (tmp_path / "g.rtf").write_bytes(RTF)
    (tmp_path / "h.html").write_text(HTML, encoding="utf-8")
    built.update(rtf=tmp_path / "g.rtf", html=tmp_path / "h.html")
    for fmt, path in built.items():
        misnamed = tmp_path / f"misnamed-{fmt}.pdf"  # the extension is never looked at
        shutil.copyfile(path, misnamed)
        assert sniff_path(misnamed) == fmt, fmt
    # ODF is decided from its first bytes already (mimetype stored first); OOXML needs the archive
    assert sniff_head(built["odt"].read_bytes()[:1024]) == "odt"
    assert sniff_head(built["docx"].read_bytes()[:1024]) == "zip"


@pytest.mark.parametrize("text,expected", [
    (b"\xef\xbb\xbf<!doctype html><p>x</p>", "html"),
    (b"<?xml version='1.0'?>\n<!DOCTYPE html PUBLIC '-//W3C//DTD XHTML 1.0'><html xmlns='x'>", "html"),
    (b"  <!-- saved page -->\n<HTML><BODY>hi</BODY></HTML>", "html"),
    (b"<table><tr><td>1</td></tr></table>", "html"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", None),
    (b"<?xml version='1.0'?><note/>", None),
    (b"<abbr>no</abbr> plain text < with brackets", None),
    (b"hello, I am text", None),
])
def test_html_is_told_by_its_markup(text: bytes, expected: str | None) -> None:
    assert sniff_head(text) == expected


def test_a_zip_or_ole2_file_that_is_not_an_office_document_stays_unsupported(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    archive = tmp_path / "photos.docx"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.txt", "not an office document")
    with pytest.raises(UnsupportedFileError, match="ZIP archive that is not an Office") as info:
        open_document(archive, settings)
    assert "DOCX" in str(info.value)  # says what is supported
    ole = tmp_path / "thumbs.doc"
    ole.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600)  # a CFB header with no directory
    with pytest.raises(UnsupportedFileError, match="OLE2"):
        open_document(ole, settings)


def test_hostile_containers_never_break_the_sniffer(tmp_path: Path) -> None:
    """Random bytes behind ZIP / OLE2 / ODF magic: a format, None, or a damaged-document IngestError."""
    import random

    rng = random.Random(7)
    docx = make_docx(tmp_path / "seed.docx").read_bytes()
    heads = [b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", docx[:60]]
    path = tmp_path / "fuzz.bin"
    outcomes = set()
    for i in range(400):
        if i % 4 == 3:  # a real DOCX with a few bytes flipped
            data = bytearray(docx)
            for _ in range(rng.randrange(1, 6)):
                data[rng.randrange(len(data))] ^= 0xFF
            body = bytes(data)
        else:
            body = rng.choice(heads) + rng.randbytes(rng.randrange(0, 4000))
        path.write_bytes(body)
        try:
            outcomes.add(sniff_path(path))
        except IngestError as exc:
            assert "damaged office document" in str(exc)
            outcomes.add("damaged")
    assert None in outcomes and "docx" in outcomes


def test_password_protected_docx_fails_clearly_without_starting_libreoffice(tmp_path: Path) -> None:
    path = make_encrypted_docx(tmp_path / "salaries.docx")
    assert sniff_path(path) == ENCRYPTED_OFFICE
    settings = make_settings(tmp_path, soffice=str(tmp_path / "no-such-soffice"))  # never reached
    with pytest.raises(EncryptedDocumentError) as info:
        open_document(path, settings)
    assert str(info.value).startswith("salaries.docx: ") or str(path) in str(info.value)
    assert "password-protected" in str(info.value) and "without the password" in str(info.value)


def test_password_protected_odt_is_recognised(tmp_path: Path) -> None:
    extra = '<manifest:encryption-data manifest:checksum-type="SHA1/1K" manifest:checksum="x"/>'
    path = make_odf(tmp_path / "minutes.odt", "application/vnd.oasis.opendocument.text",
                    "<office:text/>", manifest_extra=extra)
    assert sniff_path(path) == ENCRYPTED_OFFICE
    with pytest.raises(EncryptedDocumentError, match="password-protected"):
        open_document(path, make_settings(tmp_path, soffice=str(tmp_path / "none")))


def test_truncated_docx_is_a_damaged_office_document(tmp_path: Path) -> None:
    data = make_docx(tmp_path / "whole.docx").read_bytes()
    path = tmp_path / "report.docx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IngestError, match="damaged office document: its ZIP container cannot be read") as info:
        open_document(path, make_settings(tmp_path, soffice=str(tmp_path / "none")))
    assert str(path) in str(info.value) and "save it again" in str(info.value)


def test_directory_walk_takes_office_files(tmp_path: Path) -> None:
    for name in ("a.pdf", "b.DOCX", "c.xlsx", "d.pptx", "e.odt", "f.rtf", "g.html", "h.doc", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    found = {p.name for p in discover_inputs([tmp_path])}
    assert found == {"a.pdf", "b.DOCX", "c.xlsx", "d.pptx", "e.odt", "f.rtf", "g.html", "h.doc"}


# -- process handling with a stand-in soffice (no LibreOffice needed) ---------------------------------


@pytest.fixture(autouse=True)
def _stand_in_may_write_its_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox's read-only view (ingest/fs_guard.py) also lets the stand-in converter write its record
    (under the test's folder); LibreOffice itself gets exactly the product's writable folders."""
    from pagelens.ingest import isolation, office

    def limits(memory_mb: int, cpu_s: float, max_bytes: int, writable: Any = None, sockets_in: Any = ()) -> Any:
        extra = [p for p in (tmp_path / "record", tmp_path / "unconfined" / "record") if p.is_dir()]
        return isolation.child_limits(memory_mb, cpu_s, max_bytes,
                                      None if writable is None else [*writable, *extra], sockets_in)

    monkeypatch.setattr(office, "child_limits", limits)


def fake_soffice(tmp_path: Path, *, sleep: float = 0, fail: bool = False) -> tuple[Path, Path]:
    """A ``soffice`` stand-in: records its arguments, environment, limits and the pid of a child it
    leaves running, then writes a one-page PDF to ``--outdir`` (or sleeps, or fails). Returns
    (script, record folder). The record folder is in the script: the environment is scrubbed."""
    record = tmp_path / "record"
    record.mkdir()
    pdf = make_pdf(tmp_path / "fake-output.pdf", "converted by the stand-in")
    script = tmp_path / "fake-soffice"
    script.write_text(f"""#!/bin/sh
echo "$@" > {record}/args
env > {record}/env
ulimit -v > {record}/ulimit_v
ulimit -f > {record}/ulimit_f
sleep 300 &
echo $! > {record}/child
count=$(cat {record}/calls 2>/dev/null || echo 0); echo $((count + 1)) > {record}/calls
{"sleep " + str(sleep) if sleep else ""}
{"echo 'Error: source file could not be loaded'; exit 1" if fail else ""}
while [ $# -gt 1 ]; do [ "$1" = --outdir ] && out=$2; shift; done
mkdir -p "$out" && cp {pdf} "$out/document.pdf"
kill %1 2>/dev/null
exit 0
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, record


def process_gone(pid: int, wait_s: float = 30.0) -> bool:
    """True once ``pid`` is dead (SIGKILL is delivered asynchronously: give a loaded machine time)."""
    import time

    deadline = time.monotonic() + wait_s
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):  # a zombie waiting for a reaper is dead
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_conversion_past_the_time_limit_is_killed_with_its_children(tmp_path: Path) -> None:
    script, record = fake_soffice(tmp_path, sleep=60)
    settings = make_settings(tmp_path, soffice=str(script), office_timeout_s=1.5)
    docx = make_docx(tmp_path / "slow.docx")
    with pytest.raises(IngestError, match=r"took longer than 1.5 s and was stopped \(PAGELENS_OFFICE_TIMEOUT_S\)"):
        open_document(docx, settings)
    child = int((record / "child").read_text())
    assert process_gone(child), "the converter's child process survived the kill"
    assert not converted_pdf_path(settings, sha256(docx)).exists()


def test_converter_environment_is_scrubbed_and_the_result_is_kept(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGELENS_API_KEYS", "topsecret:admin")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "also-secret")
    script, record = fake_soffice(tmp_path)
    settings = make_settings(tmp_path, soffice=str(script))
    docx = make_docx(tmp_path / "Bericht Q3 (final).docx")
    doc = open_document(docx, settings, metadata={"team": "finance"})
    env = (record / "env").read_text()
    assert "topsecret" not in env and "also-secret" not in env
    args = (record / "args").read_text()
    assert "--headless" in args and "-env:UserInstallation=file://" in args and "document.docx" in args
    # the original file identifies the document; the pages are the PDF's
    assert doc.name == "Bericht Q3 (final).docx" and doc.sha256 == sha256(docx)
    assert doc.doc_id == sha256(docx)[:16] and doc.source_format == "docx" and doc.kind == "pdf"
    (page,) = list(doc.pages())
    assert "converted by the stand-in" in page.text and max(page.image.size) == EDGE
    assert converted_pdf_path(settings, doc.sha256).is_file()
    open_document(docx, settings)  # the second open (an ingest worker, a re-run) reuses the PDF
    # one start of the sandbox's template profile on a one-line document (office._sandbox_template), one conversion
    assert (record / "calls").read_text().strip() == "2"


def test_isolation_caps_the_converter_memory_and_output(tmp_path: Path) -> None:
    script, record = fake_soffice(tmp_path)
    settings = make_settings(tmp_path, soffice=str(script), render_memory_mb=1536,  # the default: isolated
                             max_file_bytes=50 * 1024 * 1024)
    open_document(make_docx(tmp_path / "x.docx"), settings)
    assert int((record / "ulimit_v").read_text()) == 1536 * 1024  # KiB
    assert int((record / "ulimit_f").read_text()) * 512 == 50 * 1024 * 1024  # 512-byte blocks (POSIX sh)
    other = tmp_path / "unconfined"
    other.mkdir()
    plain_script, plain = fake_soffice(other)
    open_document(make_docx(other / "y.docx"), make_settings(other, soffice=str(plain_script), isolate_rendering=False))
    assert (plain / "ulimit_v").read_text().strip() == "unlimited"  # without isolation (trusted input): no caps


def test_conversion_failure_names_the_file_and_libreoffice_message(tmp_path: Path) -> None:
    script, _ = fake_soffice(tmp_path, fail=True)
    with pytest.raises(IngestError) as info:
        open_document(make_docx(tmp_path / "broken.docx"), make_settings(tmp_path, soffice=str(script)))
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'broken.docx'}: LibreOffice could not convert this DOCX document")
    assert message.endswith("Error: source file could not be loaded")


def test_missing_libreoffice_is_a_clear_per_file_error(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, soffice=str(tmp_path / "bin" / "soffice"))
    assert find_soffice(settings) is None
    with pytest.raises(ConverterUnavailableError) as info:
        open_document(make_docx(tmp_path / "report.docx"), settings, name="report.docx")
    message = str(info.value)
    assert message.startswith("report.docx: is a DOCX document; pagelens converts those to PDF with LibreOffice")
    assert "apt-get install libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui" in message
    assert "PAGELENS_SOFFICE" in message and info.value.code == "converter_unavailable"


@pytest.mark.slow
def test_batch_goes_on_when_libreoffice_is_missing(settings_factory, tmp_path: Path) -> None:
    from pagelens.index.pipeline.indexer import IndexInput

    from pagelens.app.service import PagelensService

    settings = settings_factory(soffice=str(tmp_path / "missing" / "soffice"), page_longest_edge=512)
    docs = tmp_path / "docs"
    docs.mkdir()
    make_docx(docs / "report.docx")
    make_xlsx(docs / "ledger.xlsx")
    pdf = make_pdf(docs / "invoice.pdf", "Invoice 42 total 99 EUR")
    service = PagelensService(settings)
    try:
        report = service.indexer.index("c", [IndexInput(p) for p in discover_inputs([docs])])
        assert report.count("indexed") == 1 and report.count("failed") == 2
        assert sorted(Path(e.path).name for e in report.errors) == ["ledger.xlsx", "report.docx"]
        assert {e.code for e in report.errors} == {"converter_unavailable"}
        assert all("apt-get install libreoffice-writer-nogui" in e.error for e in report.errors)
        assert [d.doc_name for d in service.documents("c")] == [pdf.name]
    finally:
        service.close()


# -- real conversions (LibreOffice) ---------------------------------------------------------------------


@needs_lo
def test_office_documents_convert_with_their_text(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    (tmp_path / "cmr.rtf").write_bytes(RTF)
    (tmp_path / "faktura.html").write_text(HTML, encoding="utf-8")
    cases = {
        make_docx(tmp_path / "report.docx", "Jahresbericht 2026", "Der Umsatz stieg um 12 Prozent."): [
            "Jahresbericht 2026", "Umsatz stieg", "4711"],
        make_xlsx(tmp_path / "ledger.xlsx"): ["INV-00004", "amount"],
        make_pptx(tmp_path / "deck.pptx"): ["Roadmap 2027", "Ship office documents"],
        make_odt(tmp_path / "protokoll.odt"): ["Protokoll der Sitzung vom 3. März"],
        tmp_path / "cmr.rtf": ["Lettre de voiture numéro 88"],
        tmp_path / "faktura.html": ["Faktura VAT nr 12/2026", "Zażółć gęślą jaźń"],
    }
    for path, expected in cases.items():
        doc = open_document(path, settings)
        pages = list(doc.pages())
        text = " ".join(" ".join(p.text.split()) for p in pages)
        assert doc.page_count == len(pages) >= 1 and not doc.page_errors, path.name
        for snippet in expected:
            assert snippet in text, (path.name, snippet, text)
        assert doc.name == path.name and doc.sha256 == sha256(path)
        assert all(max(p.image.size) == EDGE for p in pages)


@needs_lo
def test_legacy_doc_converts(tmp_path: Path) -> None:
    docx = make_docx(tmp_path / "memo.docx", "Legacy memo", "Written with Word 97.")
    subprocess.run([SOFFICE, f"-env:UserInstallation={(tmp_path / 'p').as_uri()}", "--headless", "--convert-to",
                    "doc", "--outdir", str(tmp_path / "legacy"), str(docx)], check=True, capture_output=True,
                   timeout=120)
    legacy = tmp_path / "legacy" / "memo.doc"
    assert sniff_path(legacy) == "doc"
    doc = open_document(legacy, make_settings(tmp_path))
    assert "Written with Word 97." in next(iter(doc.pages())).text


@needs_lo
def test_docx_with_broken_xml_fails_with_libreoffice_reason(tmp_path: Path) -> None:
    good = make_docx(tmp_path / "good.docx")
    bad = tmp_path / "bad.docx"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as out:
        for info in src.infolist():
            data = b"<w:document this is not xml" if info.filename == "word/document.xml" else src.read(info)
            out.writestr(info, data)
    with pytest.raises(IngestError, match="LibreOffice could not convert this DOCX document to PDF") as info:
        open_document(bad, make_settings(tmp_path))
    assert not isinstance(info.value, ConverterUnavailableError)


@needs_lo
def test_huge_spreadsheet_hits_the_page_limit(tmp_path: Path) -> None:
    path = make_xlsx(tmp_path / "export.xlsx", rows=600)  # ~12 pages of rows
    settings = make_settings(tmp_path, max_pages_per_document=3)
    with pytest.raises(DocumentTooLargeError) as info:
        open_document(path, settings)
    message = str(info.value)
    assert message.startswith(f"{path}: XLSX document converts to ")
    assert message.endswith("PDF pages, over the limit of 3 (PAGELENS_MAX_PAGES_PER_DOCUMENT)")
    assert info.value.detail["page_count"] > 3


@needs_lo
def test_html_cannot_pull_local_files_into_the_pdf(tmp_path: Path) -> None:
    """A web page that embeds a local file by URL (SSRF / local file disclosure) converts without it."""
    secret = tmp_path / "secret.png"
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 0, 0)).save(secret)
    page = tmp_path / "page.html"
    page.write_text(f'<!doctype html><html><body><p>Harmless text</p><img src="{secret.as_uri()}"></body></html>')
    settings = make_settings(tmp_path)
    doc = open_document(page, settings)
    assert "Harmless text" in next(iter(doc.pages())).text
    with pymupdf.open(converted_pdf_path(settings, doc.sha256)) as pdf:
        assert [len(p.get_images()) for p in pdf] == [0] * pdf.page_count


@needs_lo
def test_isolated_conversion_runs_without_network(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, isolate_rendering=True, render_memory_mb=2048)
    doc = open_document(make_docx(tmp_path / "r.docx", "Isolated"), settings)
    assert "Isolated" in next(iter(doc.pages())).text


@needs_lo
@pytest.mark.slow
def test_api_upload_of_office_documents(settings_factory, tmp_path: Path) -> None:
    from api_helpers import assert_error, upload, wait_job
    from fastapi.testclient import TestClient

    from pagelens.server import create_app

    settings = settings_factory(page_longest_edge=512)
    docx = make_docx(tmp_path / "q3.docx", "Quarterly numbers")
    pptx_file = make_pptx(tmp_path / "deck.pptx")
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/collections", json={"name": "office"}).status_code == 201
        r = upload(client, "office", [("q3 report.bin", docx.read_bytes()), ("deck.pptx", pptx_file.read_bytes())])
        assert r.status_code == 202, r.text
        job = wait_job(client, r.json()["id"])
        assert job["status"] == "done", job
        assert [d["status"] for d in job["documents"]] == ["indexed", "indexed"]
        docs = {d["doc_name"]: d for d in client.get("/v1/collections/office/documents").json()}
        assert set(docs) == {"q3 report.bin", "deck.pptx"}
        assert docs["q3 report.bin"]["doc_id"] == sha256(docx)[:16]
        png = client.get(f"/v1/collections/office/documents/{sha256(docx)[:16]}/pages/1.png")
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
        # a ZIP that is not an office document is refused by content, whatever its name
        archive = tmp_path / "fake.docx"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("a.txt", "x")
        err = assert_error(upload(client, "office", [archive]), 415, "unsupported_file")
        assert "DOCX" in err["message"] and "checked by content" in err["message"]
        # deleting the document removes the PDF it was converted to
        assert converted_pdf_path(settings, sha256(docx)).is_file()
        assert client.delete(f"/v1/collections/office/documents/{sha256(docx)[:16]}").status_code in (200, 204)
        assert not converted_pdf_path(settings, sha256(docx)).exists()


def test_ui_upload_takes_office_documents_by_content(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from pagelens.ui.app import ACCEPTED_TYPES, UIContext, enqueue_files

    from pagelens.app.access import OPEN
    from pagelens.app.jobs import JobStore

    assert {".docx", ".xlsx", ".pptx", ".odt", ".rtf", ".html", ".pdf"} <= set(ACCEPTED_TYPES)
    settings = make_settings(tmp_path)
    store = SimpleNamespace(get_manifest=lambda name: object())  # the collection exists
    ctx = UIContext(settings=settings, service=SimpleNamespace(store=store), jobs=JobStore(settings.data_dir))
    docx = make_docx(tmp_path / "Angebot.docx")
    renamed = tmp_path / "upload-without-extension"
    shutil.copyfile(docx, renamed)
    archive = tmp_path / "fake.xlsx"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.txt", "x")
    job, rejected = enqueue_files(ctx, OPEN, "c", [str(docx), str(renamed), str(archive)])
    assert job is not None and [d["name"] for d in job.documents] == ["Angebot.docx", "upload-without-extension"]
    assert [Path(d["path"]).suffix for d in job.documents] == [".docx", ".docx"]  # stored by the sniffed type
    assert all(Path(d["path"]).read_bytes() == docx.read_bytes() for d in job.documents)
    assert [r["name"] for r in rejected] == ["fake.xlsx"]
    assert "not a PDF, PNG, JPEG or TIFF file, or an office or web document" in rejected[0]["error"]


def test_isolated_conversions_get_a_fresh_profile_per_document(tmp_path: Path) -> None:
    """The sandbox (default) never reuses a LibreOffice profile an untrusted document ran in."""
    import re

    script, record = fake_soffice(tmp_path)
    settings = make_settings(tmp_path, soffice=str(script))
    profiles = []
    for name in ("a.docx", "b.docx"):
        open_document(make_docx(tmp_path / name, name), settings)
        (uri,) = re.findall(r"-env:UserInstallation=file://(\S+)", (record / "args").read_text())
        profiles.append(Path(uri))
    assert profiles[0] != profiles[1]
    assert not profiles[0].exists()  # thrown away after its document
