"""Question -> top pages: encode the query with the retriever, MaxSim search in the store; or BM25
on the text layer, or both fused (modes: ``pagelens.retrieve.hybrid``)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pagelens.index.stores.base import VectorStore, pin
from pagelens.index.stores.page_images import PageImageStore
from pagelens.retrieve.hybrid import FusionConfig, resolve_mode, score_kind, search_pages
from pagelens.retrieve.types import SearchHit

from pagelens.core.errors import (
    CollectionNotFoundError,
    EmptyCollectionError,
    InvalidRequestError,
    TextIndexMissingError,
)
from pagelens.core.types import PageFilter, SearchMode
from pagelens.models.embedder import PageEmbedder, check_manifest

log = logging.getLogger(__name__)


@dataclass
class SearchTimings:
    encode_s: float
    search_s: float
    mode: str = ""  # the retrieval mode actually used (visual after a fallback)


class Retriever:
    """Finds the pages of a collection that best answer a question (late interaction, MaxSim)."""

    def __init__(
        self,
        embedder: PageEmbedder,
        store: VectorStore,
        prefetch_limit: int = 250,
        fusion: FusionConfig | None = None,
        images: PageImageStore | None = None,
    ) -> None:
        """``images``: the page-image store that resolves the payloads' relative image paths to files on
        this host (``SearchHit.image_path``); None: only legacy absolute paths are taken as they are."""
        self.embedder = embedder
        self.store = store
        self.images = images
        self.prefetch_limit = prefetch_limit
        self.fusion = fusion or FusionConfig()
        self.last_timings = SearchTimings(0.0, 0.0)

    def _image_path(self, payload: dict[str, Any]) -> str | None:
        """The page PNG on this host: the payload's path relative to the page-image root, resolved."""
        if self.images is not None:
            path = self.images.resolve(payload)
            return str(path) if path is not None else None
        stored = payload.get("image_path")
        return str(stored) if stored and Path(str(stored)).is_absolute() else None

    def search(
        self,
        collection: str,
        question: str,
        k: int = 5,
        mode: str = "two_stage",
        page_filter: PageFilter | None = None,
        strategy: SearchMode = "two_stage",
        fallback_to_visual: bool = False,
    ) -> list[SearchHit]:
        """Top ``k`` pages, best first.

        ``mode``: ``visual`` | ``text`` | ``hybrid`` (``strategy`` is the visual one), or
        ``two_stage`` / ``exact`` = visual with that strategy (see ``pagelens.retrieve.hybrid``).
        ``two_stage``: candidates by MaxSim on the pooled row/column vectors (HNSW), reranked by
        exact MaxSim on the full multivectors. ``exact``: brute-force MaxSim on every page.
        ``fallback_to_visual``: on a collection without a text index, run ``visual`` (with a
        warning) instead of raising ``TextIndexMissingError``.
        Each hit's ``score`` is named by its ``score_kind`` (maxsim | bm25 | rrf | dbsf); see ``SearchHit``.
        The collection name is resolved once, first (an alias: the collection it points to now;
        ``pagelens.index.stores.base.pin``): every check and search below runs on that collection, so an
        alias switched mid-search (``pagelens index --reindex``) cannot mix two collections.
        Raises CollectionNotFoundError, EmptyCollectionError, CollectionMismatchError,
        TextIndexMissingError.
        """
        question = question.strip()
        if not question:
            raise InvalidRequestError("the question is empty; pass a non-empty question")
        if k < 1:
            raise InvalidRequestError(f"k must be >= 1 (got {k})")
        retrieval, strategy = resolve_mode(mode, strategy=strategy)
        target, store = pin(self.store, collection)  # the one alias resolution of this search
        manifest = store.get_manifest(target)
        if manifest is None:
            raise CollectionNotFoundError(collection)
        if retrieval in ("text", "hybrid") and not store.has_text_index(target):
            if not fallback_to_visual:
                raise TextIndexMissingError(collection)
            log.warning("collection '%s' has no text index (created before hybrid search): searching "
                        "visual only; re-index it to enable %s mode", collection, retrieval)
            retrieval = "visual"
        if retrieval in ("text", "hybrid"):
            _warn_english_only(store, target)
        if retrieval != "text":  # text mode needs no retriever model
            check_manifest(manifest, self.embedder)
        if store.count(target) == 0:
            raise EmptyCollectionError(
                f"collection '{collection}' holds no pages yet; index documents first "
                f"(pagelens index PATH --collection {collection})",
                collection=collection,
            )
        t0 = time.perf_counter()
        query = None if retrieval == "text" else self.embedder.embed_queries([question])[0]  # [n_q, dim] float32
        t1 = time.perf_counter()
        scored = search_pages(
            store, target, mode=retrieval, limit=k, query_vectors=query, question=question,
            strategy=strategy, page_filter=page_filter, prefetch_limit=max(self.prefetch_limit, k),
            fusion=self.fusion,
        )
        t2 = time.perf_counter()
        self.last_timings = SearchTimings(encode_s=t1 - t0, search_s=t2 - t1, mode=retrieval)
        kind = score_kind(retrieval, self.fusion)
        hits = []
        for rank, point in enumerate(scored, start=1):
            payload = point.payload
            hits.append(
                SearchHit(
                    rank=rank,
                    doc_id=payload.get("doc_id", ""),
                    doc_name=payload.get("doc_name", ""),
                    page_no=int(payload.get("page_no", 0)),
                    page_count=int(payload.get("page_count", 0)),
                    score=float(point.score),
                    image_path=self._image_path(payload),
                    text=payload.get("text", ""),
                    metadata=dict(payload.get("meta") or {}),
                    point_id=point.id,
                    visual_score=point.visual_score,
                    text_score=point.text_score,
                    score_kind=kind,
                    language=payload.get("language"),
                    text_source=payload.get("text_source"),
                )
            )
        return hits


_WARNED_ENGLISH_ONLY: set[str] = set()


def _warn_english_only(store: VectorStore, collection: str) -> None:
    """Once per process and collection: its text index predates languages (spec version 1)."""
    if collection in _WARNED_ENGLISH_ONLY:
        return
    if store.text_spec_version(collection) == 1:
        _WARNED_ENGLISH_ONLY.add(collection)
        log.warning("collection '%s' has an English-only text index (made before languages): words in other "
                    "languages match only in the exact form printed on the page. Rebuild it with `pagelens index "
                    "--reindex -c %s PATHS` for per-language search", collection, collection)
