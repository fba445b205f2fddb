"""PDF opening (PyMuPDF) and per-page rasterization (PyMuPDF, or poppler's pdftoppm in a subprocess).

PyMuPDF always opens the document (validation, password, page count, page boxes, text layer); the
``rasterizer`` setting only chooses who draws the pixels. With ``isolate_rendering`` (the default, PyMuPDF
drawing) every parse happens in the sandbox child (``pagelens.ingest.sandbox``): the open and page count
(``RenderWorker.inspect``) as well as the pages. Pages are rendered straight at the target
size computed by :func:`pagelens.ingest.geometry.fit_size` (no render-big-then-shrink).
"""

from __future__ import annotations

import contextlib
import logging
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pagelens.ingest.geometry import fit_size
from pagelens.ingest.types import Page, SourceDocument
from pagelens.ingest.words import WordBoxes, words_from_pymupdf
from PIL import Image

from pagelens.core.errors import DocumentTooLargeError, EncryptedDocumentError, IngestError
from pagelens.core.settings import Settings

if TYPE_CHECKING:
    import pymupdf as pymupdf_t
    from pagelens.ingest.sandbox import ChildLimits

logger = logging.getLogger(__name__)

POPPLER_TIMEOUT_S = 60  # s: wall-clock limit for one pdftoppm page render
PASSWORD_HINT = "pass its password with --password or the PAGELENS_PDF_PASSWORD environment variable"
_NOISE = ("trying to repair", "repairing pdf", "... repeated")

_configured = False

RenderFn = Callable[[SourceDocument], Iterator[Page]]


def _pymupdf() -> Any:
    """Import PyMuPDF lazily; route MuPDF's messages away from stderr (we log them instead)."""
    global _configured
    import pymupdf

    if not _configured:
        pymupdf.TOOLS.mupdf_display_errors(False)
        pymupdf.TOOLS.mupdf_display_warnings(False)
        _configured = True
    return pymupdf


def _mupdf_messages(pymupdf: Any) -> list[str]:
    """MuPDF warnings collected since the last call (global to the process), noise removed."""
    try:
        raw = pymupdf.TOOLS.mupdf_warnings(reset=True)
    except Exception:  # pragma: no cover - diagnostics only
        return []
    return _meaningful(raw.splitlines())


def _meaningful(lines: Sequence[str]) -> list[str]:
    """MuPDF's messages without its routine repair noise."""
    return [line for line in lines if line and not line.lower().startswith(_NOISE)]


def _open_reason(text: str, messages: Sequence[str]) -> str:
    reason = "damaged or truncated PDF that could not be opened or repaired"
    if text and not text.startswith(("Failed to open", "Cannot open")):
        detail = text.split(": ", 1)[-1] if text.startswith("code=") else text
        return f"{reason} ({detail})"
    if messages:
        return f"{reason} (MuPDF: {messages[0]})"
    return reason


def _open_and_unlock(path: Path, display: str, passwords: Sequence[str]) -> tuple[Any, str | None]:
    """Open with PyMuPDF and authenticate; returns (document, the password that worked or None)."""
    pymupdf = _pymupdf()
    _mupdf_messages(pymupdf)  # drop earlier messages
    try:
        doc = pymupdf.open(str(path), filetype="pdf")
    except Exception as exc:
        messages = _mupdf_messages(pymupdf)
        raise IngestError(display, _open_reason(str(exc), messages), mupdf=messages[:5]) from None
    for line in _mupdf_messages(pymupdf):
        logger.debug("%s: MuPDF: %s", display, line)
    if not doc.needs_pass:
        return doc, None
    for password in passwords:
        if doc.authenticate(password):
            return doc, password
    doc.close()
    raise _locked_error(display, passwords)


def _locked_error(display: str, passwords: Sequence[str]) -> EncryptedDocumentError:
    """An encrypted PDF none of ``passwords`` unlocked (none given, or wrong)."""
    if passwords:
        return EncryptedDocumentError(display, f"PDF is encrypted and the password given is wrong; {PASSWORD_HINT}")
    return EncryptedDocumentError(display, f"PDF is encrypted; {PASSWORD_HINT}")


def open_pdf(path: Path, display: str, settings: Settings, passwords: Sequence[str]) -> tuple[int, RenderFn]:
    """Validate a PDF; returns (page count, renderer for ``SourceDocument._render``).

    Raises ``IngestError`` (damaged, no pages), ``EncryptedDocumentError`` (no or wrong password),
    ``DocumentTooLargeError`` (more than ``settings.max_pages_per_document`` pages).
    """
    isolated = settings.rasterizer == "pymupdf" and bool(getattr(settings, "isolate_rendering", False))
    # absolute: the sandbox child is reused across documents and may have started in another cwd
    resolved = Path(path).resolve()
    if isolated:  # not even the first parse of an untrusted file in this process
        page_count, repaired, password = inspect_isolated(resolved, display, settings, passwords)
    else:
        doc, password = _open_and_unlock(path, display, passwords)
        try:
            try:
                page_count = int(doc.page_count)
            except Exception as exc:
                raise IngestError(display, f"damaged PDF: cannot count its pages ({exc})") from None
            repaired = bool(getattr(doc, "is_repaired", False))
        finally:
            doc.close()
    if page_count == 0:
        extra = " even after repairing its cross-reference table" if repaired else ""
        raise IngestError(display, f"PDF has no readable pages (damaged page tree){extra}")
    if page_count > settings.max_pages_per_document:
        raise DocumentTooLargeError(
            display,
            f"PDF has {page_count} pages, over the limit of {settings.max_pages_per_document} "
            "(PAGELENS_MAX_PAGES_PER_DOCUMENT)",
            page_count=page_count,
        )
    if repaired:
        logger.info("%s: damaged cross-reference table was repaired on open", display)
    if settings.rasterizer == "poppler" and shutil.which("pdftoppm") is None:
        raise IngestError(
            display,
            "rasterizer 'poppler' needs poppler-utils (pdftoppm) installed; install it "
            "(apt-get install poppler-utils) or set PAGELENS_RASTERIZER=pymupdf",
        )
    draw = _draw_poppler if settings.rasterizer == "poppler" else _draw_pymupdf

    def render(source: SourceDocument) -> Iterator[Page]:
        if isolated:
            return iter_pages_isolated(source, resolved, display, settings, password, page_count)
        return _iter_pages(source, path, display, settings, password, page_count, draw)

    return page_count, render


def _child_limits(settings: Settings) -> ChildLimits:
    """The sandbox child's limits (``pagelens.ingest.sandbox.ChildLimits``) from the settings: the same for
    opening a document and rendering its pages, so the child that opened it renders it."""
    from pagelens.ingest.sandbox import ChildLimits

    return ChildLimits(memory_mb=int(getattr(settings, "render_memory_mb", 0) or 0),
                       cpu_s=float(getattr(settings, "render_cpu_s", 0) or 0),
                       max_file_bytes=int(getattr(settings, "max_file_bytes", 0) or 0), no_network=True,
                       read_only=True)


def _image_request(display: str, settings: Settings, image_format: str | None) -> dict[str, Any] | None:
    """What the sandbox child needs to open an image file (``RenderWorker(image=...)``), None for a PDF."""
    if image_format is None:
        return None
    return {"format": image_format, "display": display, "max_pixels": settings.max_pixels_per_page,
            "max_pages": settings.max_pages_per_document}


def inspect_isolated(path: Path, display: str, settings: Settings, passwords: Sequence[str],
                     image_format: str | None = None) -> tuple[int, bool, str | None]:
    """Open the document in the sandbox child (``RenderWorker.inspect``, under the same limits as its pages
    and ``render_timeout_s``): returns (page count, whether MuPDF repaired it, the password that unlocked it or
    None). Raises ``IngestError`` / ``EncryptedDocumentError`` as ``_open_and_unlock`` does (an image file,
    ``image_format``: the errors of ``pagelens.ingest.images.check_frames``), and ``IngestError`` naming the
    limit when the child went past one. The child is kept for the pages."""
    from pagelens.ingest.sandbox import DocumentOpenError, DocumentRejected, RenderLimitExceeded, RenderWorker

    from pagelens.core import errors

    limits = _child_limits(settings)
    worker = RenderWorker(path, None, limits.memory_mb, limits, passwords=passwords,
                          image=_image_request(display, settings, image_format))
    what = "the PDF" if image_format is None else "the image"
    try:
        info = worker.inspect(float(getattr(settings, "render_timeout_s", 0) or 0))
    except DocumentOpenError as exc:
        messages = _meaningful(exc.messages)
        raise IngestError(display, _open_reason(str(exc), messages), mupdf=messages[:5]) from None
    except DocumentRejected as exc:
        cls = getattr(errors, exc.error_type, None)
        if not (isinstance(cls, type) and issubclass(cls, IngestError)):
            cls = IngestError
        raise cls(display, exc.reason, **exc.detail) from None
    except RenderLimitExceeded as exc:
        raise IngestError(display, f"{what} could not be opened in the sandbox: {exc}") from None
    finally:
        worker.release()
    for line in _meaningful([str(m) for m in info.get("messages") or ()]):
        logger.debug("%s: MuPDF: %s", display, line)
    index = info.get("password_index")
    if info.get("needs_pass") and not isinstance(index, int):
        raise _locked_error(display, passwords)
    password = passwords[index] if isinstance(index, int) and 0 <= index < len(passwords) else None
    page_count = info.get("page_count")
    if info.get("count_error") is not None:
        raise IngestError(display, f"damaged PDF: cannot count its pages ({info['count_error']})")
    if not isinstance(page_count, int) or page_count < 0:
        raise IngestError(display, "damaged PDF: cannot count its pages (the rendering process gave no count)")
    return page_count, bool(info.get("repaired")), password


DrawFn = Callable[["pymupdf_t.Page", tuple[int, int], Path, int, "str | None"], Image.Image]


def _iter_pages(
    source: SourceDocument,
    path: Path,
    display: str,
    settings: Settings,
    password: str | None,
    page_count: int,
    draw: DrawFn,
) -> Iterator[Page]:
    doc, _ = _open_and_unlock(path, display, [password] if password else [])
    try:
        if doc.page_count != page_count:
            raise IngestError(display, "the file changed since it was opened; index it again")
        limit = float(getattr(settings, "max_seconds_per_document", 0) or 0)
        spent = 0.0  # seconds rendering this document (not the consumer's time between pages)
        for index in range(page_count):
            page_no = index + 1
            _check_document_deadline(display, limit, spent, index, page_count)
            started = time.monotonic()
            try:
                page = doc.load_page(index)
                rect = page.rect  # pt, after /Rotate
                size = fit_size(rect.width, rect.height, settings.page_longest_edge, settings.max_pixels_per_page)
                image = draw(page, size, path, page_no, password)
            except Exception as exc:
                spent += time.monotonic() - started
                _record_page_error(source, display, page_no, str(exc))
                continue
            text = _text(page, display, page_no)
            words = words_from_pymupdf(page) if text.strip() else None
            spent += time.monotonic() - started
            # OCR has its own per-page limit (PAGELENS_OCR_TIMEOUT_S): not counted as rendering time
            text, text_source, words = _ocr_pdf_page(source, page, text, settings, display, page_no, words)
            yield _page(source, page_no, page_count, image, text, text_source, words)
    finally:
        doc.close()


def _check_document_deadline(display: str, limit: float, spent: float, index: int, page_count: int) -> None:
    """Raise once rendering this document has taken over ``limit`` seconds (0: no limit)."""
    if limit and spent > limit:
        raise IngestError(
            display,
            f"rendering took over the limit of {limit:g} s per document ({index} of {page_count} pages "
            "done; PAGELENS_MAX_SECONDS_PER_DOCUMENT)",
            page=index + 1,
        )


def _record_page_error(source: SourceDocument, display: str, page_no: int, reason: str,
                       prefix: str | None = None) -> None:
    """A page that could not be rendered: reported in ``page_errors``, never silently dropped. ``prefix``
    (default "page could not be rendered: ") goes before ``reason``."""
    lead = "page could not be rendered: " if prefix is None else prefix
    error = IngestError(display, f"{lead}{reason}", page=page_no)
    logger.warning("%s", error)
    source.page_errors.append(error)


def _page(source: SourceDocument, page_no: int, page_count: int, image: Image.Image, text: str,
          text_source: str | None = None, words: WordBoxes | None = None) -> Page:
    return Page(
        doc_id=source.doc_id,
        doc_name=source.name,
        page_no=page_no,
        page_count=page_count,
        image=image,
        text=text,
        doc_sha256=source.sha256,
        text_source=text_source or ("pdf" if text.strip() else "none"),
        words=words if text.strip() else None,
    )


def _ocr_wanted(text: str, settings: Settings) -> bool:
    """OCR this page: its text layer is unusable (or ``ocr=force``) and Tesseract is there."""
    from pagelens.ingest.ocr import needs_ocr, status_from_settings

    return needs_ocr(text, settings) and status_from_settings(settings).available


def apply_ocr(source: SourceDocument, image: Image.Image, dpi: int, text: str, settings: Settings,
              display: str, page_no: int, words: WordBoxes | None = None) -> tuple[str, str, WordBoxes | None]:
    """(text, text_source, word boxes) of a page after OCR of ``image`` (rendered at ``dpi``): the OCR text
    and its word boxes when it read something and the text layer was unusable (or ``ocr=force``), else
    the text layer and its ``words``. An OCR failure or time-out keeps the layer and is noted in
    ``source.page_notices`` (file and page)."""
    from pagelens.ingest.ocr import ocr_image, usable_text

    layer_source = "pdf" if text.strip() else "none"
    result = ocr_image(image, settings, dpi)
    if result.error:
        note = f"{display} page {page_no}: {result.error}"
        logger.warning("%s", note)
        source.page_notices.append((page_no, note))
        return text, layer_source, words
    read = sum(1 for c in result.text if c.isalnum())
    if not read:
        return text, layer_source, words
    layer_ok = usable_text(text, 1)
    if settings.ocr == "force" or not layer_ok or read >= sum(1 for c in text if c.isalnum()):
        logger.debug("%s page %d: OCR read %d characters (rotation %d, %s, %.2f s)", display, page_no, read,
                     result.rotation, result.languages, result.seconds)
        return result.text, "ocr", result.words
    return text, layer_source, words


def _ocr_pdf_page(source: SourceDocument, page: Any, text: str, settings: Settings, display: str,
                  page_no: int, words: WordBoxes | None = None) -> tuple[str, str, WordBoxes | None]:
    """In-process path: render the page in gray at ``Settings.ocr_dpi`` (capped) and OCR it when needed."""
    if not _ocr_wanted(text, settings):
        return text, "pdf" if text.strip() else "none", words
    from pagelens.ingest.ocr import ocr_pixels_dpi

    pymupdf = _pymupdf()
    try:
        dpi = ocr_pixels_dpi(page.rect.width, page.rect.height, settings.tuning.ocr_dpi)
        pix = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY, alpha=False)
        gray = Image.frombytes("L", (pix.width, pix.height), pix.samples, "raw", "L", pix.stride)
        del pix
    except Exception as exc:  # the page rendered for the retriever; only the OCR copy failed
        note = f"{display} page {page_no}: the page could not be rendered for OCR ({exc})"
        logger.warning("%s", note)
        source.page_notices.append((page_no, note))
        return text, "pdf" if text.strip() else "none", words
    return apply_ocr(source, gray, dpi, text, settings, display, page_no, words)


def iter_pages_isolated(
    source: SourceDocument,
    path: Path,
    display: str,
    settings: Settings,
    password: str | None,
    page_count: int,
    image_format: str | None = None,
) -> Iterator[Page]:
    """``_iter_pages`` with PyMuPDF drawing in a killable child process (``pagelens.ingest.sandbox``): a page
    past the time or memory limit becomes a page error naming the file, the page and the limit, and
    the next pages are rendered by a fresh child. The per-document time limit also bounds each page.
    ``image_format``: an image file's frames, decoded by Pillow in the child (``pagelens.ingest.images``)."""
    from pagelens.ingest.sandbox import RenderLimitExceeded, RenderWorker

    limits = _child_limits(settings)
    worker = RenderWorker(path, password, limits.memory_mb, limits,
                          image=_image_request(display, settings, image_format))
    from pagelens.ingest.ocr import status_from_settings

    ocr_request = None  # what the child needs to decide on OCR and render the page for it
    if settings.ocr != "off" and status_from_settings(settings).available:
        ocr_request = {"mode": settings.ocr, "min_chars": settings.tuning.ocr_min_chars, "dpi": settings.tuning.ocr_dpi}
    page_limit = float(getattr(settings, "render_timeout_s", 0) or 0)
    limit = float(getattr(settings, "max_seconds_per_document", 0) or 0)
    spent = 0.0
    try:
        for index in range(page_count):
            page_no = index + 1
            _check_document_deadline(display, limit, spent, index, page_count)
            timeout = page_limit
            if limit:
                left = max(limit - spent, 0.001)
                timeout = min(timeout, left) if timeout else left
            started = time.monotonic()
            try:
                size, got, samples, text, ocr_copy, words = worker.render(
                    index, settings.page_longest_edge, settings.max_pixels_per_page, timeout, ocr=ocr_request)
                image = _exact(Image.frombytes("RGB", got, samples), size)
                del samples
            except RenderLimitExceeded as exc:
                spent += time.monotonic() - started
                reason = str(exc)
                if exc.kind == "time" and limit and (not page_limit or timeout < page_limit):
                    reason = (f"rendering was stopped at the limit of {limit:g} s per document "
                              "(PAGELENS_MAX_SECONDS_PER_DOCUMENT)")
                _record_page_error(source, display, page_no, reason)
                continue
            except Exception as exc:
                spent += time.monotonic() - started
                # an image frame's reason is complete (``pagelens.ingest.images.frame_error``)
                _record_page_error(source, display, page_no, str(exc), prefix="" if image_format else None)
                continue
            spent += time.monotonic() - started
            text_source = "pdf" if text.strip() else "none"
            if ocr_copy is not None:  # the child found the layer unusable and rendered a gray copy for OCR
                ocr_size, ocr_dpi, gray_samples = ocr_copy
                gray = Image.frombytes("L", ocr_size, gray_samples)
                del gray_samples, ocr_copy
                text, text_source, words = apply_ocr(source, gray, ocr_dpi, text, settings, display, page_no, words)
                del gray
            yield _page(source, page_no, page_count, image, text, text_source, words)
    finally:
        worker.release()


def _text(page: Any, display: str, page_no: int) -> str:
    """The page's text layer, "" when it has none or extraction fails."""
    try:
        return str(page.get_text("text"))
    except Exception as exc:
        logger.info("%s page %d: text layer not extracted: %s", display, page_no, exc)
        return ""


def _exact(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if image.size != size:  # odd page-box origins can add a pixel row/column
        logger.debug("render gave %s px instead of %s px; resizing", image.size, size)
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


def _draw_pymupdf(page: Any, size: tuple[int, int], path: Path, page_no: int, password: str | None) -> Image.Image:
    """Render one page with PyMuPDF at exactly ``size`` (w, h) px, RGB, no alpha."""
    pymupdf = _pymupdf()
    rect = page.rect
    matrix = pymupdf.Matrix(size[0] / rect.width, size[1] / rect.height)
    pix = page.get_pixmap(matrix=matrix, colorspace=pymupdf.csRGB, alpha=False)
    image = Image.frombytes("RGB", (pix.width, pix.height), pix.samples, "raw", "RGB", pix.stride)
    return _exact(image, size)


def _poppler_memory_cap(max_pixels: int) -> int:
    """Address-space cap (bytes) for one pdftoppm process: 1 GiB, or more when pages may be larger."""
    return max(1 << 30, max_pixels * 3 * 4)


def _draw_poppler(page: Any, size: tuple[int, int], path: Path, page_no: int, password: str | None) -> Image.Image:
    """Render one page with poppler's pdftoppm at exactly ``size`` (w, h) px, RGB.

    pdftoppm runs in its own process under a wall-clock limit (``POPPLER_TIMEOUT_S``) and an
    address-space cap, so a decompression bomb that poppler does not detect (JBIG2) ends as a page
    error, not a hang or an out-of-memory kill. Note: pdftoppm takes the password on its command line.
    """
    max_pixels = size[0] * size[1]
    with tempfile.TemporaryDirectory(prefix="pagelens-poppler-") as tmp:
        root = Path(tmp) / "page"
        cmd = ["pdftoppm", "-f", str(page_no), "-l", str(page_no), "-singlefile", "-cropbox",
               "-scale-to-x", str(size[0]), "-scale-to-y", str(size[1])]
        if password:
            cmd += ["-upw", password]
        cmd += [str(path), str(root)]
        with (Path(tmp) / "stderr").open("w+b") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            if hasattr(resource, "prlimit"):
                cap = _poppler_memory_cap(max(max_pixels, 1))
                with contextlib.suppress(OSError):  # the process may already have exited
                    resource.prlimit(proc.pid, resource.RLIMIT_AS, (cap, cap))
            try:
                code = proc.wait(timeout=POPPLER_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"pdftoppm took longer than {POPPLER_TIMEOUT_S} s") from None
            err.seek(0)
            messages = [ln for ln in err.read(4096).decode("utf-8", "replace").splitlines() if ln.strip()]
        out = root.with_suffix(".ppm")
        if code != 0 or not out.exists():
            why = messages[-1] if messages else f"exit status {code}"
            if code < 0 or code in (134, 137, 139):
                why = f"pdftoppm was killed (memory cap or crash; signal/exit {code})"
            raise RuntimeError(f"pdftoppm failed: {why}")
        with Image.open(out) as im:
            image = im.convert("RGB")
    return _exact(image, size)
