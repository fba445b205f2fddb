"""Visual search of the Qdrant Edge store (``pagelens.index.stores.edge_store``): ``two_stage`` as the
collection's measured plan says (first stage, int8 rerank, Qdrant's exact MaxSim of the few kept) and
``exact``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pagelens.index.ann.fast_rerank import RerankCache, ScanView, kernel_threads, top_candidates
from pagelens.index.ann.first_stages import first_stages
from pagelens.index.stores.edge_base import (
    EdgeBase,
    _edge,
    _valid_uuid,
    logger,
)
from pagelens.index.stores.filters import (
    sort_hits,
    to_edge_filter,
    validate_matrix,
)
from pagelens.index.stores.search_status import (
    RERANK_CACHE,
)

from pagelens.core.errors import (
    InvalidRequestError,
)
from pagelens.core.types import (
    COLS_VECTOR,
    FULL_VECTOR,
    ROWS_VECTOR,
    PageFilter,
    ScoredPage,
    SearchMode,
)


class EdgeSearch(EdgeBase):
    """MaxSim search: ``search`` and its stages; ``get_full_vectors``."""

    def search(
        self,
        collection: str,
        query: np.ndarray,
        limit: int,
        mode: SearchMode = "two_stage",
        page_filter: PageFilter | None = None,
        prefetch_limit: int = 100,
    ) -> list[ScoredPage]:
        """MaxSim top ``limit`` for ``query`` [n_q, dim] float32 (see ``VectorStore.search``). Writers
        step aside meanwhile (``pagelens.index.stores.readers_first``)."""
        with self.readers.reading():
            return self._search(collection, query, limit, mode, page_filter, prefetch_limit)

    def _search(self, collection: str, query: np.ndarray, limit: int, mode: SearchMode,
                page_filter: PageFilter | None, prefetch_limit: int) -> list[ScoredPage]:
        """``search``."""
        qe = _edge()
        if limit < 1:
            raise InvalidRequestError(f"limit must be >= 1, got {limit}")
        if mode not in ("two_stage", "exact"):
            raise InvalidRequestError(f"unknown search mode {mode!r}: use 'two_stage' or 'exact'")
        flt = to_edge_filter(page_filter)
        with self._lock:
            shard, manifest = self._require(collection)
            q = validate_matrix(query, manifest.dim, "query").tolist()
            if mode == "exact":
                return self._exact_hits(shard, q, limit, flt)
            if self.fast_rerank:
                step = self._search_fast(shard, q, query, limit, flt, max(prefetch_limit, limit), collection)
                if isinstance(step, list):
                    return step
            else:
                self.stale_warnings.seen(self._status_locked(collection))
                k = max(prefetch_limit, limit)
                request = qe.QueryRequest(
                    limit=limit,
                    query=qe.Query.Nearest(q, using=FULL_VECTOR),
                    prefetches=[
                        qe.Prefetch(limit=k, query=qe.Query.Nearest(q, using=ROWS_VECTOR), filter=flt),
                        qe.Prefetch(limit=k, query=qe.Query.Nearest(q, using=COLS_VECTOR), filter=flt),
                    ],
                    filter=flt,
                    with_payload=True,
                )
                hits = shard.query(request)
                return sort_hits([ScoredPage(id=str(h.id), score=float(h.score), payload=dict(h.payload or {}))
                                  for h in hits])
        # the plan's whole-collection ranking, outside the lock: writers (upserts, the job's closing repair)
        # and other searches go on meanwhile; the view it reads stays valid (fast_rerank.ScanView)
        view, width, keep = step
        with kernel_threads(1):
            ids = view.best(query, width)
        with self._lock:
            shard, _ = self._require(collection)
            ids = self._topped_up(self._rerank_file(collection), query, ids, keep)
            return self._rerank_and_score(shard, q, query, limit, flt, ids, keep, collection)

    def _search_fast(self, shard: Any, q: list[list[float]], query: np.ndarray, limit: int, flt: Any, k: int,
                     collection: str) -> list[ScoredPage] | tuple[ScanView, int, int]:
        """``two_stage`` as the collection's measured plan says (``pagelens.index.ann.self_check``). Call
        under the lock. Returns the hits, or, when the plan's first stage ranks every page (``scan``,
        ``dedup``), (the ``ScanView`` to rank with, how many pages to take from it, ``keep``) for ``search``
        to rank outside the lock and finish with ``_rerank_and_score``.

        1. Candidates, when the rerank cache holds exactly the collection's points: the plan's first
           stage (``scan``: every page's int8 codes, the default until the collection is measured;
           ``dedup`` / ``pooled`` / ``tokens``: the plan's number of candidates) or, with a filter, every
           page the filter matches; a plan of ``exact`` (no first stage reached the target recall) goes to
           Qdrant's exact search, with one WARNING per collection. When the cache is out of step:
           Qdrant's two pooled HNSW prefetches (``k`` each), and one stale WARNING.
        2. Our int8 MaxSim of the candidates keeps the plan's ``rerank_keep`` (at least ``limit``), plus
           every candidate missing from the cache.
        3. Qdrant: exact MaxSim on ``FULL_VECTOR`` over those ids (and the filter), with payloads.
        """
        cache = self._rerank_file(collection)
        status = self._status_locked(collection)
        self.stale_warnings.seen(status)
        plan = self._plan(collection)
        complete = RERANK_CACHE not in status.codes
        if complete and plan.first_stage == "exact":
            if plan.fallback and collection not in self._exact_warned:
                self._exact_warned.add(collection)
                logger.warning("collection %s: no first stage reached recall@5 %.2f on its probe queries (%s); "
                               "its visual searches score every page exactly (slower). Fix: none needed for "
                               "correctness; `pagelens optimize -c %s` measures again after the collection changes",
                               collection, plan.target, plan.summary(), collection)
            return self._exact_hits(shard, q, limit, flt)
        keep = max(plan.rerank_keep, limit)
        if complete and flt is None:  # the plan's first stage (pagelens.index.ann.first_stages)
            stages = first_stages(cache, self.rerank_device, self.token_nprobe, self.token_index_min_pages > 0)
            stage = stages.get(plan.first_stage, stages["scan"])  # "tokens" while its index is not ready: scan
            width = keep if stage.name == "scan" else max(plan.candidates, keep)
            view = cache.scan_view() if stage.name == "scan" else cache.dedup_view() if stage.name == "dedup" else None
            if view is not None:
                return view, width, keep
            with kernel_threads(1):
                ids = self._topped_up(cache, query, stage.candidates(query, width), keep)
        elif complete:  # a filter: the pages it matches, all reranked by the int8 kernel
            ids = self._scroll_ids(shard, flt)
        else:
            ids = self._prefetch_ids(shard, q, k, flt)
        return self._rerank_and_score(shard, q, query, limit, flt, ids, keep, collection)

    def _rerank_and_score(self, shard: Any, q: list[list[float]], query: np.ndarray, limit: int, flt: Any,
                          ids: list[str], keep: int, collection: str) -> list[ScoredPage]:
        """Steps 2 and 3 of ``_search_fast`` for the candidates ``ids``. Call under the lock."""
        if len(ids) > keep:
            cache = self._rerank_file(collection)
            with kernel_threads(1):
                held, missing = cache.split(ids)
                chosen = top_candidates(cache.maxsim(query, held, self.rerank_device), held, keep) \
                    if len(held) > keep else held
            ids = chosen + missing
        if not ids:
            return []
        return self._exact_hits(shard, q, limit, flt, ids=ids)

    def _exact_hits(self, shard: Any, q: list[list[float]], limit: int, flt: Any,
                    ids: Sequence[str] | None = None, with_payload: bool = True) -> list[ScoredPage]:
        """Qdrant's exact MaxSim over every page matching ``flt`` (and ``ids`` when given). Call under the lock."""
        qe = _edge()
        condition = flt
        if ids is not None:  # the candidates, within the filter
            condition = qe.Filter(must=[qe.HasIdCondition(set(ids)), *([flt] if flt is not None else [])])
        hits = shard.query(qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(q, using=FULL_VECTOR),
            filter=condition,
            with_payload=with_payload,
            params=qe.SearchParams(exact=True),
        ))
        return sort_hits([ScoredPage(id=str(h.id), score=float(h.score), payload=dict(h.payload or {})) for h in hits])

    @staticmethod
    def _topped_up(cache: RerankCache, query: np.ndarray, ids: list[str], keep: int) -> list[str]:
        """A first stage's candidates ``ids``, topped up from the int8 scan when it found fewer than ``keep``
        (few pages share a probed cell with the query, or hold kept tokens). Call under the lock."""
        if len(ids) >= keep:
            return ids
        found = set(ids)
        return ids + [i for i in cache.scan(query, keep) if i not in found]

    @staticmethod
    def _prefetch_ids(shard: Any, q: list[list[float]], k: int, flt: Any) -> list[str]:
        """Ids of the union of Qdrant's two pooled HNSW prefetches (rows, cols; ``k`` each), fused by
        RRF. Call under the lock."""
        qe = _edge()
        candidates = shard.query(qe.QueryRequest(
            limit=2 * k,
            query=qe.Fusion.Rrf(k=60),
            prefetches=[
                qe.Prefetch(limit=k, query=qe.Query.Nearest(q, using=ROWS_VECTOR), filter=flt),
                qe.Prefetch(limit=k, query=qe.Query.Nearest(q, using=COLS_VECTOR), filter=flt),
            ],
            with_payload=False,
        ))
        return [str(h.id) for h in candidates]

    def get_full_vectors(self, collection: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """{id: [n_tokens, dim] float32} for the ids that exist."""
        wanted = [str(i) for i in ids if _valid_uuid(str(i))]
        with self._lock:
            shard, _ = self._require(collection)
            if not wanted:
                return {}
            records = shard.retrieve(wanted, with_payload=False, with_vector=[FULL_VECTOR])
        out: dict[str, np.ndarray] = {}
        for rec in records:
            vec = rec.vector
            if isinstance(vec, dict) and FULL_VECTOR in vec:
                out[str(rec.id)] = np.asarray(vec[FULL_VECTOR], dtype=np.float32)
        return out
