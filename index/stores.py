"""``open_store``: the one factory choosing the vector store backend from ``Settings``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from index.store import VectorStore
    from pagelens.settings import Settings

logger = logging.getLogger(__name__)


def open_store(settings: Settings) -> VectorStore:
    """``QdrantServerStore`` when ``settings.qdrant_url`` is set, else the embedded
    ``QdrantEdgeStore`` under ``settings.edge_dir``. Nothing is opened or contacted here."""
    if settings.qdrant_url:
        from index.server_store import QdrantServerStore

        logger.info("vector store: Qdrant server %s", settings.qdrant_url)
        return QdrantServerStore.from_settings(settings)
    from index.edge_store import QdrantEdgeStore

    logger.info("vector store: embedded Qdrant Edge at %s", settings.edge_dir)
    return QdrantEdgeStore(settings.edge_dir, fast_rerank=settings.fast_rerank,
                           rerank_candidates=settings.rerank_candidates,
                           pooled_scan_max_pages=settings.pooled_scan_max_pages, hnsw_m=settings.hnsw_m,
                           full_datatype=settings.full_vector_datatype,
                           token_index_min_pages=settings.token_index_min_pages,
                           token_candidates=settings.token_candidates, token_nprobe=settings.token_nprobe,
                           text_query_languages=settings.text_query_languages)
