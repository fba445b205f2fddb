"""A first stage that scans fewer tokens: each page's near-duplicate tokens stand for one another.

Pages repeat themselves: white margins, empty table cells and lines of body text give many patch
vectors that are almost the same. For MaxSim that repetition is waste: if a page's token ``t`` has a
kept token ``r`` with cosine(t, r) >= ``threshold``, then ``max_j q . x_j`` over the kept tokens differs
from the max over all tokens by at most ``|q| * |t - r|`` per query token. So the first stage keeps, per
page, a greedy cover of its tokens (each kept token represents every later token within the threshold)
and scans only those codes (``RerankCache`` int8 codes, the same centre and scale) with the same kernel
and ranking as the whole-collection scan (``ScanView.best``). Its candidates go through the full int8
rerank and Qdrant's exact stage like any other first stage, and the self-check
(``pagelens.index.ann.self_check``) measures its recall before searches may use it.

Measured (``bench/README.md``, 2026-12-06): on 1,000 pages of the anisotropic generator a cover at
cosine 0.95 keeps 16% of the tokens and its best 256 pages hold exact MaxSim's top 5 for 40 of 40
queries.

On disk, ``<collection>/rerank/dedup/``::

    codes.i8     int8 [kept tokens, dim]: the kept tokens' codes, record after record
    spans.i64    int64 [records, 2]: (first row in codes.i8, kept tokens) of cache record i
    meta.json    {"threshold", "dim"}

It covers the cache's records 0..covered-1 (``RerankCache.ensure_dedup_index`` builds and catches it up
at ``optimize``); a compaction or a clear of the cache removes it. Data is written before its spans, so
a torn tail is ignored at load.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

CODES_FILE = "codes.i8"
SPANS_FILE = "spans.i64"
META_FILE = "meta.json"
THRESHOLD = 0.95  # cosine at or above which a kept token represents another of its page
MAX_KEPT_SHARE = 0.5  # a cover keeping more of the tokens than this saves too little over the scan: not built
DECIDE_PAGES = 256  # pages (spread over the collection) whose covers decide whether to build it


def token_cover(codes: np.ndarray, centre: np.ndarray, scale: float, threshold: float = THRESHOLD) -> np.ndarray:
    """Indices (ascending) of a greedy cover of one page's tokens: int8 ``codes`` [n, dim] of
    ``centre + scale * codes`` (the cache's codec); token i is kept unless an earlier kept token has cosine
    >= ``threshold`` with it. One [n, n] float32 Gram matrix (~3 ms for 1139 tokens here)."""
    x = centre[None, :] + np.float32(scale) * codes.astype(np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.float32(1e-12))
    near = (x @ x.T) >= np.float32(threshold)
    covered = np.zeros(len(x), dtype=bool)
    keep: list[int] = []
    for i in range(len(x)):
        if covered[i]:
            continue
        keep.append(i)
        covered |= near[i]
    return np.asarray(keep, dtype=np.int64)


def kept_codes(codes: np.ndarray, centre: np.ndarray, scale: float, threshold: float = THRESHOLD) -> np.ndarray:
    """The rows of one page's int8 ``codes`` [n, dim] that its ``token_cover`` keeps ([0, dim] stays empty)."""
    return codes[token_cover(codes, centre, scale, threshold)] if len(codes) else codes


class DedupIndex:
    """The kept codes of the cache's records 0..``covered``-1 (see the module docstring)."""

    def __init__(self, folder: Path, threshold: float = THRESHOLD) -> None:
        self.folder = Path(folder)
        self.threshold = float(threshold)
        self._spans: np.ndarray | None = None  # int64 [covered, 2]
        self._codes: Any = None  # torch int8 [rows, dim] over the memmap (None: not mapped yet)
        self._rows = 0
        self._dim = 1
        self._meta_read: dict[str, Any] | None = None  # meta.json as last read or written here
        self._meta_known = False  # whether _meta_read holds it (None: no readable file)

    def _meta(self) -> dict[str, Any] | None:
        """meta.json, read once (searches ask for the index's state on every call); this process owns the
        data dir, and every write here updates the memo."""
        if not self._meta_known:
            try:
                meta = json.loads(self._path(META_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                meta = None
            self._meta_read, self._meta_known = meta if isinstance(meta, dict) else None, True
        return self._meta_read

    def _write_meta(self, meta: dict[str, Any]) -> None:
        self._path(META_FILE).write_text(json.dumps(meta), encoding="utf-8")
        self._meta_read, self._meta_known = meta, True

    def _path(self, name: str) -> Path:
        return self.folder / name

    def declined(self) -> dict[str, Any] | None:
        """``{"kept_share", "records"}`` when the index was not built because its covers kept more than
        ``MAX_KEPT_SHARE`` of the tokens of ``records`` cache records (isotropic tokens have no near
        duplicates: the cover would be a second copy of the codes, no faster to scan), else None."""
        meta = self._meta()
        if meta is None:
            return None
        got = meta.get("declined")
        return got if isinstance(got, dict) and float(meta.get("threshold", -1)) == self.threshold else None

    def decline(self, kept_share: float, records: int) -> None:
        """Record that the index is not worth building (``declined``), removing any partial one."""
        self.clear()
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = {"threshold": self.threshold, "declined": {"kept_share": round(float(kept_share), 4),
                                                          "records": int(records)}}
        self._write_meta(meta)

    def load(self) -> bool:
        """Read the spans (once); False when there is no index (or it was declined)."""
        if self._spans is not None:
            return True
        meta = self._meta()
        if meta is None or meta.get("declined"):
            return False
        try:
            raw = np.fromfile(self._path(SPANS_FILE), dtype=np.int64)
            code_bytes = self._path(CODES_FILE).stat().st_size
        except (OSError, ValueError):
            return False
        if float(meta.get("threshold", -1)) != self.threshold:  # made with another threshold: rebuild
            self.clear()
            return False
        dim = max(1, int(meta.get("dim") or 1))
        spans = raw[: len(raw) - len(raw) % 2].reshape(-1, 2)
        ends = spans[:, 0] + spans[:, 1]
        bad = np.flatnonzero(ends > code_bytes // dim)  # a torn tail (crash mid-append): dropped
        self._spans = spans[: int(bad[0])] if len(bad) else spans
        self._rows = int(ends[: len(self._spans)].max()) if len(self._spans) else 0
        self._dim = dim
        return True

    @property
    def covered(self) -> int:
        """Cache records covered (0 without an index)."""
        return self.loaded_covered if self.load() else 0

    @property
    def loaded_covered(self) -> int:
        """``covered`` as loaded so far, without reading any file (0 when not loaded): for a reader outside
        the store's lock (``RerankCache.prepare``), where a load could race a compaction under it."""
        spans = self._spans
        return len(spans) if spans is not None else 0

    def ready(self, n_records: int) -> bool:
        """Whether it covers exactly the cache's ``n_records`` records."""
        return n_records > 0 and self.covered == n_records

    def clear(self) -> None:
        self._spans, self._codes, self._rows = None, None, 0
        shutil.rmtree(self.folder, ignore_errors=True)
        self._meta_read, self._meta_known = None, True

    def kept_tokens(self) -> int:
        """Kept tokens of the covered records (for reports)."""
        return int(self._spans[:, 1].sum()) if self.covered and self._spans is not None else 0

    def append(self, first_record: int, pages: Sequence[np.ndarray], dim: int) -> None:
        """Add the covers of cache records ``first_record``.. (each the kept codes int8 [k, dim] of one
        record, empty for a deleted one). ``first_record`` must be ``covered``."""
        if first_record != self.covered:
            raise ValueError(f"dedup index covers {self.covered} records, not {first_record}")
        self.folder.mkdir(parents=True, exist_ok=True)
        if first_record == 0 or not self._path(META_FILE).exists():  # (a declined marker is replaced)
            self._write_meta({"threshold": self.threshold, "dim": dim})
        start = self._rows
        spans = np.empty((len(pages), 2), dtype=np.int64)
        with open(self._path(CODES_FILE), "ab") as fh:
            for i, kept in enumerate(pages):
                spans[i] = (start, len(kept))
                fh.write(np.ascontiguousarray(kept, dtype=np.int8).tobytes())
                start += len(kept)
            fh.flush()
            os.fsync(fh.fileno())
        with open(self._path(SPANS_FILE), "ab") as fh:
            fh.write(spans.tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        self._spans = spans if self._spans is None or not len(self._spans) else np.concatenate([self._spans, spans])
        self._rows, self._codes, self._dim = start, None, dim

    def _view(self) -> Any:
        import warnings

        import torch

        if self._codes is None and self._rows:
            codes = np.memmap(self._path(CODES_FILE), dtype=np.int8, mode="r", shape=(self._rows, self._dim))
            with warnings.catch_warnings():  # a read-only memmap: torch warns it cannot write; we never do
                warnings.simplefilter("ignore", UserWarning)
                self._codes = torch.from_numpy(codes)
        return self._codes

    def segments(self) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray] | None:
        """(kept codes int8 torch [rows, dim], the records that have kept tokens, their first rows, their
        kept tokens) for ``RerankCache``'s ranking; None without an index or kept tokens."""
        if not self.load() or self._spans is None or not len(self._spans):
            return None
        recs = np.flatnonzero(self._spans[:, 1] > 0)
        if not len(recs):
            return None
        return self._view(), recs, self._spans[recs, 0], self._spans[recs, 1]
