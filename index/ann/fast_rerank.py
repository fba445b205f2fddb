"""Fast two-stage MaxSim on the embedded store: an int8 copy of each page's vectors and CPU/GPU kernels.

Why (measured, ``bench/retrieval.py``, 10k pages x 1139 tokens, 2 CPU cores): Qdrant Edge's
``two_stage`` spends its time in two places. The rerank: Edge scores one full multivector (1139 x 128
fp32, 20 query tokens) in ~0.2 ms, so the ~400 candidates needed for recall@5 >= 0.95 cost ~80 ms.
And the prefetch: HNSW over pooled *multi*vectors computes a 20 x 32 MaxSim per visited node; two
such searches with ef = 200-300 cost 35-45 ms. The same work in bfloat16 with torch, in
cache-sized chunks laid out so every max runs over contiguous memory, costs ~0.03 ms per full page
and ~1.5 us per page for the pooled vectors: a brute-force pass over all 10k pages' pooled vectors
is faster than the HNSW searches, and exact on the pooled vectors.

The full vectors are kept as int8 codes with one float32 scale per token vector (symmetric, absmax /
127): half the bytes of bfloat16 (146 KB per 1139-token page: 100k pages = 15 GB, which still fits
in the page cache of a 24 GB machine, where bf16's 29 GB did not), no slower (codes are widened to
bf16 chunk by chunk, 7.1 vs 7.9 ms for 250 pages here) and as close to fp32 MaxSim (max abs. error
8.7e-3 vs 9.1e-3 for 20 unit-norm query tokens). Those errors mean the kernels only *choose* pages:
the final scores and order come from Qdrant's exact MaxSim on the best ``rerank_candidates``
(``QdrantEdgeStore._search_fast``).

On disk, per collection, ``<collection>/rerank/``::

    vectors.i8     full multivectors, int8 codes, [total_tokens, dim], append-only
    scales.f32     float32 [total_tokens]: row r of the vectors is ``codes[r] * scales[r]``
    pooled.bf16    [n_records, 2, POOLED_WIDTH, dim] bfloat16: the page's row means then column means,
                   each padded to POOLED_WIDTH by repeating the first one (maxima unchanged); slot i
                   belongs to record i
    index.bin      32-byte records, append-only: point uuid (16 B) | first row in vectors.i8
                   (int64) | n_tokens (int32; 0 = point deleted) | dim (uint16) | width (uint16).
                   The last record of an id wins.
    tokens/        the token-level first stage over these records (``pagelens.index.ann.token_index``), built by
                   ``ensure_token_index`` for large collections, kept current by ``append``/``remove``
                   and renumbered by ``compact``

It is a cache of what Qdrant holds, never the source of truth: data is written and fsynced before
its index record, so a crash leaves at worst a torn tail (ignored); a point missing from it (a crash
between the Qdrant write and the append, a collection older than this file) sends the search to
Qdrant's own prefetch and rerank until ``QdrantEdgeStore.optimize`` backfills it; a deleted point
left in it is dropped by Qdrant's exact stage. ``optimize`` also compacts the files once dead records
outnumber live ones. A cache in the earlier bfloat16 layout (``vectors.bf16``) is deleted when
opened, and rebuilt the same way. One writer process per Edge root (as Edge itself); calls are serialised by the
store's lock, except a search's kernels: the first stage and the int8 rerank read views taken under
it (``ScanView``, ``RerankView``, ``token_search``, ``pooled_search``: references to the files, id list
and live mask of that moment, which appends, deletions and compactions replace and never change).
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pagelens.index.ann.dedup_index import DECIDE_PAGES, MAX_KEPT_SHARE, DedupIndex, kept_codes
from pagelens.index.ann.sketch_index import (
    FIT_ROWS,
    MAX_CONE_COSINE,
    MAX_VARIANCE_SHARE,
    SketchIndex,
    fit_projection,
    mean_cosine,
    project_codes,
    variance_share,
)
from pagelens.index.ann.token_index import ASSIGN_CHUNK_ROWS, TokenIndex, train_codebook

logger = logging.getLogger(__name__)

VECTORS_FILE = "vectors.i8"
CODEC_FILE = "codec.f32"  # float32 [1 + dim]: the collection's code scale, then its centre (mean token vector)
CODEC_MARGIN = 1.25  # the scale leaves this much headroom over the centred values seen when it was fitted
CODEC_FIT_ROWS = 1 << 16  # token vectors (of the first appended pages) the centre and scale are fitted on
SCAN_CHUNK_ROWS = 1 << 17  # token rows per step of the whole-collection scan: 128k x 128 B = 16 MB of codes
MIN_CHUNK_ROWS = 1 << 14  # the smallest step when a scan is split over threads (``chunk_rows``)
SCALES_FILE = "scales.f32"
LEGACY_VECTORS_FILE = "vectors.bf16"  # the bfloat16 layout of 2026-11: discarded and rebuilt
POOLED_FILE = "pooled.bf16"
INDEX_FILE = "index.bin"
RECORD = struct.Struct("<16sqiHH")  # uuid bytes, first row, n_tokens (0: deleted), dim, pooled width
POOLED_WIDTH = 32  # row/column means kept per page: a 2048-px page has at most 4 x 8 = 32 patch rows
FULL_CHUNK_PAGES = 16  # pages per full-vector kernel step: 16 x 1139 x 128 x 2 B = 4.7 MB of bf16
TOKENS_DIR = "tokens"  # pagelens.index.ann.token_index.TokenIndex of this cache
DEDUP_DIR = "dedup"  # pagelens.index.ann.dedup_index.DedupIndex of this cache
SKETCH_DIR = "sketch"  # pagelens.index.ann.sketch_index.SketchIndex of this cache
SKETCH_BATCH_RECORDS = 4096  # records projected per step of ensure_sketch_index
TOKEN_SAMPLE = 1 << 19  # token vectors drawn (from every live page) to train the token codebook
POOLED_CHUNK_PAGES = 1024  # pages per pooled kernel step: 1024 x 64 x 128 x 2 B = 16.8 MB


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 array -> uint16 bfloat16 bit patterns of the same shape, rounded to nearest even (as torch)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    return ((bits + rounding) >> 16).astype(np.uint16)


def from_bf16_bits(b: np.ndarray) -> np.ndarray:
    """uint16 bfloat16 bit patterns -> float32 (exact)."""
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def quantize_int8(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 [n, dim] -> (int8 codes [n, dim], float32 scales [n]) with ``x ~ codes * scales[:, None]``:
    symmetric per row, scale = max |x| / 127, so each value is off by at most scale / 2 (an all-zero
    row gets scale 0)."""
    v = np.ascontiguousarray(x, dtype=np.float32)
    scales = (np.abs(v).max(axis=1) / np.float32(127.0)).astype(np.float32)
    safe = np.where(scales > 0, scales, np.float32(1.0))
    codes = np.clip(np.rint(v / safe[:, None]), -127, 127).astype(np.int8)
    return codes, scales


def fit_codec(x: np.ndarray) -> tuple[np.ndarray, float]:
    """(centre float32 [dim], scale) of the centred int8 code for token vectors ``x`` [n, dim]:
    centre = the mean token vector, scale = ``CODEC_MARGIN`` * max |x - centre| / 127.

    Why centred (measured on ``bench/retrieval.py``'s anisotropic generator, 1,000 pages, exact top 5
    covered by the 16 best approximate pages): late-interaction token vectors fill a narrow cone, so
    their components share a large common part; subtracting it leaves the part that tells pages apart,
    and one scale for every token then keeps integer dot products comparable across tokens (their max
    and sum run in int32). MaxSim's ranking is unchanged by the shift: ``q . (centre + d)`` adds the
    same ``q . centre`` to every page."""
    v = np.asarray(x, dtype=np.float32)
    centre = v.mean(axis=0).astype(np.float32)
    spread = float(np.abs(v - centre).max()) if len(v) else 0.0
    scale = max(spread, 1e-6) * CODEC_MARGIN / 127.0
    return centre, scale


def encode_centred(x: np.ndarray, centre: np.ndarray, scale: float) -> np.ndarray:
    """int8 codes [n, dim] of ``x`` [n, dim]: ``round((x - centre) / scale)`` clipped to +-127 (a value
    past the fitted range saturates; the exact stage still scores the page exactly)."""
    v = (np.asarray(x, dtype=np.float32) - centre) / np.float32(scale)
    return np.clip(np.rint(v), -127, 127).astype(np.int8)


def quantize_query(query: np.ndarray) -> tuple[Any, Any]:
    """float32 [n_q, dim] -> (int8 torch [n_q, dim], float32 torch [n_q] scales), symmetric per token."""
    import torch

    q = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32))
    s = q.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    return torch.round(q / s[:, None]).clamp(-127, 127).to(torch.int8), s


def segment_maxsim(qi: Any, qs: Any, codes: Any, offsets: np.ndarray, scale: float, bias: float) -> np.ndarray:
    """Approximate MaxSim of one query against consecutive pages whose centred codes are stacked in
    ``codes`` (int8 torch [rows, dim]); page p owns rows ``offsets[p]:offsets[p + 1]`` (``offsets``
    int64 [pages + 1], starting at 0, non-empty segments). ``qi``/``qs``: ``quantize_query``.
    Returns float32 [pages]: sum over query tokens of ``scale * qs[i] * max_j (qi[i] . codes[j])``
    plus ``bias`` (``query . centre`` summed over tokens, the same for every page).

    One int8 x int8 -> int32 matrix product (``torch._int_mm``; ~11x the bf16 path on this CPU, measured
    2026-12-06 under load, 64 pages x 1139 tokens) with the page tokens as the long, contiguous axis, so
    each max runs over contiguous int32 (``np.maximum.reduceat``)."""
    import torch

    sims = torch._int_mm(qi, codes.T).numpy()  # [n_q, rows] int32
    best = np.maximum.reduceat(sims, offsets[:-1], axis=1)  # [n_q, pages] int32
    weights = (qs.numpy().astype(np.float64) * scale)[:, None]
    return ((best * weights).sum(axis=0) + bias).astype(np.float32)


def fit_width(vectors: np.ndarray, width: int = POOLED_WIDTH) -> np.ndarray:
    """[n, dim] pooled vectors -> [width, dim]: padded by repeating row 0 (n < width; maxima unchanged)
    or, for n > width, means of ceil(n / width) consecutive rows (a coarser pooling), then padded."""
    v = np.asarray(vectors, dtype=np.float32)
    if len(v) > width:
        group = -(-len(v) // width)
        pad = (-len(v)) % group
        if pad:
            v = np.concatenate([v, np.repeat(v[-1:], pad, axis=0)])
        v = v.reshape(-1, group, v.shape[1]).mean(axis=1)
    if len(v) < width:
        v = np.concatenate([v, np.repeat(v[:1], width - len(v), axis=0)])
    return v


@dataclass(frozen=True)
class PreparedAppend:
    """What ``RerankCache.append`` computes from a write's vectors alone, computed beforehand outside the
    store's lock (``RerankCache.prepare``), so that searches do not wait for it: the centred int8 codes
    (int8 [n_tokens, dim] per page) under ``codec``, their token-index cells (torch int64 [total tokens],
    pages in order) under ``codebook`` (None without a token index), and each page's dedup covers at
    ``dedup_threshold`` when a dedup index is loaded. ``append`` uses them only while the cache still has
    that codec, the token index that codebook (by identity) and the dedup index that threshold, else it
    computes them again. The cells are most of the cost: 72 of the 99 ms a 1139-token page held the lock
    for (1,000 aniso pages, AMD EPYC, 2026-12-07; bench/README.md)."""

    codec: tuple[np.ndarray, float]
    codes: list[np.ndarray]
    codebook: Any
    cells: Any
    kept: list[np.ndarray] | None = None  # each page's dedup covers (``kept_codes``) at ``dedup_threshold``
    dedup_threshold: float | None = None


@dataclass(frozen=True)
class ScanView:
    """What ranking every page by its int8 codes reads, fixed at one moment (``RerankCache.scan_view`` /
    ``dedup_view``), so that the ranking, the costly part of a search, runs outside the store's lock while
    writers go on. It stays valid whatever they do meanwhile: appends only extend the files and the id
    list (record numbers below its length keep their meaning), deletions and compactions make new live
    masks, id lists and files (the old memmaps keep the old files' data), and it holds references only.

    codes: int8 torch [rows, dim] in the cache's codec (``centre + scale * codes``); record ``recs[i]``
    owns rows ``starts[i]:starts[i] + lens[i]`` (``starts`` ascending, ``lens`` > 0); ``live``: bool
    [records]; ``ids``: record number -> page id."""

    codes: Any
    recs: np.ndarray
    starts: np.ndarray
    lens: np.ndarray
    live: np.ndarray
    ids: list[str]
    centre: np.ndarray
    scale: float
    workers: int = 1  # threads the ranking is split over (``run_chunks``)

    def best(self, query: np.ndarray, m: int) -> list[str]:
        """The ids of the ``m`` live records whose codes score best for ``query`` [n_q, dim], best first
        (ties by id). The whole-collection scan and the dedup stage both rank through it, ``chunk_rows`` rows
        at a time, the chunks split over ``workers`` threads."""
        import torch

        recs, starts, lens = self.recs, self.starts, self.lens
        bias = float(np.asarray(query, dtype=np.float32).sum(axis=0) @ self.centre)
        qi, qs = quantize_query(query)
        scores = np.empty(len(recs), dtype=np.float32)
        chunks: list[tuple[int, int]] = []
        rows = chunk_rows(int(lens.sum()), self.workers)
        i = 0
        while i < len(recs):
            j = max(int(np.searchsorted(starts, starts[i] + rows, side="left")), i + 1)
            chunks.append((i, j))
            i = j

        def score(chunk: tuple[int, int]) -> None:
            i, j = chunk
            lo, hi = int(starts[i]), int(starts[j - 1] + lens[j - 1])
            offsets = np.concatenate([starts[i:j] - lo, [hi - lo]]).astype(np.int64)
            # rows between a page's end and the next start belong to no record (never: appends are
            # contiguous and compaction rewrites in order), so each segment is one page's rows
            with torch.inference_mode():
                scores[i:j] = segment_maxsim(qi, qs, self.codes[lo:hi], offsets, self.scale, bias)

        run_chunks(score, chunks, self.workers)
        cand = np.flatnonzero(self.live[recs])
        if not len(cand) or m < 1:
            return []
        k = min(m, len(cand))
        top = cand[np.argpartition(-scores[cand], k - 1)[:k]] if k < len(cand) else cand
        picked = sorted(top.tolist(), key=lambda c: (-float(scores[c]), self.ids[recs[c]]))
        return [self.ids[recs[c]] for c in picked]


@dataclass(frozen=True)
class RerankView:
    """What the int8 rerank of some candidate pages reads, fixed at one moment (``RerankCache.rerank_view``),
    so that it runs outside the store's lock like ``ScanView``: ``codes`` is the memmap of that moment
    (appends map a new one; a compaction writes new files; this one keeps its data), ``spans`` were
    read from the index at the same moment.

    codes: int8 torch [rows, dim] in the cache's codec (``centre + scale * codes``; None when no page is
    held); ``ids``: the candidates held, page ``ids[i]`` owns rows ``spans[i] = (first row, n_rows)``;
    ``missing``: the candidates the cache does not hold (Qdrant scores them)."""

    codes: Any
    ids: list[str]
    spans: list[tuple[int, int]]
    missing: list[str]
    centre: np.ndarray
    scale: float
    workers: int = 1

    def maxsim(self, query: np.ndarray, device: str = "cpu") -> np.ndarray:
        """Approximate MaxSim of ``query`` [n_q, dim] float32 against each page of ``ids``: float32
        [len(ids)], on the MaxSim scale (the centre's term added back). The centred int8 codes meet an
        int8 copy of the query in int32 (``segment_maxsim``); the errors (both roundings) only choose
        which pages Qdrant then scores exactly. ``device``: "cpu", or a CUDA device (there the codes
        are widened to bfloat16). Chunks of pages go to ``workers`` threads (``run_chunks``)."""
        import torch

        spans, full, scale = self.spans, self.codes, self.scale
        out = np.empty(len(spans), dtype=np.float32)
        if not spans:
            return out
        bias = float(np.asarray(query, dtype=np.float32).sum(axis=0) @ self.centre)
        workers = self.workers if device == "cpu" else 1
        step = max(1, chunk_rows(sum(n for _, n in spans), workers) // max(1, max(n for _, n in spans)))
        if device != "cpu":
            q = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32)).to(device=device, dtype=torch.bfloat16)
        else:
            qi, qs = quantize_query(query)

        def score(s0: int) -> None:
            chunk = spans[s0 : s0 + step]
            with torch.inference_mode():
                x = torch.cat([full[start : start + n] for start, n in chunk])  # [rows, dim] int8
                offsets = np.concatenate([[0], np.cumsum([n for _, n in chunk])]).astype(np.int64)
                if device == "cpu":
                    out[s0 : s0 + len(chunk)] = segment_maxsim(qi, qs, x, offsets, scale, bias)
                else:  # bf16 holds the int8 codes exactly
                    sim = (q @ x.to(device).to(torch.bfloat16).T).float().cpu().numpy()
                    best = np.maximum.reduceat(sim, offsets[:-1], axis=1)
                    out[s0 : s0 + len(chunk)] = best.sum(axis=0) * scale + bias

        run_chunks(score, list(range(0, len(spans), step)), workers)
        return out

    def vectors(self) -> list[np.ndarray]:
        """The held pages' token vectors as their codes give them back, in ``ids`` order: float32 [n_rows, dim]
        each (``centre + scale * codes``, within half a code step of the full vectors). A few ms for 32
        pages of 1139 tokens, where Qdrant's retrieve and its Python lists took ~220 ms of GIL time."""
        scale = np.float32(self.scale)
        return [self.codes[start : start + n].numpy().astype(np.float32) * scale + self.centre
                for start, n in self.spans]

    def best(self, query: np.ndarray, keep: int, device: str = "cpu") -> list[str]:
        """The ``keep`` held pages the int8 rerank scores best for ``query`` (all of them when no more),
        best first, then every missing one."""
        chosen = top_candidates(self.maxsim(query, device), self.ids, keep) if len(self.ids) > keep else list(self.ids)
        return chosen + self.missing


class RerankCache:
    """The int8 vector cache of one collection (see the module docstring).

    ``folder``: ``<collection>/rerank``; created on the first ``append``.
    """

    def __init__(self, folder: Path, workers: int = 1) -> None:
        self.folder = Path(folder)
        self.workers = max(1, int(workers))  # threads a scan or rerank is split over (``run_chunks``)
        self._index: dict[str, int] | None = None  # id -> its latest record number
        self._ids: list[str] = []  # record number -> id
        self._starts: list[int] = []  # record number -> first row in vectors.i8 / scales.f32
        self._lens: list[int] = []  # record number -> n_tokens (0: deleted)
        self._rows = 0  # rows of vectors.i8 covered by records
        self._xor = 0  # XOR of the live ids' 128-bit values (``digest``)
        self._dim: int | None = None
        self._full: Any = None  # torch views of the memmaps (None: stale): int8 codes [rows, dim],
        self._scales: Any = None  # their float32 scales [rows],
        self._pooled: Any = None  # bf16 pooled vectors [records, 2 * W, dim]
        self._live: Any = None  # torch bool [n_records]: the latest record of a live point
        self._indexed: int | None = None  # records with tokens (live or not), for token_candidates
        self._generation = 0  # bumped when records are renumbered or dropped (compact, clear)
        self._fds: tuple[int, int] | None = None  # vectors / scales descriptors for _read_ahead
        self._codec: tuple[np.ndarray, float] | None = None  # (centre [dim], scale) of the codes (CODEC_FILE)
        self._segments: Any = None  # (records with rows, their offsets) for ``scan`` (None: stale)
        self.tokens = TokenIndex(self.folder / TOKENS_DIR)  # the token-level first stage (optional)
        self.dedup = DedupIndex(self.folder / DEDUP_DIR)  # the near-duplicate-free first stage (optional)
        self.sketch = SketchIndex(self.folder / SKETCH_DIR)  # the fewer-dimensions first stage (optional)

    # --- files ---------------------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        return self.folder / name

    def _reset_state(self) -> None:
        self._index, self._ids, self._starts, self._lens, self._rows, self._dim = {}, [], [], [], 0, None
        self._xor = 0
        self._codec = None
        self._drop_views()

    def _drop_views(self) -> None:
        self._full = self._scales = self._pooled = self._live = self._segments = None
        fds, self._fds = self._fds, None  # read-ahead descriptors (files may be replaced)
        for fd in fds or ():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._indexed = None

    def _load(self) -> dict[str, int]:
        if self._index is not None:
            return self._index
        self._reset_state()
        try:
            if self._path(LEGACY_VECTORS_FILE).exists() or (
                    self._path(VECTORS_FILE).exists() and not self._path(CODEC_FILE).exists()):
                logger.warning("rerank cache %s has an older layout (bfloat16, or int8 codes that are not "
                               "centred): discarding it; `optimize` rebuilds it", self.folder)
                self.clear()
            raw = self._path(INDEX_FILE).read_bytes()
            codec = np.fromfile(self._path(CODEC_FILE), dtype=np.float32)
            vec_bytes = self._path(VECTORS_FILE).stat().st_size
            scale_bytes = self._path(SCALES_FILE).stat().st_size
            pooled_bytes = self._path(POOLED_FILE).stat().st_size
        except FileNotFoundError:
            return self._index  # type: ignore[return-value]
        self._codec = (codec[1:].copy(), float(codec[0]))
        usable = len(raw) - len(raw) % RECORD.size  # a torn last record (crash mid-append) is ignored
        index: dict[str, int] = {}
        for rec_no, off in enumerate(range(0, usable, RECORD.size)):
            pid_bytes, start, n, dim, width = RECORD.unpack_from(raw, off)
            self._dim = self._dim or dim
            slot_end = (rec_no + 1) * 2 * width * dim * 2
            if (dim != self._dim or width != POOLED_WIDTH or (start + n) * dim > vec_bytes
                    or (start + n) * 4 > scale_bytes or slot_end > pooled_bytes):
                if off + RECORD.size < usable:  # not the tail: the files do not belong together
                    logger.warning("rerank cache %s is inconsistent at record %d: discarding it (Qdrant "
                                   "scores every page until `optimize` rebuilds it)", self.folder, rec_no)
                    self.clear()
                    return self._load()
                break
            pid = str(uuid.UUID(bytes=pid_bytes))
            self._ids.append(pid)
            self._starts.append(start)
            self._lens.append(n)
            if n:
                if pid not in index:
                    self._xor ^= int.from_bytes(pid_bytes, "big")
                index[pid] = rec_no
                self._rows = max(self._rows, start + n)
            elif pid in index:
                del index[pid]
                self._xor ^= int.from_bytes(pid_bytes, "big")
        self._index = index
        return index

    def clear(self) -> None:
        """Delete the cache files (the next append starts afresh)."""
        for name in (INDEX_FILE, VECTORS_FILE, SCALES_FILE, POOLED_FILE, LEGACY_VECTORS_FILE, CODEC_FILE):
            self._path(name).unlink(missing_ok=True)
        self.tokens.clear()
        self.dedup.clear()
        self.sketch.clear()
        self._generation += 1
        self._index = None
        self._reset_state()

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, point_id: object) -> bool:
        return str(point_id) in self._load()

    @property
    def live_rows(self) -> int:
        """Token rows of the live pages (O(pages))."""
        return sum(self._lens[r] for r in self._load().values())

    @property
    def dead_records(self) -> int:
        """Records of deleted points or superseded by a later one (disk waste until ``compact``)."""
        live = len(self._load())
        return len(self._ids) - live

    def ids(self) -> set[str]:
        return set(self._load())

    def digest(self) -> tuple[int, int]:
        """(live ids, XOR of their 128-bit values): equal to ``pagelens.index.stores.search_status.IdDigest.digest``
        of the same id set, so the cache is compared with Qdrant's points by identity in O(1)."""
        return len(self._load()), self._xor

    def prepare(self, items: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]]) -> PreparedAppend | None:
        """The part of ``append(items)`` that needs only the vectors (``PreparedAppend``), for a caller to
        compute outside the lock it appends under; None before the first pages fixed the codec. Reads the
        codec, the token codebook and whether a dedup index is loaded as they are at this moment, without
        locking and without reading any file (each is replaced whole, never changed in place, and a load
        here could race a compaction under the lock); ``append`` checks they are still current."""
        codec = self._codec
        if codec is None or not items:
            return None
        centre, scale = codec
        codes = [encode_centred(np.asarray(full, dtype=np.float32), centre, scale) for _, full, _, _ in items]
        codebook = self.tokens.codebook
        cells = None
        if codebook is not None:
            import torch

            with torch.inference_mode():
                cells = codebook.assign(torch.cat([torch.from_numpy(c) for c in codes]))
        threshold = self.dedup.threshold
        kept = [kept_codes(c, centre, scale, threshold) for c in codes] if self.dedup.loaded_covered else None
        return PreparedAppend(codec, codes, codebook, cells, kept, threshold)

    def append(self, items: Iterable[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
               prepared: PreparedAppend | None = None) -> int:
        """Append (point id, full [n_tokens, dim], rows [r, dim], cols [c, dim]) float32 tuples;
        returns how many were written. Data is written and fsynced before its index records.
        ``prepared``: ``prepare(items)``, computed outside the caller's lock (used while still current)."""
        self._load()
        items = [(str(pid), np.asarray(f, dtype=np.float32), rows, cols) for pid, f, rows, cols in items]
        if not items:
            return 0
        dim = self._dim or int(items[0][1].shape[1])
        for pid, full, rows, cols in items:
            for what, arr in (("full", full), ("rows", rows), ("cols", cols)):
                if np.ndim(arr) != 2 or np.shape(arr)[1] != dim or np.shape(arr)[0] < 1:
                    raise ValueError(f"point {pid}: {what} must be [n, {dim}], got {np.shape(arr)}")
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._codec is None or not self._path(CODEC_FILE).exists():  # the first pages fix the code
            sample = np.concatenate([f for _, f, _, _ in items])
            if len(sample) > CODEC_FIT_ROWS:
                sample = sample[np.random.default_rng(0).choice(len(sample), CODEC_FIT_ROWS, replace=False)]
            centre, scale = fit_codec(sample)
            codec_bytes = np.concatenate([np.asarray([scale], dtype=np.float32), centre]).astype(np.float32).tobytes()
            tmp = self._path(CODEC_FILE + ".tmp")
            with open(tmp, "wb") as fh:
                fh.write(codec_bytes)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self._path(CODEC_FILE))
            self._codec = (centre, scale)
        centre, scale = self._codec
        if prepared is not None and (prepared.codec is not self._codec or len(prepared.codes) != len(items)):
            prepared = None  # the codec changed meanwhile (a cleared cache): computed again here
        n_records = len(self._ids)
        starts = []
        row = self._rows  # rows past the last record are a crashed append's: overwritten
        with open(self._path(VECTORS_FILE), "ab") as fv, open(self._path(SCALES_FILE), "ab") as fs:
            fv.truncate(row * dim)
            fs.truncate(row * 4)
            fv.seek(0, os.SEEK_END)
            fs.seek(0, os.SEEK_END)
            all_codes = []
            for i, (_, full, _, _) in enumerate(items):
                starts.append(row)
                codes = prepared.codes[i] if prepared is not None else encode_centred(full, centre, scale)
                all_codes.append(codes)
                fv.write(codes.tobytes())
                fs.write(np.full(len(codes), scale, dtype=np.float32).tobytes())
                row += int(full.shape[0])
            for fh in (fv, fs):
                fh.flush()
                os.fsync(fh.fileno())
        self._append_pooled(
            b"".join(to_bf16_bits(np.concatenate([fit_width(rows), fit_width(cols)])).tobytes()
                     for _, _, rows, cols in items),
            n_records, dim,
        )
        records = b"".join(
            RECORD.pack(uuid.UUID(pid).bytes, start, int(full.shape[0]), dim, POOLED_WIDTH)
            for (pid, full, _, _), start in zip(items, starts, strict=True)
        )
        self._write_records(records, n_records)
        index = self._load()
        for (pid, full, _, _), start in zip(items, starts, strict=True):
            if pid not in index:
                self._xor ^= uuid.UUID(pid).int
            index[pid] = len(self._ids)
            self._ids.append(pid)
            self._starts.append(start)
            self._lens.append(int(full.shape[0]))
            self._rows = max(self._rows, start + int(full.shape[0]))
        self._dim = dim
        self._drop_views()
        self._index_tokens(n_records, all_codes, prepared)
        self._index_dedup(n_records, all_codes, prepared)
        self._index_sketch(n_records, all_codes)
        return len(items)

    def _index_tokens(self, first_record: int, codes: list[np.ndarray], prepared: PreparedAppend | None = None) -> None:
        """Add new records (int8 codes [n_tokens, dim] each; [0, dim] for a tombstone) to the token
        index, if there is one, with ``prepared``'s cells when they were assigned with its codebook. A
        failure leaves it behind the cache (not ``token_index_ready``, so searches use the pooled first
        stage) until ``ensure_token_index`` catches up."""
        if not self.tokens.load():
            return
        import torch

        cells = None
        if prepared is not None and prepared.codebook is self.tokens.codebook:  # loaded above: not None
            cells = prepared.cells
        try:
            self.tokens.append(first_record, [torch.from_numpy(c) for c in codes], cells=cells)
        except Exception as exc:  # the cache itself is fine: only the first stage falls back
            logger.warning("could not add %d pages to the token index of %s (%s): searches use the pooled "
                           "first stage until `optimize`", len(codes), self.folder, exc)

    def _index_dedup(self, first_record: int, codes: list[np.ndarray], prepared: PreparedAppend | None = None) -> None:
        """Add the covers of new records (int8 codes [n_tokens, dim] each; [0, dim] for a tombstone) to the
        dedup index when it covered every earlier record, so a search during an upload keeps the dedup plan
        and sees the new pages (~3-5 ms per 1139-token page). Else, or on a failure, it stays behind the
        cache (searches scan every page) until ``ensure_dedup_index`` catches up at ``optimize``."""
        if self.dedup.covered != first_record or not first_record or self._codec is None:
            return
        centre, scale = self._codec
        threshold = self.dedup.threshold
        try:
            if prepared is not None and prepared.kept is not None and prepared.dedup_threshold == threshold:
                kept = prepared.kept  # computed outside the store's lock (``prepare``), same codec and threshold
            else:
                kept = [kept_codes(c, centre, scale, threshold) for c in codes]
            self.dedup.append(first_record, kept, self._dim or 1)
        except Exception as exc:  # the cache itself is fine: only the first stage falls back
            logger.warning("could not add %d pages to the dedup index of %s (%s): searches scan every page "
                           "until `optimize`", len(codes), self.folder, exc)

    def _index_sketch(self, first_record: int, codes: list[np.ndarray]) -> None:
        """Add new records (int8 codes [n_tokens, dim] each; [0, dim] for a tombstone) to the sketch index
        when it covered every earlier record, as ``_index_dedup`` does (one [n, dim] x [dim, 64] product
        per page). Else, or on a failure, it stays behind until ``ensure_sketch_index``."""
        if self.sketch.covered != first_record or not first_record or self._codec is None:
            return
        try:
            self.sketch.append_codes(first_record, codes, self._codec[1])
        except Exception as exc:  # the cache itself is fine: only the first stage falls back
            logger.warning("could not add %d pages to the sketch index of %s (%s): searches scan every page "
                           "until `optimize`", len(codes), self.folder, exc)

    def _append_pooled(self, slots: bytes, n_records: int, dim: int) -> None:
        """Append pooled slots after the ``n_records`` that have index records (slots of a crashed
        append that never got their records are cut first), fsynced."""
        with open(self._path(POOLED_FILE), "ab") as fh:
            fh.truncate(n_records * 2 * POOLED_WIDTH * dim * 2)
            fh.seek(0, os.SEEK_END)
            fh.write(slots)
            fh.flush()
            os.fsync(fh.fileno())

    def _write_records(self, records: bytes, n_records: int) -> None:
        with open(self._path(INDEX_FILE), "ab") as fh:
            fh.truncate(n_records * RECORD.size)  # drop a torn tail
            fh.seek(0, os.SEEK_END)
            fh.write(records)
            fh.flush()

    def remove(self, ids: Iterable[str]) -> int:
        """Mark points deleted (tombstone records, with zero pooled slots); returns how many were held."""
        index = self._load()
        gone = [str(i) for i in ids if str(i) in index]
        if not gone or self._dim is None:
            return 0
        n_records = len(self._ids)
        self._append_pooled(b"\x00" * (2 * POOLED_WIDTH * self._dim * 2 * len(gone)), n_records, self._dim)
        self._write_records(b"".join(RECORD.pack(uuid.UUID(p).bytes, 0, 0, self._dim, POOLED_WIDTH) for p in gone),
                            n_records)
        for pid in gone:
            if index.pop(pid, None) is not None:
                self._xor ^= uuid.UUID(pid).int
            self._ids.append(pid)
            self._starts.append(0)
            self._lens.append(0)
        self._drop_views()
        self._index_tokens(n_records, [np.zeros((0, self._dim), dtype=np.int8)] * len(gone))
        self._index_dedup(n_records, [np.zeros((0, self._dim), dtype=np.int8)] * len(gone))
        self._index_sketch(n_records, [np.zeros((0, self._dim), dtype=np.int8)] * len(gone))
        return len(gone)

    def compact(self, live_ids: set[str]) -> int:
        """Rewrite the files keeping only the latest record of each held id in ``live_ids``; returns
        the number of records dropped. Built in temp files and swapped in with the
        index removed first, so a crash in between leaves an empty, valid cache."""
        index = self._load()
        keep = sorted(pid for pid in index if pid in live_ids)
        dropped = len(self._ids) - len(keep)
        if dropped == 0 or self._dim is None:
            return 0
        dim = self._dim
        full = np.memmap(self._path(VECTORS_FILE), dtype=np.int8, mode="r", shape=(self._rows, dim))
        scales = np.memmap(self._path(SCALES_FILE), dtype=np.float32, mode="r", shape=(self._rows,))
        pooled = np.memmap(self._path(POOLED_FILE), dtype=np.uint16, mode="r",
                           shape=(len(self._ids), 2 * POOLED_WIDTH, dim))
        data_files = (VECTORS_FILE, SCALES_FILE, POOLED_FILE)
        tmp = {name: self._path(name + ".tmp") for name in (*data_files, INDEX_FILE)}
        records = bytearray()
        row = 0
        with open(tmp[VECTORS_FILE], "wb") as fv, open(tmp[SCALES_FILE], "wb") as fs, \
                open(tmp[POOLED_FILE], "wb") as fp:
            for pid in keep:
                rec = index[pid]
                start, n = self._starts[rec], self._lens[rec]
                fv.write(np.ascontiguousarray(full[start : start + n]).tobytes())
                fs.write(np.ascontiguousarray(scales[start : start + n]).tobytes())
                fp.write(np.ascontiguousarray(pooled[rec]).tobytes())
                records += RECORD.pack(uuid.UUID(pid).bytes, row, n, dim, POOLED_WIDTH)
                row += n
            for fh in (fv, fs, fp):
                fh.flush()
                os.fsync(fh.fileno())
        tmp[INDEX_FILE].write_bytes(bytes(records))
        del full, scales, pooled
        mapping = np.full(len(self._ids), -1, dtype=np.int64)  # old record -> new record
        mapping[[index[pid] for pid in keep]] = np.arange(len(keep))
        self._drop_views()
        self._path(INDEX_FILE).unlink(missing_ok=True)
        for name in data_files:
            os.replace(tmp[name], self._path(name))
        os.replace(tmp[INDEX_FILE], self._path(INDEX_FILE))
        self._index = None
        self._generation += 1
        self._load()
        if self.tokens.load():
            if self.tokens.ready(len(mapping)):
                self.tokens.remap(mapping, len(keep))
            else:  # behind the cache: rebuilt by ensure_token_index
                self.tokens.clear()
        self.dedup.clear()  # records renumbered: rebuilt by ensure_dedup_index
        self.sketch.clear()  # the same, by ensure_sketch_index
        logger.info("compacted %s: dropped %d dead records, %d kept", self.folder, dropped, len(keep))
        return dropped

    def close(self) -> None:
        self._drop_views()
        self._generation += 1  # a token build running outside the lock must not install into it

    def warm(self) -> None:
        """Ask the kernel to read the cache files into the page cache in the background
        (``posix_fadvise(WILLNEED)``), so the first searches after a start do not fault pages in
        one by one from disk. Returns at once; a no-op where unsupported."""
        advise = getattr(os, "posix_fadvise", None)
        if advise is None:
            return
        for name in (POOLED_FILE, SCALES_FILE, VECTORS_FILE):
            try:
                fd = os.open(self._path(name), os.O_RDONLY)
            except OSError:
                continue
            try:
                advise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            except OSError:
                pass
            finally:
                os.close(fd)

    # --- kernels -------------------------------------------------------------------------------

    def _views(self) -> tuple[Any, Any, Any, Any]:
        """(full int8 codes [rows, dim], their float32 scales [rows], pooled bf16 [records, 2 * W, dim])
        tensors over the memmaps, and the live mask [records]."""
        import torch

        self._load()
        if self._pooled is None and self._dim is not None and self._ids:
            dim = self._dim
            with warnings.catch_warnings():  # read-only memmaps: torch warns it cannot write; we never do
                warnings.simplefilter("ignore", UserWarning)
                if self._rows:
                    full = np.memmap(self._path(VECTORS_FILE), dtype=np.int8, mode="r", shape=(self._rows, dim))
                    self._full = torch.from_numpy(full)
                    scales = np.memmap(self._path(SCALES_FILE), dtype=np.float32, mode="r", shape=(self._rows,))
                    self._scales = torch.from_numpy(scales)
                pooled = np.memmap(self._path(POOLED_FILE), dtype=np.uint16, mode="r",
                                   shape=(len(self._ids), 2 * POOLED_WIDTH, dim))
                self._pooled = torch.from_numpy(pooled).view(torch.bfloat16)
            live = torch.zeros(len(self._ids), dtype=torch.bool)
            live[list(self._load().values())] = True
            self._live = live
        return self._full, self._scales, self._pooled, self._live

    def _read_ahead(self, spans: Sequence[tuple[int, int]]) -> None:
        """Start reading the (first row, n_rows) spans of the vectors and scales into the page cache,
        all at once (``posix_fadvise(WILLNEED)``, asynchronous), before the kernel touches them. A
        collection bigger than RAM has most candidates on disk: faulting a page in 4 KB at a time
        as the kernel reaches it cost ~0.5 ms per candidate page (measured, 100k pages); in parallel
        the disk serves them in a fraction of that. A no-op where unsupported."""
        advise = getattr(os, "posix_fadvise", None)
        if advise is None or not spans or self._dim is None:
            return
        if self._fds is None:
            try:
                self._fds = (os.open(self._path(VECTORS_FILE), os.O_RDONLY), os.open(self._path(SCALES_FILE), os.O_RDONLY))
            except OSError:
                return
        vec_fd, scale_fd = self._fds
        try:
            for start, n in spans:
                advise(vec_fd, start * self._dim, n * self._dim, os.POSIX_FADV_WILLNEED)
                advise(scale_fd, start * 4, n * 4, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass

    def split(self, ids: Sequence[str]) -> tuple[list[str], list[str]]:
        """(ids held here, ids missing), each in the given order."""
        index = self._load()
        return [i for i in ids if i in index], [i for i in ids if i not in index]

    def maxsim(self, query: np.ndarray, ids: Sequence[str], device: str = "cpu") -> np.ndarray:
        """Approximate MaxSim of ``query`` [n_q, dim] float32 against the full vectors of each page of
        ``ids`` (all held here, see ``split``): float32 [len(ids)] (``RerankView.maxsim``)."""
        return self.rerank_view(ids).maxsim(query, device)

    def rerank_view(self, ids: Sequence[str]) -> RerankView:
        """What the int8 rerank of ``ids`` reads, as of now (``RerankView``: the pages held here, in the
        given order, and those missing), their rows asked into the page cache (``_read_ahead``). Take it
        under the store's lock; score with it outside."""
        index = self._load()
        held = [i for i in ids if i in index]
        missing = [i for i in ids if i not in index]
        if not held or self._codec is None:
            return RerankView(None, [], [], missing, np.zeros(0, dtype=np.float32), 1.0, self.workers)
        full, _, _, _ = self._views()
        spans = [(self._starts[index[i]], self._lens[index[i]]) for i in held]
        self._read_ahead(spans)
        return RerankView(full, held, spans, missing, self._codec[0], self._codec[1], self.workers)

    def scan(self, query: np.ndarray, m: int) -> list[str]:
        """The ``m`` live pages with the best approximate MaxSim for ``query`` [n_q, dim] over the WHOLE
        collection (every live page's codes, ``SCAN_CHUNK_ROWS`` at a time), best first (ties by id).

        The first stage that holds on any geometry: each page is scored with every query token at
        int8 precision, so it needs no assumption about how tokens spread (unlike pooled vectors or a
        token codebook, whose candidates miss the exact top pages when tokens fill a narrow cone).
        Costs one pass over the codes (146 KB per 1139-token page)."""
        view = self.scan_view()
        return view.best(query, m) if view is not None and m >= 1 else []

    def scan_view(self) -> ScanView | None:
        """The whole-collection scan's inputs as of now (``ScanView``; None when the cache is empty). Take it
        under the store's lock; rank with it outside."""
        index = self._load()
        if not index or self._codec is None:
            return None
        full, _, _, live = self._views()
        if self._segments is None:
            recs = np.asarray([r for r in range(len(self._ids)) if self._lens[r]], dtype=np.int64)
            starts = np.asarray([self._starts[r] for r in recs], dtype=np.int64)
            lens = np.asarray([self._lens[r] for r in recs], dtype=np.int64)
            order = np.argsort(starts, kind="stable")
            self._segments = (recs[order], starts[order], lens[order])
        recs, starts, lens = self._segments
        return ScanView(full, recs, starts, lens, live.numpy(), self._ids, self._codec[0], self._codec[1],
                        self.workers)

    def pooled_candidates(self, query: np.ndarray, k: int, device: str = "cpu") -> list[str]:
        """Brute-force MaxSim of ``query`` [n_q, dim] on every live page's row means and, separately,
        column means (bf16); returns the union of the top ``k`` by rows and the top ``k`` by cols
        (what Qdrant's two pooled prefetches return, without HNSW's approximation)."""
        return self.pooled_search(device)(query, k)

    def pooled_search(self, device: str = "cpu") -> Callable[[np.ndarray, int], list[str]]:
        """``pooled_candidates`` over the pooled vectors and live records of now: a function (query, k) ->
        ids to call outside the store's lock. Take it under the lock."""
        _, _, pooled, live = self._views()
        n_live, ids = len(self._load()), self._ids

        def search(query: np.ndarray, k: int) -> list[str]:
            import torch

            if pooled is None or not n_live:
                return []
            n = pooled.shape[0]
            q = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32)).to(device=device, dtype=torch.bfloat16)
            scores = torch.empty((n, 2), dtype=torch.float32)
            with torch.inference_mode():
                for s0 in range(0, n, POOLED_CHUNK_PAGES):
                    x = pooled[s0 : s0 + POOLED_CHUNK_PAGES].to(device)  # [C, 2W, dim], contiguous
                    c = x.shape[0]
                    sim = (q @ x.reshape(-1, x.shape[-1]).T).float()  # [n_q, C*2W] (fp32 max: see maxsim)
                    best = sim.view(q.shape[0], c, 2, POOLED_WIDTH).amax(dim=3)  # [n_q, C, 2]
                    scores[s0 : s0 + c] = best.sum(dim=0).cpu()
                scores[~live] = float("-inf")
                k = min(k, n_live)
                picked = torch.cat([torch.topk(scores[:, 0], k).indices, torch.topk(scores[:, 1], k).indices])
            seen: dict[str, None] = {}
            for rec in picked.tolist():
                seen.setdefault(ids[rec], None)
            return list(seen)

        return search

    # --- near-duplicate-free first stage (pagelens.index.ann.dedup_index) ----------------------------------

    def dedup_ready(self) -> bool:
        """Whether the dedup index covers every record (then ``dedup_candidates`` sees every page)."""
        self._load()
        return bool(self._ids) and self.dedup.ready(len(self._ids))

    def dedup_candidates(self, query: np.ndarray, m: int) -> list[str]:
        """The ids of the ``m`` live pages whose kept (near-duplicate-free) tokens score best for ``query``
        [n_q, dim], best first (ties by id). Call only when ``dedup_ready``."""
        view = self.dedup_view()
        return view.best(query, m) if view is not None and m >= 1 else []

    def dedup_view(self) -> ScanView | None:
        """``scan_view`` over the dedup index's kept tokens (None without one). Call only when ``dedup_ready``."""
        _, _, _, live = self._views()
        segments = self.dedup.segments()
        if live is None or segments is None or self._codec is None:
            return None
        codes, recs, starts, lens = segments
        return ScanView(codes, recs, starts, lens, live.numpy(), self._ids, self._codec[0], self._codec[1],
                        self.workers)

    def dedup_staleness(self) -> str:
        """Why ``ensure_dedup_index`` has work to do ("" when it has none): the index is behind the
        cache, or it was never decided, or it was declined and the cache has doubled since."""
        return self._index_staleness(self.dedup, "dedup")

    def _index_staleness(self, index: DedupIndex, name: str, min_rows: int = 0) -> str:
        """``dedup_staleness`` / ``sketch_staleness`` of ``index`` (the dedup or sketch index, named ``name``):
        "" when it covers every record or has nothing to do; an index never started is due only once the
        cache holds ``min_rows`` token vectors."""
        self._load()
        n_records, covered = len(self._ids), index.covered
        if n_records == 0 or self._codec is None or covered == n_records:
            return ""
        if covered:
            return f"the {name} index covers {covered} of the rerank cache's {n_records} records"
        if self._rows < min_rows:
            return ""
        declined = index.declined()
        if declined is None:
            return f"the {name} index was not decided yet"
        if n_records >= 2 * int(declined.get("records", 0)):
            return f"the {name} index was declined at {declined.get('records')} records and the cache has doubled"
        return ""

    def ensure_dedup_index(self, lock: Any = None) -> str:
        """Cover the records the dedup index lacks (all of them the first time: ~5 ms per 1139-token page
        here); returns ``"built"``, ``"caught up"``, ``"declined"`` (the covers of ``DECIDE_PAGES`` pages
        spread over the collection keep more than ``MAX_KEPT_SHARE`` of their tokens: not built, so an
        isotropic collection does not store its codes twice; decided again once the cache has doubled) or
        ``""`` (nothing to do, or the cache was compacted or cleared meanwhile: next time). The covers are
        computed outside ``lock`` (the store's), from a snapshot of the codes, so searches and upserts go
        on meanwhile."""
        guard = lock if lock is not None else contextlib.nullcontext()
        with guard:
            self._load()
            if self.dedup.covered > len(self._ids):  # covers records the cache lost (a crash)
                self.dedup.clear()
            if not self.dedup_staleness():
                return ""
            first, n_records = self.dedup.covered, len(self._ids)
            full, _, _, _ = self._views()
            generation, codec, dim = self._generation, self._codec, self._dim or 1
            assert codec is not None  # dedup_staleness found work: the cache has codes
            spans = [(self._starts[r], self._lens[r]) for r in range(first, n_records)]
        centre, scale = codec
        empty = np.zeros((0, dim), dtype=np.int8)

        def cover(start: int, n: int) -> np.ndarray:
            return kept_codes(full[start : start + n].numpy() if n else empty, centre, scale, self.dedup.threshold)

        done: dict[int, np.ndarray] = {}  # the sample's covers, kept for the build
        if first == 0:  # whether it is worth building, from pages spread over the collection
            for i in np.linspace(0, len(spans) - 1, min(len(spans), DECIDE_PAGES)).astype(int).tolist():
                done[i] = cover(*spans[i])
            kept_share = sum(len(c) for c in done.values()) / max(1, sum(spans[i][1] for i in done))
            if kept_share > MAX_KEPT_SHARE:
                with guard:
                    if generation != self._generation:
                        return ""
                    self.dedup.decline(kept_share, n_records)
                logger.info("dedup index of %s not built: covers keep %.0f%% of the tokens (more than %.0f%%: "
                            "no faster than the scan)", self.folder, 100 * kept_share, 100 * MAX_KEPT_SHARE)
                return "declined"
        pages = [done[i] if i in done else cover(*span) for i, span in enumerate(spans)]  # outside the lock
        with guard:
            if generation != self._generation or self.dedup.covered != first:
                logger.info("dedup index of %s: the cache changed meanwhile; covered next time", self.folder)
                return ""
            self.dedup.append(first, pages, dim)
        kept = sum(len(p) for p in pages)
        rows = sum(n for _, n in spans)
        logger.info("dedup index of %s: %d records covered, %d of %d tokens kept (%.0f%%)", self.folder,
                    len(pages), kept, rows, 100.0 * kept / max(1, rows))
        return "built" if first == 0 else "caught up"

    # --- fewer-dimensions first stage (pagelens.index.ann.sketch_index) ---------------------------------------

    def sketch_ready(self) -> bool:
        """Whether the sketch index covers every record (then ``sketch_search`` sees every page)."""
        self._load()
        return bool(self._ids) and self.sketch.ready(len(self._ids))

    def sketch_search(self) -> Callable[[np.ndarray, int], list[str]] | None:
        """A function (query [n_q, dim] float32, m) -> the ids of the ``m`` live pages whose sketch codes
        score best, best first, over the index and live records of now (``ScanView``; call it outside
        the store's lock); None without an index. Take it under the lock."""
        _, _, _, live = self._views()
        segments = self.sketch.segments()
        projection = self.sketch.projection()
        if live is None or segments is None or projection is None:
            return None
        codes, recs, starts, lens = segments
        components, scale = projection
        view = ScanView(codes, recs, starts, lens, live.numpy(), self._ids,
                        np.zeros(components.shape[1], dtype=np.float32), scale, self.workers)

        def search(query: np.ndarray, m: int) -> list[str]:
            projected = np.asarray(query, dtype=np.float32) @ components
            return view.best(projected, m) if m >= 1 else []

        return search

    def sketch_staleness(self, min_rows: int) -> str:
        """Why ``ensure_sketch_index`` has work to do ("" when it has none): the cache holds at least
        ``min_rows`` token vectors and the index is behind it, or was never decided, or was dropped (the
        self-check preferred another stage, or the tokens fill a cone) and the cache has doubled since."""
        return self._index_staleness(self.sketch, "sketch", min_rows)

    def drop_sketch(self) -> None:
        """Remove the sketch index and remember at how many records (decided again once the cache has
        doubled): the self-check chose another first stage, so its codes would only take disk."""
        self._load()
        self.sketch.decline(0.0, len(self._ids))

    def ensure_sketch_index(self, min_rows: int, lock: Any = None) -> str:
        """Build the sketch index (``sketch_staleness``), or catch it up; returns ``"built"``, ``"caught
        up"``, ``"declined"`` (the tokens fill a cone, ``MAX_CONE_COSINE``, or its components would hold
        nearly all their variance, ``MAX_VARIANCE_SHARE``: decided again once the cache has doubled) or
        ``""`` (nothing to do, or the cache changed meanwhile: next time). The projection is fitted on
        ``FIT_ROWS`` token vectors drawn from every live page, and the codes are computed from
        a snapshot of the cache outside ``lock`` (the store's), so searches and upserts go on meanwhile."""
        guard = lock if lock is not None else contextlib.nullcontext()
        with guard:
            self._load()
            if self.sketch.covered > len(self._ids):  # covers records the cache lost (a crash)
                self.sketch.clear()
            if not self.sketch_staleness(min_rows):
                return ""
            first, n_records = self.sketch.covered, len(self._ids)
            full, _, _, _ = self._views()
            generation, codec, dim = self._generation, self._codec, self._dim or 1
            assert codec is not None  # sketch_staleness found work: the cache has codes
            spans = [(self._starts[r], self._lens[r]) for r in range(first, n_records)]
            sample = self._token_sample(FIT_ROWS) if first == 0 else None
        if sample is not None:
            centred = sample()
            # not built where its top components would mislead the self-check (sketch_index docstring):
            # a cone, or a few directions holding nearly all the variance; the decline keeps the measure
            cosine = mean_cosine(codec[0][None, :] + centred, np.random.default_rng(0))
            declined: tuple[float, str] | None = None
            if cosine > MAX_CONE_COSINE:
                declined = cosine, f"the tokens fill a cone (mean cosine {cosine:.2f} > {MAX_CONE_COSINE:.2f})"
            else:
                components, scale = fit_projection(centred)
                share = variance_share(centred, components)
                if share > MAX_VARIANCE_SHARE:
                    declined = share, (f"its {components.shape[1]} components hold {share:.0%} of the variance "
                                       f"(> {MAX_VARIANCE_SHARE:.0%})")
            if declined is not None:
                with guard:
                    if generation != self._generation:
                        return ""
                    self.sketch.decline(round(declined[0], 4), n_records)
                logger.info("sketch index of %s not built: %s", self.folder, declined[1])
                return "declined"
            with guard:
                if generation != self._generation:
                    return ""
                self.sketch.start(components, scale)
        projection = self.sketch.projection()
        if projection is None:
            return ""
        components, scale = projection
        empty = np.zeros((0, dim), dtype=np.int8)
        done = 0
        for b in range(0, len(spans), SKETCH_BATCH_RECORDS):  # a batch at a time: bounded memory
            batch = spans[b : b + SKETCH_BATCH_RECORDS]
            codes = [project_codes(full[start : start + n].numpy() if n else empty, codec[1], components, scale)
                     for start, n in batch]  # outside the lock
            with guard:
                if generation != self._generation or self.sketch.covered != first + b:
                    logger.info("sketch index of %s: the cache changed meanwhile; built next time", self.folder)
                    return ""
                self.sketch.append(first + b, codes, components.shape[1])
            done += sum(len(c) for c in codes)
        logger.info("sketch index of %s: %d records, %d token vectors in %d components", self.folder,
                    len(spans), done, components.shape[1])
        return "built" if first == 0 else "caught up"

    # --- token-level first stage (pagelens.index.ann.token_index) -------------------------------------------

    def token_index_ready(self) -> bool:
        """Whether the token index covers every record (then ``token_candidates`` sees every page)."""
        self._load()
        return bool(self._ids) and self.tokens.ready(len(self._ids))

    def token_candidates(self, query: np.ndarray, m: int, nprobe: int = 16, coarse_probe: int = 4) -> list[str]:
        """The ids of the ``m`` live pages the token index scores best for ``query`` [n_q, dim]
        (``TokenIndex.candidates``), best first. Call only when ``token_index_ready``."""
        search = self.token_search(nprobe, coarse_probe)
        return search(query, m) if search is not None else []

    def token_search(self, nprobe: int = 16, coarse_probe: int = 4) -> Callable[[np.ndarray, int], list[str]] | None:
        """``token_candidates`` over the token index and live records of now (a ``TokenView``): a function
        (query, m) -> ids to call outside the store's lock (None without an index). Take it under the lock."""
        _, _, _, live = self._views()
        view = self.tokens.view()
        if live is None or view is None:
            return None
        # lists still hold deleted and superseded pages until a compaction: a list's share is of them all
        if self._indexed is None:
            self._indexed = int(np.count_nonzero(np.asarray(self._lens)))
        indexed, ids = self._indexed, self._ids

        def search(query: np.ndarray, m: int) -> list[str]:
            return [ids[r] for r in view.candidates(query, live, m, nprobe=nprobe, coarse_probe=coarse_probe,
                                                    indexed_records=indexed)]

        return search

    def _token_rows(self, first_record: int = 0) -> Any:
        """RowSource for ``TokenIndex``: the int8 codes of the live records from ``first_record``
        on, ~ASSIGN_CHUNK_ROWS tokens at a time, with each token's record number. It reads a snapshot
        (the views and record lists of now: appends only extend them, a compaction swaps in new
        ones), so it may run outside the store's lock."""
        import torch

        full, _, _, live = self._views()
        starts, lens = self._starts, self._lens
        recs = [r for r in range(first_record, len(self._ids)) if bool(live[r])]

        def rows() -> Any:
            batch: list[int] = []
            size = 0
            for r in [*recs, None]:
                if r is not None:
                    batch.append(r)
                    size += lens[r]
                    if size < ASSIGN_CHUNK_ROWS:
                        continue
                if not batch:
                    break
                x = torch.cat([full[starts[b] : starts[b] + lens[b]] for b in batch])
                owner = np.repeat(np.asarray(batch, dtype=np.int64), [lens[b] for b in batch])
                yield x, owner
                batch, size = [], 0

        return rows

    def _token_sample(self, n: int = TOKEN_SAMPLE, seed: int = 0) -> Any:
        """A function returning ~``n`` token vectors float32 [m, dim] drawn evenly from every live
        page (sorted reads); the rows are chosen now, read when called (outside the lock: a snapshot)."""
        full, scales, _, _ = self._views()
        index = self._load()
        per_page = max(1, -(-n // max(1, len(index))))
        rng = np.random.default_rng(seed)
        rows = np.sort(np.concatenate([self._starts[r] + rng.integers(0, self._lens[r], min(per_page, self._lens[r]))
                                       for r in sorted(index.values())]))

        def read() -> np.ndarray:  # the centred vectors (codes * scale): the token codebook lives there too
            codes = full.numpy()[rows].astype(np.float32)
            return codes * scales.numpy()[rows][:, None]

        return read

    def _catch_up_tokens(self) -> None:
        """Assign the records the token index is behind by (appended while it could not be told)."""
        import torch

        full, _, _, _ = self._views()
        first = self.tokens.covered
        empty = torch.zeros((0, self._dim or 1), dtype=torch.int8)
        pages = [full[self._starts[r] : self._starts[r] + self._lens[r]] if self._lens[r] else empty
                 for r in range(first, len(self._ids))]
        self.tokens.append(first, pages)

    def ensure_token_index(self, min_pages: int, retrain_growth: float = 2.0, fold_share: float = 0.25,
                           coarse: int = 256, fine: int = 256, lock: Any = None) -> str:
        """Keep the token index fit for the collection; returns what was done:

        * ``"built"``: none yet (or the collection grew ``retrain_growth``x since its codebook was
          trained: a codebook only knows the patches it was trained on) and at least ``min_pages``
          live pages: sample, train and assign every token (~5 min per 100k pages on 2 cores);
        * ``"caught up"``: pages appended while it could not be told are assigned now;
        * ``"folded"``: the pages appended since the build (kept in a delta) exceed ``fold_share``
          of it: merged into the lists;
        * ``"dropped"``: the collection shrank below ``min_pages / 2``;
        * ``""``: nothing to do (or a compaction replaced the records during a build: next time).

        ``lock``: the store's lock, taken here for everything but the build's sampling, training
        and assignment, which read a snapshot of the cache, so searches and upserts go on meanwhile
        (pages appended during a build are assigned when it is installed). None: no locking.
        """
        guard = lock if lock is not None else contextlib.nullcontext()
        with guard:
            index = self._load()
            live = len(index)
            have = self.tokens.load()
            if have and self.tokens.covered > len(self._ids):  # indexes records the cache lost (a crash)
                self.tokens.clear()
                have = False
            if live < min_pages:
                if have and live < min_pages / 2:
                    self.tokens.clear()
                    return "dropped"
                if not have:
                    return ""
            if have and live < retrain_growth * max(1, self.tokens.trained_pages):
                if not self.tokens.ready(len(self._ids)):
                    self._catch_up_tokens()
                    return "caught up"
                if self.tokens.delta_records > fold_share * max(1, self.tokens.covered - self.tokens.delta_records):
                    self.tokens.fold_delta()
                    return "folded"
                return ""
            generation, n_records = self._generation, len(self._ids)
            sample_of, rows = self._token_sample(), self._token_rows()
        sample = sample_of()  # outside the lock: reads and compute only
        codebook = train_codebook(sample, coarse=coarse, fine=fine)
        lists = TokenIndex.assign_all(codebook, rows)
        with guard:
            if generation != self._generation:  # compacted or cleared meanwhile: the records moved
                logger.info("token index of %s: the cache changed during the build; rebuilt next time", self.folder)
                return ""
            self.tokens.install(codebook, lists, n_records, live)
            if not self.tokens.ready(len(self._ids)):
                self._catch_up_tokens()  # pages appended during the build
            logger.info("token index of %s: %d cells trained on %d tokens of %d pages", self.folder,
                        codebook.n_cells, len(sample), live)
            return "built"


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _one_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)


def chunk_rows(total: int, workers: int) -> int:
    """Token rows per kernel step for ``total`` rows split over ``workers`` threads: ``SCAN_CHUNK_ROWS``
    on one thread; with more, about four steps per thread (so a thread slowed by other work leaves its
    share to the others) but no fewer than ``MIN_CHUNK_ROWS`` rows (the int8 product costs about the same
    per row from 16k rows up: 42-54 ns per row for 16k-128k-row steps over codes read from RAM, one
    thread, 2-core Intel Xeon, 2026-12-07)."""
    if workers <= 1:
        return SCAN_CHUNK_ROWS
    return int(min(SCAN_CHUNK_ROWS, max(MIN_CHUNK_ROWS, -(-total // (4 * workers)))))


def search_workers(n: int) -> int:
    """Threads one search's int8 kernels are split over for the ``search_threads`` setting ``n``
    (0: one per CPU core this process may run on)."""
    return n if n > 0 else max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def run_chunks(fn: Callable[[Any], None], chunks: Sequence[Any], workers: int) -> None:
    """``fn(chunk)`` for every chunk: in the calling thread when ``workers`` <= 1 or there is one chunk,
    else on a process-wide pool of ``workers`` threads with one torch thread each, which take the chunks
    from one queue (shared by concurrent searches). Why not torch's own threads: they split each chunk
    and meet at a barrier per step, so one core busy with other work stalls them all (measured 15x slower
    under contention, ``kernel_threads``); here a busy core only does fewer chunks. Measured 2026-12-07,
    2-core Intel Xeon, the dedup scan of 10,000 aniso pages: 101-105 ms on one thread, 63-74 ms on torch's
    two, 133 ms on torch's two with the other core busy (bench/README.md). Exceptions propagate."""
    if workers <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            fn(chunk)
        return
    with _POOLS_LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            pool = _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="pagelens-kernel",
                                                        initializer=_one_torch_thread)
    for future in [pool.submit(fn, chunk) for chunk in chunks]:
        future.result()


@contextlib.contextmanager
def kernel_threads(n: int) -> Iterator[None]:
    """Run the block's torch kernels on ``n`` (>= 1) intra-op threads, then restore. The searches use 1:
    more cores come from ``run_chunks``.

    torch's CPU thread count (OpenMP) belongs to the calling thread, so other threads (another search,
    the query encoder, an indexing job) keep theirs. Why not torch's threads: the int8 rerank runs
    ~150 small parallel steps per query, and each waits for its slowest thread. When anything else
    shares the cores, one of the two threads is often descheduled and the other spins at the barrier:
    measured on 2 shared cores under load (2026-12-01, 1,500 synthetic pages, 250 candidates), the
    int8 rerank took 2.1-3.1 s wall and ~560 ms of CPU with 2 threads, 136 ms wall and ~34 ms of CPU
    with 1 (``bench/README.md``)."""
    import torch

    before = torch.get_num_threads()
    if before == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def top_candidates(scores: np.ndarray, ids: Sequence[str], m: int) -> list[str]:
    """The ``m`` ids with the highest ``scores`` (ties by id), best first."""
    order = sorted(range(len(ids)), key=lambda i: (-float(scores[i]), ids[i]))
    return [ids[i] for i in order[:m]]
