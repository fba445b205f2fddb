"""``open_document``: the one entry point from a file on disk to a lazily rendered ``SourceDocument``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pagelens.ingest.images import open_image
from pagelens.ingest.pdf import open_pdf
from pagelens.ingest.sniff import OFFICE_FORMATS, inspect_file
from pagelens.ingest.types import SourceDocument

from pagelens.core.errors import DocumentTooLargeError
from pagelens.core.settings import Settings

logger = logging.getLogger(__name__)


def _passwords(password: str | None, settings: Settings) -> list[str]:
    """Passwords to try on an encrypted PDF, in order: the explicit one, then ``settings.pdf_password``."""
    candidates = [password]
    if settings.pdf_password is not None:
        candidates.append(settings.pdf_password.get_secret_value())
    seen: list[str] = []
    for candidate in candidates:
        if candidate is not None and candidate not in seen:
            seen.append(candidate)
    return seen


def open_document(
    path: Path,
    settings: Settings,
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
    password: str | None = None,
) -> SourceDocument:
    """Open a PDF, PNG, JPEG or TIFF file, or an office/web document (DOCX, XLSX, PPTX, ODT, ODS, ODP,
    DOC, XLS, PPT, RTF, HTML; converted to PDF with LibreOffice, see ``pagelens.ingest.office``). The type is
    decided by content, not extension.

    Reads the file once (streamed) for its sha256 and checks it cheaply: file exists, not empty, at
    most ``settings.max_file_bytes`` bytes, a supported type, a PDF that opens (repairing it if need
    be), is unlocked by ``password`` or ``settings.pdf_password``, and has 1 to
    ``settings.max_pages_per_document`` pages; an image's frames are at most
    ``settings.max_pixels_per_page`` px each (checked from the header, before decoding). Nothing is
    rendered yet: ``SourceDocument.pages()`` renders one page at a time at
    ``settings.page_longest_edge`` px (see ``Page``) and records bad pages in ``page_errors``.

    ``name`` is the display name (default: the file name); error messages name the file by ``name``
    when given, else by ``path``.

    An office document keeps its own name and sha256 (``doc_id``); its pages are those of the PDF it
    converts to (``kind`` "pdf", ``source_format`` e.g. "docx"), so the page limit applies to them.

    Raises ``IngestError`` or a subclass: ``UnsupportedFileError``, ``EncryptedDocumentError``,
    ``DocumentTooLargeError``, ``pagelens.ingest.office.ConverterUnavailableError`` (LibreOffice missing).
    """
    path = Path(path)
    display = name if name else str(path)
    facts = inspect_file(path, display, settings.max_file_bytes)
    kind = facts.kind
    if facts.kind == "pdf":
        page_count, render = open_pdf(path, display, settings, _passwords(password, settings))
    elif facts.kind == "office":
        from pagelens.ingest.office import convert_to_pdf

        pdf = convert_to_pdf(path, facts.fmt, facts.sha256, display, settings)
        what = OFFICE_FORMATS.get(facts.fmt, facts.fmt.upper())
        try:
            page_count, render = open_pdf(pdf, display, settings, [])
        except DocumentTooLargeError as exc:
            pages = exc.detail.get("page_count")
            raise DocumentTooLargeError(
                display, f"{what} document converts to {pages} PDF pages, over the limit of "
                f"{settings.max_pages_per_document} (PAGELENS_MAX_PAGES_PER_DOCUMENT)", page_count=pages) from None
        kind = "pdf"
    else:
        page_count, render = open_image(path, display, facts.fmt, settings)
    doc = SourceDocument(
        path=path,
        name=name or path.name,
        sha256=facts.sha256,
        page_count=page_count,
        kind=kind,
        metadata=dict(metadata or {}),
        _render=render,
        source_format=facts.fmt,
    )
    logger.debug("opened %s: %s, %d pages, sha256 %s", display, facts.fmt, page_count, facts.sha256)
    return doc
