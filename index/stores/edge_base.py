"""The part of the Qdrant Edge store (``pagelens.index.stores.edge_store``) every other part stands on:
its files and constants, the shared state, opening a collection's shard and scrolling its ids. The
store is split by concern: ``edge_search`` (visual search), ``edge_text`` (BM25 text search),
``edge_maintenance`` (search status, optimize/repair, the rerank cache sync, the self-check) and
``edge_store`` (collections, points, the class itself)."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pagelens.index.ann.fast_rerank import RerankCache, search_workers
from pagelens.index.ann.self_check import SearchPlan
from pagelens.index.stores.filters import (
    validate_collection_name,
)
from pagelens.index.stores.readers_first import ReadersFirst
from pagelens.index.stores.search_status import (
    IdDigest,
    SearchStatus,
    StaleWarnings,
)

from pagelens.core.datadir import DataDirLock
from pagelens.core.errors import (
    CollectionNotFoundError,
    StoreUnavailableError,
)
from pagelens.core.types import (
    CollectionManifest,
    ScoredPage,
)

# every part logs as the store (one logger name for the operator, and for tests)
logger = logging.getLogger("pagelens.index.stores.edge_store")

MANIFEST_FILE = "manifest.json"
TEXT_INDEX_KEY = "text_index"  # extra manifest.json key: the BM25 spec of TEXT_VECTOR
SHARD_DIR = "shard"
RERANK_DIR = "rerank"
OPTIMIZED_FILE = "optimized.json"  # written by a complete optimize, removed before the next upsert
RERANK_STALE_FILE = "rerank_stale"  # a rerank-cache append failed (persists the flag across restarts), removed by a sync
SCROLL_PAGE = 256
LANGUAGES_TTL_S = 60.0  # s: how long a collection's language facet is reused (other processes may write)


def _edge() -> Any:
    try:
        import qdrant_edge
    except ImportError as exc:  # pragma: no cover - installed with pagelens
        raise StoreUnavailableError(
            "the embedded store needs qdrant-edge-py: pip install qdrant-edge-py "
            "(or set PAGELENS_QDRANT_URL to use a Qdrant server)"
        ) from exc
    return qdrant_edge


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _torch_available() -> bool:
    """Whether torch is installed (the fast rerank needs it; without it Qdrant reranks everything).
    Looked up, not imported: opening a store must stay cheap for commands that never search."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def _valid_uuid(value: str) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


EXACT_CALL_ROWS = 131_072
"""Token rows per Qdrant exact call of the self-check and of exact searches. Edge holds the Python GIL through a query, ~0.24 ms
per 1139-token page (measured 2026-12-07 on the 2-core AMD EPYC, synthetic aniso pages, float16: 291 ms
for 1,200 pages), so one exact search of every page stalled every other thread of a server (``/healthz``)
for ~0.5 s at 2,500 pages and ~2 s at 10,000, 32 times per check. Split by ids into calls of this many
rows (~115 such pages, ~30 ms each), outside the store's lock, the check costs ~1/3 more (the id filter)
and nothing waits on it long. Exact searches (``mode="exact"``, a plan of ``exact``) are split the same
way (``exact_parts``)."""


CHECK_CALL_WAIT_S = 0.05
"""The longest the self-check waits for the searches in flight before each of its exact calls (a fresh wait
per call, ``ReadersFirst``). Each call holds the GIL ~30 ms, and a search hands the GIL back and forth many
times, so a search running beside a stream of them took 300-470 ms instead of ~25 (2,000 aniso pages,
the long-document upload of ``bench/search_during_ingest.py``, EPYC, 2026-12-07); one wait per call lets
a search overlap at most about one call. Searches last ~25 ms here: under an endless stream of searches
the check takes up to this much longer per call (~1,150 calls per check at 2,000 1139-token pages)."""


ASSUMED_PAGE_TOKENS = 1139
"""Tokens per page ``exact_parts`` assumes where the collection's are not counted (no int8 cache in step):
a colSmol page at its default resolution, so ~115 pages per exact call."""


def exact_parts(ids: list[str], pages: int, rows: int) -> list[list[str]]:
    """``ids`` in consecutive parts of about ``EXACT_CALL_ROWS`` token rows each, for a collection of ``pages``
    pages holding ``rows`` token rows in all (every page taken as of the mean length); at least one page per
    part, none for an empty list."""
    per_call = max(1, EXACT_CALL_ROWS * max(1, pages) // max(1, rows))
    return [ids[lo : lo + per_call] for lo in range(0, len(ids), per_call)]


class EdgeBase:
    """Files, state and shard access shared by the parts of ``QdrantEdgeStore``."""

    # the state every part works on (set by ``QdrantEdgeStore.__init__``)
    root: Path
    lock: DataDirLock | None
    text_query_languages: str
    fast_rerank: bool
    rerank_candidates: int
    rerank_device: str
    token_index_min_pages: int
    sketch_min_rows: int
    token_nprobe: int
    search_threads: int
    readers: ReadersFirst
    wal_flush_bytes: int
    optimize_every_bytes: int
    full_datatype: str
    hnsw_m: int
    hnsw_ef_construct: int
    recall_target: float
    pause_at: str
    stale_warnings: StaleWarnings
    _rerank: dict[str, RerankCache]
    _rerank_stale: set[str]
    _unflushed: dict[str, int]
    _unoptimized: dict[str, int]
    _shards: dict[str, Any]
    _manifests: dict[str, CollectionManifest]
    _text_index: dict[str, int]
    _languages: dict[str, tuple[float, dict[str, int]]]
    _lock: threading.RLock
    _live: dict[str, IdDigest]
    _stamped: dict[str, bool]
    _upserts: dict[str, int]
    _closes: int
    _cache_diff: dict[str, tuple[tuple[Any, ...], tuple[int, int]]]
    _plans: dict[str, SearchPlan]
    _exact_warned: set[str]

    if TYPE_CHECKING:  # defined by the other parts (edge_search.py, edge_maintenance.py)
        def _status_locked(self, name: str) -> SearchStatus: ...
        def _plan(self, collection: str) -> SearchPlan: ...
        def _exact_hits(self, shard: Any, q: list[list[float]], limit: int, flt: Any,
                        ids: Sequence[str] | None = None, with_payload: bool = True) -> list[ScoredPage]: ...
        def get_full_vectors(self, collection: str, ids: Sequence[str]) -> dict[str, np.ndarray]: ...
        def _outside(self, collection: str, shard: Any, call: Callable[[Any], Any]) -> Any: ...
        def _exact_in_parts(self, collection: str, shard: Any, q: list[list[float]], limit: int, flt: Any,
                            parts: Sequence[Sequence[str]], with_payload: bool = True,
                            before_each: Callable[[], None] | None = None) -> list[ScoredPage]: ...

    def claim(self) -> None:
        """Take the data dir's lock now (a no-op without one or when held). Raises
        ``DataDirInUseError`` naming the process that holds it. Every operation that opens, creates or
        deletes collection files calls it first; ``close`` gives it back."""
        if self.lock is not None:
            self.lock.acquire()

    def _dir(self, name: str) -> Path:
        return self.root / validate_collection_name(name)

    def _rerank_file(self, name: str) -> RerankCache:
        """The collection's int8 vector cache (fast rerank). Call under the lock."""
        cache = self._rerank.get(name)
        if cache is None:
            cache = self._rerank[name] = RerankCache(self._dir(name) / RERANK_DIR, search_workers(self.search_threads))
            cache.warm()  # background readahead: searches right after a start hit RAM, not disk
        return cache

    def _read_manifest(self, name: str) -> CollectionManifest | None:
        cached = self._manifests.get(name)
        if cached is not None:
            return cached
        path = self._dir(name) / MANIFEST_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StoreUnavailableError(f"cannot read the manifest {path}: {exc}", path=str(path)) from exc
        manifest = CollectionManifest.from_dict(data)
        self._manifests[name] = manifest
        return manifest

    def _require(self, name: str) -> tuple[Any, CollectionManifest]:
        """(open shard, manifest); raises ``CollectionNotFoundError``. Call under the lock."""
        manifest = self._read_manifest(name)
        if manifest is None:
            raise CollectionNotFoundError(name)
        shard = self._shards.get(name)
        if shard is None:
            self.claim()
            path = self._dir(name) / SHARD_DIR
            try:
                shard = _edge().EdgeShard.load(str(path))
            except Exception as exc:
                raise StoreUnavailableError(
                    f"cannot open the embedded Qdrant Edge shard {path}: {exc}. Is another pagelens "
                    "process using this data dir? Stop it, or point PAGELENS_DATA_DIR elsewhere.",
                    path=str(path),
                ) from exc
            self._shards[name] = shard
            if (self._dir(name) / RERANK_STALE_FILE).exists():  # a failed cache append of an earlier run
                self._rerank_stale.add(name)
            logger.debug("opened edge shard %s", path)
        return shard, manifest

    def _scroll_ids(self, shard: Any, flt: Any) -> list[str]:
        """Ids of every point matching ``flt``. Under the lock, or through ``_outside``."""
        qe = _edge()
        ids: list[str] = []
        offset: Any = None
        while True:
            records, offset = shard.scroll(
                qe.ScrollRequest(offset=offset, limit=4096, filter=flt, with_payload=False, with_vector=False)
            )
            ids.extend(str(r.id) for r in records)
            if offset is None or not records:
                return ids

    def _scroll(self, collection: str, flt: Any, with_payload: Any = True) -> Iterator[tuple[str, dict[str, Any]]]:
        qe = _edge()
        offset: Any = None
        while True:
            with self._lock:
                shard, _ = self._require(collection)
                records, offset = shard.scroll(
                    qe.ScrollRequest(offset=offset, limit=SCROLL_PAGE, filter=flt, with_payload=with_payload,
                                     with_vector=False)
                )
            for rec in records:
                yield str(rec.id), dict(rec.payload or {})
            if offset is None or not records:
                return
