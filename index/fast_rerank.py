"""Fast approximate MaxSim over candidate pages: a bfloat16 copy of the full multivectors + a CPU/GPU kernel.

Why: in ``two_stage`` search the cost is the rerank, not the prefetch. Qdrant Edge scores a full
multivector (1139 x 128 fp32, 20 query tokens) in ~0.2 ms on one of this machine's cores, so reranking
the ~450 candidates that pooled prefetch needs for recall@5 >= 0.95 at 10k pages takes ~100 ms. The
same MaxSim in bfloat16 with torch, chunked so a chunk of pages stays in cache and laid out so the max
runs over contiguous memory, takes ~0.025 ms per page (``bench/retrieval.py``). Scores from bf16 are
off by up to ~1e-2 (8-bit mantissa), so they only *choose* the few best candidates: the final scores
and order come from Qdrant's exact fp32 MaxSim on those (``QdrantEdgeStore.search``).

On disk, per collection, ``<collection>/rerank/``::

    vectors.bf16   raw bfloat16 bits (uint16), [total_tokens, dim], append-only
    index.bin      32-byte records, append-only: point uuid (16 B) | first token row (int64) |
                   n_tokens (int32) | dim (int32); the last record of an id wins

It is a cache of what Qdrant holds, never the source of truth: a point missing here (a crash between
the Qdrant upsert and the append, a collection made before this file existed) is simply scored exactly
by Qdrant; stale records of deleted points are never read because candidates come from Qdrant.
``QdrantEdgeStore.optimize`` backfills missing points and compacts the files when most records are
dead. Writers: one process per Edge root (like Edge itself), calls serialised by the store's lock.
"""

from __future__ import annotations

import logging
import os
import struct
import uuid
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

VECTORS_FILE = "vectors.bf16"
INDEX_FILE = "index.bin"
RECORD = struct.Struct("<16sqii")  # uuid bytes, first row, n_tokens, dim
CHUNK_PAGES = 32  # pages per kernel step: 32 x 1139 x 128 x 2 B = 9.3 MB, cache-sized


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 [n, d] -> uint16 [n, d] bfloat16 bit patterns, rounded to nearest even (as torch)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    return ((bits + rounding) >> 16).astype(np.uint16)


def from_bf16_bits(b: np.ndarray) -> np.ndarray:
    """uint16 bfloat16 bit patterns -> float32 (exact)."""
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


class Bf16VectorFile:
    """The bfloat16 multivector cache of one collection (see the module docstring).

    ``folder``: ``<collection>/rerank``; created on the first ``append``.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._index: dict[str, tuple[int, int]] | None = None  # id -> (first row, n_tokens)
        self._records = 0  # records in index.bin (live + dead)
        self._rows = 0  # rows in vectors.bf16
        self._dim: int | None = None
        self._map: np.ndarray | None = None  # uint16 [rows, dim] memmap, None when stale
        self._tensor: Any = None

    # --- files ---------------------------------------------------------------------------------

    @property
    def vectors_path(self) -> Path:
        return self.folder / VECTORS_FILE

    @property
    def index_path(self) -> Path:
        return self.folder / INDEX_FILE

    def _load(self) -> dict[str, tuple[int, int]]:
        if self._index is not None:
            return self._index
        index: dict[str, tuple[int, int]] = {}
        records = rows = 0
        dim: int | None = None
        try:
            raw = self.index_path.read_bytes()
            vec_bytes = self.vectors_path.stat().st_size
        except FileNotFoundError:
            raw, vec_bytes = b"", 0
        usable = len(raw) - len(raw) % RECORD.size  # a torn last record (crash mid-append) is ignored
        for off in range(0, usable, RECORD.size):
            pid, start, n, d = RECORD.unpack_from(raw, off)
            if dim is None:
                dim = d
            if d != dim or n < 1 or start < 0 or (start + n) * d * 2 > vec_bytes:
                continue  # vectors not (fully) on disk: treated as missing
            index[str(uuid.UUID(bytes=pid))] = (start, n)
            records += 1
            rows = max(rows, start + n)
        if dim is not None:
            rows = max(rows, vec_bytes // (2 * dim))
        self._index, self._records, self._rows, self._dim = index, records, rows, dim
        return index

    def _memmap(self) -> np.ndarray | None:
        """uint16 [rows, dim] view of vectors.bf16 (re-mapped after appends)."""
        if self._map is None:
            self._load()
            if self._dim is None or self._rows == 0:
                return None
            self._map = np.memmap(self.vectors_path, dtype=np.uint16, mode="r", shape=(self._rows, self._dim))
            self._tensor = None
        return self._map

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, point_id: object) -> bool:
        return str(point_id) in self._load()

    @property
    def dead_records(self) -> int:
        """Records superseded by a later one of the same id (they waste disk until ``compact``)."""
        return self._records - len(self._load())

    def ids(self) -> set[str]:
        return set(self._load())

    def append(self, items: Iterable[tuple[str, np.ndarray]]) -> int:
        """Append (point id, full [n_tokens, dim] float32) pairs; returns how many were written.
        Vectors are written and flushed before their index records, so a crash leaves no record
        pointing at missing rows."""
        self._load()
        items = [(str(pid), np.asarray(v, dtype=np.float32)) for pid, v in items]
        if not items:
            return 0
        dim = self._dim or int(items[0][1].shape[1])
        self.folder.mkdir(parents=True, exist_ok=True)
        records = bytearray()
        row = self._rows
        with open(self.vectors_path, "ab") as fh:
            if fh.tell() != row * dim * 2:  # a torn tail of vectors: start at a row boundary after it
                row = -(-fh.tell() // (dim * 2))
                fh.truncate(row * dim * 2)
            for pid, vec in items:
                if vec.ndim != 2 or vec.shape[1] != dim or vec.shape[0] < 1:
                    raise ValueError(f"point {pid}: expected [n, {dim}] vectors, got {vec.shape}")
                fh.write(to_bf16_bits(vec).tobytes())
                records += RECORD.pack(uuid.UUID(pid).bytes, row, int(vec.shape[0]), dim)
                row += int(vec.shape[0])
            fh.flush()
            os.fsync(fh.fileno())
        with open(self.index_path, "ab") as fh:
            if fh.tell() % RECORD.size:
                fh.truncate(fh.tell() - fh.tell() % RECORD.size)
            fh.write(bytes(records))
            fh.flush()
        index = self._load()
        row = self._rows
        for pid, vec in items:
            index[pid] = (row, int(vec.shape[0]))
            row += int(vec.shape[0])
        self._records += len(items)
        self._rows, self._dim = row, dim
        self._map = None
        self._tensor = None
        return len(items)

    def compact(self, live_ids: set[str]) -> int:
        """Rewrite both files keeping only the latest record of each id in ``live_ids``; returns the
        number of records dropped. Written to temp files, then swapped in (index first removed, so a
        crash in between leaves an empty, valid cache rather than a mismatched pair)."""
        index = self._load()
        keep = [(pid, index[pid]) for pid in sorted(live_ids) if pid in index]
        dropped = self._records - len(keep)
        mm = self._memmap()
        if dropped == 0 or mm is None:
            return 0
        tmp_vec, tmp_idx = self.vectors_path.with_suffix(".tmp"), self.index_path.with_suffix(".tmp")
        records = bytearray()
        row = 0
        dim = int(self._dim or 0)
        with open(tmp_vec, "wb") as fh:
            for pid, (start, n) in keep:
                fh.write(np.ascontiguousarray(mm[start : start + n]).tobytes())
                records += RECORD.pack(uuid.UUID(pid).bytes, row, n, dim)
                row += n
            fh.flush()
            os.fsync(fh.fileno())
        tmp_idx.write_bytes(bytes(records))
        self.close()
        self.index_path.unlink(missing_ok=True)
        os.replace(tmp_vec, self.vectors_path)
        os.replace(tmp_idx, self.index_path)
        self._index = None
        self._load()
        logger.info("compacted %s: dropped %d dead records, %d kept", self.folder, dropped, len(keep))
        return dropped

    def close(self) -> None:
        self._map = None
        self._tensor = None

    # --- scoring -------------------------------------------------------------------------------

    def _bf16_tensor(self) -> Any:
        import torch

        if self._tensor is None:
            mm = self._memmap()
            if mm is None:
                return None
            with warnings.catch_warnings():  # read-only memmap: torch warns it cannot write; we never do
                warnings.simplefilter("ignore", UserWarning)
                self._tensor = torch.from_numpy(mm).view(torch.bfloat16)
        return self._tensor

    def split(self, ids: Sequence[str]) -> tuple[list[str], list[str]]:
        """(ids held here, ids missing) in the given order."""
        index = self._load()
        held = [i for i in ids if i in index]
        return held, [i for i in ids if i not in index]

    def maxsim(self, query: np.ndarray, ids: Sequence[str], device: str = "cpu") -> np.ndarray:
        """Approximate MaxSim of ``query`` [n_q, dim] float32 against each page of ``ids`` (all held
        here: see ``split``): float32 [len(ids)], sum over query tokens of the max dot product, in
        bfloat16 (abs. error ~1e-2 for 20 unit-norm tokens). ``device``: where the kernel runs."""
        import torch

        index = self._load()
        data = self._bf16_tensor()
        out = np.empty(len(ids), dtype=np.float32)
        if not ids:
            return out
        if data is None:
            raise KeyError(f"no vectors cached in {self.folder}")
        spans = [index[i] for i in ids]
        q = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32)).to(device=device, dtype=torch.bfloat16)
        with torch.inference_mode():
            for s0 in range(0, len(spans), CHUNK_PAGES):
                chunk = spans[s0 : s0 + CHUNK_PAGES]
                width = max(n for _, n in chunk)
                # rows of each page, padded to `width` by repeating its first row (max unaffected)
                rows = np.empty((len(chunk), width), dtype=np.int64)
                for j, (start, n) in enumerate(chunk):
                    rows[j, :n] = np.arange(start, start + n)
                    rows[j, n:] = start
                x = data.index_select(0, torch.from_numpy(rows.reshape(-1))).to(device)  # [C*W, dim] bf16
                sim = q @ x.T  # [n_q, C*W]
                best = sim.view(q.shape[0], len(chunk), width).amax(dim=2)  # [n_q, C]
                out[s0 : s0 + len(chunk)] = best.float().sum(dim=0).cpu().numpy()
        return out


def top_candidates(scores: np.ndarray, ids: Sequence[str], m: int) -> list[str]:
    """The ``m`` ids with the highest ``scores`` (ties by id), best first."""
    order = sorted(range(len(ids)), key=lambda i: (-float(scores[i]), ids[i]))
    return [ids[i] for i in order[:m]]
