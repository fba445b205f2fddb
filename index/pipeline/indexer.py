"""Indexing: source files -> pages -> embeddings -> page points in a collection.

A bad document never stops the batch: its error is recorded in the report and the next file goes on.
Re-running the same job is idempotent (deterministic point ids) and skips documents whose every page
is already in the collection, unless ``force``; the same bytes under a new name or with new metadata are
not embedded again either: their stored pages take the new ``doc_name``/``meta`` (status ``updated``).
A run that gives no metadata keeps the stored metadata (a UI re-upload or a plain re-run does not
wipe it). A point is written only once its page is complete
(image saved, embedding and full payload in one upsert), so after an interruption (Ctrl-C, SIGKILL,
machine loss) a document counts fewer points than pages, and the next run redoes only its missing
pages. Every opened document's file is kept in the ``OriginalStore`` given (``pagelens.index.stores.originals``,
for downloads; none when ``PAGELENS_KEEP_ORIGINALS`` is off), also when its pages were there already (so
indexing a file again gives an older document its original). Two or more inputs run through the pipeline of ``pagelens.index.pipeline.workers`` (worker processes for
rendering and preprocessing, a writer thread for upserts); one input, or ``workers=0``, runs
in-process. Both write the same points.

Progress events (``ProgressCallback``), all from the calling thread: ``plan`` (documents_total,
pages_known, pages_estimate), ``document_start``, ``page_done`` (also for pages found already indexed
when resuming, with ``resumed``), ``document_done`` (status), ``document_failed``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pagelens.index.pipeline.workers import (
    ChunkBatcher,
    DocFinished,
    DocTask,
    PreparedChunk,
    WorkerPool,
    Writer,
    merge_batches,
    prepare_document,
)
from pagelens.index.stores.base import VectorStore, pin
from pagelens.index.stores.originals import OriginalStore, discard_unless_used
from pagelens.index.stores.page_images import PageImageStore
from pagelens.ingest import SourceDocument, open_document

from pagelens.core.errors import PagelensError
from pagelens.core.settings import Settings
from pagelens.core.types import CollectionManifest, PageFilter, PagePoint, page_point_id
from pagelens.models.embedder import PageEmbedder, check_manifest

log = logging.getLogger(__name__)
_ANNOUNCED: set[str] = set()  # notices already logged by this process


@dataclass
class FileError:
    """One failure: the file, the page (None for the whole file) and the reason."""

    path: str
    error: str
    page: int | None = None
    code: str = "ingest_error"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.path, "page": self.page, "code": self.code, "error": self.error}


@dataclass
class DocumentResult:
    path: str
    doc_id: str | None
    doc_name: str
    status: str  # "indexed" | "updated" (same bytes, new name/metadata) | "skipped" | "failed" | "partial"
    pages_indexed: int = 0
    page_count: int = 0


@dataclass
class IndexReport:
    collection: str
    documents: list[DocumentResult] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)
    seconds: float = 0.0
    pipeline: dict[str, Any] = field(default_factory=dict)
    repaired: list[str] = field(default_factory=list)  # search structures rebuilt at the end (human readable)
    # weaker modes met in this run, each said once with its fix (no OCR installed, an old text index)
    notices: list[str] = field(default_factory=list)
    # pages indexed in a weaker way (OCR failed or timed out): file, page, message
    page_notices: list[FileError] = field(default_factory=list)
    # pages the retriever model embedded in this run (every forward counted: a resumed or skipped page is not)
    pages_embedded: int = 0

    @property
    def pages_indexed(self) -> int:
        return sum(d.pages_indexed for d in self.documents)

    def count(self, status: str) -> int:
        return sum(1 for d in self.documents if d.status == status)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "documents_indexed": self.count("indexed"),
            "documents_updated": self.count("updated"),
            "documents_skipped": self.count("skipped"),
            "documents_failed": self.count("failed"),
            "documents_partial": self.count("partial"),
            "pages_indexed": self.pages_indexed,
            "pages_embedded": self.pages_embedded,
            "seconds": round(self.seconds, 3),
            "pages_per_s": round(self.pages_indexed / self.seconds, 3) if self.seconds else None,
            "pipeline": {k: round(v, 3) if isinstance(v, float) else v
                         for k, v in self.pipeline.items() if k != "worker_pids"},
            "search_structures_rebuilt": list(self.repaired),
            "errors": [e.to_dict() for e in self.errors],
            "notices": list(self.notices),
            "page_notices": [e.to_dict() for e in self.page_notices],
            "documents": [d.__dict__ for d in self.documents],
        }


@dataclass
class IndexInput:
    """One file to index, with its display name and user metadata."""

    path: Path
    name: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    password: str | None = field(default=None, repr=False)  # never in a repr / log line


ProgressCallback = Callable[[str, dict[str, Any]], None]
"""Called with an event name ("document_start", "page_done", "document_done", "document_failed")
and a dict of details (path, doc_name, page_no, page_count...)."""


class Indexer:
    """Indexes files into one collection with an embedder and a store (both injected)."""

    def __init__(
        self,
        settings: Settings,
        embedder: PageEmbedder,
        store: VectorStore,
        images: PageImageStore,
        originals: OriginalStore | None = None,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.store = store
        self.images = images
        self.originals = originals  # None: no original files kept (PAGELENS_KEEP_ORIGINALS off)

    # -- collection --------------------------------------------------------------------------
    def ensure_collection(self, collection: str) -> CollectionManifest:
        """Create the collection for this embedder, or check that the existing one matches it."""
        existing = self.store.get_manifest(collection)
        if existing is not None:
            check_manifest(existing, self.embedder)
            return existing
        self.embedder.load()
        fields = getattr(self.embedder, "manifest_fields", None)  # family, processor, tokens, score scale
        manifest = CollectionManifest(
            name=collection,
            model_id=self.embedder.model_id,
            model_revision=self.embedder.model_revision,
            dim=self.embedder.dim,
            created_at=_now(),
            **(fields() if callable(fields) else {}),
        )
        self.store.create_collection(manifest)
        return manifest

    # -- indexing -----------------------------------------------------------------------------
    def index(
        self,
        collection: str,
        inputs: Iterable[IndexInput],
        force: bool = False,
        progress: ProgressCallback | None = None,
        *,
        workers: int | None = None,
        repair: bool = True,
    ) -> IndexReport:
        """Index every input; returns the report (never raises for a bad document).

        ``workers``: page-preparation processes (None: ``settings.ingest_workers``, -1 meaning
        min(4, CPUs)); 0, or a single input, runs everything in this process (same points either way).
        ``repair``: rebuild stale search structures at the end of this call (``repair_if_stale``), once for
        all its inputs; False when the caller indexes a job document by document and repairs once at the
        end of the job (``pagelens.app.jobs.JobWorker``).
        Exceptions raised by ``progress`` (e.g. a cancelled job) stop the run and propagate, after the
        worker processes are terminated.
        """
        started = time.perf_counter()
        # point ids and payloads name the collection itself, not an alias of it
        collection = pin(self.store, collection)[0]
        self.ensure_collection(collection)
        items = list(inputs)
        report = IndexReport(collection=collection)
        notify = progress or (lambda event, info: None)
        n_workers = resolve_workers(self.settings.ingest_workers if workers is None else workers,
                                    self._device_type())
        if len(items) < 2:
            n_workers = 0
        for notice in self.notices(collection):
            report.notices.append(notice)
            notify("notice", {"collection": collection, "message": notice})
        run = _Run(self, collection, items, force, report, notify)
        run.execute(n_workers)
        if repair:
            self.repair_if_stale(collection, report, notify)
        report.seconds = time.perf_counter() - started
        return report

    def repair_if_stale(self, collection: str, report: IndexReport | None = None,
                        notify: ProgressCallback | None = None) -> list[str]:
        """Rebuild the collection's search structures when they are stale (``pagelens.index.stores.search_status``),
        every run, new pages or not: pages written by this run (Qdrant Edge has no background
        optimizer: the HNSW graphs of the pooled vectors, the rerank cache and, for large collections,
        the token index, minutes per 100k pages), or an earlier run killed during its closing optimize
        or between a Qdrant upsert and the rerank-cache append. Events ``optimize_start`` (with the
        ``stale`` reasons) and ``optimize_done`` (``seconds``, ``rebuilt``) only when it runs. Returns
        what was rebuilt (also in ``report.repaired``)."""
        status = self.store.search_status(collection)
        if status.current:
            return []
        notify = notify or (lambda event, info: None)
        notify("optimize_start", {"collection": collection, "stale": list(status.stale)})
        result = self.store.repair(collection)  # what is stale only: never Edge's segment optimizer needlessly
        if report is not None:
            report.repaired = list(result.rebuilt)
        notify("optimize_done", {"collection": collection, "seconds": result.seconds, "rebuilt": list(result.rebuilt)})
        return list(result.rebuilt)
    def notices(self, collection: str) -> list[str]:
        """The weaker modes this run will index in, each with its fix: Tesseract or OCR languages
        missing (``pagelens.ingest.ocr.ocr_status``), a collection whose text index predates languages. Logged
        once per process as warnings; returned for the report every run."""
        from pagelens.ingest.ocr import status_from_settings

        found = []
        status = status_from_settings(self.settings)
        if self.settings.ocr != "off" and status.message:
            found.append(status.message)
        if self.store.text_spec_version(collection) == 1:
            found.append(
                f"collection '{collection}' has an English-only text index (made before languages): pages are "
                "analysed as English and their language is not recorded. Rebuild it with `pagelens index "
                f"--reindex -c {collection} PATHS` to get per-language search")
        for message in found:
            if message not in _ANNOUNCED:
                _ANNOUNCED.add(message)
                log.warning("%s", message)
        return found

    def _device_type(self) -> str:
        device = getattr(self.embedder, "device", None)
        if device is not None:
            return str(getattr(device, "type", device))
        try:
            from pagelens.core.devices import get_device

            return str(get_device(self.settings.device).type)
        except Exception:  # pragma: no cover - no torch: no model either
            return "cpu"

    def make_points(self, collection: str, state: _DocState, chunk: PreparedChunk, embeddings: Sequence[Any]
                    ) -> list[PagePoint]:
        doc = state.doc
        indexed_at = _now()
        points = []
        for meta, emb in zip(chunk.pages, embeddings, strict=True):
            points.append(
                PagePoint(
                    id=page_point_id(collection, doc.sha256, meta.page_no),
                    embedding=emb,
                    payload={
                        "doc_id": doc.doc_id,
                        "doc_name": doc.name,
                        "page_no": meta.page_no,
                        "page_count": doc.page_count,
                        "sha256": doc.sha256,
                        "collection": collection,
                        "meta": dict(doc.metadata),
                        "text": meta.text,
                        "language": meta.language,
                        "text_source": meta.text_source,
                        "image_path": meta.image_path,
                        "width": meta.width,
                        "height": meta.height,
                        "indexed_at": indexed_at,
                        **({"words": meta.words} if meta.words else {}),
                    },
                )
            )
        return points

    def embed_chunk(self, chunk: PreparedChunk) -> list[Any]:
        if chunk.batch is not None:
            return self.embedder.embed_preprocessed(  # type: ignore[attr-defined, no-any-return]
                chunk.batch, [(m.width, m.height) for m in chunk.pages]
            )
        return list(self.embedder.embed_pages(chunk.images or []))

    def embed_chunks(self, chunks: Sequence[PreparedChunk]) -> list[list[Any]]:
        """Embed prepared chunks of several documents in one forward (``embed_chunk`` of the merged
        chunk); per chunk, its pages' embeddings (as ``embed_chunk`` gives them, up to padding noise)."""
        merged = chunks[0]
        if len(chunks) > 1:
            pages = [m for c in chunks for m in c.pages]
            batches = [c.batch for c in chunks if c.batch is not None]
            if len(batches) == len(chunks):
                tokenizer = self.embedder.processor.tokenizer  # type: ignore[attr-defined]
                batch = merge_batches(batches, int(tokenizer.pad_token_id), str(tokenizer.padding_side))
                merged = PreparedChunk(chunks[0].key, pages, batch=batch)
            elif not batches:
                merged = PreparedChunk(chunks[0].key, pages, images=[im for c in chunks for im in (c.images or [])])
            else:
                raise PagelensError("cannot merge chunks preprocessed in the workers with chunks of PIL images")
        flat = self.embed_chunk(merged)
        out, start = [], 0
        for c in chunks:
            out.append(flat[start : start + len(c.pages)])
            start += len(c.pages)
        return out

    def embed_batch_size(self) -> int:
        """Pages per forward (and per prepared chunk): ``Settings.embed_batch_size``, auto by device."""
        return self.settings.resolved_embed_batch_size(self._device_type())

    def batches_across_documents(self) -> bool:
        """``Settings.batch_across_documents``: auto = on when the retriever runs on a GPU."""
        mode = self.settings.tuning.batch_across_documents
        return mode == "on" or (mode == "auto" and self._device_type() == "cuda")

    def preprocessor(self) -> Any:
        """The processor workers run (``process_images``), or None to send PIL images to the embedder
        (which then preprocesses them itself: ``preprocess_device=model`` does it on the GPU)."""
        if not hasattr(self.embedder, "embed_preprocessed"):
            return None
        if (self.settings.resolved_preprocess_device(self._device_type()) == "model"
                and getattr(self.embedder, "preprocesses_on_device", True)):  # a non-tiled family: the workers
            return None
        self.embedder.load()  # the page processor: safe while searches encode queries (pagelens/models/embedder.py)
        return getattr(self.embedder, "page_processor", None) or getattr(self.embedder, "processor", None)


def payload_changes(stored: dict[str, Any], name: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """The payload keys (``doc_name``, ``meta``) whose stored value (one page's payload) differs from
    this run's, with this run's values."""
    changes: dict[str, Any] = {}
    if stored.get("doc_name") != name:
        changes["doc_name"] = name
    if dict(stored.get("meta") or {}) != dict(metadata):
        changes["meta"] = dict(metadata)
    return changes


def resolve_workers(value: int, device: str = "cuda") -> int:
    """The number of page-preparation processes; ``value`` >= 0 is taken as it is (0: serial).

    -1 (auto): with the model on a GPU, min(4, CPUs); on the CPU the model's forward needs the cores
    the workers would take, so CPUs // 4 capped at 4 (0, serial, on fewer than 4 cores: measured on 2
    cores, the pipeline is ~2x slower there than the serial loop)."""
    if value >= 0:
        return value
    cpus = os.cpu_count() or 1
    if device.startswith("cpu"):
        return min(4, cpus // 4)
    return max(1, min(4, cpus))


@dataclass
class _DocState:
    item: IndexInput
    doc: SourceDocument
    result: DocumentResult
    present: int  # pages already in the collection before this run (not redone)
    expected: int  # pages this run should write
    written: int = 0
    embedded: int = 0
    finished: bool = False


class _Run:
    """One ``Indexer.index`` call: opens documents, schedules them, embeds, writes, reports."""

    def __init__(self, indexer: Indexer, collection: str, items: list[IndexInput], force: bool,
                 report: IndexReport, notify: ProgressCallback) -> None:
        self.ix = indexer
        self.collection = collection
        self.items = items
        self.force = force
        self.report = report
        self.notify = notify
        self.states: dict[int, _DocState] = {}
        self.seen_sha: dict[str, str] = {}
        self.pages_known = 0
        self.docs_known = 0
        self.results: list[DocumentResult | None] = [None] * len(items)

    # -- opening and the skip decision ------------------------------------------------------------
    def open(self, key: int) -> DocTask | None:
        """Open input ``key``; returns its task, or None when it is done already (failed/skipped)."""
        item = self.items[key]
        ix = self.ix
        path_str = str(item.path)
        try:
            doc = open_document(item.path, ix.settings, name=item.name, metadata=item.metadata,
                                password=item.password)
        except PagelensError as exc:
            self.report.errors.append(FileError(path_str, str(exc), getattr(exc, "page", None), exc.code))
            self.notify("document_failed", {"path": path_str, "error": str(exc)})
            self.results[key] = DocumentResult(path_str, None, item.name or item.path.name, "failed")
            self._plan(0)
            return None
        self._plan(doc.page_count)
        self.notify("document_start", {"path": path_str, "doc_name": doc.name, "page_count": doc.page_count})
        result = DocumentResult(path_str, doc.doc_id, doc.name, "indexed", page_count=doc.page_count)
        if doc.sha256 in self.seen_sha and not self.force:
            result.status = "skipped"
            self.results[key] = result
            self.notify("document_done", {"path": path_str, "doc_name": doc.name, "status": "skipped",
                                          "page_count": doc.page_count, "duplicate_of": self.seen_sha[doc.sha256]})
            return None
        self.seen_sha.setdefault(doc.sha256, path_str)
        if ix.originals is not None:  # for downloads; a document that ends with no page discards it again
            ix.originals.keep(doc.path, doc.sha256, doc.source_format)
        present: set[int] = set()
        doc_filter = PageFilter(doc_ids=[doc.doc_id])
        already = ix.store.count(self.collection, doc_filter)
        if already:
            stored = next(iter(ix.store.iter_payloads(self.collection, doc_filter)), (None, {}))[1]
            if not doc.metadata:  # no metadata given: the stored one stays (on every page, new ones too)
                doc.metadata = dict(stored.get("meta") or {})
            changes = payload_changes(stored, doc.name, doc.metadata)
            if changes and not self.force:  # (force rewrites every page with this run's payload anyway)
                ix.store.set_payload(self.collection, doc.doc_id, changes)
            if already >= doc.page_count and not self.force:
                # the same bytes again: nothing to embed; a new name or metadata was applied above
                result.status = "updated" if changes else "skipped"
                self.results[key] = result
                self.notify("document_done", {"path": path_str, "doc_name": doc.name, "status": result.status,
                                              "page_count": doc.page_count, "changed": sorted(changes)})
                return None
            if not self.force:  # interrupted earlier: only the missing pages are redone
                present = {
                    int(p.get("page_no", 0))
                    for _, p in ix.store.iter_payloads(
                        self.collection, doc_filter, keys=("page_no", "sha256", "doc_name", "meta"))
                    if p.get("sha256") == doc.sha256
                }
                for page_no in sorted(present):
                    self.notify("page_done", {"doc_name": doc.name, "page_no": page_no,
                                              "page_count": doc.page_count, "resumed": True})
        self.states[key] = _DocState(item, doc, result, present=len(present),
                                     expected=doc.page_count - len(present))
        return DocTask(key, path_str, item.name, dict(item.metadata), item.password, doc.sha256,
                       frozenset(present))

    def _plan(self, pages: int) -> None:
        self.docs_known += 1
        self.pages_known += pages
        estimate = round(self.pages_known / self.docs_known * len(self.items)) if self.docs_known else 0
        self.notify("plan", {"documents_total": len(self.items), "documents_opened": self.docs_known,
                             "pages_known": self.pages_known, "pages_estimate": max(estimate, self.pages_known)})

    # -- results ----------------------------------------------------------------------------------
    def on_written(self, key: int, page_nos: list[int]) -> None:
        state = self.states[key]
        state.written += len(page_nos)
        state.result.pages_indexed += len(page_nos)
        for page_no in page_nos:
            self.notify("page_done", {"doc_name": state.doc.name, "page_no": page_no,
                                      "page_count": state.doc.page_count})
        self._maybe_done(key)

    def on_finished(self, msg: DocFinished) -> None:
        state = self.states[msg.key]
        path_str = str(state.item.path)
        for page, code, error in msg.errors:
            self.report.errors.append(FileError(path_str, error, page, code))
        for page, note in msg.notices:
            self.report.page_notices.append(FileError(path_str, note, page, "ocr_incomplete"))
        state.finished = True
        self._maybe_done(msg.key)

    def _maybe_done(self, key: int) -> None:
        state = self.states.get(key)
        if state is None or not state.finished or state.written < state.embedded:
            return
        del self.states[key]
        result, doc = state.result, state.doc
        path_str = str(state.item.path)
        total = state.present + state.written
        if total < doc.page_count:
            result.status = "partial" if total else "failed"
            if not total:
                self._discard_unused_original(doc.sha256)
            if not any(e.path == path_str for e in self.report.errors):
                self.report.errors.append(FileError(
                    path_str, f"{path_str}: only {total} of {doc.page_count} pages could be indexed"))
        self.results[key] = result
        self.notify("document_done", {"path": path_str, "doc_name": doc.name, "status": result.status,
                                      "page_count": doc.page_count})

    def _discard_unused_original(self, sha256: str) -> None:
        """Remove the kept original of a document that ended with no page, unless another collection has it."""
        if self.ix.originals is not None:
            discard_unless_used(self.ix.originals, self.ix.store, sha256)

    def _finish_report(self) -> None:
        self.report.documents.extend(r for r in self.results if r is not None)

    # -- serial -----------------------------------------------------------------------------------
    def execute(self, workers: int) -> None:
        try:
            if workers <= 0:
                self._serial()
            else:
                self._pipelined(workers)
        finally:
            self._finish_report()

    def _serial(self) -> None:
        ix = self.ix
        processor = ix.preprocessor()
        images = ix.images
        self.report.pipeline = {"mode": "serial", "workers": 0}
        for key in range(len(self.items)):
            task = self.open(key)
            if task is None:
                continue
            for item in prepare_document(task, ix.settings, processor, images, ix.embed_batch_size()):
                if isinstance(item, PreparedChunk):
                    embedded = ix.embed_chunk(item)
                    self.report.pages_embedded += len(embedded)
                    points = ix.make_points(self.collection, self.states[key], item, embedded)
                    self.states[key].embedded += len(points)
                    ix.store.upsert(self.collection, points)
                    self.on_written(key, [m.page_no for m in item.pages])
                else:
                    self.on_finished(item)

    # -- pipelined --------------------------------------------------------------------------------
    def _pipelined(self, workers: int) -> None:
        ix = self.ix
        settings = ix.settings
        queue_chunks = settings.tuning.pipeline_queue_chunks or 2 * workers
        max_open = 2 * workers
        pool: WorkerPool | None = None  # started with the first document to prepare
        pool_started = time.perf_counter()
        writer = Writer(ix.store, self.collection, max_points=max(settings.tuning.upsert_batch_points, 16))
        stats: dict[str, Any] = {"mode": "pipelined", "workers": workers, "queue_chunks": queue_chunks,
                                 "max_open_documents": max_open, "peak_open_documents": 0,
                                 "peak_queued_chunks": 0, "worker_pids": []}
        self.report.pipeline = stats
        graceful = False
        # one document's chunks per forward, or (GPU) what is waiting of several, up to a full batch
        across = ix.batches_across_documents()
        batcher = ChunkBatcher(ix.embed_batch_size() if across else 1)
        stats["batch_across_documents"] = across
        try:
            next_key = 0
            while True:
                while len(self.states) < max_open and next_key < len(self.items):
                    task = self.open(next_key)
                    next_key += 1
                    if task is not None:
                        if pool is None:
                            pool = WorkerPool(workers, queue_chunks, settings, ix.preprocessor(), ix.images.root,
                                              ix.embed_batch_size())
                            stats["worker_pids"] = pool.pids()
                            pool_started = time.perf_counter()
                        pool.submit(task)
                stats["peak_open_documents"] = max(stats["peak_open_documents"], len(self.states))
                self._drain(writer)
                if not self.states and next_key >= len(self.items):
                    break
                assert pool is not None  # documents in flight
                with contextlib.suppress(NotImplementedError, OSError):
                    stats["peak_queued_chunks"] = max(stats["peak_queued_chunks"], pool.result_q.qsize())
                t_wait = time.perf_counter()
                msg = pool.get()
                stats["wait_s"] = stats.get("wait_s", 0.0) + time.perf_counter() - t_wait
                if msg is None:
                    for worker, key, code in pool.reap():
                        log.warning("ingest worker %d died (exit code %s)", worker, code)
                        if key is not None and key in self.states:
                            self.on_finished(DocFinished(key, [(None, "worker_crashed", (
                                f"{self.states[key].item.path}: the worker process preparing it died "
                                f"(exit code {code})"))], fatal=True))
                    continue
                if isinstance(msg, PreparedChunk) and "startup_s" not in stats:
                    # spawning workers, importing torch, loading the processor
                    stats["startup_s"] = round(time.perf_counter() - pool_started, 2)
                groups = self._batch(batcher, msg)
                while batcher.chunks:  # take what else is waiting, up to a full forward
                    more = pool.get(timeout=0)
                    if more is None:
                        groups.append(batcher.flush())
                        break
                    groups.extend(self._batch(batcher, more))
                del msg
                for chunks, finished in groups:
                    self._embed_and_write(chunks, writer, stats)
                    for done in finished:
                        self.on_finished(done)
            writer.finish()
            self._drain(writer)
            graceful = True
        finally:
            if not graceful:
                writer.abort()
            if pool is not None:
                pool.close(graceful)

    @staticmethod
    def _batch(batcher: ChunkBatcher, msg: Any) -> list[tuple[list[PreparedChunk], list[DocFinished]]]:
        if isinstance(msg, PreparedChunk):
            return batcher.add_chunk(msg)
        if isinstance(msg, DocFinished):
            return batcher.add_finished(msg)
        return []

    def _embed_and_write(self, chunks: list[PreparedChunk], writer: Writer, stats: dict[str, Any]) -> None:
        """One forward over ``chunks`` (one or several documents), their points to the writer."""
        if not chunks:
            return
        ix = self.ix
        t_embed = time.perf_counter()
        embeddings = ix.embed_chunks(chunks)
        self.report.pages_embedded += sum(len(e) for e in embeddings)
        t_put = time.perf_counter()
        stats["forwards"] = stats.get("forwards", 0) + 1
        stats["forward_pages_max"] = max(stats.get("forward_pages_max", 0), sum(len(c.pages) for c in chunks))
        for chunk, embedded in zip(chunks, embeddings, strict=True):
            state = self.states[chunk.key]
            points = ix.make_points(self.collection, state, chunk, embedded)
            state.embedded += len(points)
            writer.put(chunk.key, points)
        chunks.clear()
        stats["embed_s"] = stats.get("embed_s", 0.0) + t_put - t_embed
        stats["write_wait_s"] = stats.get("write_wait_s", 0.0) + time.perf_counter() - t_put

    def _drain(self, writer: Writer) -> None:
        writer.check()
        while True:
            try:
                key, page_nos = writer.done.get_nowait()
            except queue.Empty:
                return
            self.on_written(key, page_nos)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def default_error_report_path(settings: Settings, collection: str) -> Path:
    """``data_dir/reports/<collection>-<UTC timestamp>-<pid>.jsonl``: the pid keeps the reports of
    ``--shard I/N`` workers finishing in the same second apart (with a Qdrant server they run at once)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return settings.data_dir / "reports" / f"{collection}-{stamp}-{os.getpid()}.jsonl"


def write_error_report(report: IndexReport, path: Path) -> Path:
    """One JSON object per failure: {"file", "page", "code", "error"} (UTF-8, one line each)."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for error in report.errors:
            fh.write(json.dumps(error.to_dict(), ensure_ascii=False) + "\n")
    return path
