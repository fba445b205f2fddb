"""Visual search of the Qdrant Edge store (``pagelens.index.stores.edge_store``): ``two_stage`` as the
collection's measured plan says (first stage, int8 rerank, Qdrant's exact MaxSim of the few kept) and
``exact``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from pagelens.index.ann.fast_rerank import kernel_threads
from pagelens.index.ann.first_stages import Candidates, first_stages
from pagelens.index.stores.edge_base import (
    ASSUMED_PAGE_TOKENS,
    EdgeBase,
    _edge,
    _valid_uuid,
    exact_parts,
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

_T = TypeVar("_T")


def _no_top_up(query: np.ndarray, width: int) -> list[str]:
    return []


@dataclass
class _Pending:
    """What a ``two_stage`` search does outside the store's lock, decided under it (``_search_fast``):
    ``exact``: Qdrant's exact search of every page; else the candidates ``ids`` (a filter's pages, Qdrant's
    prefetch), or ``first(query, width)`` topped up from ``scan`` when it found fewer than ``keep`` (few pages
    share a probed cell with the query, or hold kept tokens); then the int8 rerank keeps ``keep``."""

    exact: bool = False
    parts: list[list[str]] | None = None  # an exact search's pages in short calls (``exact_parts``), when known
    page_tokens: int = ASSUMED_PAGE_TOKENS  # else the mean page length its calls are cut by
    ids: list[str] | None = None
    first: Candidates = field(default=_no_top_up)
    width: int = 0
    keep: int = 16
    scan: Candidates = field(default=_no_top_up)

    def topped_up(self, query: np.ndarray, ids: list[str]) -> list[str]:
        if len(ids) >= self.keep:
            return ids
        found = set(ids)
        return ids + [i for i in self.scan(query, self.keep) if i not in found]


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
        """``search``. Under the store's lock a search only takes what it reads (the shard, the
        collection's plan and status, the first stage's view of the cache, later the candidates' codes:
        references and index lookups, well under a millisecond); every kernel and Qdrant's own search
        run outside it, so searches overlap each other and writers' page writes (``_Pending``)."""
        qe = _edge()
        if limit < 1:
            raise InvalidRequestError(f"limit must be >= 1, got {limit}")
        if mode not in ("two_stage", "exact"):
            raise InvalidRequestError(f"unknown search mode {mode!r}: use 'two_stage' or 'exact'")
        flt = to_edge_filter(page_filter)
        with self._lock:
            shard, manifest = self._require(collection)
            q = validate_matrix(query, manifest.dim, "query").tolist()
            pending: _Pending | None
            if mode == "exact":
                pending = self._exact_pending(collection, flt)
            elif self.fast_rerank:
                pending = self._search_fast(shard, q, query, limit, flt, max(prefetch_limit, limit), collection)
            else:  # no torch: Qdrant's own two stages (pooled HNSW prefetch, exact rescoring)
                self.stale_warnings.seen(self._status_locked(collection))
                pending = None
        if pending is not None and pending.exact:
            parts = pending.parts
            if parts is None:  # the filter's pages by Qdrant's scroll (a few ms of GIL per 4,096 ids)
                matching: list[str] = self._outside(collection, shard, lambda s: self._scroll_ids(s, flt))
                parts = exact_parts(matching, 1, pending.page_tokens)
            return self._exact_in_parts(collection, shard, q, limit, flt, parts)
        if pending is not None:
            ids = pending.ids
            if ids is None:  # the plan's first stage, outside the lock (its view stays valid: fast_rerank.ScanView)
                with kernel_threads(1):
                    ids = pending.topped_up(query, pending.first(query, pending.width))
            if len(ids) > pending.keep:
                with self._lock:  # the candidates' int8 codes as of now (fast_rerank.RerankView)
                    view = self._rerank_file(collection).rerank_view(ids)
                with kernel_threads(1):
                    ids = view.best(query, pending.keep, self.rerank_device)
            if not ids:
                return []
            chosen = ids
            return self._outside(collection, shard, lambda s: self._exact_hits(s, q, limit, flt, ids=chosen))
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
        hits = self._outside(collection, shard, lambda s: s.query(request))
        return sort_hits([ScoredPage(id=str(h.id), score=float(h.score), payload=dict(h.payload or {}))
                          for h in hits])

    def _outside(self, collection: str, shard: Any, call: Callable[[Any], _T]) -> _T:
        """``call(shard)`` outside the store's lock. Qdrant Edge holds the GIL through each of its calls
        (measured: another thread sleeping 1 ms waited the whole 300 ms of an exact search), so its calls
        never overlap one another whatever our locking; what can happen meanwhile is a ``close`` or
        ``delete_collection``: then the collection's current shard is asked once more, and a deleted
        collection raises ``CollectionNotFoundError``."""
        try:
            return call(shard)
        except Exception:
            with self._lock:
                now, _ = self._require(collection)  # CollectionNotFoundError when deleted meanwhile
            if now is shard:
                raise
            logger.debug("collection %s was reopened during a search: asking its new shard", collection)
            return call(now)

    def _search_fast(self, shard: Any, q: list[list[float]], query: np.ndarray, limit: int, flt: Any, k: int,
                     collection: str) -> _Pending:
        """``two_stage`` as the collection's measured plan says (``pagelens.index.ann.self_check``). Call
        under the lock: it decides and takes what the steps read; ``_search`` runs them outside.

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
            return self._exact_pending(collection, flt)
        keep = max(plan.rerank_keep, limit)
        if complete and flt is None:  # the plan's first stage (pagelens.index.ann.first_stages)
            stages = first_stages(cache, self.rerank_device, self.token_nprobe, self.token_index_min_pages > 0)
            stage = stages.get(plan.first_stage, stages["scan"])  # "tokens" while its index is not ready: scan
            width = keep if stage.name == "scan" else max(plan.candidates, keep)
            scan = stages["scan"].prepare() if stage.name != "scan" else _no_top_up
            return _Pending(first=stage.prepare(), width=width, keep=keep, scan=scan)
        if complete:  # a filter: the pages it matches, all reranked by the int8 kernel
            return _Pending(ids=self._scroll_ids(shard, flt), keep=keep)
        return _Pending(ids=self._prefetch_ids(shard, q, k, flt), keep=keep)

    def _exact_pending(self, collection: str, flt: Any) -> _Pending:
        """An exact search of every page matching ``flt``, in calls of ``EXACT_CALL_ROWS`` token rows (Edge holds
        the GIL through each call: one call over 10,000 1139-token pages held it ~1.2 s, stalling every other
        thread of the server). Without a filter, split by the rerank cache's ids when it holds exactly the
        collection's points; else (a filter, or no cache in step) by the ids Qdrant's scroll finds for the
        filter, outside the lock (``_search``), counting pages of the cache's mean length, or
        ``ASSUMED_PAGE_TOKENS`` without one. Call under the lock."""
        if self.fast_rerank:
            cache = self._rerank_file(collection)
            if RERANK_CACHE not in self._status_locked(collection).codes:
                if flt is None:
                    return _Pending(exact=True, parts=exact_parts(list(cache.ids()), len(cache), cache.live_rows))
                return _Pending(exact=True, page_tokens=max(1, cache.live_rows // max(1, len(cache))))
        return _Pending(exact=True)

    def _exact_in_parts(self, collection: str, shard: Any, q: list[list[float]], limit: int, flt: Any,
                        parts: Sequence[Sequence[str]], with_payload: bool = True,
                        before_each: Callable[[], None] | None = None) -> list[ScoredPage]:
        """Qdrant's exact top ``limit`` of the pages in ``parts`` (matching ``flt``): one call per part, each
        outside the lock (``_outside``), merged (ties by id); ``before_each()`` before each call. Parts are
        non-empty (``exact_parts``)."""
        hits: list[ScoredPage] = []
        for part in parts:
            if before_each is not None:
                before_each()

            def call(s: Any, part: Sequence[str] = part) -> list[ScoredPage]:
                return self._exact_hits(s, q, min(limit, len(part)), flt, ids=part, with_payload=with_payload)

            hits += self._outside(collection, shard, call)
        return sort_hits(hits)[:limit]

    def _exact_hits(self, shard: Any, q: list[list[float]], limit: int, flt: Any,
                    ids: Sequence[str] | None = None, with_payload: bool = True) -> list[ScoredPage]:
        """Qdrant's exact MaxSim over every page matching ``flt`` (and ``ids`` when given). With or without the
        lock (``_outside``)."""
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
