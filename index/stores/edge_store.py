"""``VectorStore`` on Qdrant Edge (embedded, in-process): one ``EdgeShard`` per collection.

Layout under ``root``::

    root/<collection>/manifest.json   the CollectionManifest (written atomically; its presence
                                      is what makes the collection exist)
    root/<collection>/shard/          the Edge shard (segments, WAL, payload indexes)
    root/<collection>/rerank/         int8 copy of the full multivectors for the fast
                                      two-stage rerank (``pagelens.index.ann.fast_rerank``; a cache), and
                                      in ``tokens/`` its token-level first stage
    root/<collection>/optimized.json  written by a complete ``optimize`` (Edge's segment optimizer,
                                      cache sync, token index), removed before the next upsert
                                      (``search_status``: ``segments_pending``)
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

``search_status`` says whether those structures are current: the rerank cache holding exactly Qdrant's
point ids (an order-independent digest, ``pagelens.index.stores.search_status``), the token and dedup
indexes built where due, the plan measured; ``optimized.json`` (Edge's segment optimizer ran after the
last write) only where Qdrant's pooled prefetch picks the candidates, else it is ``segments_pending``. A
two-stage search of a stale collection stays exact (Qdrant's prefetch stands in for what is missing)
and logs one WARNING; ``repair`` rebuilds what is stale.

Shards are opened lazily and kept open; every shard call runs under one re-entrant lock, so the
store may be shared by threads (calls are serialised). Searches run their whole-collection first stage
outside it, and ``upsert`` writes page by page behind them (``pagelens.index.stores.readers_first``). One process per ``root``: Edge locks a shard's
write-ahead log only while it is open, and nothing else (creating, deleting, ``aliases.json``). With a
``lock`` (``pagelens.core.datadir.DataDirLock``, given by ``pagelens.index.stores.factory.open_store``) the store claims the
data dir before it touches collection files, so a second process gets an error naming the first.

The class is put together from parts split by concern: ``edge_base`` (files, state, opening a shard),
``edge_search`` (visual search), ``edge_text`` (BM25) and ``edge_maintenance`` (status, optimize and
repair, the rerank cache sync, the self-check); this module holds collections and points.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pagelens.index.ann.fast_rerank import RerankCache
from pagelens.index.ann.self_check import SearchPlan
from pagelens.index.ann.sketch_index import MIN_ROWS as SKETCH_MIN_ROWS
from pagelens.index.stores.edge_base import (  # noqa: F401 - the files are named here for callers
    MANIFEST_FILE,
    OPTIMIZED_FILE,
    RERANK_DIR,
    RERANK_STALE_FILE,
    SHARD_DIR,
    TEXT_INDEX_KEY,
    _edge,
    _torch_available,
    _valid_uuid,
    _write_json_atomic,
    logger,
)
from pagelens.index.stores.edge_maintenance import EdgeMaintenance
from pagelens.index.stores.edge_search import EdgeSearch
from pagelens.index.stores.edge_text import EdgeText
from pagelens.index.stores.filters import (
    COLLECTION_NAME_RE,
    INDEXED_KEYWORD_FIELDS,
    to_edge_filter,
    validate_collection_name,
    validate_matrix,
)
from pagelens.index.stores.readers_first import DEFAULT_MAX_WAIT_S, ReadersFirst
from pagelens.index.stores.search_status import (
    IdDigest,
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
)
from pagelens.core.types import (
    COLS_VECTOR,
    FULL_VECTOR,
    ROWS_VECTOR,
    TEXT_VECTOR,
    CollectionManifest,
    PageFilter,
    PagePoint,
)

Validated = tuple[str, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]  # id, full, rows, cols, payload


def _validated(points: Sequence[PagePoint], dim: int) -> list[Validated]:
    """(id, full, rows, cols, payload) of each point, vectors validated as float32 [n, ``dim``], before
    anything is written. Raises ``InvalidRequestError``."""
    out: list[Validated] = []
    for p in points:
        if not _valid_uuid(p.id):
            raise InvalidRequestError(f"point id {p.id!r} is not a UUID")
        out.append((str(p.id), validate_matrix(p.embedding.full, dim, f"point {p.id} full"),
                    validate_matrix(p.embedding.rows, dim, f"point {p.id} rows"),
                    validate_matrix(p.embedding.cols, dim, f"point {p.id} cols"), dict(p.payload)))
    return out


WAL_FLUSH_BYTES = 8 * 1024 * 1024  # QdrantEdgeStore's wal_flush_bytes (its docstring)
WRITE_BATCH = 64  # at most this many pages per Edge update and cache append while no search runs,
WRITE_TOKENS = 8192  # and about this many full-vector tokens (at least one page): Edge's update holds the
# Python GIL throughout, ~4.5 ms per 1139-token page whatever the batch (measured 2026-12-07 on the 2-core
# AMD EPYC: 5.3 ms for 1 page, 35 for 8, 183 for 32, a thread beside it waiting 165 ms of those;
# synthetic aniso pages, float16), so 64 such pages stalled every other thread (/healthz) ~280 ms


def _edge_point(item: Validated, analyzer: TextAnalyzer | None) -> Any:
    """Edge's point for a validated one: the vectors as Python lists (Edge takes them ~6x faster than numpy
    arrays: 0.05 vs 0.29 s per 8 pages of 1139 x 128, measured 2026-12-06 on the 2-core Intel Xeon, load
    ~7); with a text index (``analyzer``) the sparse BM25 vector of ``payload["text"]`` in the page's
    language."""
    qe = _edge()
    pid, full, rows, cols, payload = item
    vectors: dict[str, Any] = {FULL_VECTOR: full.tolist(), ROWS_VECTOR: rows.tolist(), COLS_VECTOR: cols.tolist()}
    if analyzer is not None:  # empty text (scans without OCR) -> empty sparse vector: visual only
        language = payload.get("language")
        if analyzer.language_aware and not language:  # the indexer always sets it; else detect
            language = detect_language(payload.get("text"))[0]
        vectors[TEXT_VECTOR] = qe.SparseVector(*analyzer.encode_document(payload.get("text"), language))
    return qe.Point(pid, vectors, payload)


class QdrantEdgeStore(EdgeSearch, EdgeText, EdgeMaintenance):
    """Embedded Qdrant Edge collections under ``root`` (see the module docstring).

    ``full_datatype``: storage of the full multivectors, ``float32`` (default) or ``float16`` (half
    the disk and RAM; MaxSim scores differ by ~1e-3 on 128-d unit vectors).
    ``write_max_wait_s``: before each page it writes, ``upsert`` waits until no search runs, at most
    this long (``pagelens.index.stores.readers_first``).
    ``fast_rerank``: in ``two_stage`` search, pick the pages Qdrant rescores exactly with our int8
    MaxSim kernel over a cached, centred int8 copy of the full vectors (``pagelens.index.ann.fast_rerank``),
    following the collection's measured plan (module docstring); ``rerank_candidates``: how many pages
    it keeps before the first measurement; ``rerank_device``: where the kernel runs (``cpu``/``cuda``);
    ``recall_target``: the recall@5 the self-check requires of a first stage; ``search_threads``: threads a
    search's int8 kernels are split over (``fast_rerank.run_chunks``; 0: one per CPU core).
    ``token_index_min_pages``: ``optimize`` builds the token-level first stage (``pagelens.index.ann.token_index``)
    for collections of at least this many pages (0: never), probing ``token_nprobe`` cells per query
    token; searches use it when the self-check finds it reaches the target.
    ``wal_flush_bytes``: flush a collection's shard once about this many bytes of vectors were upserted
    into it. Edge keeps every update in its write-ahead log until a flush (~0.7 MB per 1139-token
    page: 70 GB for 100k pages); a flush persists the segments and truncates the log. It holds the
    Python GIL, ~28 ms plus ~1.5 ms per page written since the last one, whatever the collection's size
    (measured 2026-12-07 on the 2-core AMD EPYC, the product's store, synthetic 1139-token aniso pages in
    float16: 29 ms after 1 page, 76-101 ms after 27, 143-148 ms after 100, on 300 and on 2,000 settled
    pages), so the default (8 MiB counted as float32: ~13 such pages) keeps each stall of the other
    threads near 50 ms, where 256 MiB (~430 pages) gave ~330 ms.
    ``optimize_every_bytes``: without the int8 cache (``fast_rerank`` off), run Edge's optimizers inside
    ``upsert`` once about this many bytes of vectors arrived since the last optimize. Edge has no
    background optimizer: unoptimized points pile up in one segment, and optimizing it rewrites it whole
    (twice its size on disk for a moment: 60+ GB at 100k pages); optimizing as the collection grows keeps
    that bounded, and the final ``optimize`` short. With the cache no search reads what it builds and it
    stalls the process for a minute and more at 50k+ pages (``_optimize_due``): ``pagelens optimize``
    runs it.
    ``text_query_languages``: the languages a text query is analysed under (``TextAnalyzer``).
    ``sketch_min_rows`` (attribute): ``optimize`` builds the fewer-dimensions first stage
    (``pagelens.index.ann.sketch_index``) for collections of at least this many token vectors, and drops it
    when the self-check prefers another stage.
    """

    def __init__(
        self,
        root: Path,
        *,
        full_datatype: Literal["float32", "float16"] = "float32",
        hnsw_m: int = 8,
        hnsw_ef_construct: int = 100,
        fast_rerank: bool = True,
        rerank_candidates: int = 16,
        rerank_device: str = "cpu",
        token_index_min_pages: int = 500,
        token_nprobe: int = 16,
        search_threads: int = 0,
        wal_flush_bytes: int = WAL_FLUSH_BYTES,
        optimize_every_bytes: int = 4 * 1024**3,
        pause_at: str = "",
        lock: DataDirLock | None = None,
        text_query_languages: str = "all",
        recall_target: float = 0.95,
        write_max_wait_s: float = DEFAULT_MAX_WAIT_S,
    ) -> None:
        self.root = Path(root).expanduser()
        self.lock = lock  # the data dir's one-process lock (pagelens/core/datadir.py), claimed on first use
        self.text_query_languages = text_query_languages  # text_analysis.TextAnalyzer.query_languages
        self.fast_rerank = bool(fast_rerank) and _torch_available()
        self.rerank_candidates = max(1, int(rerank_candidates))
        self.rerank_device = rerank_device
        self.token_index_min_pages = int(token_index_min_pages)
        self.token_nprobe = max(1, int(token_nprobe))
        self.sketch_min_rows = SKETCH_MIN_ROWS  # optimize builds the sketch first stage from this many token rows
        self.search_threads = max(0, int(search_threads))  # threads a search's int8 kernels are split over (0: one per core)
        self._rerank: dict[str, RerankCache] = {}
        self._rerank_stale: set[str] = set()  # a cache append failed: Qdrant prefetches until a sync
        self.readers = ReadersFirst(write_max_wait_s)  # searches before writes (readers_first)
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
        self.stale_warnings = StaleWarnings(logger, int8_first_stage=self.fast_rerank)
        self.recall_target = float(recall_target)  # the self-check's recall@5 target (index/ann/self_check.py)
        self._plans: dict[str, SearchPlan] = {}  # collection -> its measured search plan
        self._exact_warned: set[str] = set()  # collections whose plan is exact: warned once
        self.pause_at = pause_at  # debug hook (pagelens.core.debug_hooks), Settings.tuning.debug_pause_at

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
        """Insert or replace points. Vectors: float32 [n, dim] each. Validated first (a bad point writes
        nothing); then written searches first (``ReadersFirst``: before each page the writer waits until
        no search runs, at most ``readers.max_wait_s`` per write): up to ``WRITE_BATCH``
        pages and ``WRITE_TOKENS`` tokens per write while no search runs, one page per write while one does; each write converted
        outside the lock, then under it written to Qdrant and appended to the rerank cache, so a search
        never sees one without the other."""
        with self._lock:
            _, manifest = self._require(collection)
            spec_version = self._text_version(collection)
        items = _validated(points, manifest.dim)
        analyzer = TextAnalyzer(spec_version) if spec_version else None
        done = 0
        while done < len(items):
            turn = self.readers.turn()  # one wait budget per write, spent over its pages
            chunk: list[tuple[Any, Validated]] = []
            tokens = 0
            while (done < len(items) and len(chunk) < WRITE_BATCH
                   and (not chunk or tokens + len(items[done][1]) <= WRITE_TOKENS)):
                turn.wait()
                tokens += len(items[done][1])
                chunk.append((_edge_point(items[done], analyzer), items[done]))  # outside the lock
                done += 1
                if self.readers.readers:  # a search runs: write what is converted, page by page from here
                    break
            cached = [item[:4] for _, item in chunk]
            prepared = self._prepare_cache(collection, cached)  # outside the lock: searches go on meanwhile
            turn.wait()
            with self._lock:
                shard, now = self._require(collection)
                if now.dim != manifest.dim:  # deleted and made again meanwhile
                    raise InvalidRequestError(f"collection '{collection}' changed while its points were prepared: "
                                              f"dim {manifest.dim} -> {now.dim}")
                self._write_locked(collection, shard, [p for p, _ in chunk], cached, last=done == len(items),
                                   prepared=prepared)
            if self._maintenance_due(collection):
                self.readers.turn().wait()  # Edge holds the GIL through it: not while a search runs
                with self._lock:
                    shard, _ = self._require(collection)
                    self._maintain_locked(collection, shard)
        logger.debug("upserted %d points into %s", len(items), collection)

    def _optimize_due(self, collection: str) -> bool:
        """Whether ``upsert`` runs Edge's segment optimizer now: ``optimize_every_bytes`` of vectors arrived
        since the last one, and searches read what it builds (no int8 cache: ``fast_rerank`` off). With
        the cache no search does, and it holds the GIL for its whole run, longer as the collection grows:
        34, 100 and 55 s at 24k, 50k and 74k pages of an upload of 100k 300-token pages (2026-12-07,
        2-core Xeon, synthetic pages; upserts of 2,000 pages took ~10 s in between), a stall of every
        thread of a server. Then ``segments_pending`` says it has not run, and ``pagelens optimize``
        runs it (one rewrite of the unoptimized segment then, twice its size on disk for a moment)."""
        return not self.fast_rerank and self._unoptimized.get(collection, 0) >= self.optimize_every_bytes

    def _flush_due(self, collection: str) -> bool:
        return self._unflushed.get(collection, 0) >= self.wal_flush_bytes

    def _maintenance_due(self, collection: str) -> bool:
        return self._optimize_due(collection) or self._flush_due(collection)

    def _maintain_locked(self, collection: str, shard: Any) -> None:
        """Edge's optimizer when ``_optimize_due``, else a flush once ``wal_flush_bytes`` of vectors arrived
        since the last one. Both hold the GIL while they run (measured 2026-12-07, 2-core Xeon, synthetic
        1139-token pages in float16, another bench running: a flush 170-410 ms after 300-800 new pages, an
        optimize of 2,000 new pages 9.2 s), so ``upsert`` calls this between page writes, when no search
        runs (``ReadersFirst``, bounded). Call under the lock."""
        if self._optimize_due(collection):
            logger.info("optimizing %s after %.1f GB of new vectors (Edge has no background optimizer)",
                        collection, self._unoptimized[collection] / 1e9)
            self._optimize_locked(collection, shard)
        elif self._flush_due(collection):
            shard.flush()  # persists the segments and truncates the write-ahead log
            self._unflushed[collection] = 0

    def _prepare_cache(self, collection: str, cached: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]) -> Any:
        """``RerankCache.prepare`` of a write's pages, outside the lock (the token cells: most of what the
        cache append costs); None without the cache, before its codec exists, or on any failure (then
        ``append`` computes everything under the lock, as it checks what it is given anyway)."""
        if not self.fast_rerank:
            return None
        with self._lock:
            cache = self._rerank_file(collection)
        try:
            return cache.prepare(cached)
        except Exception as exc:  # noqa: BLE001 - an optimization only: the locked append does it all
            logger.debug("could not prepare the cache append of %s outside the lock (%s)", collection, exc)
            return None

    def _write_locked(self, collection: str, shard: Any, edge_points: list[Any],
                      cached: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], last: bool = True,
                      prepared: Any = None) -> None:
        """Points into Qdrant (one update), then the rerank cache (Edge's flush / optimizer, once due, follow
        in ``upsert``: ``_maintain_locked``). ``last``: the upsert's last write (where the crash tests pause: the
        whole document in Qdrant, not yet all cached). ``prepared``: ``_prepare_cache(collection, cached)``.
        Call under the lock."""
        qe = _edge()
        self._upserts[collection] = self._upserts.get(collection, 0) + 1
        self._unstamp(collection)  # before Qdrant has the points: a crash from here on leaves it stale
        try:
            shard.update(qe.UpdateOperation.upsert_points(edge_points))
        except BaseException:
            self._live.pop(collection, None)  # unknown whether they are in: scroll again when needed
            raise
        live = self._live.get(collection)
        if live is not None:
            live.add(pid for pid, _, _, _ in cached)
        self._languages.pop(collection, None)
        new_bytes = sum(4 * (full.size + rows.size + cols.size) for _, full, rows, cols in cached)
        self._unflushed[collection] = self._unflushed.get(collection, 0) + new_bytes
        self._unoptimized[collection] = self._unoptimized.get(collection, 0) + new_bytes
        if self.fast_rerank:  # after Qdrant: a point missing from the cache is scored by Qdrant
            if last:
                pause_point(self.pause_at, "cache_append")
            try:
                self._rerank_file(collection).append(cached, prepared)
            except OSError as exc:
                self._rerank_stale.add(collection)
                with contextlib.suppress(OSError):  # persisted (best effort: the failing disk may refuse it)
                    (self._dir(collection) / RERANK_STALE_FILE).touch()
                logger.warning("could not cache vectors for the fast rerank of %s (%s); those pages "
                               "are reranked by Qdrant until `optimize` backfills them", collection, exc)

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
