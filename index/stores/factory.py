"""``open_store``: the one factory choosing the vector store backend from ``Settings``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pagelens.index.stores.base import VectorStore

    from pagelens.core.settings import Settings

logger = logging.getLogger(__name__)


def open_store(settings: Settings, role: str | None = None) -> VectorStore:
    """``QdrantServerStore`` when ``settings.qdrant_url`` is set, else the embedded
    ``QdrantEdgeStore`` under ``settings.edge_dir``. Nothing is opened or contacted here.

    The embedded store gets the data dir's one-process lock (``pagelens.core.datadir``), taken on its first
    operation on collection files; ``role`` names this process in a second one's error (default: from
    the command line)."""
    if settings.qdrant_url:
        from pagelens.index.stores.server_store import QdrantServerStore

        logger.info("vector store: Qdrant server %s", settings.qdrant_url)
        return QdrantServerStore.from_settings(settings)
    from pagelens.index.stores.edge_store import QdrantEdgeStore

    from pagelens.core.datadir import DataDirLock

    logger.info("vector store: embedded Qdrant Edge at %s", settings.edge_dir)
    return QdrantEdgeStore(settings.edge_dir, fast_rerank=settings.tuning.fast_rerank,
                           hnsw_m=settings.tuning.hnsw_m, recall_target=settings.tuning.search_recall_target,
                           full_datatype=settings.full_vector_datatype,
                           token_index_min_pages=settings.tuning.token_index_min_pages,
                           token_nprobe=settings.tuning.token_nprobe,
                           pause_at=settings.tuning.debug_pause_at,
                           lock=DataDirLock(settings.data_dir, role),
                           search_threads=settings.tuning.search_threads,
                           text_query_languages=settings.tuning.text_query_languages)
