"""Ingest: opening, validating and rasterizing PDFs and images; discovering inputs."""

from __future__ import annotations

import hashlib
import shutil
import struct
import zlib
from pathlib import Path
from typing import Any

import pymupdf
import pytest
from conftest import HOSTILE_PDFS, REAL_PDFS
from pagelens.ingest import Page, SourceDocument, discover_inputs, open_document
from pagelens.ingest.geometry import fit_size
from PIL import Image

from pagelens.core.errors import (
    DocumentTooLargeError,
    EncryptedDocumentError,
    IngestError,
    UnsupportedFileError,
)
from pagelens.core.settings import Settings

EDGE = 512  # px: small target so the broad loops stay fast

REAL = sorted(REAL_PDFS.glob("*.pdf"))
HOSTILE = sorted(HOSTILE_PDFS.glob("*.pdf"))
AWS = REAL_PDFS / "inv_aws_invoice_en.pdf"

# Hostile file -> expected outcome: a page count (all pages render) or the IngestError subclass raised
# by open_document. Measured with PyMuPDF 1.26 / MuPDF; see /work/shared/pdfs/SOURCES.tsv.
HOSTILE_EXPECTED: dict[str, int | type[IngestError]] = {
    "h_bad_kids_poppler-742-fuzzed.pdf": IngestError,
    "h_bad_pages_count_poppler-67295.pdf": IngestError,
    "h_bad_trailer_issue9418.pdf": IngestError,
    "h_corrupt_zlib_stream.pdf": 1,
    "h_empty_0_bytes.pdf": IngestError,
    "h_enc_aes256_r6_pw_usersecret.pdf": EncryptedDocumentError,
    "h_enc_pw_test_4pages.pdf": EncryptedDocumentError,
    "h_enc_rc4_40_pw_foo.pdf": EncryptedDocumentError,
    "h_enc_unknown_pw_corrupt_objstm.pdf": EncryptedDocumentError,
    "h_font_non_unicode_cmap.pdf": 1,
    "h_font_type3_no_unicode.pdf": 1,
    "h_fuzzed_ascii85_xrefstream.pdf": 1,
    "h_header_plus_eof_only.pdf": IngestError,
    "h_huge_page_18000x36000pt.pdf": 1,
    "h_jbig2_compression_bomb.pdf": 1,
    "h_js_autoprint_on_open.pdf": 1,
    "h_js_eval_form_field.pdf": 2,
    "h_page_without_contents.pdf": 1,
    "h_pages_points_to_page.pdf": IngestError,
    "h_recursive_xobjects.pdf": 1,
    "h_truncated_60pct_tracemonkey.pdf": IngestError,
    "h_truncated_canon_scan.pdf": 1,
    "h_xref_keyword_missing.pdf": 1,
    "h_zero_pages_unreadable_meta.pdf": IngestError,
}

ENCRYPTED = [
    ("h_enc_rc4_40_pw_foo.pdf", "foo", 1, "Secret!"),
    ("h_enc_aes256_r6_pw_usersecret.pdf", "usersecret", 1, "Hello World"),
    ("h_enc_pw_test_4pages.pdf", "test", 4, "Backup4all"),
]

needs_shared = pytest.mark.skipif(not REAL or not HOSTILE, reason="shared PDFs not present")
needs_poppler = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (poppler-utils) missing")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", page_longest_edge=EDGE)  # type: ignore[call-arg]


def make(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": tmp_path / "data", "page_longest_edge": EDGE}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def all_pages(doc: SourceDocument) -> list[Page]:
    pages = list(doc.pages())
    assert len(pages) + len(doc.page_errors) == doc.page_count  # nothing silently dropped
    return pages


def png_bytes(width: int, height: int, color_type: int = 2) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` px, with a tiny (bogus) IDAT: a cheap bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# --- real PDFs ------------------------------------------------------------------------------------
@needs_shared
def test_shared_sets_complete() -> None:
    assert len(REAL) == 30
    assert set(HOSTILE_EXPECTED) == {p.name for p in HOSTILE}


@needs_shared
@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_real_pdf_pages_match_pymupdf(path: Path, settings: Settings) -> None:
    with pymupdf.open(path) as ref:
        expected = ref.page_count
        rects = [page.rect for page in ref]
    doc = open_document(path, settings)
    assert doc.kind == "pdf" and doc.source_format == "pdf"
    assert doc.page_count == expected
    pages = all_pages(doc)
    assert doc.page_errors == []
    assert [p.page_no for p in pages] == list(range(1, expected + 1))
    for page, rect in zip(pages, rects, strict=True):
        assert page.image.mode == "RGB"
        assert max(page.size) == EDGE
        landscape = rect.width > rect.height
        assert (page.size[0] > page.size[1]) == landscape or rect.width == rect.height
        assert page.page_count == expected and page.doc_id == doc.doc_id and page.doc_sha256 == doc.sha256


@needs_shared
def test_text_layer_and_identity(tmp_path: Path) -> None:
    settings = make(tmp_path, page_longest_edge=2048)
    doc = open_document(AWS, settings, name="aws.pdf", metadata={"team": "billing"})
    expected_sha = hashlib.sha256(AWS.read_bytes()).hexdigest()
    assert doc.sha256 == expected_sha
    assert doc.doc_id == expected_sha[:16]
    assert doc.name == "aws.pdf" and doc.metadata == {"team": "billing"}
    (page,) = all_pages(doc)
    assert "Amazon Web Services" in page.text
    assert page.size == (1583, 2048)  # US letter 612x792 pt, longest edge 2048 px
    assert page.doc_name == "aws.pdf"


@needs_shared
def test_scan_has_empty_text_layer(settings: Settings) -> None:
    (page,) = all_pages(open_document(REAL_PDFS / "scan_huckfinn_page_en.pdf", settings))
    assert page.text.strip() == ""


@needs_shared
def test_same_bytes_same_doc_id(tmp_path: Path, settings: Settings) -> None:
    copy = tmp_path / "renamed.bin"
    shutil.copyfile(AWS, copy)
    assert open_document(copy, settings).doc_id == open_document(AWS, settings).doc_id


@needs_shared
def test_pages_is_lazy_and_repeatable(settings: Settings) -> None:
    doc = open_document(REAL_PDFS / "paper_tracemonkey_pldi09.pdf", settings)
    first = next(doc.pages())
    assert first.page_no == 1
    assert len(all_pages(doc)) == 14


# --- hostile PDFs ---------------------------------------------------------------------------------
@needs_shared
@pytest.mark.parametrize("path", HOSTILE, ids=lambda p: p.name)
def test_hostile_file_gives_pages_or_clear_error(path: Path, settings: Settings) -> None:
    expected = HOSTILE_EXPECTED[path.name]
    try:
        doc = open_document(path, settings)
    except IngestError as exc:
        assert path.name in str(exc)
        assert str(exc).startswith(f"{path}: ") and len(str(exc).splitlines()) == 1
        assert not isinstance(expected, int), f"expected {expected} pages, got {exc!r}"
        assert type(exc) is expected
        return
    assert isinstance(expected, int), f"expected {expected.__name__}"
    pages = all_pages(doc)
    assert len(pages) == expected and doc.page_errors == []
    for page in pages:
        assert page.image.mode == "RGB" and max(page.size) == EDGE


@needs_shared
def test_hostile_messages(settings: Settings) -> None:
    with pytest.raises(IngestError, match="empty"):
        open_document(HOSTILE_PDFS / "h_empty_0_bytes.pdf", settings)
    with pytest.raises(IngestError, match="no readable pages"):
        open_document(HOSTILE_PDFS / "h_pages_points_to_page.pdf", settings)
    with pytest.raises(IngestError, match="damaged or truncated"):
        open_document(HOSTILE_PDFS / "h_truncated_60pct_tracemonkey.pdf", settings)


@needs_shared
def test_huge_page_box_rendered_to_target(tmp_path: Path) -> None:
    settings = make(tmp_path, page_longest_edge=2048)
    (page,) = all_pages(open_document(HOSTILE_PDFS / "h_huge_page_18000x36000pt.pdf", settings))
    assert page.size == (1024, 2048)


@needs_shared
def test_max_pixels_shrinks_never_refuses(tmp_path: Path) -> None:
    settings = make(tmp_path, page_longest_edge=2048, max_pixels_per_page=100_000)
    (page,) = all_pages(open_document(HOSTILE_PDFS / "h_huge_page_18000x36000pt.pdf", settings))
    w, h = page.size
    assert w * h <= 100_000 and h == pytest.approx(2 * w, abs=1) and h > 400


@needs_shared
def test_page_rotation_respected(settings: Settings) -> None:
    path = HOSTILE_PDFS / "h_corrupt_zlib_stream.pdf"  # A4 portrait box with /Rotate 90
    with pymupdf.open(path) as ref:
        assert ref[0].rotation == 90
    (page,) = all_pages(open_document(path, settings))
    assert page.size == (512, 362)


# --- encryption -----------------------------------------------------------------------------------
@needs_shared
@pytest.mark.parametrize(("name", "password", "count", "word"), ENCRYPTED)
def test_encrypted_pdf(name: str, password: str, count: int, word: str, tmp_path: Path) -> None:
    path = HOSTILE_PDFS / name
    settings = make(tmp_path)
    with pytest.raises(EncryptedDocumentError, match="--password") as info:
        open_document(path, settings)
    assert "PAGELENS_PDF_PASSWORD" in str(info.value) and name in str(info.value)
    with pytest.raises(EncryptedDocumentError, match="wrong"):
        open_document(path, settings, password="not-" + password)
    doc = open_document(path, settings, password=password)
    pages = all_pages(doc)
    assert len(pages) == count == doc.page_count
    assert word in pages[0].text
    assert max(pages[0].size) == EDGE
    # the password may also come from the settings (PAGELENS_PDF_PASSWORD)
    assert open_document(path, make(tmp_path, pdf_password=password)).page_count == count


# --- limits and types -----------------------------------------------------------------------------
def test_missing_file(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "nope.pdf"
    with pytest.raises(IngestError, match="file not found") as info:
        open_document(path, settings)
    assert str(info.value) == f"{path}: file not found"


def test_directory_is_refused(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="directory"):
        open_document(tmp_path, settings)


def test_text_file_named_pdf_is_unsupported(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "x.pdf"
    path.write_text("hello, I am not a PDF\n")
    with pytest.raises(UnsupportedFileError, match="plain text") as info:
        open_document(path, settings)
    assert "x.pdf" in str(info.value) and "PDF, PNG, JPEG, TIFF" in str(info.value)


def test_zip_is_unsupported(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "report.docx"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(UnsupportedFileError, match="ZIP"):
        open_document(path, settings)


def test_error_names_display_name(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "upload-123"
    path.write_bytes(b"\0\1\2\3")
    with pytest.raises(UnsupportedFileError, match=r"^scan\.pdf: "):
        open_document(path, settings, name="scan.pdf")


@needs_shared
def test_content_decides_type_not_extension(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "invoice.dat"
    shutil.copyfile(AWS, path)
    doc = open_document(path, settings)
    assert doc.kind == "pdf" and doc.page_count == 1


def test_pdf_header_after_junk_is_accepted(settings: Settings, tmp_path: Path) -> None:
    pdf = pymupdf.open()
    pdf.new_page(width=200, height=100)
    path = tmp_path / "junk.pdf"
    path.write_bytes(b"garbage before header\n" + pdf.tobytes())
    (page,) = all_pages(open_document(path, settings))
    assert page.size == (512, 256)


@needs_shared
def test_file_size_limit(tmp_path: Path) -> None:
    settings = make(tmp_path, max_file_bytes=1000)
    with pytest.raises(DocumentTooLargeError, match="max_file_bytes|PAGELENS_MAX_FILE_BYTES"):
        open_document(AWS, settings)


@needs_shared
def test_page_count_limit(tmp_path: Path) -> None:
    settings = make(tmp_path, max_pages_per_document=10)
    with pytest.raises(DocumentTooLargeError, match="14 pages"):
        open_document(REAL_PDFS / "paper_tracemonkey_pldi09.pdf", settings)


def test_bad_page_is_reported_and_following_pages_continue(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pagelens.ingest import pdf as pdf_module

    pdf = pymupdf.open()
    for _ in range(3):
        pdf.new_page(width=300, height=400)
    path = tmp_path / "three.pdf"
    pdf.save(path)
    original = pdf_module._draw_pymupdf

    def flaky(page, size, path_, page_no, password):  # type: ignore[no-untyped-def]
        if page_no == 2:
            raise RuntimeError("boom")
        return original(page, size, path_, page_no, password)

    monkeypatch.setattr(pdf_module, "_draw_pymupdf", flaky)
    doc = open_document(path, settings.with_overrides(isolate_rendering=False))  # the in-process drawing, patched
    pages = list(doc.pages())
    assert [p.page_no for p in pages] == [1, 3]
    assert [p.size for p in pages] == [(384, 512), (384, 512)]
    (error,) = doc.page_errors
    assert error.page == 2 and str(error) == f"{path} page 2: page could not be rendered: boom"
    assert len(list(doc.pages())) == 2 and len(doc.page_errors) == 1  # reset on each iteration


# --- images ---------------------------------------------------------------------------------------
def test_png_bomb_refused_before_decoding(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(100_000, 100_000))  # 10 Gpx: PIL's own guard refuses it in Image.open
    with pytest.raises(DocumentTooLargeError, match="too large") as info:
        open_document(path, settings)
    assert "bomb.png" in str(info.value) and "PAGELENS_MAX_PIXELS_PER_PAGE" in str(info.value)
    path.write_bytes(png_bytes(10_000, 10_000))  # 100 Mpx: under PIL's error level, over ours (64 Mpx)
    with pytest.raises(DocumentTooLargeError, match="too large: 10000x10000 px"):
        open_document(path, settings)


def test_png_just_over_pixel_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(png_bytes(1001, 1000))
    with pytest.raises(DocumentTooLargeError):
        open_document(path, make(tmp_path, max_pixels_per_page=1_000_000))


def test_truncated_png_is_a_page_error(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "trunc.png"
    path.write_bytes(png_bytes(300, 200))  # IDAT far too short for 300x200
    doc = open_document(path, settings)
    assert doc.page_count == 1 and list(doc.pages()) == []
    (error,) = doc.page_errors
    assert error.page == 1 and "trunc.png page 1" in str(error)


def test_multiframe_tiff(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "scan.tif"
    frames = [Image.new("L", (1000, 1400), 255), Image.new("RGB", (1400, 1000), "red"), Image.new("1", (300, 200))]
    frames[0].save(path, save_all=True, append_images=frames[1:], compression="tiff_deflate")
    doc = open_document(path, settings)
    assert doc.kind == "image" and doc.source_format == "tiff" and doc.page_count == 3
    pages = all_pages(doc)
    assert [p.size for p in pages] == [(366, 512), (512, 366), (300, 200)]  # downscale only
    assert all(p.image.mode == "RGB" and p.text == "" for p in pages)
    assert pages[1].image.getpixel((10, 10)) == (255, 0, 0)


def test_tiff_frame_count_limit(tmp_path: Path) -> None:
    path = tmp_path / "many.tiff"
    frames = [Image.new("L", (10, 10)) for _ in range(5)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.raises(DocumentTooLargeError, match="5 pages"):
        open_document(path, make(tmp_path, max_pages_per_document=4))


def test_tiff_bomb_frame_refused(tmp_path: Path) -> None:
    path = tmp_path / "mixed.tif"
    Image.new("L", (100, 100)).save(path, save_all=True, append_images=[Image.new("L", (2000, 1000))])
    with pytest.raises(DocumentTooLargeError, match="frame 2 too large: 2000x1000 px"):
        open_document(path, make(tmp_path, max_pixels_per_page=1_000_000))


def test_png_alpha_flattened_on_white(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "logo.png"
    Image.new("RGBA", (100, 50), (0, 0, 0, 0)).save(path)
    (page,) = all_pages(open_document(path, settings))
    assert page.size == (100, 50)  # never upscaled
    assert page.image.mode == "RGB" and page.image.getpixel((5, 5)) == (255, 255, 255)


def test_16bit_png(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    Image.new("I;16", (64, 32), 65535).save(path)
    (page,) = all_pages(open_document(path, settings))
    assert page.image.getpixel((1, 1)) == (255, 255, 255)


def test_jpeg_downscaled_and_exif_rotated(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "photo.JPG"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.new("RGB", (2000, 1000), "blue").save(path, exif=exif.tobytes(), quality=90)
    (page,) = all_pages(open_document(path, settings))
    assert page.size == (256, 512)  # stored landscape, displayed portrait, longest edge 512 px
    r, g, b = page.image.getpixel((128, 256))  # type: ignore[misc]
    assert b > 200 and r < 40 and g < 40


def test_cmyk_jpeg(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "print.jpeg"
    Image.new("CMYK", (300, 300), (0, 0, 0, 0)).save(path)
    (page,) = all_pages(open_document(path, settings))
    assert page.image.mode == "RGB" and page.size == (300, 300)


def test_image_sha256(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.new("RGB", (10, 10)).save(path)
    doc = open_document(path, settings)
    assert doc.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() and doc.doc_id == doc.sha256[:16]


# --- geometry -------------------------------------------------------------------------------------
def test_fit_size() -> None:
    assert fit_size(612, 792, 2048, 64_000_000) == (1583, 2048)
    assert fit_size(100, 25, 2048, 64_000_000) == (2048, 512)  # small boxes go up to the target
    assert fit_size(100, 25, 2048, 64_000_000, upscale=False) == (100, 25)
    assert fit_size(14400, 1, 2048, 64_000_000) == (2048, 1)
    w, h = fit_size(1000, 1000, 2048, 1_000_000)
    assert w * h <= 1_000_000 and w == h == 1000
    with pytest.raises(ValueError):
        fit_size(0, 100, 2048, 1000)


# --- poppler --------------------------------------------------------------------------------------
@needs_shared
@needs_poppler
@pytest.mark.parametrize(
    "name", ["inv_aws_invoice_en.pdf", "rpt_ca_warn_layoffs_table.pdf", "scan_grumman_service_bulletin.pdf"]
)
def test_poppler_matches_pymupdf(name: str, tmp_path: Path) -> None:
    path = REAL_PDFS / name
    mu = all_pages(open_document(path, make(tmp_path)))
    doc = open_document(path, make(tmp_path, rasterizer="poppler"))
    pop = all_pages(doc)
    assert doc.page_errors == []
    assert len(pop) == len(mu) == doc.page_count
    assert [p.size for p in pop] == [p.size for p in mu]
    assert all(p.image.mode == "RGB" and max(p.size) == EDGE for p in pop)
    assert pop[0].text == mu[0].text


@needs_shared
@needs_poppler
def test_poppler_encrypted_and_bomb(tmp_path: Path) -> None:
    settings = make(tmp_path, rasterizer="poppler")
    doc = open_document(HOSTILE_PDFS / "h_enc_pw_test_4pages.pdf", settings, password="test")
    assert len(all_pages(doc)) == 4 and doc.page_errors == []
    # JBIG2 bomb: pdftoppm runs under an address-space cap and gives up on the image quickly
    doc = open_document(HOSTILE_PDFS / "h_jbig2_compression_bomb.pdf", settings)
    assert len(all_pages(doc)) + len(doc.page_errors) == 1


# --- discovery ------------------------------------------------------------------------------------
def test_discover_inputs(tmp_path: Path) -> None:
    root = tmp_path / "in"
    for rel in ["b.pdf", "a.PDF", "sub/c.png", "sub/deeper/d.tiff", "notes.txt", ".hidden/e.pdf", "sub/skip.jpg"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    explicit = tmp_path / "odd.name"
    explicit.write_bytes(b"x")
    missing = tmp_path / "missing.pdf"
    found = discover_inputs([root, explicit, missing, root / "b.pdf"], exclude=["skip.*"])
    assert found == [
        root / "a.PDF",
        root / "b.pdf",
        root / "sub/c.png",
        root / "sub/deeper/d.tiff",
        explicit,
        missing,
    ]
    assert discover_inputs([root], include=["*.png"]) == [root / "sub/c.png"]
    assert discover_inputs([root], exclude=["sub/*"]) == [root / "a.PDF", root / "b.pdf"]
    assert discover_inputs([]) == []


def test_discovered_missing_path_reports_file_not_found(settings: Settings, tmp_path: Path) -> None:
    (missing,) = discover_inputs([tmp_path / "gone.pdf"])
    with pytest.raises(IngestError, match="gone.pdf: file not found"):
        open_document(missing, settings)
