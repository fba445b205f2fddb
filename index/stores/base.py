"""The store interfaces: ``VectorStore``, which every backend implements (Qdrant Edge embedded, Qdrant
server), and ``CatalogStore``, the ``VectorStore`` the service holds: a backend under the document
registry (``pagelens.index.stores.registry``) and, for the two Qdrant backends, collection aliases
(``pagelens.index.stores.aliases``). Every method the service, the API, the UI and the MCP tools call on a
store is declared here; the wrappers implement each one explicitly (no attribute forwarding).

One resolution per request: a search or an answer resolves the collection name it was given once
(``CatalogStore.pin``: the concrete collection an alias points to now, and the store below the alias
layer) and runs every step on that concrete collection, so an alias switched by ``pagelens index
--reindex`` mid-request can neither make it check one collection and search another nor make it read
the aliases again per step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from pagelens.index.stores.search_status import RepairResult, SearchStatus

from pagelens.core.types import CollectionManifest, PageFilter, PagePoint, ScoredPage, SearchMode

if TYPE_CHECKING:
    from pagelens.index.stores.registry import DocumentRecord


@runtime_checkable
class VectorStore(Protocol):
    """Page points in named collections.

    Collections are created with a ``CollectionManifest``; ``upsert`` is idempotent by point id.
    Vectors are float32 with ``manifest.dim`` columns; scores are MaxSim (dot products of the
    L2-normalised token vectors, summed over query tokens). The store also derives each page's BM25
    sparse vector from ``payload["text"]`` analysed in ``payload["language"]`` at upsert
    (``pagelens.index.stores.text_analysis``; detected when the payload has none), so text search needs nothing else
    from the indexer.
    """

    @property
    def text_query_languages(self) -> str:
        """The languages a text query is analysed under (``pagelens.index.stores.text_analysis.TextAnalyzer``:
        ``all``, ``collection``, ``detected``, ``english``; ``settings.tuning.text_query_languages``)."""

    def claim(self) -> None:
        """Take whatever this store needs to own its files before a model loads (the embedded store: the
        data dir's one-process lock, ``pagelens.core.datadir``; raises ``DataDirInUseError``). A no-op
        for a store that owns no files (the Qdrant server)."""

    def create_collection(self, manifest: CollectionManifest) -> None:
        """Create it; raises ``CollectionExistsError`` if it exists."""

    def get_manifest(self, collection: str) -> CollectionManifest | None:
        """The manifest, or None when the collection does not exist."""

    def list_collections(self) -> list[str]:
        """Sorted collection names."""

    def delete_collection(self, collection: str) -> None:
        """Raises ``CollectionNotFoundError`` if absent."""

    def upsert(self, collection: str, points: Sequence[PagePoint]) -> None:
        """Insert or replace points (same id replaces)."""

    def delete_document(self, collection: str, doc_id: str) -> int:
        """Delete every page of ``doc_id``; returns the number of points deleted."""

    def set_payload(self, collection: str, doc_id: str, values: dict[str, Any]) -> int:
        """Set the top-level payload keys in ``values`` on every page of ``doc_id`` (a key's old value is
        replaced whole, ``meta`` included; other keys and the vectors are untouched). Returns the number
        of pages updated (0: no such document)."""

    def count(self, collection: str, page_filter: PageFilter | None = None) -> int:
        """Exact number of points matching the filter."""

    def iter_payloads(
        self, collection: str, page_filter: PageFilter | None = None, keys: Sequence[str] | None = None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(point id, payload) of every matching point, in no particular order. ``keys``: only these
        top-level payload keys are read and returned (a payload selector: listings never read the
        page ``text``); None: the whole payload."""

    def search(
        self,
        collection: str,
        query: np.ndarray,
        limit: int,
        mode: SearchMode = "two_stage",
        page_filter: PageFilter | None = None,
        prefetch_limit: int = 100,
    ) -> list[ScoredPage]:
        """Top ``limit`` pages by MaxSim of ``query`` [n_q, dim] against the full multivectors.

        ``exact``: brute-force MaxSim over every matching point. ``two_stage``: candidates from
        MaxSim on the pooled row and column vectors (HNSW, ``prefetch_limit`` each), reranked by exact
        MaxSim on the full multivectors. Sorted by score descending, ties by id.
        """

    def has_text_index(self, collection: str) -> bool:
        """Whether the collection holds the BM25 sparse vector ``TEXT_VECTOR`` (collections created
        before it existed do not). Raises ``CollectionNotFoundError``."""

    def search_text(
        self, collection: str, text: str, limit: int, page_filter: PageFilter | None = None
    ) -> list[ScoredPage]:
        """Top ``limit`` pages by BM25 of ``text`` against the pages' text layers (sparse vector
        ``TEXT_VECTOR``, IDF applied by Qdrant). Only pages sharing at least one term are returned
        (possibly none). Sorted by score descending, ties by id. Raises ``TextIndexMissingError``
        when the collection has no text index."""

    def text_spec_version(self, collection: str) -> int:
        """0: no text index; 1: English-only (made before languages); 2: per-language analysis.
        Raises ``CollectionNotFoundError``."""

    def text_languages(self, collection: str) -> dict[str, int]:
        """{language code: pages} of the collection (ISO 639-1; ``und`` undetermined)."""

    def get_full_vectors(self, collection: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Full multivectors [n_tokens, dim] float32 of the given point ids (missing ids omitted)."""

    def search_status(self, collection: str) -> SearchStatus:
        """Whether the structures fast ``two_stage`` searches rely on are current, and what is stale
        (``pagelens.index.stores.search_status``). Cheap enough to call per search. Raises ``CollectionNotFoundError``."""

    def repair(self, collection: str, force: bool = False) -> RepairResult:
        """Rebuild what ``search_status`` finds stale (``force``: the whole optimize anyway); says
        what it rebuilt. Blocking."""

    def optimize(self, collection: str) -> bool:
        """Build the collection's search structures now (Edge: blocking; server: asks Qdrant's
        optimizers, which run in the background). Returns whether anything was done or asked."""

    def close(self) -> None:
        """Flush and release resources. Safe to call twice."""


@runtime_checkable
class CatalogStore(VectorStore, Protocol):
    """The store the service holds: a ``VectorStore`` (whose collection arguments may be aliases) plus
    the document registry's listings and alias resolution. ``RegisteredStore`` (no aliases: every name
    is a collection) and ``AliasedStore`` implement it."""

    def resolve_alias(self, name: str) -> str:
        """The collection ``name`` points to now (``name`` itself when it is no alias). One read of the
        aliases (Edge: ``aliases.json``; server: one request)."""

    def pin(self, collection: str) -> tuple[str, VectorStore]:
        """(the concrete collection ``collection`` names now, a store whose names are concrete
        collections). Resolve once per request, then run every step of it on the pair: no step reads
        the aliases again, and an alias switched meanwhile does not change the collection mid-request."""

    def list_documents(self, collection: str, offset: int = 0, limit: int | None = None) -> list[DocumentRecord]:
        """The collection's documents, sorted by (name, id); ``offset``/``limit``: one page of that order.
        Raises ``CollectionNotFoundError``."""

    def document_record(self, collection: str, doc_id: str) -> DocumentRecord | None:
        """One document's registry row (None when the collection has no such document)."""

    def collection_totals(self, collection: str) -> tuple[int, int]:
        """(documents, pages) of the collection."""

    def listing_version(self, collection: str) -> str:
        """A token that changes whenever the collection's listing may have."""


def pin(store: VectorStore, collection: str) -> tuple[str, VectorStore]:
    """``store.pin(collection)`` for a ``CatalogStore``; a bare backend has no aliases: (``collection``,
    ``store``)."""
    if isinstance(store, CatalogStore):
        return store.pin(collection)
    return collection, store


def backend_of(store: VectorStore) -> VectorStore:
    """The backend under the alias and registry wrappers (each keeps the store it wraps in ``inner``):
    for benches and tests that reach a backend's own tuning attributes."""
    while (inner := getattr(store, "inner", None)) is not None:
        store = inner
    return store
