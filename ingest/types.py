"""Data types produced by ingest: one ``SourceDocument`` per input file, one ``Page`` per page."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image


@dataclass
class Page:
    """One rasterized page.

    ``image`` is RGB, longest edge at most the requested size in px (never upscaled past the source's
    natural size at 300 dpi for PDFs). ``page_no`` is 1-based. ``text`` is the PDF text layer ("" for
    scans and images).
    """

    doc_id: str
    doc_name: str
    page_no: int
    page_count: int
    image: Image.Image
    text: str
    doc_sha256: str

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in px."""
        return self.image.size


@dataclass
class SourceDocument:
    """An opened input file. ``pages()`` renders lazily, one page at a time.

    ``doc_id`` is the first 16 hex chars of ``sha256`` (so the same bytes are the same document
    whatever the file is called). ``errors`` collects per-page failures met while iterating; a
    failed page is reported, never silently dropped.
    """

    path: Path
    name: str
    sha256: str
    page_count: int
    kind: str  # "pdf" | "image"
    metadata: dict[str, Any] = field(default_factory=dict)
    _render: Any = field(default=None, repr=False)

    @property
    def doc_id(self) -> str:
        return self.sha256[:16]

    def pages(self) -> Iterator[Page]:
        """Yield pages in order. Raises ``IngestError`` naming file and page on a bad page."""
        yield from self._render(self)
