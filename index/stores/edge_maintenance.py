"""Maintenance of the Qdrant Edge store's search structures (``pagelens.index.stores.edge_store``):
``search_status`` (what is stale), ``optimize`` / ``repair`` (Edge's optimizers, the rerank cache sync,
the token index), and the self-check that measures the search plan (``pagelens.index.ann.self_check``)."""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pagelens.index.ann.fast_rerank import RerankCache, kernel_threads
from pagelens.index.ann.first_stages import first_stages
from pagelens.index.ann.self_check import Probe, SearchPlan, load_plan, run_check, save_plan
from pagelens.index.stores.edge_base import (
    CHECK_CALL_WAIT_S,
    OPTIMIZED_FILE,
    RERANK_DIR,
    RERANK_STALE_FILE,
    EdgeBase,
    _edge,
    _write_json_atomic,
    exact_parts,
    logger,
)
from pagelens.index.stores.search_status import (
    DEDUP_INDEX,
    OPTIMIZE_PENDING,
    RERANK_CACHE,
    SELF_CHECK,
    SKETCH_INDEX,
    TOKEN_INDEX,
    IdDigest,
    RepairResult,
    SearchStatus,
)

from pagelens.core.debug_hooks import pause_point
from pagelens.core.types import (
    COLS_VECTOR,
    FULL_VECTOR,
    ROWS_VECTOR,
    ScoredPage,
)


class EdgeMaintenance(EdgeBase):
    """Search status, optimize/repair, the rerank cache sync and the measured search plan."""

    def _is_stamped(self, name: str) -> bool:
        """Whether ``optimized.json`` is there: a complete optimize ran after the last upsert."""
        stamped = self._stamped.get(name)
        if stamped is None:
            stamped = self._stamped[name] = (self._dir(name) / OPTIMIZED_FILE).is_file()
        return stamped

    def _unstamp(self, name: str) -> None:
        """Remove ``optimized.json`` (durably) before points are written. Call under the lock."""
        if not self._is_stamped(name):
            return
        cdir = self._dir(name)
        (cdir / OPTIMIZED_FILE).unlink(missing_ok=True)
        try:
            fd = os.open(cdir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:  # pragma: no cover - a directory fsync is best effort
            pass
        self._stamped[name] = False

    def _live_ids(self, name: str, shard: Any) -> IdDigest:
        """Qdrant's point ids of ``name``: one scroll per process, then kept by upsert/delete.
        Call under the lock."""
        live = self._live.get(name)
        if live is None:
            live = self._live[name] = IdDigest(self._scroll_ids(shard, None))
        return live

    def _cache_mismatch(self, name: str, cache: RerankCache, live: IdDigest) -> tuple[int, int]:
        """(live pages missing from the rerank cache, deleted pages still in it); O(pages), memoised
        per pair of digests. Call under the lock."""
        key = (cache.digest(), live.digest())
        memo = self._cache_diff.get(name)
        if memo is not None and memo[0] == key:
            return memo[1]
        held = {uuid.UUID(i).int for i in cache.ids()}
        live_ints = live.ints()
        diff = (len(live_ints - held), len(held - live_ints))
        self._cache_diff[name] = (key, diff)
        return diff

    def _token_staleness(self, cache: RerankCache) -> str:
        """Why the token index is not what ``ensure_token_index`` would make it ("" when it is)."""
        live = len(cache)
        minimum = self.token_index_min_pages
        have = cache.tokens.load()
        if not have:
            if live >= minimum:
                return (f"no token index although the collection has {live} pages (it is built from "
                        f"{minimum} pages, token_index_min_pages)")
            return ""
        if live < minimum / 2:
            return ""  # dropped by the next optimize; searches use it only when the self-check chose it
        if not cache.token_index_ready():
            return f"the token index covers {cache.tokens.covered} of the rerank cache's {len(cache._ids)} records"
        trained = max(1, cache.tokens.trained_pages)
        if live >= 2 * trained:
            return (f"the token index was trained on {trained} pages and the collection has grown to {live}: "
                    "due for retraining")
        return ""

    def _status_locked(self, name: str) -> SearchStatus:
        """``search_status`` under the lock: O(1) but for the first call per process (a scroll of
        the point ids) and, while the cache is out of step, one set difference per change."""
        qe = _edge()
        shard, _ = self._require(name)
        n_points = int(shard.count(qe.CountRequest(exact=True)))
        reasons: list[tuple[str, str]] = []
        segments_pending = bool(n_points) and (not self._is_stamped(name) or bool(self._unoptimized.get(name)))
        out_of_step = False  # the int8 cache does not hold exactly Qdrant's points
        if self.fast_rerank:
            cache = self._rerank_file(name)
            live = self._live_ids(name, shard)
            if name in self._rerank_stale or cache.digest() != live.digest():
                missing, ghosts = self._cache_mismatch(name, cache, live)
                if missing or ghosts:
                    reasons.append((RERANK_CACHE, f"the rerank cache is out of step with the collection ({missing} "
                                    f"of {n_points} pages missing from it, {ghosts} deleted pages still in it)"))
                else:
                    reasons.append((RERANK_CACHE, "a write to the rerank cache failed"))
            if self.token_index_min_pages > 0:
                why = self._token_staleness(cache)
                if why:
                    reasons.append((TOKEN_INDEX, why))
            out_of_step = any(code == RERANK_CACHE for code, _ in reasons)
            if not out_of_step:
                why = cache.dedup_staleness()
                if why:
                    reasons.append((DEDUP_INDEX, why))
                why = cache.sketch_staleness(self.sketch_min_rows)
                if why:
                    reasons.append((SKETCH_INDEX, why))
                plan = self._plan(name)
                if len(cache) and plan.outdated(len(cache)):
                    reasons.append((SELF_CHECK, f"the search plan was measured on {plan.pages} pages and the "
                                    f"collection has {len(cache)}" if plan.recall is not None else
                                    "the search plan was not measured yet"))
        # Edge's segment optimizer (HNSW graphs of the pooled vectors, merged segments) serves only Qdrant's
        # pooled prefetch: the search path without the int8 cache, or while the cache is out of step
        if segments_pending and (not self.fast_rerank or out_of_step):
            reasons.insert(0, (OPTIMIZE_PENDING, "not optimized since pages were last written (the HNSW graphs "
                               "of the pooled vectors, which Qdrant's prefetch uses, may be missing or incomplete)"))
        status = SearchStatus.of(name, reasons, n_points, segments_pending=segments_pending)
        if self.fast_rerank and n_points:
            status = dataclasses.replace(status, self_check=self._plan(name).to_dict())
        return status

    def _plan(self, collection: str) -> SearchPlan:
        """The collection's measured plan (``self_check.json``), or the default (scan, 16). Call under the lock."""
        plan = self._plans.get(collection)
        if plan is None:
            plan = load_plan(self._dir(collection) / RERANK_DIR) or SearchPlan(
                target=self.recall_target, rerank_keep=self.rerank_candidates)
            self._plans[collection] = plan
        return plan

    def set_plan(self, collection: str, plan: SearchPlan) -> None:
        """Use ``plan`` for ``collection`` in this process until the next self-check (tests, benches)."""
        with self._lock:
            self._plans[collection] = plan

    def self_check(self, collection: str, force: bool = False) -> SearchPlan:
        """Measure the collection's first stages against exact MaxSim on probe queries made from its own
        pages and keep the cheapest plan reaching ``recall_target`` (``pagelens.index.ann.self_check``);
        saved with the rerank cache. Without ``force`` only when the collection moved by more than a
        quarter since the last check. Each probe's searches take the lock separately, so searches go
        on meanwhile. Needs a complete rerank cache (``repair`` first); returns the plan in force."""
        with self._lock:
            shard, _ = self._require(collection)
            cache = self._rerank_file(collection)
            plan = self._plan(collection)
            pages = len(cache)
            if not force and not plan.outdated(pages):
                return plan
            rows = cache.live_rows
        probe = self._probe(collection, pages, rows)
        with kernel_threads(1):
            plan = run_check(probe, self.recall_target)
        with self._lock:
            save_plan(self._dir(collection) / RERANK_DIR, plan)
            self._plans[collection] = plan
            self._exact_warned.discard(collection)
        logger.info("self-check of %s in %.1f s: %s; geometry %s", collection, plan.seconds, plan.summary(),
                    plan.geometry)
        return plan

    def _probe(self, collection: str, pages: int, rows: int) -> Probe:
        """The store's side of the self-check, run as searches run (``EdgeSearch._search``): under the lock
        each call only takes what it reads (a stage's prepared view, the candidates' codes, the shard);
        its kernels and Qdrant's exact calls run outside it, so a search never waits for a probe's
        compute (before: up to 1 s during a job's repair, 2,000 pages + 512, EPYC, 2026-12-07)."""

        def shard() -> Any:
            with self._lock:
                return self._require(collection)[0]

        def cache() -> RerankCache:
            return self._rerank_file(collection)

        def outside(prepare: Callable[[], Callable[[np.ndarray, int], list[str]]]) -> Callable[..., list[str]]:
            def run(query: np.ndarray, width: int) -> list[str]:
                with self._lock:
                    candidates = prepare()
                return candidates(query, width)
            return run

        def rerank(query: np.ndarray, ids: Sequence[str]) -> np.ndarray:
            with self._lock:
                view = cache().rerank_view(ids)
            return view.maxsim(query, self.rerank_device)

        def sample_tokens(n: int, rng: np.random.Generator) -> list[np.ndarray]:
            """Token vectors of ``n`` random pages, from the cache's int8 codes (Qdrant's retrieve turns
            vectors into Python lists: ~7 ms of GIL time per 1139-token page, which every search's many
            GIL hand-offs would wait for)."""
            with self._lock:
                ids = cache().ids()  # a copy: sorted outside the lock
            ordered = sorted(ids)
            chosen = [ordered[i] for i in rng.choice(len(ordered), size=min(n, len(ordered)), replace=False)]
            with self._lock:
                view = cache().rerank_view(chosen)
            return view.vectors()

        def exact_hits(query: np.ndarray, ids: Sequence[str], k: int) -> list[ScoredPage]:
            """The exact top ``k`` of ``ids`` in calls of ``EXACT_CALL_ROWS`` token rows (Edge holds the GIL
            through each), each outside the lock like a search's, and each after the searches in flight
            (``ReadersFirst``, at most ``CHECK_CALL_WAIT_S`` per call)."""
            return self._exact_in_parts(collection, shard(), query.tolist(), k, None,
                                        exact_parts(list(ids), pages, rows), with_payload=False,
                                        before_each=lambda: self.readers.turn(CHECK_CALL_WAIT_S).wait())

        def exact_top(query: np.ndarray, k: int) -> list[tuple[str, float]]:
            with self._lock:
                ids = cache().ids()  # a copy; complete cache (``self_check``): Qdrant's ids
            return [(h.id, h.score) for h in exact_hits(query, sorted(ids), k)]

        def exact_scores(query: np.ndarray, ids: Sequence[str]) -> dict[str, float]:
            return {h.id: h.score for h in exact_hits(query, list(ids), len(ids))}

        with self._lock:
            built = first_stages(cache(), self.rerank_device, self.token_nprobe, self.token_index_min_pages > 0)
        stages = {name: outside(stage.prepare) for name, stage in built.items() if name != "scan"}
        return Probe(sample_tokens=sample_tokens, exact_top=exact_top, exact_scores=exact_scores,
                     scan=outside(built["scan"].prepare), rerank=rerank, stages=stages, pages=pages, rows=rows)

    def search_status(self, collection: str) -> SearchStatus:
        """Whether the search structures of ``collection`` are current (``pagelens.index.stores.search_status``):
        a complete ``optimize`` since the last upsert (``optimized.json``: Edge's HNSW graphs of the
        pooled vectors, the segments flushed), and with ``fast_rerank`` the rerank cache holding exactly
        Qdrant's point ids (compared by an order-independent digest) and the token index built and
        covering the cache from ``token_index_min_pages`` pages on. Cheap: O(1) after this process's
        first call per collection, which scrolls the point ids (~20k ids per 0.1 s here).
        Raises ``CollectionNotFoundError``."""
        with self._lock:
            return self._status_locked(collection)

    def repair(self, collection: str, force: bool = False) -> RepairResult:
        """Rebuild what ``search_status`` finds stale (``force``: run the whole ``optimize`` anyway): the
        rerank cache synced with the points (incrementally: Qdrant's ids are scrolled only when the
        cache's digest differs from the ids upserts kept, or with ``force``), the dedup and token indexes
        caught up, the self-check when the collection moved; Edge's segment optimizer (HNSW graphs of
        the pooled vectors) and a flush only with ``force`` or when ``OPTIMIZE_PENDING`` is stale (no
        int8 cache, or the cache out of step: then Qdrant's prefetch picks the candidates), since it
        holds the Python GIL while it runs and so stalls every other thread of the process (measured
        2026-12-07 on the 2-core Intel Xeon: 1.83 s for 400 new pages on 2,000, synthetic aniso
        vectors; 6.2 s for a 6000-page HNSW build). A job's repair in the server therefore never runs it
        on a healthy collection: ``pagelens optimize`` does. Blocking: minutes per 100k pages when the
        token index is (re)built; the cache sync and index builds leave the GIL to other threads."""
        started = time.perf_counter()
        before = self.search_status(collection)
        if before.current and not force:
            return RepairResult(collection, before, before, [], time.perf_counter() - started)
        closes = self._closes
        _, rebuilt = self._optimize_all(collection, segments=force or OPTIMIZE_PENDING in before.codes)
        if self._closes != closes:  # closed meanwhile (a server shutting down): do not reopen the shard
            return RepairResult(collection, before, before, rebuilt, time.perf_counter() - started)
        after = self.search_status(collection)
        if not rebuilt and not before.current:
            rebuilt = ["nothing needed rebuilding: marked optimized"]
        self.stale_warnings.seen(after)  # current again: the next staleness warns again
        result = RepairResult(collection, before, after, rebuilt, time.perf_counter() - started)
        logger.info("repaired search structures of %s in %.1f s: %s; now %s", collection, result.seconds,
                    "; ".join(rebuilt) or "nothing to rebuild", "current" if after.current else
                    "still stale: " + "; ".join(after.stale))
        return result

    def optimize(self, collection: str) -> bool:
        """Run Edge's segment optimizers (builds the HNSW graphs of the pooled vectors once a
        segment passes the indexing threshold), then (``fast_rerank``) sync the rerank cache and its
        token index, and mark the collection optimized (``search_status``). Blocking; call after a
        large indexing job. Edge runs no background optimizer, so without it every search is brute
        force (exact). Returns whether Edge's optimizers changed segments."""
        changed, _ = self._optimize_all(collection)
        return changed

    def _optimize_all(self, collection: str, segments: bool = True) -> tuple[bool, list[str]]:
        """``optimize`` (``segments``: with Edge's segment optimizer and a full id scroll; without, only
        the product's own structures, incrementally): (whether Edge's optimizers changed segments, what
        was rebuilt, human readable)."""
        qe = _edge()
        with self._lock:
            shard, _ = self._require(collection)
            upserts, closes = self._upserts.get(collection, 0), self._closes
            changed = self._optimize_locked(collection, shard) if segments else False
        pause_point(self.pause_at, "optimize")
        rebuilt = ["HNSW graphs of the pooled vectors (Qdrant Edge segment optimizers)"] if changed else []
        if self.fast_rerank:
            added, ghosts, dropped, token = self._sync(collection, rescan=segments)
            if added or ghosts:
                rebuilt.append(f"rerank cache: {added} pages added, {ghosts} deleted pages dropped")
            if dropped:
                rebuilt.append(f"rerank cache compacted: {dropped} dead records dropped")
            if token:
                rebuilt.append(f"token index {token}")
            with self._lock:
                cache = self._rerank_file(collection)
            dedup = cache.ensure_dedup_index(lock=self._lock)  # takes the lock itself, not while it computes
            if dedup == "built":
                rebuilt.append("dedup index built")
            sketch = cache.ensure_sketch_index(self.sketch_min_rows, lock=self._lock)  # the same
            if sketch == "built":
                rebuilt.append("sketch index built")
            with self._lock:
                complete = RERANK_CACHE not in self._status_locked(collection).codes
                before = self._plans.get(collection)
            if complete:  # a first stage built or dropped: measure again
                plan = self.self_check(collection, force=token in ("built", "dropped") or "built" in (dedup, sketch))
                if plan is not before:
                    rebuilt.append(f"self-check: {plan.summary()}")
                with self._lock:
                    if plan.first_stage != "sketch" and cache.sketch.covered:  # only disk: dropped
                        cache.drop_sketch()
                        rebuilt.append("sketch index dropped (the self-check chose another first stage)")
        with self._lock:
            # mark it optimized unless points arrived meanwhile (they are not in the optimized segments)
            if (segments and self._upserts.get(collection, 0) == upserts and self._closes == closes
                    and self._read_manifest(collection) is not None):
                shard, _ = self._require(collection)
                n_points = int(shard.count(qe.CountRequest(exact=True)))
                _write_json_atomic(self._dir(collection) / OPTIMIZED_FILE,
                                   {"optimized_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                    "points": n_points})
                self._stamped[collection] = True
        return changed, rebuilt

    def _optimize_locked(self, collection: str, shard: Any) -> bool:
        """Edge's optimizers, then a flush: the segments an optimization replaced stay on disk until
        one (which also truncates the write-ahead log). Call under the lock."""
        changed = bool(shard.optimize())
        shard.flush()
        self._unflushed[collection] = self._unoptimized[collection] = 0
        return changed

    def sync_rerank_cache(self, collection: str, batch: int = 64) -> tuple[int, int]:
        """Make the fast-rerank cache hold every point of ``collection``: copy the full vectors of
        points missing from it (collections made before it, or a crash after a Qdrant upsert), drop
        deleted ones, and compact it when dead records outnumber live ones; then keep its token index
        fit (``RerankCache.ensure_token_index``: built once the collection has
        ``token_index_min_pages``). Returns (points added, records dropped by the compaction)."""
        added, _, dropped, _ = self._sync(collection, batch)
        return added, dropped

    def _sync(self, collection: str, batch: int = 64, rescan: bool = True) -> tuple[int, int, int, str]:
        """``sync_rerank_cache``: (points added, deleted points dropped, dead records compacted, what
        ``ensure_token_index`` did). Without ``rescan``, Qdrant's ids are scrolled (O(pages), holding the
        GIL: ~0.1 s per 20k ids here) only when the cache's digest differs from the ids upserts and
        deletes kept (``_live``) or a cache write failed."""
        with self._lock:
            shard, _ = self._require(collection)
            cache = self._rerank_file(collection)
            known = self._live.get(collection)
            if (not rescan and known is not None and collection not in self._rerank_stale
                    and cache.digest() == known.digest()):
                live: set[str] | None = None  # in step: nothing to add or drop
                missing, ghosts = [], set()
            else:
                live_ids = self._scroll_ids(shard, None)
                self._live[collection] = IdDigest(live_ids)  # the truth, as of now
                live = set(live_ids)
                held = cache.ids()
                missing = sorted(live - held)
                ghosts = held - live  # deleted while the cache could not be told
                if ghosts:
                    cache.remove(ghosts)
        added = 0
        for start in range(0, len(missing), batch):
            with self._lock:
                shard, _ = self._require(collection)
                records = shard.retrieve(missing[start : start + batch], with_payload=False,
                                         with_vector=[FULL_VECTOR, ROWS_VECTOR, COLS_VECTOR])
                added += self._rerank_file(collection).append(
                    (str(r.id), r.vector[FULL_VECTOR], r.vector[ROWS_VECTOR], r.vector[COLS_VECTOR])
                    for r in records if isinstance(r.vector, dict)
                )
        dropped = 0
        with self._lock:
            cache = self._rerank_file(collection)
            if cache.dead_records > len(cache):
                dropped = cache.compact(live if live is not None else cache.ids())
            self._rerank_stale.discard(collection)
            (self._dir(collection) / RERANK_STALE_FILE).unlink(missing_ok=True)
        done = ""
        if self.token_index_min_pages > 0:  # takes the lock itself, but not while it trains and assigns
            done = cache.ensure_token_index(self.token_index_min_pages, lock=self._lock)
            if done:
                logger.info("token index of %s: %s (%d pages)", collection, done, len(cache))
        if added or dropped or ghosts:
            logger.info("rerank cache of %s: %d pages added, %d deleted pages dropped, %d dead records compacted",
                        collection, added, len(ghosts), dropped)
        return added, len(ghosts), dropped, done
