"""The batch indexing pipeline: page preparation in worker processes, embedding, batched writes.

::

    main thread                      worker processes (spawn, N)          writer thread
    open docs (sha256, page count),
    skip complete ones  --tasks-->   render pages, save PNGs,
                                     processor.process_images(chunk)
                        <--results-- (bounded queue: backpressure)
    model forward on the
    pre-processed chunk --points-->                                       store.upsert, batched
                                                                          (bounded queue)

Memory is bounded whatever the input size: at most ``queue_chunks`` prepared chunks wait in the result
queue, each worker holds at most one more, at most ``2 x workers`` documents are open, and at most
``WRITE_QUEUE`` chunks of points wait for the writer. A chunk is ``embed_batch_size`` pages of one
document, prepared exactly as ``ColSmolEmbedder.embed_pages`` would (same chunking, one
``process_images`` call), so the serial path (``workers=0``: the same functions called in-process)
and the pipelined path write identical points. With ``batch_across_documents`` (auto: on CUDA) the main
process merges the chunks of several documents already waiting into one forward of up to
``embed_batch_size`` pages (``ChunkBatcher``, ``merge_batches``): same points up to padding noise.

Workers die with the main process (``PR_SET_PDEATHSIG`` on Linux, plus a parent check) and are
terminated on any exception in the main thread (Ctrl-C, a progress callback that cancels the job).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import queue
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pagelens.index.stores.page_images import PageImageStore

from pagelens.core.errors import PagelensError

log = logging.getLogger(__name__)

WRITE_QUEUE = 4  # chunks of points waiting for the writer thread
POLL_S = 0.5


@dataclass
class DocTask:
    """One document for a worker. ``skip_pages``: pages already in the collection (not redone)."""

    key: int
    path: str
    name: str | None
    metadata: dict[str, Any]
    password: str | None = field(repr=False)  # never in a repr / log line
    sha256: str
    skip_pages: frozenset[int] = frozenset()


@dataclass
class PageMeta:
    """One prepared page: ``image_path``, its PNG relative to the page-image root (``PageImageStore``);
    ``language``, the ISO 639-1 code of the page text (``pagelens.index.stores.text_analysis.detect_language``;
    ``und`` when unknown); ``text_source``: pdf | ocr | none; ``words``: the text's word boxes in their
    compact payload form (``pagelens.ingest.words.encode_words``), None when unknown."""

    page_no: int
    text: str
    width: int
    height: int
    image_path: str
    language: str = "und"
    text_source: str = "none"
    words: dict[str, Any] | None = None


@dataclass
class PreparedChunk:
    """Up to ``embed_batch_size`` pages of one document, ready for the model.

    batch: ``processor.process_images`` output (input_ids [B, L], pixel_values [B, T, 3, 512, 512]...),
    or None when the embedder has no ``embed_preprocessed``; then ``images`` carries the PIL pages."""

    key: int
    pages: list[PageMeta]
    batch: dict[str, Any] | None = None
    images: list[Any] | None = None


@dataclass
class DocStarted:
    key: int
    worker: int


@dataclass
class DocFinished:
    """Sent after the last chunk of a document. errors: (page or None, code, message); notices: pages
    indexed in a weaker way (OCR failed or timed out), (page, message)."""

    key: int
    errors: list[tuple[int | None, str, str]] = field(default_factory=list)
    fatal: bool = False
    notices: list[tuple[int, str]] = field(default_factory=list)


def prepare_document(
    task: DocTask, settings: Any, processor: Any, images: PageImageStore, batch_size: int
) -> Iterator[PreparedChunk | DocFinished]:
    """Render the pages of one document (saving each PNG) and preprocess them chunk by chunk."""
    from pagelens.ingest import open_document

    doc = None
    try:
        doc = open_document(
            Path(task.path), settings, name=task.name, metadata=task.metadata, password=task.password
        )
        if doc.sha256 != task.sha256:
            yield DocFinished(task.key, [(None, "file_changed", f"{task.name or task.path}: the file changed "
                                          "while it was being indexed; index it again")], fatal=True)
            return
        chunk: list[Any] = []
        for page in doc.pages():
            if page.page_no in task.skip_pages:
                continue
            chunk.append(page)
            if len(chunk) >= batch_size:
                yield _prepare(task, chunk, processor, images)
                chunk = []
        if chunk:
            yield _prepare(task, chunk, processor, images)
        yield DocFinished(task.key, [(e.page, e.code, str(e)) for e in doc.page_errors],
                          notices=list(doc.page_notices))
    except PagelensError as exc:
        errors = [(e.page, e.code, str(e)) for e in (doc.page_errors if doc is not None else [])]
        errors.append((getattr(exc, "page", None), exc.code, str(exc)))
        yield DocFinished(task.key, errors, fatal=True, notices=list(doc.page_notices) if doc is not None else [])
    except Exception as exc:  # a bug or a library crash on a hostile file: report it, go on
        log.exception("preparing %s failed", task.path)
        yield DocFinished(task.key, [(None, "internal_error", f"{task.name or task.path}: {type(exc).__name__}: "
                                      f"{exc}")], fatal=True)


def _prepare(task: DocTask, pages: list[Any], processor: Any, images: PageImageStore) -> PreparedChunk:
    from pagelens.index.stores.text_analysis import detect_language
    from pagelens.ingest.words import encode_words

    metas = []
    for page in pages:
        rel = images.save(task.sha256, page.page_no, page.image)  # relative to the page-image root
        language, _ = detect_language(page.text)
        metas.append(PageMeta(page.page_no, page.text, page.image.width, page.image.height, rel,
                              language=language, text_source=getattr(page, "text_source", "none"),
                              words=encode_words(getattr(page, "words", None))))
    if processor is None:
        return PreparedChunk(task.key, metas, images=[p.image for p in pages])
    batch = processor.process_images([p.image.convert("RGB") for p in pages])
    return PreparedChunk(task.key, metas, batch=dict(batch.items()))


# ------------------------------------------------------------------------------------------------
# batching chunks of several documents into one forward (the main process)
# ------------------------------------------------------------------------------------------------

_TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def merge_batches(batches: list[dict[str, Any]], pad_token_id: int, padding_side: str) -> dict[str, Any]:
    """One processor batch from several (``process_images`` outputs of different documents).

    Token tensors ([B_i, L_i]: input_ids, attention_mask) are padded to the longest L on the
    tokenizer's ``padding_side`` (input_ids with ``pad_token_id``, the mask with 0); image tensors
    (pixel_values [B_i, T_i, 3, H, W], pixel_attention_mask [B_i, T_i, H, W]) get all-zero tiles after
    the real ones, which Idefics3 drops as padding. Returns [sum B_i, ...] tensors."""
    import torch

    merged: dict[str, Any] = {}
    for key in batches[0]:
        parts = [b[key] for b in batches]
        if not all(isinstance(t, torch.Tensor) for t in parts):
            raise PagelensError(f"cannot merge processor outputs: '{key}' is not a tensor in every batch")
        shape = [max(t.shape[d] for t in parts) for d in range(1, parts[0].dim())]
        fill = pad_token_id if key == "input_ids" else 0
        padded = []
        for t in parts:
            if list(t.shape[1:]) == shape:
                padded.append(t)
                continue
            out = t.new_full((t.shape[0], *shape), fill)
            if key in _TOKEN_KEYS and padding_side == "left":
                out[:, shape[0] - t.shape[1]:, ...] = t
            else:
                out[tuple([slice(None)] + [slice(0, n) for n in t.shape[1:]])] = t
            padded.append(out)
        merged[key] = torch.cat(padded, dim=0)
    return merged


class ChunkBatcher:
    """Gathers the prepared chunks that are already waiting, from several documents, into one forward
    of at most ``max_pages`` pages (short documents, e.g. 1-page invoices, would otherwise each be a
    forward of 1-2 pages: the GPU idles).

    ``add`` returns the chunk groups that must be embedded now, in order; a group is flushed when the
    next chunk would overflow it, when it is full, or by ``flush`` (nothing else is waiting). A
    document's ``DocFinished`` is held back until its chunks are flushed, so it is never reported
    before its points; every other order is kept."""

    def __init__(self, max_pages: int) -> None:
        self.max_pages = max(1, int(max_pages))
        self.chunks: list[PreparedChunk] = []
        self.finished: list[DocFinished] = []

    @property
    def pages(self) -> int:
        return sum(len(c.pages) for c in self.chunks)

    def add_chunk(self, chunk: PreparedChunk) -> list[tuple[list[PreparedChunk], list[DocFinished]]]:
        out = []
        if self.chunks and self.pages + len(chunk.pages) > self.max_pages:
            out.append(self.flush())
        self.chunks.append(chunk)
        if self.pages >= self.max_pages:
            out.append(self.flush())
        return out

    def add_finished(self, finished: DocFinished) -> list[tuple[list[PreparedChunk], list[DocFinished]]]:
        if not self.chunks:
            return [([], [finished])]
        self.finished.append(finished)
        return []

    def flush(self) -> tuple[list[PreparedChunk], list[DocFinished]]:
        """The waiting chunks and the DocFinished held back behind them (emptied)."""
        group = (self.chunks, self.finished)
        self.chunks, self.finished = [], []
        return group


# ------------------------------------------------------------------------------------------------
# worker processes
# ------------------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _worker_main(
    worker: int,
    task_q: Any,
    result_q: Any,
    settings: Any,
    processor_blob: bytes | None,
    images_root: str,
    batch_size: int,
    parent_pid: int,
) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and terminates us
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    processor = pickle.loads(processor_blob) if processor_blob else None
    images = PageImageStore(Path(images_root))

    def put(item: Any) -> None:
        while True:
            try:
                result_q.put(item, timeout=POLL_S)
                return
            except queue.Full:
                if os.getppid() != parent_pid:
                    os._exit(0)

    while True:
        try:
            task = task_q.get(timeout=POLL_S)
        except queue.Empty:
            if os.getppid() != parent_pid:
                return
            continue
        if task is None:
            return
        put(DocStarted(task.key, worker))
        for item in prepare_document(task, settings, processor, images, batch_size):
            put(item)


class WorkerPool:
    """N spawned worker processes reading ``DocTask`` s and writing results to a bounded queue."""

    def __init__(self, workers: int, queue_chunks: int, settings: Any, processor: Any, images_root: Path,
                 batch_size: int) -> None:
        import torch.multiprocessing as tmp  # shares tensors through shared memory, not the pipe

        self.ctx = tmp.get_context("spawn")
        self.task_q = self.ctx.Queue()
        self.result_q = self.ctx.Queue(maxsize=max(1, queue_chunks))
        self.max_queue_chunks = max(1, queue_chunks)
        self._args = (settings, pickle.dumps(processor) if processor is not None else None, str(images_root),
                      batch_size, os.getpid())
        self.procs: dict[int, Any] = {}
        self.current: dict[int, int | None] = {}  # worker -> doc key it is preparing
        self._next = 0
        for _ in range(workers):
            self._spawn()

    def _spawn(self) -> None:
        worker = self._next
        self._next += 1
        proc = self.ctx.Process(
            target=_worker_main, args=(worker, self.task_q, self.result_q, *self._args), daemon=True,
            name=f"pagelens-ingest-{worker}",
        )
        proc.start()
        self.procs[worker] = proc
        self.current[worker] = None

    def submit(self, task: DocTask) -> None:
        self.task_q.put(task)

    def get(self, timeout: float = POLL_S) -> Any | None:
        """Next result, or None after ``timeout`` s without one (0: only one already waiting)."""
        try:
            item = self.result_q.get(timeout=timeout) if timeout > 0 else self.result_q.get_nowait()
        except queue.Empty:
            return None
        if isinstance(item, DocStarted):
            self.current[item.worker] = item.key
        elif isinstance(item, DocFinished):
            for worker, key in self.current.items():
                if key == item.key:
                    self.current[worker] = None
        return item

    def reap(self) -> list[tuple[int, int | None, int | None]]:
        """Replace dead workers; returns (worker, doc key it was on, exit code) for each."""
        dead = []
        for worker, proc in list(self.procs.items()):
            if not proc.is_alive():
                dead.append((worker, self.current.pop(worker, None), proc.exitcode))
                del self.procs[worker]
                self._spawn()
        return dead

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values() if p.pid is not None]

    def close(self, graceful: bool) -> None:
        if graceful:
            for _ in self.procs:
                self.task_q.put(None)
            for proc in self.procs.values():
                proc.join(timeout=10)
        for proc in self.procs.values():
            if proc.is_alive():
                proc.terminate()
        for proc in self.procs.values():
            proc.join(timeout=5)
            if proc.is_alive():  # pragma: no cover
                proc.kill()
                proc.join(timeout=5)
        for q in (self.task_q, self.result_q):
            q.cancel_join_thread()
            q.close()


# ------------------------------------------------------------------------------------------------
# writer thread
# ------------------------------------------------------------------------------------------------


class Writer:
    """Upserts chunks of points on a thread, merging queued chunks up to ``max_points`` per call.

    ``put`` blocks when ``WRITE_QUEUE`` chunks are waiting (backpressure on the embedder). Written
    chunks are reported through ``done`` (drained by the main thread, which emits progress events).
    An upsert error stops the writer; ``check`` re-raises it in the main thread.
    """

    def __init__(self, store: Any, collection: str, max_points: int = 64) -> None:
        self.store = store
        self.collection = collection
        self.max_points = max_points
        self.q: queue.Queue[Any] = queue.Queue(maxsize=WRITE_QUEUE)
        self.done: queue.Queue[tuple[int, list[int]]] = queue.Queue()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="pagelens-writer", daemon=True)
        self.thread.start()

    def put(self, key: int, points: list[Any]) -> None:
        while True:
            self.check()
            try:
                self.q.put((key, points), timeout=POLL_S)
                return
            except queue.Full:
                continue

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                first = self.q.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if first is None:
                return
            items = [first]
            finish = False
            while sum(len(p) for _, p in items) < self.max_points:
                try:
                    more = self.q.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    finish = True
                    break
                items.append(more)
            try:
                self.store.upsert(self.collection, [p for _, pts in items for p in pts])
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                self.error = exc
                return
            for key, pts in items:
                self.done.put((key, [int(p.payload["page_no"]) for p in pts]))
            if finish:
                return

    def finish(self) -> None:
        """Write what is queued, then stop (re-raises a write error)."""
        while self.thread.is_alive():
            try:
                self.q.put(None, timeout=POLL_S)
                break
            except queue.Full:
                self.check()
        self.thread.join()
        self.check()

    def abort(self) -> None:
        """Stop without writing what is queued."""
        self._stop.set()
        self.thread.join(timeout=60)
