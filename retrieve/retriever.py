"""Question -> top pages: encode the query with the retriever, MaxSim search in the store."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from index.embedder import PageEmbedder
from index.indexer import check_manifest
from index.store import VectorStore
from index.types import PageFilter, SearchMode
from pagelens.errors import CollectionNotFoundError, EmptyCollectionError, InvalidRequestError
from retrieve.types import SearchHit

log = logging.getLogger(__name__)


@dataclass
class SearchTimings:
    encode_s: float
    search_s: float


class Retriever:
    """Finds the pages of a collection that best answer a question (late interaction, MaxSim)."""

    def __init__(self, embedder: PageEmbedder, store: VectorStore, prefetch_limit: int = 100) -> None:
        self.embedder = embedder
        self.store = store
        self.prefetch_limit = prefetch_limit
        self.last_timings = SearchTimings(0.0, 0.0)

    def search(
        self,
        collection: str,
        question: str,
        k: int = 5,
        mode: SearchMode = "two_stage",
        page_filter: PageFilter | None = None,
    ) -> list[SearchHit]:
        """Top ``k`` pages, best first.

        ``two_stage``: candidates by MaxSim on the pooled row/column vectors (HNSW), reranked by
        exact MaxSim on the full multivectors. ``exact``: brute-force MaxSim on every page.
        Raises CollectionNotFoundError, EmptyCollectionError, CollectionMismatchError.
        """
        question = question.strip()
        if not question:
            raise InvalidRequestError("the question is empty; pass a non-empty question")
        if k < 1:
            raise InvalidRequestError(f"k must be >= 1 (got {k})")
        if mode not in ("two_stage", "exact"):
            raise InvalidRequestError(f"unknown search mode '{mode}'; use two_stage or exact")
        manifest = self.store.get_manifest(collection)
        if manifest is None:
            raise CollectionNotFoundError(collection)
        check_manifest(manifest, self.embedder)
        if self.store.count(collection) == 0:
            raise EmptyCollectionError(
                f"collection '{collection}' holds no pages yet; index documents first "
                f"(pagelens index PATH --collection {collection})",
                collection=collection,
            )
        t0 = time.perf_counter()
        query = self.embedder.embed_queries([question])[0]  # [n_q, dim] float32
        t1 = time.perf_counter()
        scored = self.store.search(
            collection, query, limit=k, mode=mode, page_filter=page_filter, prefetch_limit=max(self.prefetch_limit, k)
        )
        t2 = time.perf_counter()
        self.last_timings = SearchTimings(encode_s=t1 - t0, search_s=t2 - t1)
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
                    image_path=payload.get("image_path"),
                    text=payload.get("text", ""),
                    metadata=dict(payload.get("meta") or {}),
                    point_id=point.id,
                )
            )
        return hits
