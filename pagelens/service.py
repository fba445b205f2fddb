"""``Pagelens``: the one entry object the CLI, the API and the UI share.

It wires the stage packages from a ``Settings`` and loads heavy parts lazily: the vector store on first
use, the retriever model on the first embed, the answer model on the first answer. Components can be
injected (tests pass in-memory stores or pre-built models).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from index.indexer import Indexer, IndexInput, IndexReport, ProgressCallback
from index.page_images import PageImageStore
from index.store import VectorStore
from index.types import PageFilter, QueryMode
from pagelens.errors import CollectionNotFoundError, DocumentNotFoundError
from pagelens.settings import Settings
from retrieve.retriever import Retriever
from retrieve.types import SearchHit

if TYPE_CHECKING:
    from answer import Answer, Answerer, AnswerEvent
    from index.embedder import PageEmbedder

log = logging.getLogger(__name__)


@dataclass
class DocumentInfo:
    """A document of a collection as seen through its page points. ``languages``: pages per detected
    language (ISO 639-1; ``und`` undetermined, ``unknown`` for pages indexed before languages);
    ``text_sources``: pages per text source (``pdf`` text layer, ``ocr``, ``none``)."""

    doc_id: str
    doc_name: str
    sha256: str
    page_count: int
    pages_indexed: int
    metadata: dict[str, Any] = field(default_factory=dict)
    indexed_at: str = ""
    languages: dict[str, int] = field(default_factory=dict)  # detected page language -> pages
    text_sources: dict[str, int] = field(default_factory=dict)  # pdf | ocr | none -> pages

    @property
    def status(self) -> str:
        return "complete" if self.pages_indexed >= self.page_count else "incomplete"

    def to_dict(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "doc_name": self.doc_name,
            "sha256": self.sha256,
            "page_count": self.page_count,
            "pages_indexed": self.pages_indexed,
            "status": self.status,
            "metadata": self.metadata,
            "indexed_at": self.indexed_at,
            "languages": dict(sorted(self.languages.items(), key=lambda kv: (-kv[1], kv[0]))),
            "text_sources": dict(sorted(self.text_sources.items())),
        }


@dataclass
class CollectionInfo:
    name: str
    model_id: str
    model_revision: str | None
    dim: int
    pages: int
    documents: int
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Pagelens:
    """Facade over ingest -> index -> retrieve -> answer. Thread-safe lazy loading."""

    def __init__(
        self,
        settings: Settings,
        store: VectorStore | None = None,
        embedder: PageEmbedder | None = None,
        answerer: Answerer | None = None,
    ) -> None:
        self.settings = settings
        self._store = store
        self._embedder = embedder
        self._answerer = answerer
        self._lock = threading.Lock()
        self.images = PageImageStore(settings.pages_dir)

    # -- lazily built components --------------------------------------------------------------
    @property
    def store(self) -> VectorStore:
        with self._lock:
            if self._store is None:
                from index.aliases import with_aliases
                from index.stores import open_store

                self._store = with_aliases(open_store(self.settings))  # collection aliases (index/aliases.py)
            return self._store

    @property
    def embedder(self) -> PageEmbedder:
        with self._lock:
            if self._embedder is None:
                from index.embedder import ColSmolEmbedder

                self._embedder = ColSmolEmbedder(self.settings)
            return self._embedder

    @property
    def answerer(self) -> Answerer:
        with self._lock:
            if self._answerer is None:
                from answer import SmolVLMAnswerer

                self._answerer = SmolVLMAnswerer(self.settings)
            return self._answerer

    @property
    def indexer(self) -> Indexer:
        return Indexer(self.settings, self.embedder, self.store, self.images)

    @property
    def retriever(self) -> Retriever:
        from retrieve.hybrid import FusionConfig

        return Retriever(self.embedder, self.store, prefetch_limit=self.settings.prefetch_limit,
                         fusion=FusionConfig.from_settings(self.settings))

    # -- collections and documents ----------------------------------------------------------
    def collections(self) -> list[CollectionInfo]:
        infos = []
        for name in self.store.list_collections():
            infos.append(self.collection_info(name))
        return infos

    def collection_info(self, name: str) -> CollectionInfo:
        manifest = self.store.get_manifest(name)
        if manifest is None:
            raise CollectionNotFoundError(name)
        docs = self.documents(name)
        return CollectionInfo(
            name=name,
            model_id=manifest.model_id,
            model_revision=manifest.model_revision,
            dim=manifest.dim,
            pages=sum(d.pages_indexed for d in docs),
            documents=len(docs),
            created_at=manifest.created_at,
        )

    def documents(self, collection: str) -> list[DocumentInfo]:
        """Documents of a collection with their page counts and status, sorted by name."""
        if self.store.get_manifest(collection) is None:
            raise CollectionNotFoundError(collection)
        docs: dict[str, DocumentInfo] = {}
        for _, payload in self.store.iter_payloads(collection):
            doc_id = payload.get("doc_id", "")
            info = docs.get(doc_id)
            if info is None:
                info = docs[doc_id] = DocumentInfo(
                    doc_id=doc_id,
                    doc_name=payload.get("doc_name", ""),
                    sha256=payload.get("sha256", ""),
                    page_count=int(payload.get("page_count", 0)),
                    pages_indexed=0,
                    metadata=dict(payload.get("meta") or {}),
                    indexed_at=payload.get("indexed_at", ""),
                )
            info.pages_indexed += 1
            info.indexed_at = max(info.indexed_at, payload.get("indexed_at", ""))
            # pages indexed before languages/OCR carry neither key: counted as unknown
            language = str(payload.get("language") or "unknown")
            info.languages[language] = info.languages.get(language, 0) + 1
            source = str(payload.get("text_source") or ("pdf" if str(payload.get("text") or "").strip() else "none"))
            info.text_sources[source] = info.text_sources.get(source, 0) + 1
        return sorted(docs.values(), key=lambda d: (d.doc_name, d.doc_id))

    def delete_document(self, collection: str, doc_id: str) -> int:
        """Delete every page of a document; returns pages deleted. Page images shared with another
        collection are kept."""
        if self.store.get_manifest(collection) is None:
            raise CollectionNotFoundError(collection)
        sha = None
        for _, payload in self.store.iter_payloads(collection, PageFilter(doc_ids=[doc_id])):
            sha = payload.get("sha256")
            break
        deleted = self.store.delete_document(collection, doc_id)
        if deleted == 0:
            raise DocumentNotFoundError(
                f"document '{doc_id}' is not in collection '{collection}'; list them with "
                f"`pagelens docs --collection {collection}`",
                collection=collection,
                doc_id=doc_id,
            )
        if sha and not any(
            self.store.count(name, PageFilter(doc_ids=[doc_id])) for name in self.store.list_collections()
        ):
            self.images.delete_document(sha)
        return deleted

    def create_collection(self, collection: str) -> CollectionInfo:
        """Create an empty collection bound to the configured retriever model.

        Raises CollectionExistsError when it exists."""
        from pagelens.errors import CollectionExistsError

        if self.store.get_manifest(collection) is not None:
            raise CollectionExistsError(
                f"collection '{collection}' already exists", collection=collection
            )
        self.indexer.ensure_collection(collection)
        return self.collection_info(collection)

    def delete_collection(self, collection: str) -> None:
        self.store.delete_collection(collection)

    # -- the three jobs ---------------------------------------------------------------------------
    def index(
        self,
        collection: str,
        inputs: Iterable[IndexInput],
        force: bool = False,
        progress: ProgressCallback | None = None,
    ) -> IndexReport:
        return self.indexer.index(collection, inputs, force=force, progress=progress)

    def search(
        self,
        collection: str,
        question: str,
        k: int | None = None,
        mode: QueryMode | None = None,
        page_filter: PageFilter | None = None,
    ) -> list[SearchHit]:
        """``mode``: visual | text | hybrid | two_stage | exact (see ``retrieve.hybrid``); None:
        ``settings.retrieval_mode``, falling back to visual on collections without a text index.
        visual and hybrid use ``settings.search_mode`` as the visual strategy."""
        return self.retriever.search(
            collection,
            question,
            k=k or self.settings.top_k,
            mode=mode or self.settings.retrieval_mode,
            page_filter=page_filter,
            strategy=self.settings.search_mode,
            fallback_to_visual=mode is None,
        )

    def ask(
        self,
        collection: str,
        question: str,
        k: int | None = None,
        mode: QueryMode | None = None,
        page_filter: PageFilter | None = None,
    ) -> Answer:
        """Retrieve the top pages and answer over them (blocking)."""
        hits, retrieve_s = self._retrieve_for_answer(collection, question, k, mode, page_filter)
        return self.answerer.answer(question, hits, k=k or self.settings.answer_top_k, retrieve_s=retrieve_s)

    def ask_stream(
        self,
        collection: str,
        question: str,
        k: int | None = None,
        mode: QueryMode | None = None,
        page_filter: PageFilter | None = None,
    ) -> Iterator[AnswerEvent]:
        """Like ``ask`` but yields token events, then one ``done`` event with the full Answer."""
        hits, retrieve_s = self._retrieve_for_answer(collection, question, k, mode, page_filter)
        yield from self.answerer.stream(
            question, hits, k=k or self.settings.answer_top_k, retrieve_s=retrieve_s
        )

    def _retrieve_for_answer(
        self,
        collection: str,
        question: str,
        k: int | None,
        mode: QueryMode | None,
        page_filter: PageFilter | None,
    ) -> tuple[list[SearchHit], float]:
        import time

        t0 = time.perf_counter()
        hits = self.search(collection, question, k=k or self.settings.answer_top_k, mode=mode,
                           page_filter=page_filter)
        return hits, time.perf_counter() - t0

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
