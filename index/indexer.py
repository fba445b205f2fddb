"""Indexing: source files -> pages -> embeddings -> page points in a collection.

A bad document never stops the batch: its error is recorded in the report and the next file goes on.
Re-running the same job is idempotent (deterministic point ids) and skips documents whose every page
is already in the collection, unless ``force``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from index.embedder import PageEmbedder
from index.page_images import PageImageStore
from index.store import VectorStore
from index.types import CollectionManifest, PageFilter, PagePoint, page_point_id
from ingest import Page, SourceDocument, open_document
from pagelens.errors import CollectionMismatchError, PagelensError
from pagelens.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class FileError:
    """One failure: the file, the page (None for the whole file) and the reason."""

    path: str
    error: str
    page: int | None = None
    code: str = "ingest_error"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.path, "page": self.page, "code": self.code, "error": self.error}


@dataclass
class DocumentResult:
    path: str
    doc_id: str | None
    doc_name: str
    status: str  # "indexed" | "skipped" | "failed" | "partial"
    pages_indexed: int = 0
    page_count: int = 0


@dataclass
class IndexReport:
    collection: str
    documents: list[DocumentResult] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def pages_indexed(self) -> int:
        return sum(d.pages_indexed for d in self.documents)

    def count(self, status: str) -> int:
        return sum(1 for d in self.documents if d.status == status)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "documents_indexed": self.count("indexed"),
            "documents_skipped": self.count("skipped"),
            "documents_failed": self.count("failed"),
            "documents_partial": self.count("partial"),
            "pages_indexed": self.pages_indexed,
            "seconds": round(self.seconds, 3),
            "errors": [e.to_dict() for e in self.errors],
            "documents": [d.__dict__ for d in self.documents],
        }


@dataclass
class IndexInput:
    """One file to index, with its display name and user metadata."""

    path: Path
    name: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    password: str | None = None


ProgressCallback = Callable[[str, dict[str, Any]], None]
"""Called with an event name ("document_start", "page_done", "document_done", "document_failed")
and a dict of details (path, doc_name, page_no, page_count...)."""


class Indexer:
    """Indexes files into one collection with an embedder and a store (both injected)."""

    def __init__(
        self,
        settings: Settings,
        embedder: PageEmbedder,
        store: VectorStore,
        images: PageImageStore,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.store = store
        self.images = images

    # -- collection --------------------------------------------------------------------------
    def ensure_collection(self, collection: str) -> CollectionManifest:
        """Create the collection for this embedder, or check that the existing one matches it."""
        existing = self.store.get_manifest(collection)
        if existing is not None:
            check_manifest(existing, self.embedder)
            return existing
        self.embedder.load()
        manifest = CollectionManifest(
            name=collection,
            model_id=self.embedder.model_id,
            model_revision=self.embedder.model_revision,
            dim=self.embedder.dim,
            created_at=_now(),
        )
        self.store.create_collection(manifest)
        return manifest

    # -- indexing -----------------------------------------------------------------------------
    def index(
        self,
        collection: str,
        inputs: Iterable[IndexInput],
        force: bool = False,
        progress: ProgressCallback | None = None,
    ) -> IndexReport:
        """Index every input; returns the report (never raises for a bad document)."""
        started = time.perf_counter()
        self.ensure_collection(collection)
        report = IndexReport(collection=collection)
        notify = progress or (lambda event, info: None)
        for item in inputs:
            result = self._index_one(collection, item, force, report, notify)
            report.documents.append(result)
        if report.pages_indexed and hasattr(self.store, "optimize"):
            # Qdrant Edge has no background optimizer: build the HNSW graphs of the pooled vectors now
            self.store.optimize(collection)
        report.seconds = time.perf_counter() - started
        return report

    def _index_one(
        self,
        collection: str,
        item: IndexInput,
        force: bool,
        report: IndexReport,
        notify: ProgressCallback,
    ) -> DocumentResult:
        path_str = str(item.path)
        try:
            doc = open_document(
                item.path, self.settings, name=item.name, metadata=item.metadata, password=item.password
            )
        except PagelensError as exc:
            report.errors.append(FileError(path_str, str(exc), getattr(exc, "page", None), exc.code))
            notify("document_failed", {"path": path_str, "error": str(exc)})
            return DocumentResult(path_str, None, item.name or item.path.name, "failed")

        notify("document_start", {"path": path_str, "doc_name": doc.name, "page_count": doc.page_count})
        result = DocumentResult(path_str, doc.doc_id, doc.name, "indexed", page_count=doc.page_count)
        already = self.store.count(collection, PageFilter(doc_ids=[doc.doc_id]))
        if already >= doc.page_count and not force:
            result.status = "skipped"
            result.pages_indexed = 0
            notify("document_done", {"path": path_str, "doc_name": doc.name, "status": "skipped",
                                     "page_count": doc.page_count})
            return result

        batch: list[Page] = []
        try:
            for page in doc.pages():
                batch.append(page)
                if len(batch) >= self.settings.embed_batch_size:
                    result.pages_indexed += self._flush(collection, doc, batch, notify)
                    batch = []
            if batch:
                result.pages_indexed += self._flush(collection, doc, batch, notify)
        except PagelensError as exc:  # the document broke mid-way: keep what was indexed, report it
            report.errors.append(FileError(path_str, str(exc), getattr(exc, "page", None), exc.code))
        for page_error in getattr(doc, "page_errors", []):
            report.errors.append(FileError(path_str, str(page_error), page_error.page, page_error.code))
        if result.pages_indexed < doc.page_count:
            result.status = "partial" if result.pages_indexed else "failed"
            if not any(e.path == path_str for e in report.errors):
                report.errors.append(
                    FileError(path_str, f"{path_str}: only {result.pages_indexed} of "
                              f"{doc.page_count} pages could be indexed")
                )
        notify("document_done", {"path": path_str, "doc_name": doc.name, "status": result.status,
                                 "page_count": doc.page_count})
        return result

    def _flush(
        self, collection: str, doc: SourceDocument, pages: Sequence[Page], notify: ProgressCallback
    ) -> int:
        """Embed and upsert a batch of pages of one document; returns the number of pages written."""
        embeddings = self.embedder.embed_pages([p.image for p in pages])
        indexed_at = _now()
        points = []
        for page, emb in zip(pages, embeddings, strict=True):
            image_path = self.images.save(doc.sha256, page.page_no, page.image)
            points.append(
                PagePoint(
                    id=page_point_id(collection, doc.sha256, page.page_no),
                    embedding=emb,
                    payload={
                        "doc_id": doc.doc_id,
                        "doc_name": doc.name,
                        "page_no": page.page_no,
                        "page_count": doc.page_count,
                        "sha256": doc.sha256,
                        "collection": collection,
                        "meta": dict(doc.metadata),
                        "text": page.text,
                        "image_path": str(image_path),
                        "width": page.image.width,
                        "height": page.image.height,
                        "indexed_at": indexed_at,
                    },
                )
            )
        self.store.upsert(collection, points)
        for page in pages:
            notify("page_done", {"doc_name": doc.name, "page_no": page.page_no, "page_count": doc.page_count})
        return len(points)


def check_manifest(manifest: CollectionManifest, embedder: PageEmbedder) -> None:
    """Refuse to add to or search a collection built with another retriever model."""
    if (manifest.model_id, manifest.model_revision) != (embedder.model_id, embedder.model_revision):
        raise CollectionMismatchError(
            f"collection '{manifest.name}' was built with retriever model '{manifest.model_id}'"
            f"{'@' + manifest.model_revision if manifest.model_revision else ''}, but the configured "
            f"retriever is '{embedder.model_id}'"
            f"{'@' + embedder.model_revision if embedder.model_revision else ''}; set "
            f"PAGELENS_RETRIEVER_MODEL={manifest.model_id} to use it, or index into a new collection",
            collection=manifest.name,
            collection_model=manifest.model_id,
            configured_model=embedder.model_id,
        )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
