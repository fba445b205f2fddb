"""The ``VectorStore`` protocol every backend implements (Qdrant Edge embedded, Qdrant server)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pagelens.index.stores.search_status import RepairResult, SearchStatus

from pagelens.core.types import CollectionManifest, PageFilter, PagePoint, ScoredPage, SearchMode


@runtime_checkable
class VectorStore(Protocol):
    """Page points in named collections.

    Collections are created with a ``CollectionManifest``; ``upsert`` is idempotent by point id.
    Vectors are float32 with ``manifest.dim`` columns; scores are MaxSim (dot products of the
    L2-normalised token vectors, summed over query tokens). The store also derives each page's BM25
    sparse vector from ``payload["text"]`` analysed in ``payload["language"]`` at upsert
    (``pagelens.index.stores.text_analysis``; detected when the payload has none), so text search needs nothing else
    from the indexer. Stores also offer ``text_spec_version(collection)`` (0 none, 1 English-only,
    2 per language) and ``text_languages(collection)`` ({language: pages}).
    """

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

    def get_full_vectors(self, collection: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Full multivectors [n_tokens, dim] float32 of the given point ids (missing ids omitted)."""

    def search_status(self, collection: str) -> SearchStatus:
        """Whether the structures fast ``two_stage`` searches rely on are current, and what is stale
        (``pagelens.index.stores.search_status``). Cheap enough to call per search. Raises ``CollectionNotFoundError``."""

    def repair(self, collection: str, force: bool = False) -> RepairResult:
        """Rebuild what ``search_status`` finds stale (``force``: the whole optimize anyway); says
        what it rebuilt. Blocking."""

    def close(self) -> None:
        """Flush and release resources. Safe to call twice."""
