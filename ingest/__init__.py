"""Ingest: input files (PDF, PNG, JPEG, TIFF; office and web documents via LibreOffice) -> ``SourceDocument`` -> lazily rendered ``Page`` s."""

from pagelens.ingest.discover import DEFAULT_INCLUDE, discover_inputs
from pagelens.ingest.loader import open_document
from pagelens.ingest.types import Page, SourceDocument

__all__ = ["DEFAULT_INCLUDE", "Page", "SourceDocument", "discover_inputs", "open_document"]
