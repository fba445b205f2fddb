"""Data types produced by ingest: one ``SourceDocument`` per input file, one ``Page`` per page."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pagelens.ingest.words import WordBoxes
from PIL import Image

from pagelens.core.errors import IngestError


@dataclass
class Page:
    """One rasterized page.

    ``image`` is RGB (no alpha). PDF pages are rendered straight at the target size: longest edge
    exactly ``Settings.page_longest_edge`` px, unless that would exceed ``Settings.max_pixels_per_page``
    px, in which case the page is rendered smaller to fit. Image files are only ever downscaled
    (longest edge at most ``page_longest_edge`` px). ``page_no`` is 1-based. ``text`` is the PDF
    text layer, or the OCR text of a page without a usable one (``pagelens.ingest.ocr``); "" when there is
    neither. ``text_source`` says which: ``pdf``, ``ocr`` or ``none`` (no text). ``words``: the word boxes of
    that text as fractions of the page (``pagelens.ingest.words.WordBoxes``), None when unknown.
    """

    doc_id: str
    doc_name: str
    page_no: int
    page_count: int
    image: Image.Image
    text: str
    doc_sha256: str
    text_source: str = "none"  # "pdf" | "ocr" | "none"
    # where the words of ``text`` are (``pagelens.ingest.words``); None when not known (no text, or an
    # extractor without boxes)
    words: WordBoxes | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in px."""
        return self.image.size


@dataclass
class SourceDocument:
    """An opened input file. ``pages()`` renders lazily, one page at a time.

    ``doc_id`` is the first 16 hex chars of ``sha256`` (so the same bytes are the same document
    whatever the file is called). ``page_errors`` collects per-page failures met while iterating
    ``pages()`` (each an ``IngestError`` naming file and page); a failed page is reported there and
    iteration goes on with the next page, so nothing is silently dropped:
    ``pages yielded + len(page_errors) == page_count`` once iteration is complete.
    """

    path: Path
    name: str
    sha256: str
    page_count: int
    kind: str  # "pdf" | "image"
    metadata: dict[str, Any] = field(default_factory=dict)
    _render: Callable[[SourceDocument], Iterator[Page]] | None = field(default=None, repr=False)
    page_errors: list[IngestError] = field(default_factory=list)
    source_format: str = ""  # "pdf" | "png" | "jpeg" | "tiff", or the office format converted to PDF ("docx", ...)
    # pages indexed in a weaker way (OCR timed out or failed): (page, message naming file and page)
    page_notices: list[tuple[int, str]] = field(default_factory=list)

    @property
    def doc_id(self) -> str:
        return self.sha256[:16]

    def pages(self) -> Iterator[Page]:
        """Yield the good pages in order; bad pages go to ``page_errors`` (reset on each call).

        Raises ``IngestError`` only when the whole document became unreadable mid-way (for example
        the file was removed after ``open_document``).
        """
        if self._render is None:
            raise RuntimeError("SourceDocument has no renderer; build it with ingest.open_document")
        self.page_errors.clear()
        self.page_notices.clear()
        yield from self._render(self)
