"""``PagelensService``: the one entry object the CLI, the API and the UI share.

It wires the stage packages from a ``Settings`` and loads heavy parts lazily: the vector store on first
use, the retriever model on the first embed, the answer model on the first answer. Components can be
injected (tests pass in-memory stores or pre-built models).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pagelens.core.errors import CollectionNotFoundError, DocumentNotFoundError, OriginalNotKeptError
from pagelens.core.settings import Settings
from pagelens.core.types import PageFilter, QueryMode
from pagelens.index.pipeline.indexer import Indexer, IndexInput, IndexReport, ProgressCallback
from pagelens.index.stores.base import CatalogStore, VectorStore
from pagelens.index.stores.originals import OriginalStore, discard_unless_used, media_type
from pagelens.index.stores.page_images import PageImageStore
from pagelens.index.stores.registry import with_registry
from pagelens.retrieve.retriever import Retriever
from pagelens.retrieve.types import SearchHit

if TYPE_CHECKING:
    from pagelens.answer import Answer, Answerer, AnswerEvent
    from pagelens.app.sync import SyncReport
    from pagelens.index.stores.search_status import RepairResult, SearchStatus
    from pagelens.ingest.manifest import InputItem
    from pagelens.models.embedder import PageEmbedder

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


@dataclass(frozen=True)
class OriginalFile:
    """A document's kept original file: where it is, the name to download it as, its media type."""

    path: Path
    filename: str
    media_type: str


@dataclass
class CollectionInfo:
    name: str
    model_id: str
    model_revision: str | None
    dim: int
    pages: int
    documents: int
    created_at: str
    search_structures: dict[str, Any] | None = None  # SearchStatus.to_dict(): {"current", "stale"}
    retriever_family: str = ""  # the manifest's family (ColIdefics3, ColQwen2_5...); "" before it was recorded

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class PagelensService:
    """Facade over ingest -> index -> retrieve -> answer. Thread-safe lazy loading."""

    def __init__(
        self,
        settings: Settings,
        store: VectorStore | None = None,
        embedder: PageEmbedder | None = None,
        answerer: Answerer | None = None,
        role: str | None = None,
    ) -> None:
        self.settings = settings
        self.role = role  # names this process in the data dir lock (pagelens/core/datadir.py); None: from argv
        self._store: CatalogStore | None = None
        self._given = store  # injected: wrapped with the document registry on first use
        self._embedder = embedder
        self._answerer = answerer
        self._lock = threading.Lock()
        # page PNGs: PAGELENS_PAGE_IMAGES_DIR (payloads hold paths relative to it); points written before
        # that setting hold absolute paths under <data_dir>/pages, still read and served
        self.images = PageImageStore(settings.pages_dir, legacy_roots=[settings.data_dir / "pages"])
        # the indexed files, for downloads (PAGELENS_KEEP_ORIGINALS): <data_dir>/originals/<sha[:2]>/<sha>.<ext>
        self.originals = OriginalStore(settings.data_dir / "originals")

    # -- lazily built components --------------------------------------------------------------
    @property
    def store(self) -> CatalogStore:
        """The vector store with the document registry and (Qdrant backends) collection aliases
        (``pagelens.index.stores.base.CatalogStore``). An injected bare ``VectorStore`` is wrapped with
        the registry; one that is a ``CatalogStore`` already is used as it is."""
        with self._lock:
            if self._store is None:
                from pagelens.index.stores.aliases import with_aliases
                from pagelens.index.stores.factory import open_store

                if self._given is None:
                    # collection aliases (index/stores/aliases.py) over the document registry (index/stores/registry.py)
                    self._store = with_aliases(with_registry(open_store(self.settings, self.role),
                                                             self.settings.data_dir))
                elif isinstance(self._given, CatalogStore):
                    self._store = self._given
                else:  # injected: listings use the registry too
                    self._store = with_registry(self._given, self.settings.data_dir)
            return self._store

    def claim_data_dir(self) -> None:
        """With the embedded store: take the data dir's one-process lock now, before any model loads
        (the store would take it on first use). Raises ``DataDirInUseError`` naming the process that
        holds it. A no-op with a Qdrant server or an injected store without a lock."""
        self.store.claim()

    @property
    def embedder(self) -> PageEmbedder:
        with self._lock:
            if self._embedder is None:
                from pagelens.models.embedder import ColSmolEmbedder

                self._embedder = ColSmolEmbedder(self.settings)
            return self._embedder

    @property
    def answerer(self) -> Answerer:
        with self._lock:
            if self._answerer is None:
                from pagelens.answer import SmolVLMAnswerer

                self._answerer = SmolVLMAnswerer(self.settings)
            return self._answerer

    @property
    def indexer(self) -> Indexer:
        return Indexer(self.settings, self.embedder, self.store, self.images,
                       self.originals if self.settings.keep_originals else None)

    @property
    def retriever(self) -> Retriever:
        from pagelens.retrieve.hybrid import FusionConfig

        return Retriever(self.embedder, self.store, prefetch_limit=self.settings.tuning.prefetch_limit,
                         fusion=FusionConfig.from_settings(self.settings), images=self.images,
                         max_regions=self.settings.tuning.max_regions)

    # -- collections and documents ----------------------------------------------------------
    def collections(self) -> list[CollectionInfo]:
        infos = []
        for name in self.store.list_collections():
            infos.append(self.collection_info(name))
        return infos

    def collection_info(self, name: str) -> CollectionInfo:
        """Name, model, page and document counts: from the document registry (two SQL aggregates). An alias
        is resolved once: every figure is of the collection it pointed to then."""
        target = self.store.resolve_alias(name)
        manifest = self.store.get_manifest(target)
        if manifest is None:
            raise CollectionNotFoundError(name)
        documents, pages = self.store.collection_totals(target)
        return CollectionInfo(
            name=name,
            model_id=manifest.model_id,
            model_revision=manifest.model_revision,
            dim=manifest.dim,
            pages=pages,
            documents=documents,
            created_at=manifest.created_at,
            search_structures=self.search_status(target).to_dict(),
            retriever_family=manifest.family,
        )

    def search_status(self, collection: str) -> SearchStatus:
        """Whether the collection's fast-search structures are current, and what is stale
        (``pagelens.index.stores.search_status``). Raises ``CollectionNotFoundError``."""
        return self.store.search_status(collection)

    def optimize(self, collection: str | None = None, *, force: bool = True,
                 stop: threading.Event | None = None) -> list[RepairResult]:
        """Repair the search structures of ``collection`` (None: every collection, in name order):
        ``force`` runs the whole optimize (``pagelens optimize``); without it only stale collections
        are rebuilt (server start, after a job). ``stop``: checked between collections. Blocking."""
        names = [collection] if collection is not None else self.store.list_collections()
        results = []
        for name in names:
            if stop is not None and stop.is_set():
                break
            try:
                results.append(self.store.repair(name, force=force))
            except CollectionNotFoundError:
                if collection is not None:
                    raise  # named: say so; listed: deleted meanwhile
        return results

    def documents(self, collection: str, offset: int = 0, limit: int | None = None) -> list[DocumentInfo]:
        """Documents of a collection with their page counts and status, sorted by (name, id); ``offset``
        and ``limit`` select one page of that order (``document_count`` gives the total). Read from the
        document registry (``pagelens.index.stores.registry``): one page costs O(page), never the page text."""
        if self.store.get_manifest(collection) is None:
            raise CollectionNotFoundError(collection)
        return [
            DocumentInfo(doc_id=r.doc_id, doc_name=r.doc_name, sha256=r.sha256, page_count=r.page_count,
                         pages_indexed=r.pages_indexed, metadata=dict(r.metadata), indexed_at=r.indexed_at,
                         languages=dict(r.languages), text_sources=dict(r.text_sources))
            for r in self.store.list_documents(collection, offset=offset, limit=limit)
        ]

    def document_count(self, collection: str) -> int:
        """How many documents the collection has (registry aggregate). Raises ``CollectionNotFoundError``."""
        if self.store.get_manifest(collection) is None:
            raise CollectionNotFoundError(collection)
        return int(self.store.collection_totals(collection)[0])

    def listing_version(self, collection: str) -> str:
        """A token that changes when the collection's documents or counts may have changed (any writer,
        any process): pollers redraw only when it differs from the last one they saw."""
        return self.store.listing_version(collection)

    def delete_document(self, collection: str, doc_id: str) -> int:
        """Delete every page of a document; returns pages deleted. Its page images go too, except those
        another collection still refers to."""
        if self.store.get_manifest(collection) is None:
            raise CollectionNotFoundError(collection)
        sha = None
        for _, payload in self.store.iter_payloads(collection, PageFilter(doc_ids=[doc_id]), keys=("sha256",)):
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
        if sha:  # the images no collection refers to any more (another render size may still be in use)
            keep = [path for name in self.store.list_collections()
                    for _, p in self.store.iter_payloads(name, PageFilter(doc_ids=[doc_id]),
                                                         keys=("image_path", "sha256", "page_no"))
                    if (path := self.images.resolve(p)) is not None]
            self.images.delete_document(sha, keep=keep)
            from pagelens.ingest.office import discard_converted

            discard_converted(self.settings, sha)  # the PDF an office document was converted to, if any
            discard_unless_used(self.originals, self.store, sha)
        return deleted

    def original(self, collection: str, doc_id: str) -> OriginalFile:
        """The kept original file of document ``doc_id`` of ``collection``, named as the document
        (``doc_name``'s last path part). Raises ``CollectionNotFoundError``, ``DocumentNotFoundError``, or
        ``OriginalNotKeptError`` (404) for a document indexed before originals were kept or with
        ``PAGELENS_KEEP_ORIGINALS`` off, saying how to get one (index the file again)."""
        target = self.store.resolve_alias(collection)
        if self.store.get_manifest(target) is None:
            raise CollectionNotFoundError(collection)
        found = self._name_and_sha(target, doc_id)
        if found is None:
            raise DocumentNotFoundError(
                f"document '{doc_id}' is not in collection '{collection}'; list them with "
                f"`pagelens docs --collection {collection}`", collection=collection, doc_id=doc_id)
        doc_name, sha256 = found
        name = doc_name.replace("\\", "/").rsplit("/", 1)[-1] or doc_id
        path = self.originals.find(sha256) if sha256 else None
        if path is None:
            why = ("PAGELENS_KEEP_ORIGINALS is off on this server" if not self.settings.keep_originals
                   else "it was indexed before this server kept original files")
            raise OriginalNotKeptError(
                f"no original file is kept for '{name}' in collection '{collection}' ({why}): index the file "
                f"again (upload it again, or `pagelens index --collection {collection} FILE`) with "
                "PAGELENS_KEEP_ORIGINALS on (the default) to make it downloadable", collection=collection,
                doc_id=doc_id)
        return OriginalFile(path=path, filename=name, media_type=media_type(path))

    def _name_and_sha(self, collection: str, doc_id: str) -> tuple[str, str] | None:
        """(doc_name, sha256) of one document, from one page's payload; None when it has no page."""
        for _, payload in self.store.iter_payloads(collection, PageFilter(doc_ids=[doc_id]),
                                                   keys=("doc_id", "doc_name", "sha256")):
            return str(payload.get("doc_name") or doc_id), str(payload.get("sha256") or "")
        return None

    def create_collection(self, collection: str) -> CollectionInfo:
        """Create an empty collection bound to the configured retriever model.

        Raises CollectionExistsError when it exists."""
        from pagelens.core.errors import CollectionExistsError

        if self.store.get_manifest(collection) is not None:
            raise CollectionExistsError(
                f"collection '{collection}' already exists", collection=collection
            )
        self.indexer.ensure_collection(collection)
        return self.collection_info(collection)

    def delete_collection(self, collection: str) -> None:
        """Delete the collection; the kept originals of its documents go too, except those another collection
        still has."""
        try:
            shas = {r.sha256 for r in self.store.list_documents(collection) if r.sha256}
        except CollectionNotFoundError:
            shas = set()
        self.store.delete_collection(collection)
        for sha in sorted(shas):
            discard_unless_used(self.originals, self.store, sha)

    # -- the three jobs ---------------------------------------------------------------------------
    def index(
        self,
        collection: str,
        inputs: Iterable[IndexInput],
        force: bool = False,
        progress: ProgressCallback | None = None,
        *,
        repair: bool = True,
    ) -> IndexReport:
        """Index ``inputs`` into ``collection``; ``repair=False`` leaves stale search structures for the caller
        to rebuild once (``optimize(force=False)``) after several calls (a job's documents)."""
        return self.indexer.index(collection, inputs, force=force, progress=progress, repair=repair)

    def sync(
        self,
        collection: str,
        root: Path,
        files: Sequence[InputItem],
        *,
        dry_run: bool = False,
        yes: bool = False,
        shard: tuple[int, int] | None = None,
        metadata: dict[str, Any] | None = None,
        checksum: bool = False,
        password: str | None = None,
        progress: ProgressCallback | None = None,
        workers: int | None = None,
    ) -> SyncReport:
        """Make the collection mirror the folder ``root`` (``files``: its files, each keyed by its path under
        it, already selected for ``shard``); see ``pagelens.app.sync``. ``dry_run``: plan only, nothing
        changes. Raises ``SyncRefusedError`` when it would delete more than ``settings.sync_max_delete_share``
        of the collection's documents, unless ``yes``."""
        from pagelens.app.sync import (
            SyncRefusedError,
            SyncReport,
            check_delete_share,
            execute_sync,
            plan_sync,
        )

        plan = plan_sync(self, collection, root, files, shard=shard, metadata=metadata, checksum=checksum,
                         progress=progress)
        if dry_run:
            report = SyncReport(plan=plan, dry_run=True)
            try:
                check_delete_share(plan, self.settings.sync_max_delete_share, yes)
            except SyncRefusedError as exc:
                report.refusal = exc.message
            return report
        check_delete_share(plan, self.settings.sync_max_delete_share, yes)
        return execute_sync(self, plan, metadata=metadata, password=password, progress=progress, workers=workers)

    def search(
        self,
        collection: str,
        question: str,
        k: int | None = None,
        mode: QueryMode | None = None,
        page_filter: PageFilter | None = None,
    ) -> list[SearchHit]:
        """``mode``: visual | text | hybrid | two_stage | exact (see ``pagelens.retrieve.hybrid``); None:
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
            store = self._store if self._store is not None else self._given
            if store is not None:
                store.close()
