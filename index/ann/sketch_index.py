"""A first stage that scans every token in fewer dimensions: the top principal components of the
collection's centred token vectors, in int8.

Why: the whole-collection int8 scan (``RerankCache.scan``) holds on any geometry, but it reads and
multiplies all 128 codes of every token; on large collections whose tokens neither repeat (the dedup
index declines) nor cluster tightly enough for the token index, it is the only first stage that
reaches the target, and it is slow (100,000 pages x 300 tokens of the isotropic generator: 555 ms p50,
2-core AMD EPYC, 2026-12-07, ``bench/README.md``). Projected onto the collection's top ``DIMS``
principal components the same pass costs less (the int8 product and its per-page max over codes in RAM:
17.6 against 33.9 ns per token row on one thread, 12.1 against 19.1 on two; on the 100k collection above,
read from the page cache, 406-432 against 545 ms; EPYC, 2026-12-07, ``bench/sketch.py``), and its ranking
still finds MaxSim's top pages among a few hundred candidates: on 20,000 synthetic pages x 300 tokens
(isotropic generator, where 64 components hold 64% of the variance) its best 1,000 pages held 0.99 of
the exact top 5 of 32 self-check probe queries and all of 20 planted queries' (``bench/sketch.py``). Like every
first stage, its candidates go through the full int8 rerank and Qdrant's exact stage, and the self-check
measures its recall before a search may use it; ``RerankCache.ensure_sketch_index`` builds it only for
collections of at least ``MIN_ROWS`` token vectors and drops it when the check prefers another stage.

Not on a cone: where the tokens fill a narrow cone (mean cosine of random token pairs above
``MAX_CONE_COSINE``) the top components carry what every page shares, and the near-ties between MaxSim's
2nd to 5th pages are decided in the others. There the self-check's probes overrate it: on 20,000 x 300
pages of the anisotropic generator (64 components: 91% of the variance) its best 1,000 pages held 0.98
of the probes' exact top 5 but 0.92 of the planted benchmark queries' (0.74 at 250; the int8 scan 1.000),
while on the isotropic generator both agree (probes 0.96 / planted 1.000 at 500; ``bench/sketch.py``,
2026-12-07). So it is not built there (the dedup index and the scan serve cones).

Nor where a few directions dominate without a cone: the mean cosine misses a collection whose tokens
vary mostly along a few shared directions with no shared mean (its pairs' cosines cancel out). On such
a generator (the anisotropic one without its mean direction: mean cosine 0.03, 64 components holding 94%
of the variance; 20,000 x 300 pages) the probes again overrated the sketch: 0.969 of their top 5 in its
best 500 pages and 1.000 in 2,000, against 0.640 and 0.910 for the planted queries (``bench/sketch.py
--generator lowrank``, 2026-12-07 night). What the two failures share is that the top components hold
nearly all the variance (91% on the cone, 94% here, 64% on the isotropic generator where probes and
planted queries agree), so the near-ties are decided in the little that is left out. The sketch is
therefore also declined when its components hold more than ``MAX_VARIANCE_SHARE`` of the centred
tokens' variance, measured on the fitting sample. The gate is conservative, not a predictor: with the
same directions three times as strong (97% of the variance) the planted queries were all found
(bench/README.md, 2026-12-07 night); a declined sketch only leaves the other stages
and the scan, which the self-check measures as before.

On disk, ``<collection>/rerank/sketch/``: the codes and spans in ``DedupIndex``'s layout (every token of
a record, ``DIMS`` codes each) and ``projection.npy`` (float32 [dim + 1, DIMS]: the components as
columns, then the code scale in every column of the last row). The codes are made from the cache's own
int8 codes (``scale * codes`` are the centred vectors), so the projection of a token is
``(x - centre) @ components``, and a query's is ``query @ components`` (the centre's share is the same
for every page: MaxSim's ranking is unchanged).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from pagelens.index.ann.dedup_index import DedupIndex

logger = logging.getLogger(__name__)

DIMS = 64  # principal components kept
MIN_ROWS = 4_000_000  # token vectors from which the sketch is built (a scan of fewer costs < ~70 ms here)
FIT_ROWS = 1 << 16  # token vectors the components are fitted on
MARGIN = 1.25  # the code scale's headroom over the projected values seen at the fit
PROJECTION_FILE = "projection.npy"
MARK = -2.0  # DedupIndex's threshold slot: no cosine is below -1, so a dedup index is never read as one
MAX_CONE_COSINE = 0.3  # not built when random token pairs have a higher mean cosine (a cone: module docstring)
MAX_VARIANCE_SHARE = 0.8  # nor when its components hold more of the centred tokens' variance (module docstring)


def fit_projection(sample: np.ndarray, dims: int = DIMS) -> tuple[np.ndarray, float]:
    """(components float32 [dim, dims], code scale) for centred token vectors ``sample`` [n, dim]: the
    eigenvectors of their covariance with the largest eigenvalues, largest first, and ``MARGIN`` x the
    largest projected magnitude / 127."""
    x = np.asarray(sample, dtype=np.float64)
    dims = max(1, min(int(dims), x.shape[1]))
    cov = x.T @ x / max(1, len(x))
    values, vectors = np.linalg.eigh(cov)
    components = np.ascontiguousarray(vectors[:, np.argsort(values)[::-1][:dims]], dtype=np.float32)
    spread = float(np.abs(x @ components).max()) if len(x) else 0.0
    return components, max(spread, 1e-6) * MARGIN / 127.0


def variance_share(sample: np.ndarray, components: np.ndarray) -> float:
    """The share of the centred token vectors' ``sample`` [n, dim] variance that ``components`` [dim, dims]
    hold (1.0 for an empty sample)."""
    x = np.asarray(sample, dtype=np.float64)
    total = float(np.sum(x * x))
    return float(np.sum((x @ components.astype(np.float64)) ** 2)) / total if total > 0 else 1.0


def mean_cosine(x: np.ndarray, rng: np.random.Generator, pairs: int = 4000) -> float:
    """Mean cosine of ``pairs`` random pairs of the rows of ``x`` [n, dim] (0 for isotropic vectors)."""
    if len(x) < 2:
        return 0.0
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    a = unit[rng.integers(0, len(unit), pairs)]
    b = unit[rng.integers(0, len(unit), pairs)]
    return float(np.mean(np.sum(a * b, axis=1)))


def project_codes(codes: np.ndarray, cache_scale: float, components: np.ndarray, scale: float) -> np.ndarray:
    """int8 [n, dims] sketch codes of the cache's int8 ``codes`` [n, dim] (centred vectors
    ``cache_scale * codes``): ``round(cache_scale * codes @ components / scale)``, clipped to +-127."""
    if not len(codes):
        return np.zeros((0, components.shape[1]), dtype=np.int8)
    v = codes.astype(np.float32) @ (components * np.float32(cache_scale / scale))
    return np.clip(np.rint(v), -127, 127).astype(np.int8)


class SketchIndex(DedupIndex):
    """The sketch codes of the cache's records 0..``covered``-1 and their projection (module docstring).
    ``decline``'s ``kept_share`` slot holds the mean token cosine when a cone was the reason, the
    components' variance share when that was, else 0."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, threshold=MARK)
        self._projection: tuple[np.ndarray, float] | None = None
        self._no_projection = False  # looked for and not found: not read again (searches ask on every call)

    def clear(self) -> None:
        super().clear()
        self._projection, self._no_projection = None, True

    def projection(self) -> tuple[np.ndarray, float] | None:
        """(components float32 [dim, dims], code scale), or None before the first build. The file is read
        once; its absence is remembered until ``start`` (this process owns the data dir)."""
        if self._projection is None:
            if self._no_projection:
                return None
            try:
                raw = np.load(self._path(PROJECTION_FILE))
            except (OSError, ValueError):
                self._no_projection = True
                return None
            if raw.ndim != 2 or raw.shape[0] < 2:
                self._no_projection = True
                return None
            self._projection = (np.ascontiguousarray(raw[:-1], dtype=np.float32), float(raw[-1, 0]))
        return self._projection

    def start(self, components: np.ndarray, scale: float) -> None:
        """Begin a new index with this projection (any earlier one removed)."""
        self.clear()
        self.folder.mkdir(parents=True, exist_ok=True)
        raw = np.concatenate([components, np.full((1, components.shape[1]), scale, dtype=np.float32)])
        tmp = self._path(PROJECTION_FILE + ".tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, raw.astype(np.float32))
        tmp.replace(self._path(PROJECTION_FILE))
        self._projection, self._no_projection = (np.ascontiguousarray(components, dtype=np.float32), float(scale)), False

    def load(self) -> bool:
        return self.projection() is not None and super().load()

    def append_codes(self, first_record: int, pages: list[np.ndarray], cache_scale: float) -> None:
        """Project and append the cache's int8 codes of records ``first_record``.. (one [n, dim] array
        each, [0, dim] for a deleted record). Needs ``start`` first."""
        projection = self.projection()
        if projection is None:
            raise ValueError("the sketch index has no projection yet")
        components, scale = projection
        self.append(first_record, [project_codes(c, cache_scale, components, scale) for c in pages],
                    components.shape[1])

    def query(self, query: np.ndarray) -> np.ndarray:
        """float32 [n_q, dims]: ``query`` [n_q, dim] in the sketch's components."""
        projection = self.projection()
        assert projection is not None
        return np.asarray(query, dtype=np.float32) @ projection[0]

    def segments(self) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray] | None:
        return super().segments() if self.load() else None
