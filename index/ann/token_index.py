"""Token-level first stage for large collections: a two-level codebook of the patch vectors and
inverted lists cell -> pages (PLAID-style candidate generation), for ``pagelens.index.ann.fast_rerank``.

Why (measured, ``bench/candidates.py``, synthetic pages x 1139 tokens, 2 CPU cores): pooled vectors
(row/column means) stop being good candidates as a collection grows. At 100k pages the exact top 5
by MaxSim is among the union of the top 250 by row means and by column means only 70% of the time;
0.94 needs ~7.5k candidates. A query token matches a handful of *patches* of a relevant page almost
exactly, and a mean over a row of 32 patches blurs that match away. So the candidates come from the
patches themselves:

* **Codebook** (``train_codebook``): ``coarse`` spherical k-means centroids of a sample of token
  vectors drawn from the whole collection, then ``fine`` centroids trained inside each coarse cell:
  ``coarse * fine`` cells (65,536 by default) for the cost of assigning to ``coarse + fine`` (a flat
  65k codebook costs 128x more: ~2 PFLOP for 100k pages, a GPU job; this is ~15 TFLOP, ~3 min here).
* **Lists** (``CellLists``): for each cell, the pages (cache record numbers) with a token in it,
  each page once.
* **Candidates** (``candidate_scores``): each query token probes its ``nprobe`` best cells; a page
  scores, per query token, the best probed cell it holds (query token . centroid), summed over the
  query tokens. Cells held by more than ``max_list_share`` of the pages (white margins, the prompt
  tokens every page has) are skipped: they score every page alike and would cost the most. The best
  pages go on to the exact int8 rerank (``RerankCache.maxsim``), so this stage only has to *find*
  the relevant pages, not order them.

The persistent form (``TokenIndex``) lives in ``<collection>/rerank/tokens/`` next to the int8 cache
it indexes: ``codebook.npz`` (coarse [C, D], fine [C, F, D] float32), ``offsets.npy`` (int64
[cells + 1]) and ``records.npy`` (int32 [entries]) of the lists written at the last ``install`` (or fold, remap), and
``delta.i32`` (append-only batches of (cell, record) int32 pairs for the pages appended since, each
after a 12-byte header: pairs, first record, records). It is derived from
the cache, never the source of truth: anything inconsistent is dropped and rebuilt by ``optimize``.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

CODEBOOK_FILE = "codebook.npz"
OFFSETS_FILE = "offsets.npy"
RECORDS_FILE = "records.npy"
DELTA_FILE = "delta.i32"
META_FILE = "meta.json"
FORMAT_VERSION = 1
DELTA_HEADER = struct.Struct("<iii")  # a delta batch: n_pairs, first record, n_records
ASSIGN_CHUNK_ROWS = 1 << 19  # tokens per assignment step: 512k x 128 bf16 = 128 MB


def _torch() -> Any:
    import torch

    return torch


def spherical_kmeans(x: Any, k: int, iters: int = 10, seed: int = 0, init: str = "k-means++") -> Any:
    """k-means on the unit sphere: ``x`` torch float32 [n, D] (unit rows) -> centroids [min(k, n), D]
    (unit), each the normalised mean of the points nearest to it (dot product). Seeded by k-means++
    (each next seed drawn with probability ~ squared distance to the nearest seed so far); empty
    clusters are re-seeded with random points."""
    torch = _torch()
    n = int(x.shape[0])
    k = max(1, min(k, n))
    g = torch.Generator().manual_seed(seed)
    if init == "random":
        return _lloyd(x, x[torch.randperm(n, generator=g)[:k]].clone(), iters, g)
    picks = [int(torch.randint(n, (1,), generator=g))]
    nearest = x @ x[picks[0]]  # [n] similarity to the nearest seed
    for _ in range(k - 1):
        d2 = (2.0 - 2.0 * nearest).clamp_min(0.0)
        total = float(d2.sum())
        nxt = int(torch.multinomial(d2 / total, 1, generator=g)) if total > 0 else int(torch.randint(n, (1,), generator=g))
        picks.append(nxt)
        nearest = torch.maximum(nearest, x @ x[nxt])
    return _lloyd(x, x[picks].clone(), iters, g)


def _lloyd(x: Any, c: Any, iters: int, g: Any) -> Any:
    """Lloyd iterations of spherical k-means from centroids ``c`` [k, D]."""
    torch = _torch()
    n, k = int(x.shape[0]), int(c.shape[0])
    xb = x.to(torch.bfloat16)
    for _ in range(iters):
        assign = (xb @ c.to(torch.bfloat16).T).float().argmax(dim=1)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k)
        empty = counts == 0
        if bool(empty.any()):
            sums[empty] = x[torch.randint(n, (int(empty.sum()),), generator=g)]
        c = torch.nn.functional.normalize(sums, dim=1)
    return c


@dataclass
class Codebook:
    """Two-level codebook: ``coarse`` [C, D] and ``fine`` [C, F, D] unit float32 centroids. Cell
    ``a * F + b`` is fine centroid ``b`` of coarse cell ``a``; a coarse cell trained on too few points
    for F fine centroids repeats its first one (argmax picks the first, so the copies stay empty)."""

    coarse: np.ndarray
    fine: np.ndarray

    @property
    def n_cells(self) -> int:
        return int(self.fine.shape[0] * self.fine.shape[1])

    @property
    def dim(self) -> int:
        return int(self.coarse.shape[1])

    @cached_property
    def _tensors(self) -> tuple[Any, Any]:
        """(coarse, fine) as bfloat16 torch tensors, made once."""
        torch = _torch()
        return torch.from_numpy(self.coarse).to(torch.bfloat16), torch.from_numpy(self.fine).to(torch.bfloat16)

    def assign(self, x: Any) -> Any:
        """torch [n, D] token vectors (any float dtype, or int8 codes: a positive per-row scale does
        not change the argmax) -> int64 [n] cell ids: best coarse centroid, then the best of its
        fine centroids (dot products in bfloat16)."""
        torch = _torch()
        coarse, fine = self._tensors
        with torch.inference_mode():
            xb = x.to(torch.bfloat16)
            top = (xb @ coarse.T).float().argmax(dim=1)  # [n]
            cells = torch.empty(len(xb), dtype=torch.int64)
            order = torch.argsort(top)
            counts = torch.bincount(top, minlength=coarse.shape[0]).tolist()
            start = 0
            for a, count in enumerate(counts):
                if not count:
                    continue
                rows = order[start : start + count]
                start += count
                best = (xb[rows] @ fine[a].T).float().argmax(dim=1)
                cells[rows] = best + a * fine.shape[1]
        return cells

    def probe(self, query: np.ndarray, nprobe: int, coarse_probe: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``nprobe`` best cells of each query token among the fine centroids of its
        ``coarse_probe`` best coarse cells: (cells int64 [n_q, nprobe], scores float32 [n_q, nprobe]:
        query token . fine centroid), best first."""
        q = np.ascontiguousarray(query, dtype=np.float32)
        n_fine = self.fine.shape[1]
        coarse_probe = max(1, min(coarse_probe, self.coarse.shape[0]))
        top = np.argsort(-(q @ self.coarse.T), axis=1)[:, :coarse_probe]  # [n_q, cp]
        sims = np.einsum("qd,qcfd->qcf", q, self.fine[top]).reshape(len(q), -1)  # [n_q, cp * F]
        nprobe = max(1, min(nprobe, sims.shape[1]))
        best = np.argsort(-sims, axis=1)[:, :nprobe]
        cells = (top[np.arange(len(q))[:, None], best // n_fine] * n_fine + best % n_fine).astype(np.int64)
        return cells, np.take_along_axis(sims, best, axis=1).astype(np.float32)


def train_codebook(sample: np.ndarray, coarse: int = 256, fine: int = 256, iters: int = 10,
                   seed: int = 0, min_points_per_centroid: int = 4, init: str = "random") -> Codebook:
    """Train a ``Codebook`` on ``sample`` float32 [n, D] token vectors (normalised here): ``coarse``
    centroids on all of it, then up to ``fine`` inside each coarse cell (fewer where the cell has
    fewer than ``min_points_per_centroid`` points per centroid; the rest repeat the first).

    ``init``: seeds drawn at random from the sample (default) or by k-means++. Measured at 100k
    pages: random seeds, which follow the density of the patches, gave end-to-end recall@5 0.95-0.98
    where k-means++, which favours outlying patches, gave 0.78-0.85."""
    torch = _torch()
    x = torch.nn.functional.normalize(torch.from_numpy(np.ascontiguousarray(sample, dtype=np.float32)), dim=1)
    c = spherical_kmeans(x, coarse, iters=iters, seed=seed, init=init)
    assign = (x.to(torch.bfloat16) @ c.to(torch.bfloat16).T).float().argmax(dim=1)
    fines = torch.empty((c.shape[0], fine, x.shape[1]), dtype=torch.float32)
    for a in range(c.shape[0]):
        members = x[assign == a]
        want = min(fine, max(1, len(members) // min_points_per_centroid))
        if len(members) == 0:
            fines[a] = c[a]
            continue
        f = spherical_kmeans(members, want, iters=iters, seed=seed + 1 + a, init=init)
        fines[a, : len(f)] = f
        fines[a, len(f) :] = f[0]
    return Codebook(coarse=c.numpy(), fine=fines.numpy())


def unique_pairs(cells: Any, records: Any) -> tuple[np.ndarray, np.ndarray]:
    """torch int64 [n] cell ids and record numbers of the same tokens -> the distinct (cell, record)
    pairs as two numpy arrays (int64 cells, int32 records), sorted by cell then record."""
    torch = _torch()
    width = int(records.max()) + 1 if len(records) else 1
    keys = torch.unique(cells.to(torch.int64) * width + records.to(torch.int64))
    return (keys // width).numpy(), (keys % width).numpy().astype(np.int32)


@dataclass
class CellLists:
    """Inverted lists in CSR form: the records of cell ``c`` are ``records[offsets[c]:offsets[c+1]]``
    (sorted, distinct)."""

    offsets: np.ndarray  # int64 [n_cells + 1]
    records: np.ndarray  # int32 [entries]

    @classmethod
    def from_pairs(cls, cells: np.ndarray, records: np.ndarray, n_cells: int) -> CellLists:
        """Lists from (cell, record) pairs in any order (duplicates dropped)."""
        keys = np.unique(cells.astype(np.int64) * (1 << 32) + records.astype(np.int64))
        c = (keys >> 32).astype(np.int64)
        return cls(offsets=np.searchsorted(c, np.arange(n_cells + 1)).astype(np.int64),
                   records=(keys & 0xFFFFFFFF).astype(np.int32))

    @classmethod
    def from_record_ordered(cls, cells: np.ndarray, records: np.ndarray, n_cells: int) -> CellLists:
        """Lists from distinct (cell, record) pairs in which each cell's records already come in
        increasing order (chunks of ``unique_pairs`` over increasing, disjoint record ranges): one
        stable sort by cell (a radix sort for <= 65,536 cells: ~2 s for 100k pages, where
        ``from_pairs``' full sort takes ~2 min)."""
        key = cells.astype(np.uint16) if n_cells <= 1 << 16 else cells.astype(np.int32)
        order = np.argsort(key, kind="stable")
        counts = np.bincount(key, minlength=n_cells)
        offsets = np.zeros(n_cells + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return cls(offsets=offsets, records=np.asarray(records, dtype=np.int32)[order])

    @classmethod
    def empty(cls, n_cells: int) -> CellLists:
        return cls(offsets=np.zeros(n_cells + 1, dtype=np.int64), records=np.zeros(0, dtype=np.int32))

    def length(self, cell: int) -> int:
        return int(self.offsets[cell + 1] - self.offsets[cell])

    def get(self, cell: int) -> np.ndarray:
        return self.records[self.offsets[cell] : self.offsets[cell + 1]]


def candidate_scores(lists: list[CellLists], cells: np.ndarray, scores: np.ndarray, n_records: int,
                     max_list_len: int) -> Any:
    """Approximate MaxSim gain of every record: torch float32 [n_records] = sum over query tokens of
    (best probed cell the record holds in any of ``lists`` - the token's worst probed score), 0 for a
    token where it holds none. ``cells``/``scores`` [n_q, nprobe]: ``Codebook.probe``.

    The worst probed score stands in for a token whose probed cells a page lacks (its best cell
    scores at most that: XTR's missing-similarity imputation), so pages are not ranked by which of
    many near-equal cells they happen to hold; the estimated MaxSim is the gain plus the sum of the
    worst scores, the same for every page. Cells whose lists hold more than ``max_list_len`` records
    in all are skipped (they score nearly every page alike)."""
    torch = _torch()
    n_q = cells.shape[0]
    best = torch.zeros(n_q * n_records, dtype=torch.float32)
    idx_parts, val_parts = [], []
    for i in range(n_q):
        floor = float(scores[i].min())
        for cell, score in zip(cells[i].tolist(), scores[i].tolist(), strict=True):
            gain = score - floor
            if gain <= 0:
                continue
            parts = [cl.get(cell) for cl in lists]
            if sum(len(p) for p in parts) > max_list_len:
                continue
            for p in parts:
                if len(p):
                    idx_parts.append(torch.from_numpy(np.asarray(p)).to(torch.int64) + i * n_records)
                    val_parts.append(torch.full((len(p),), gain, dtype=torch.float32))
    if idx_parts:
        best.scatter_reduce_(0, torch.cat(idx_parts), torch.cat(val_parts), reduce="amax")
    return best.view(n_q, n_records).sum(dim=0)


# --- the persistent index ----------------------------------------------------------------------


RowSource = Callable[[], Iterator[tuple[Any, np.ndarray]]]
"""Yields (token vectors torch [n, D] (int8 codes or floats), record number of each int32 [n])."""


class TokenIndex:
    """Codebook + lists of one rerank cache, in ``folder`` (see the module docstring).

    ``ready(n_records)``: whether exactly the records [0, ``n_records``) are in the lists or the delta.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.codebook: Codebook | None = None
        self.lists: CellLists | None = None
        self.meta: dict[str, Any] = {}
        self._delta: CellLists | None = None  # the delta file's pairs as lists, built on first use
        self._delta_pairs: list[np.ndarray] = []  # int32 [m, 2] (cell, record) chunks
        self._covered = 0  # records [0, covered) are indexed
        self._loaded = False

    def _path(self, name: str) -> Path:
        return self.folder / name

    # --- state ---------------------------------------------------------------------------------

    def load(self) -> bool:
        """Read the files (once); False (and nothing loaded) when absent or inconsistent."""
        if self._loaded:
            return self.codebook is not None
        self._loaded = True
        try:
            meta = json.loads(self._path(META_FILE).read_text(encoding="utf-8"))
            if meta.get("version") != FORMAT_VERSION:
                raise ValueError(f"format {meta.get('version')}")
            with np.load(self._path(CODEBOOK_FILE)) as z:
                codebook = Codebook(coarse=z["coarse"], fine=z["fine"])
            offsets = np.load(self._path(OFFSETS_FILE), mmap_mode="r")
            # in RAM (4 bytes per page and cell, ~3.7 KB per 1139-token page): probing reads ~160
            # scattered lists per query, which cost 10-90 ms of page faults from a cold mmap (measured)
            records = np.load(self._path(RECORDS_FILE))
            if len(offsets) != codebook.n_cells + 1 or int(offsets[-1]) != len(records):
                raise ValueError("lists do not match the codebook")
            raw = self._path(DELTA_FILE).read_bytes() if self._path(DELTA_FILE).exists() else b""
        except FileNotFoundError:
            return False
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("token index %s is unreadable (%s): ignoring it until `optimize` rebuilds it",
                           self.folder, exc)
            return False
        built = int(meta["built_records"])
        chunks, covered, off = [], built, 0
        while off + DELTA_HEADER.size <= len(raw):  # batches: header, then their (cell, record) pairs
            n_pairs, first, n_recs = DELTA_HEADER.unpack_from(raw, off)
            end = off + DELTA_HEADER.size + 8 * n_pairs
            if end > len(raw) or first != covered:
                break  # a torn last batch (crash mid-append), or a gap: those records are not indexed
            chunks.append(np.frombuffer(raw[off + DELTA_HEADER.size : end], dtype=np.int32).reshape(-1, 2))
            covered, off = first + n_recs, end
        if off < len(raw):  # cut what was not read
            with open(self._path(DELTA_FILE), "r+b") as fh:
                fh.truncate(off)
        self.codebook, self.lists, self.meta = codebook, CellLists(offsets, records), meta
        self._delta_pairs = [c.copy() for c in chunks]
        self._delta = None
        self._covered = covered
        return True

    def ready(self, n_records: int) -> bool:
        return self.load() and self._covered == n_records  # more: records lost by the cache (rebuild)

    @property
    def covered(self) -> int:
        self.load()
        return self._covered

    @property
    def trained_pages(self) -> int:
        self.load()
        return int(self.meta.get("trained_pages", 0))

    @property
    def delta_records(self) -> int:
        self.load()
        return max(0, self._covered - int(self.meta.get("built_records", 0)))

    def clear(self) -> None:
        for name in (META_FILE, CODEBOOK_FILE, OFFSETS_FILE, RECORDS_FILE, DELTA_FILE):
            self._path(name).unlink(missing_ok=True)
        self.codebook = self.lists = self._delta = None
        self._delta_pairs, self._covered, self.meta, self._loaded = [], 0, {}, True

    # --- building ------------------------------------------------------------------------------

    def install(self, codebook: Codebook, lists: CellLists, n_records: int, trained_pages: int) -> None:
        """Replace the index by ``codebook`` and ``lists`` (made by ``assign_all``) covering records
        [0, ``n_records``), the codebook trained on ``trained_pages`` pages; the delta is dropped."""
        self._write(codebook, lists, n_records, trained_pages)

    def _pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (cell, record) entry: int64 cells, int32 records; the lists' (by cell), then the
        delta's (batch by batch)."""
        assert self.lists is not None
        counts = np.diff(self.lists.offsets)
        cells = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
        records = np.asarray(self.lists.records)
        if self._delta_pairs:
            pairs = np.concatenate(self._delta_pairs)
            cells = np.concatenate([cells, pairs[:, 0].astype(np.int64)])
            records = np.concatenate([records, pairs[:, 1]])
        return cells, records

    def fold_delta(self) -> None:
        """Merge the delta pairs into the lists (no re-assignment)."""
        if not self.load() or self.codebook is None or self.lists is None or not self._delta_pairs:
            return
        # the delta's records all follow the lists', batch after batch: record order holds per cell
        lists = CellLists.from_record_ordered(*self._pairs(), self.codebook.n_cells)
        self._write(self.codebook, lists, self._covered, self.trained_pages)

    def remap(self, mapping: np.ndarray, n_records: int) -> None:
        """Renumber records after the cache was compacted: ``mapping`` int64 [old records] -> new
        record (-1: dropped); the delta is folded in."""
        if not self.load() or self.codebook is None or self.lists is None:
            return
        cells, records = self._pairs()
        new = mapping[records]
        keep = new >= 0
        lists = CellLists.from_pairs(cells[keep], new[keep], self.codebook.n_cells)
        self._write(self.codebook, lists, n_records, self.trained_pages)

    @staticmethod
    def assign_all(codebook: Codebook, rows: RowSource) -> CellLists:
        """Lists of every token ``rows`` yields, assigned with ``codebook`` (chunks in record order)."""
        cell_parts, rec_parts = [], []
        for x, recs in rows():
            c, r = unique_pairs(codebook.assign(x), _torch().from_numpy(np.asarray(recs, dtype=np.int64)))
            cell_parts.append(c)
            rec_parts.append(r)
        if not cell_parts:
            return CellLists.empty(codebook.n_cells)
        # chunks come in record order, each sorted by (cell, record): a stable sort by cell suffices
        return CellLists.from_record_ordered(np.concatenate(cell_parts), np.concatenate(rec_parts), codebook.n_cells)

    def _write(self, codebook: Codebook, lists: CellLists, n_records: int, trained_pages: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._path(META_FILE).unlink(missing_ok=True)  # no meta: no index, until all is written
        tmp = {name: self._path(name + ".tmp") for name in (CODEBOOK_FILE, OFFSETS_FILE, RECORDS_FILE)}
        with open(tmp[CODEBOOK_FILE], "wb") as fh:
            np.savez(fh, coarse=codebook.coarse, fine=codebook.fine)
        for name, arr in ((OFFSETS_FILE, lists.offsets), (RECORDS_FILE, lists.records)):
            with open(tmp[name], "wb") as fh:
                np.save(fh, np.ascontiguousarray(arr))
                fh.flush()
                os.fsync(fh.fileno())
        for name, path in tmp.items():
            os.replace(path, self._path(name))
        self._path(DELTA_FILE).unlink(missing_ok=True)
        meta = {"version": FORMAT_VERSION, "built_records": int(n_records), "trained_pages": int(trained_pages),
                "cells": codebook.n_cells, "entries": len(lists.records)}
        self._path(META_FILE + ".tmp").write_text(json.dumps(meta), encoding="utf-8")
        os.replace(self._path(META_FILE + ".tmp"), self._path(META_FILE))
        self._loaded = False
        self.load()

    def append(self, first_record: int, pages: list[Any], cells: Any = None) -> None:
        """Index pages appended to the cache as records ``first_record``, ``first_record + 1``, ...
        (``pages``: torch [n_tokens, D] each). ``cells``: ``self.codebook.assign`` of the pages' tokens in
        order (int64 [total tokens]), when the caller computed it beforehand. A no-op without a codebook,
        or when earlier records are not indexed (a gap: ``optimize`` rebuilds)."""
        if not self.load() or self.codebook is None or first_record != self._covered or not pages:
            return
        torch = _torch()
        x = torch.cat(pages)
        recs = torch.repeat_interleave(torch.arange(first_record, first_record + len(pages)),
                                       torch.tensor([len(p) for p in pages]))
        assigned = cells if cells is not None and len(cells) == len(x) else self.codebook.assign(x)
        cells, records = unique_pairs(assigned, recs)
        pairs = np.stack([cells.astype(np.int32), records], axis=1)
        with open(self._path(DELTA_FILE), "ab") as fh:
            fh.write(DELTA_HEADER.pack(len(pairs), first_record, len(pages)) + pairs.tobytes())
            fh.flush()
        self._delta_pairs.append(pairs)
        self._delta = None
        self._covered = first_record + len(pages)

    # --- search --------------------------------------------------------------------------------

    def view(self) -> TokenView | None:
        """What ``candidates`` reads, as of now (``TokenView``), or None without an index. Take it under
        the store's lock; search with it outside (appends, folds and rebuilds replace these objects,
        they never change them)."""
        if not self.load() or self.codebook is None or self.lists is None:
            return None
        if self._delta is None:
            pairs = np.concatenate(self._delta_pairs) if self._delta_pairs else np.zeros((0, 2), dtype=np.int32)
            self._delta = CellLists.from_record_ordered(pairs[:, 0], pairs[:, 1], self.codebook.n_cells)
        return TokenView(self.codebook, [self.lists, self._delta])

    def candidates(self, query: np.ndarray, live: Any, m: int, nprobe: int = 16, coarse_probe: int = 4,
                   max_list_share: float = 0.2, indexed_records: int | None = None) -> list[int]:
        """``TokenView.candidates`` of the index as it is now ([] without one)."""
        view = self.view()
        if view is None:
            return []
        return view.candidates(query, live, m, nprobe=nprobe, coarse_probe=coarse_probe,
                               max_list_share=max_list_share, indexed_records=indexed_records)


@dataclass(frozen=True)
class TokenView:
    """A token index fixed at one moment (``TokenIndex.view``): its codebook and its lists (the built
    ones, then the delta's)."""

    codebook: Codebook
    lists: list[CellLists]

    def candidates(self, query: np.ndarray, live: Any, m: int, nprobe: int = 16, coarse_probe: int = 4,
                   max_list_share: float = 0.2, indexed_records: int | None = None) -> list[int]:
        """The ``m`` live records (``live``: torch bool [n_records]) with the best approximate
        MaxSim for ``query`` [n_q, D] (see ``candidate_scores``), best first; only records holding
        at least one probed cell. Lists longer than ``max_list_share`` of ``indexed_records`` (the
        records with tokens in the lists, dead ones included: default, the live ones) are skipped."""
        torch = _torch()
        n_records = int(live.shape[0])
        cells, scores = self.codebook.probe(query, nprobe, coarse_probe)
        base = int(live.sum()) if indexed_records is None else indexed_records
        total = candidate_scores(self.lists, cells, scores, n_records, max(1, int(max_list_share * base)))
        total[~live] = 0.0
        k = min(m, int((total > 0).sum()))
        if k == 0:
            return []
        return torch.topk(total, k).indices.tolist()