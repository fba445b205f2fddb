"""``VectorStore`` on Qdrant Edge (embedded, in-process): one ``EdgeShard`` per collection.

Layout under ``root``::

    root/<collection>/manifest.json   the CollectionManifest (written atomically; its presence
                                      is what makes the collection exist)
    root/<collection>/shard/          the Edge shard (segments, WAL, payload indexes)
    root/<collection>/rerank/         int8 copy of the full multivectors for the fast
                                      two-stage rerank (``pagelens.index.ann.fast_rerank``; a cache), and
                                      in ``tokens/`` its token-level first stage
    root/<collection>/optimized.json  written by a complete ``optimize`` (optimizers, cache sync,
                                      token index), removed before the next upsert: without it the
                                      collection's search structures are stale (``search_status``)
    root/<collection>/rerank_stale    present while a failed rerank-cache append is not synced (the
                                      flag survives a restart); removed by the sync of ``repair``

Named vectors (names in ``pagelens.core.types``), all multivectors with the MaxSim comparator and Dot
distance, so a score is sum over query tokens of the max dot product (= colpali-engine
``score_multi_vector`` on L2-normalised vectors):

* ``FULL_VECTOR`` [n_tokens, dim]: no HNSW (m=0), always brute-force MaxSim.
* ``ROWS_VECTOR`` / ``COLS_VECTOR`` [n_rows|n_cols, dim]: pooled, HNSW (built by ``optimize``).
``two_stage`` search, with ``fast_rerank`` (default), runs the collection's measured plan
(``pagelens.index.ann.self_check``: ``optimize`` measures the recall@5 of each first stage against exact
MaxSim on probe queries made from the collection's own pages and keeps the cheapest that reaches
``recall_target``): a first stage (a scan of every page's centred int8 codes, the pooled row/column
means, or the token index of ``pagelens.index.ann.token_index``) picks candidates, our int8 MaxSim
kernel keeps the plan's few best, and Qdrant scores those exactly (MaxSim on ``FULL_VECTOR``, as
stored: ``full_datatype``), so returned scores and order are exact. A filtered search reranks every
page the filter matches; a collection whose cache is out of step uses Qdrant's pooled HNSW
prefetches until repaired. Measured: ``bench/README.md``.

* ``TEXT_VECTOR``: sparse BM25 of ``payload["text"]`` analysed in the page's ``payload["language"]``
  (``pagelens.index.stores.text_analysis``), IDF modifier, derived at upsert; the analysis spec is the manifest.json
  key ``text_index`` (version 2; version 1, English-only, for collections made before languages: they
  keep that analysis). Collections created before the text index existed lack the key:
  ``has_text_index`` is False and ``search_text`` raises ``TextIndexMissingError``.

``search_status`` says whether those structures are current: ``optimized.json`` present, the rerank
cache holding exactly Qdrant's point ids (an order-independent digest, ``pagelens.index.stores.search_status``), the
token index built where due. A two-stage search of a stale collection stays exact (Qdrant's prefetch
stands in for what is missing) and logs one WARNING; ``repair`` rebuilds what is stale.

Shards are opened lazily and kept open; every shard call runs under one re-entrant lock, so the
store may be shared by threads (calls are serialised). One process per ``root``: Edge locks a shard's
write-ahead log only while it is open, and nothing else (creating, deleting, ``aliases.json``). With a
``lock`` (``pagelens.core.datadir.DataDirLock``, given by ``pagelens.index.stores.factory.open_store``) the store claims the
data dir before it touches collection files, so a second process gets an error naming the first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pagelens.index.ann.fast_rerank import RerankCache, kernel_threads, top_candidates
from pagelens.index.ann.first_stages import first_stages
from pagelens.index.ann.self_check import Probe, SearchPlan, load_plan, run_check, save_plan
from pagelens.index.stores.filters import (
    COLLECTION_NAME_RE,
    INDEXED_KEYWORD_FIELDS,
    sort_hits,
    to_edge_filter,
    validate_collection_name,
    validate_matrix,
)
from pagelens.index.stores.search_status import (
    OPTIMIZE_PENDING,
    RERANK_CACHE,
    TOKEN_INDEX,
    IdDigest,
    RepairResult,
    SearchStatus,
    StaleWarnings,
)
from pagelens.index.stores.text_analysis import (
    TextAnalyzer,
    current_spec,
    detect_language,
    legacy_spec_version,
)

from pagelens.core.datadir import DataDirLock
from pagelens.core.debug_hooks import pause_point
from pagelens.core.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    InvalidRequestError,
    StoreUnavailableError,
    TextIndexMissingError,
)
from pagelens.core.types import (
    COLS_VECTOR,
    FULL_VECTOR,
    ROWS_VECTOR,
    TEXT_VECTOR,
    CollectionManifest,
    PageFilter,
    PagePoint,
    ScoredPage,
    SearchMode,
)

logger = logging.getLogger(__name__)

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


class QdrantEdgeStore:
    """Embedded Qdrant Edge collections under ``root`` (see the module docstring).

    ``full_datatype``: storage of the full multivectors, ``float32`` (default) or ``float16`` (half
    the disk and RAM; MaxSim scores differ by ~1e-3 on 128-d unit vectors).
    ``batch_size``: points per Edge update operation.
    ``fast_rerank``: in ``two_stage`` search, pick the pages Qdrant rescores exactly with our int8
    MaxSim kernel over a cached, centred int8 copy of the full vectors (``pagelens.index.ann.fast_rerank``),
    following the collection's measured plan (module docstring); ``rerank_candidates``: how many pages
    it keeps before the first measurement; ``rerank_device``: where the kernel runs (``cpu``/``cuda``);
    ``recall_target``: the recall@5 the self-check requires of a first stage.
    ``token_index_min_pages``: ``optimize`` builds the token-level first stage (``pagelens.index.ann.token_index``)
    for collections of at least this many pages (0: never), probing ``token_nprobe`` cells per query
    token; searches use it when the self-check finds it reaches the target.
    ``wal_flush_bytes``: flush a collection's shard once about this many bytes of vectors were upserted
    into it. Edge keeps every update in its write-ahead log until a flush (~0.7 MB per 1139-token
    page: 70 GB for 100k pages); a flush persists the segments and truncates the log.
    ``optimize_every_bytes``: run Edge's optimizers inside ``upsert`` once about this many bytes of
    vectors arrived since the last optimize. Edge has no background optimizer: unoptimized points
    pile up in one segment, and optimizing it rewrites it whole (twice its size on disk for a moment:
    60+ GB at 100k pages); optimizing as the collection grows keeps that bounded, and the final
    ``optimize`` short.
    ``text_query_languages``: the languages a text query is analysed under (``TextAnalyzer``).
    """

    def __init__(
        self,
        root: Path,
        *,
        batch_size: int = 64,
        full_datatype: Literal["float32", "float16"] = "float32",
        hnsw_m: int = 8,
        hnsw_ef_construct: int = 100,
        fast_rerank: bool = True,
        rerank_candidates: int = 16,
        rerank_device: str = "cpu",
        token_index_min_pages: int = 5000,
        token_nprobe: int = 16,
        search_threads: int = 1,
        wal_flush_bytes: int = 256 * 1024 * 1024,
        optimize_every_bytes: int = 4 * 1024**3,
        pause_at: str = "",
        lock: DataDirLock | None = None,
        text_query_languages: str = "all",
        recall_target: float = 0.95,
    ) -> None:
        self.root = Path(root).expanduser()
        self.lock = lock  # the data dir's one-process lock (pagelens/core/datadir.py), claimed on first use
        self.text_query_languages = text_query_languages  # text_analysis.TextAnalyzer.query_languages
        self.fast_rerank = bool(fast_rerank) and _torch_available()
        self.rerank_candidates = max(1, int(rerank_candidates))
        self.rerank_device = rerank_device
        self.token_index_min_pages = int(token_index_min_pages)
        self.token_nprobe = max(1, int(token_nprobe))
        self.search_threads = max(0, int(search_threads))  # torch threads of a search's kernels (0: torch's)
        self._rerank: dict[str, RerankCache] = {}
        self._rerank_stale: set[str] = set()  # a cache append failed: Qdrant prefetches until a sync
        self.batch_size = max(1, int(batch_size))
        self.wal_flush_bytes = max(1, int(wal_flush_bytes))
        self._unflushed: dict[str, int] = {}  # collection -> approx. bytes upserted since its last flush
        self.optimize_every_bytes = max(1, int(optimize_every_bytes))
        self._unoptimized: dict[str, int] = {}  # collection -> approx. bytes upserted since its last optimize
        self.full_datatype = full_datatype
        self.hnsw_m = hnsw_m
        self.hnsw_ef_construct = hnsw_ef_construct
        self._shards: dict[str, Any] = {}
        self._manifests: dict[str, CollectionManifest] = {}
        self._text_index: dict[str, int] = {}  # collection -> text spec version (0: no text index)
        self._languages: dict[str, tuple[float, dict[str, int]]] = {}  # collection -> (time, facet)
        self._lock = threading.RLock()
        # search structures (pagelens.index.stores.search_status): Qdrant's live ids (a scroll on first need, then kept
        # by upsert/delete), whether optimized.json is there, upserts counted per collection
        self._live: dict[str, IdDigest] = {}
        self._stamped: dict[str, bool] = {}
        self._upserts: dict[str, int] = {}
        self._closes = 0  # close() calls: a repair finishing after one neither marks nor reopens anything
        self._cache_diff: dict[str, tuple[tuple[Any, ...], tuple[int, int]]] = {}  # memo of the last mismatch
        self.stale_warnings = StaleWarnings(logger)
        self.recall_target = float(recall_target)  # the self-check's recall@5 target (index/ann/self_check.py)
        self._plans: dict[str, SearchPlan] = {}  # collection -> its measured search plan
        self._exact_warned: set[str] = set()  # collections whose plan is exact: warned once
        self.pause_at = pause_at  # debug hook (pagelens.core.debug_hooks), Settings.tuning.debug_pause_at

    # --- internals -----------------------------------------------------------------------

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
            cache = self._rerank[name] = RerankCache(self._dir(name) / RERANK_DIR)
            cache.warm()  # background readahead: searches right after a start hit RAM, not disk
        return cache

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
        if n_points and (not self._is_stamped(name) or self._unoptimized.get(name)):
            reasons.append((OPTIMIZE_PENDING, "not optimized since pages were last written (the HNSW graphs of "
                            "the pooled vectors, used by filtered searches, may be missing or incomplete)"))
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
        status = SearchStatus.of(name, reasons, n_points)
        if self.fast_rerank:
            status = dataclasses.replace(status, self_check=self._plan(name).to_dict())
        return status

    def _edge_config(self, dim: int) -> Any:
        qe = _edge()
        maxsim = qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim)
        full_dtype = (
            qe.VectorStorageDatatype.Float16 if self.full_datatype == "float16" else qe.VectorStorageDatatype.Float32
        )
        pooled_hnsw = qe.HnswIndexConfig(
            m=self.hnsw_m, ef_construct=self.hnsw_ef_construct, full_scan_threshold=10_000
        )
        return qe.EdgeConfig(
            vectors={
                FULL_VECTOR: qe.EdgeVectorParams(
                    size=dim,
                    distance=qe.Distance.Dot,
                    multivector_config=maxsim,
                    datatype=full_dtype,
                    # mmapped, not read into RAM at load: searches touch only the pages they rescore
                    # (the fast rerank reads its own cache), so a collection may outgrow RAM
                    on_disk=True,
                    hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000),
                ),
                ROWS_VECTOR: qe.EdgeVectorParams(
                    size=dim, distance=qe.Distance.Dot, multivector_config=maxsim, hnsw_config=pooled_hnsw
                ),
                COLS_VECTOR: qe.EdgeVectorParams(
                    size=dim, distance=qe.Distance.Dot, multivector_config=maxsim, hnsw_config=pooled_hnsw
                ),
            },
            sparse_vectors={TEXT_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        )

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

    # --- collections ---------------------------------------------------------------------

    def create_collection(self, manifest: CollectionManifest) -> None:
        """Create the shard (named vectors, payload indexes) and then the manifest."""
        qe = _edge()
        name = validate_collection_name(manifest.name)
        if manifest.dim < 1:
            raise InvalidRequestError(f"manifest dim must be >= 1, got {manifest.dim}")
        with self._lock:
            self.claim()
            if self._read_manifest(name) is not None:
                raise CollectionExistsError(f"collection '{name}' already exists", collection=name)
            cdir = self._dir(name)
            if cdir.exists():  # leftover of an interrupted create or delete: no manifest, no collection
                logger.warning("removing incomplete collection directory %s", cdir)
                shutil.rmtree(cdir)
            cdir.mkdir(parents=True)
            try:
                shard = qe.EdgeShard.create(str(cdir / SHARD_DIR), self._edge_config(manifest.dim))
                for field in INDEXED_KEYWORD_FIELDS:
                    shard.update(qe.UpdateOperation.create_field_index(field, qe.PayloadSchemaType.Keyword))
                shard.flush()
                _write_json_atomic(cdir / MANIFEST_FILE, {**manifest.to_dict(), TEXT_INDEX_KEY: current_spec()})
            except Exception:
                shutil.rmtree(cdir, ignore_errors=True)
                raise
            self._shards[name] = shard
            self._manifests[name] = manifest
            self._text_index[name] = legacy_spec_version(current_spec())
            self._live[name] = IdDigest()
            self._stamped[name] = False
            logger.info("created edge collection %s (dim %d) at %s", name, manifest.dim, cdir)

    def get_manifest(self, collection: str) -> CollectionManifest | None:
        with self._lock:
            return self._read_manifest(collection)

    def list_collections(self) -> list[str]:
        if not self.root.is_dir():
            return []
        names = [
            p.name
            for p in self.root.iterdir()
            if COLLECTION_NAME_RE.fullmatch(p.name) and p.is_dir() and (p / MANIFEST_FILE).is_file()
        ]
        return sorted(names)

    def delete_collection(self, collection: str) -> None:
        with self._lock:
            self.claim()
            if self._read_manifest(collection) is None:
                raise CollectionNotFoundError(collection)
            shard = self._shards.pop(collection, None)
            if shard is not None:
                shard.close()
            self._manifests.pop(collection, None)
            self._text_index.pop(collection, None)
            self._languages.pop(collection, None)
            cache = self._rerank.pop(collection, None)
            if cache is not None:
                cache.close()
            self._rerank_stale.discard(collection)
            self._plans.pop(collection, None)
            self._exact_warned.discard(collection)
            self._unflushed.pop(collection, None)
            self._unoptimized.pop(collection, None)
            for memo in (self._live, self._stamped, self._upserts, self._cache_diff):
                memo.pop(collection, None)  # type: ignore[attr-defined]
            self.stale_warnings.forget(collection)
            cdir = self._dir(collection)
            (cdir / MANIFEST_FILE).unlink(missing_ok=True)  # gone for readers before the data goes
            shutil.rmtree(cdir, ignore_errors=True)
            logger.info("deleted edge collection %s", collection)

    # --- points --------------------------------------------------------------------------

    def upsert(self, collection: str, points: Sequence[PagePoint]) -> None:
        """Insert or replace points, ``batch_size`` per update. Vectors: float32 [n, dim] each."""
        qe = _edge()
        with self._lock:
            shard, manifest = self._require(collection)
            spec_version = self._text_version(collection)
            analyzer = TextAnalyzer(spec_version) if spec_version else None
            edge_points = []
            cached: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
            for p in points:
                if not _valid_uuid(p.id):
                    raise InvalidRequestError(f"point id {p.id!r} is not a UUID")
                vectors = {
                    FULL_VECTOR: validate_matrix(p.embedding.full, manifest.dim, f"point {p.id} full"),
                    ROWS_VECTOR: validate_matrix(p.embedding.rows, manifest.dim, f"point {p.id} rows"),
                    COLS_VECTOR: validate_matrix(p.embedding.cols, manifest.dim, f"point {p.id} cols"),
                }
                payload = dict(p.payload)
                if analyzer is not None:  # empty text (scans without OCR) -> empty sparse vector: visual only
                    language = payload.get("language")
                    if analyzer.language_aware and not language:  # the indexer always sets it; else detect
                        language = detect_language(payload.get("text"))[0]
                    vectors[TEXT_VECTOR] = qe.SparseVector(*analyzer.encode_document(payload.get("text"), language))
                edge_points.append(qe.Point(str(p.id), vectors, payload))
                cached.append((str(p.id), vectors[FULL_VECTOR], vectors[ROWS_VECTOR], vectors[COLS_VECTOR]))
            if edge_points:
                self._upserts[collection] = self._upserts.get(collection, 0) + 1
                self._unstamp(collection)  # before Qdrant has the points: a crash from here on leaves it stale
            try:
                for start in range(0, len(edge_points), self.batch_size):
                    shard.update(qe.UpdateOperation.upsert_points(edge_points[start : start + self.batch_size]))
            except BaseException:
                self._live.pop(collection, None)  # some batches may be in: scroll again when needed
                raise
            live = self._live.get(collection)
            if live is not None:
                live.add(pid for pid, _, _, _ in cached)
            self._languages.pop(collection, None)
            new_bytes = sum(4 * (full.size + rows.size + cols.size) for _, full, rows, cols in cached)
            self._unflushed[collection] = self._unflushed.get(collection, 0) + new_bytes
            self._unoptimized[collection] = self._unoptimized.get(collection, 0) + new_bytes
            if self._unoptimized[collection] >= self.optimize_every_bytes:
                logger.info("optimizing %s after %.1f GB of new vectors (Edge has no background optimizer)",
                            collection, self._unoptimized[collection] / 1e9)
                self._optimize_locked(collection, shard)
            elif self._unflushed[collection] >= self.wal_flush_bytes:
                shard.flush()  # persists the segments and truncates the write-ahead log
                self._unflushed[collection] = 0
            if self.fast_rerank:  # after Qdrant: a point missing from the cache is scored by Qdrant
                pause_point(self.pause_at, "cache_append")
                try:
                    self._rerank_file(collection).append(cached)
                except OSError as exc:
                    self._rerank_stale.add(collection)
                    with contextlib.suppress(OSError):  # persisted (best effort: the failing disk may refuse it)
                        (self._dir(collection) / RERANK_STALE_FILE).touch()
                    logger.warning("could not cache vectors for the fast rerank of %s (%s); those pages "
                                   "are reranked by Qdrant until `optimize` backfills them", collection, exc)
            logger.debug("upserted %d points into %s", len(edge_points), collection)

    def delete_document(self, collection: str, doc_id: str) -> int:
        qe = _edge()
        flt = to_edge_filter(PageFilter(doc_ids=[doc_id]))
        with self._lock:
            shard, _ = self._require(collection)
            ids = self._scroll_ids(shard, flt)
            if ids:
                try:
                    shard.update(qe.UpdateOperation.delete_points_by_filter(flt))
                except BaseException:
                    self._live.pop(collection, None)
                    raise
                live = self._live.get(collection)
                if live is not None:
                    live.discard(ids)
                self._languages.pop(collection, None)
                if self.fast_rerank:
                    try:
                        self._rerank_file(collection).remove(ids)
                    except OSError as exc:  # a deleted page left in the cache is dropped by Qdrant's exact stage
                        logger.warning("could not mark %d deleted pages in the rerank cache of %s: %s",
                                       len(ids), collection, exc)
            return len(ids)

    def set_payload(self, collection: str, doc_id: str, values: dict[str, Any]) -> int:
        qe = _edge()
        flt = to_edge_filter(PageFilter(doc_ids=[doc_id]))
        with self._lock:
            shard, _ = self._require(collection)
            n = int(shard.count(qe.CountRequest(exact=True, filter=flt)))
            if n:
                shard.update(qe.UpdateOperation.set_payload_by_filter(flt, dict(values)))
            return n

    def _scroll_ids(self, shard: Any, flt: Any) -> list[str]:
        """Ids of every point matching ``flt``. Call under the lock."""
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

    def count(self, collection: str, page_filter: PageFilter | None = None) -> int:
        qe = _edge()
        flt = to_edge_filter(page_filter)
        with self._lock:
            shard, _ = self._require(collection)
            return int(shard.count(qe.CountRequest(exact=True, filter=flt)))

    def iter_payloads(
        self, collection: str, page_filter: PageFilter | None = None, keys: Sequence[str] | None = None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Scrolls ``SCROLL_PAGE`` points at a time; the lock is held per page, not across yields.
        ``keys``: payload selector (only these keys are read). Raises ``CollectionNotFoundError`` at
        the call, not at the first ``next``."""
        flt = to_edge_filter(page_filter)
        with self._lock:
            self._require(collection)
        return self._scroll(collection, flt, True if keys is None else [str(k) for k in keys])

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

    # --- search --------------------------------------------------------------------------

    def search(
        self,
        collection: str,
        query: np.ndarray,
        limit: int,
        mode: SearchMode = "two_stage",
        page_filter: PageFilter | None = None,
        prefetch_limit: int = 100,
    ) -> list[ScoredPage]:
        """MaxSim top ``limit`` for ``query`` [n_q, dim] float32 (see ``VectorStore.search``)."""
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
                return self._search_fast(shard, q, query, limit, flt, max(prefetch_limit, limit), collection)
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
        return sort_hits([ScoredPage(id=str(h.id), score=float(h.score), payload=dict(h.payload or {})) for h in hits])

    def _search_fast(self, shard: Any, q: list[list[float]], query: np.ndarray, limit: int, flt: Any, k: int,
                     collection: str) -> list[ScoredPage]:
        """``two_stage`` as the collection's measured plan says (``pagelens.index.ann.self_check``). Call
        under the lock.

        1. Candidates, when the rerank cache holds exactly the collection's points: the plan's first
           stage (``scan``: every page's int8 codes, the default until the collection is measured;
           ``pooled`` / ``tokens``: the plan's number of candidates) or, with a filter, every page the
           filter matches; a plan of ``exact`` (no first stage reached the target recall) goes to
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
        with kernel_threads(self.search_threads):
            if complete and flt is None:
                ids = self._plan_candidates(cache, plan, query, keep)
            elif complete:  # a filter: the pages it matches, all reranked by the int8 kernel
                ids = self._scroll_ids(shard, flt)
            else:
                ids = self._prefetch_ids(shard, q, k, flt)
            if len(ids) > keep:
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

    def _plan_candidates(self, cache: RerankCache, plan: SearchPlan, query: np.ndarray, keep: int) -> list[str]:
        """The first stage of ``plan`` (``pagelens.index.ann.first_stages``) for an unfiltered search: its
        candidates, topped up from the int8 scan when it found fewer than ``keep``. Call under the lock."""
        stages = first_stages(cache, self.rerank_device, self.token_nprobe, self.token_index_min_pages > 0)
        stage = stages.get(plan.first_stage, stages["scan"])  # "tokens" while its index is not ready: scan
        if stage.name == "scan":
            return stage.candidates(query, keep)
        ids = stage.candidates(query, max(plan.candidates, keep))
        if len(ids) < keep:  # few pages share a probed cell with the query: top up from the int8 scan
            found = set(ids)
            ids = ids + [i for i in stages["scan"].candidates(query, keep) if i not in found]
        return ids

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
            rows = sum(cache._lens[r] for r in cache._load().values())
        probe = self._probe(collection, pages, rows)
        with kernel_threads(self.search_threads):
            plan = run_check(probe, self.recall_target)
        with self._lock:
            save_plan(self._dir(collection) / RERANK_DIR, plan)
            self._plans[collection] = plan
            self._exact_warned.discard(collection)
        logger.info("self-check of %s in %.1f s: %s; geometry %s", collection, plan.seconds, plan.summary(),
                    plan.geometry)
        return plan

    def _probe(self, collection: str, pages: int, rows: int) -> Probe:
        """The store's side of the self-check: each call takes the lock on its own."""

        def locked(fn: Any) -> Any:
            def run(*args: Any) -> Any:
                with self._lock:
                    return fn(*args)
            return run

        def shard() -> Any:
            return self._require(collection)[0]

        def cache() -> RerankCache:
            return self._rerank_file(collection)

        def sample_tokens(n: int, rng: np.random.Generator) -> list[np.ndarray]:
            ids = sorted(cache().ids())
            chosen = [ids[i] for i in rng.choice(len(ids), size=min(n, len(ids)), replace=False)]
            vectors = self.get_full_vectors(collection, chosen)
            return [vectors[i] for i in chosen if i in vectors]

        def exact_top(query: np.ndarray, k: int) -> list[tuple[str, float]]:
            hits = self._exact_hits(shard(), query.tolist(), k, None, with_payload=False)
            return [(h.id, h.score) for h in hits]

        def exact_scores(query: np.ndarray, ids: Sequence[str]) -> dict[str, float]:
            if not ids:
                return {}
            hits = self._exact_hits(shard(), query.tolist(), len(ids), None, ids=ids, with_payload=False)
            return {h.id: h.score for h in hits}

        with self._lock:
            built = first_stages(cache(), self.rerank_device, self.token_nprobe, self.token_index_min_pages > 0)
        stages = {name: locked(stage.candidates) for name, stage in built.items() if name != "scan"}
        return Probe(sample_tokens=sample_tokens, exact_top=locked(exact_top), exact_scores=locked(exact_scores),
                     scan=locked(lambda q, m: cache().scan(q, m)),
                     rerank=locked(lambda q, ids: cache().maxsim(q, ids, self.rerank_device)),
                     stages=stages, pages=pages, rows=rows)

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

    def _text_version(self, name: str) -> int:
        """Version of the text index spec manifest.json records (0: none). Call under the lock, after
        ``_require``."""
        cached = self._text_index.get(name)
        if cached is None:
            try:
                data = json.loads((self._dir(name) / MANIFEST_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = {}
            cached = self._text_index[name] = legacy_spec_version(data.get(TEXT_INDEX_KEY))
        return cached

    def _has_text(self, name: str) -> bool:
        return self._text_version(name) > 0

    def has_text_index(self, collection: str) -> bool:
        with self._lock:
            self._require(collection)
            return self._has_text(collection)

    def text_spec_version(self, collection: str) -> int:
        """0: no text index; 1: English-only (made before languages); 2: per-language analysis."""
        with self._lock:
            self._require(collection)
            return self._text_version(collection)

    def text_languages(self, collection: str) -> dict[str, int]:
        """{language code: pages} of the collection (a facet on ``payload["language"]``; cached for
        ``LANGUAGES_TTL_S`` and dropped on every write through this store)."""
        qe = _edge()
        with self._lock:
            shard, _ = self._require(collection)
            cached = self._languages.get(collection)
            if cached is not None and time.monotonic() - cached[0] < LANGUAGES_TTL_S:
                return dict(cached[1])
            try:
                response = shard.facet(qe.FacetRequest("language", limit=1000, exact=True))
                found = {str(h.value): int(h.count) for h in response.hits}
            except Exception as exc:  # no payload index on old collections: count by scrolling
                logger.debug("facet on language of %s failed (%s): counting by scroll", collection, exc)
                found = {}
                for _, payload in self._scroll(collection, None):
                    code = str(payload.get("language") or "und")
                    found[code] = found.get(code, 0) + 1
            self._languages[collection] = (time.monotonic(), found)
            return dict(found)

    def search_text(
        self, collection: str, text: str, limit: int, page_filter: PageFilter | None = None
    ) -> list[ScoredPage]:
        """BM25 top ``limit`` for ``text`` (see ``VectorStore.search_text``)."""
        qe = _edge()
        if limit < 1:
            raise InvalidRequestError(f"limit must be >= 1, got {limit}")
        flt = to_edge_filter(page_filter)
        with self._lock:
            self._require(collection)
            version = self._text_version(collection)
            if not version:
                raise TextIndexMissingError(collection)
            analyzer = TextAnalyzer(version, self.text_query_languages)
            languages = self.text_languages(collection) if analyzer.needs_collection_languages() else {}
            indices, values = analyzer.encode_query(text, languages)
            if not indices:  # only stopwords/punctuation: nothing can match
                return []
            shard, _ = self._require(collection)
            hits = shard.query(
                qe.QueryRequest(
                    limit=limit,
                    query=qe.Query.Nearest(qe.SparseVector(indices, values), using=TEXT_VECTOR),
                    filter=flt,
                    with_payload=True,
                )
            )
        return sort_hits([ScoredPage(id=str(h.id), score=float(h.score), payload=dict(h.payload or {})) for h in hits])

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

    # --- maintenance ---------------------------------------------------------------------

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
        """Rebuild what ``search_status`` finds stale (``force``: run the whole ``optimize`` anyway):
        Edge's optimizers (HNSW graphs) and a flush, the rerank cache synced with the points, the token
        index built / caught up; then the collection is marked optimized (unless points were upserted
        meanwhile). Blocking: minutes per 100k pages when the token index is (re)built. Edge's
        optimizers hold the Python GIL while they run (measured: no other thread of the process ran for
        the 6.2 s of a 6000-page HNSW build); the cache sync and token index build do not."""
        started = time.perf_counter()
        before = self.search_status(collection)
        if before.current and not force:
            return RepairResult(collection, before, before, [], time.perf_counter() - started)
        closes = self._closes
        _, rebuilt = self._optimize_all(collection)
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

    def _optimize_all(self, collection: str) -> tuple[bool, list[str]]:
        """``optimize``: (whether Edge's optimizers changed segments, what was rebuilt, human readable)."""
        qe = _edge()
        with self._lock:
            shard, _ = self._require(collection)
            upserts, closes = self._upserts.get(collection, 0), self._closes
            changed = self._optimize_locked(collection, shard)
        pause_point(self.pause_at, "optimize")
        rebuilt = ["HNSW graphs of the pooled vectors (Qdrant Edge segment optimizers)"] if changed else []
        if self.fast_rerank:
            added, ghosts, dropped, token = self._sync(collection)
            if added or ghosts:
                rebuilt.append(f"rerank cache: {added} pages added, {ghosts} deleted pages dropped")
            if dropped:
                rebuilt.append(f"rerank cache compacted: {dropped} dead records dropped")
            if token:
                rebuilt.append(f"token index {token}")
            with self._lock:
                complete = RERANK_CACHE not in self._status_locked(collection).codes
                before = self._plans.get(collection)
            if complete:  # a first stage built or dropped: measure again
                plan = self.self_check(collection, force=token in ("built", "dropped"))
                if plan is not before:
                    rebuilt.append(f"self-check: {plan.summary()}")
        with self._lock:
            # mark it optimized unless points arrived meanwhile (they are not in the optimized segments)
            if (self._upserts.get(collection, 0) == upserts and self._closes == closes
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

    def _sync(self, collection: str, batch: int = 64) -> tuple[int, int, int, str]:
        """``sync_rerank_cache``: (points added, deleted points dropped, dead records compacted, what
        ``ensure_token_index`` did)."""
        with self._lock:
            shard, _ = self._require(collection)
            live_ids = self._scroll_ids(shard, None)
            self._live[collection] = IdDigest(live_ids)  # the truth, as of now
            live = set(live_ids)
            cache = self._rerank_file(collection)
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
                dropped = cache.compact(live)
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

    def close(self) -> None:
        """Flush and close every open shard. Safe to call twice; the store reopens lazily."""
        with self._lock:
            self._closes += 1
            for cache in self._rerank.values():
                cache.close()
            self._rerank = {}
            shards, self._shards = self._shards, {}
            self._unflushed, self._unoptimized = {}, {}
            self._live, self._stamped, self._cache_diff = {}, {}, {}
            for name, shard in shards.items():
                try:
                    shard.flush()
                    shard.close()
                except Exception:  # keep closing the others
                    logger.exception("failed to close edge shard %s", name)
            if self.lock is not None:  # no shard open: another process may take the data dir
                self.lock.release()

    def __enter__(self) -> QdrantEdgeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
