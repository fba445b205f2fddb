"""Candidate recall of pooled first stages as a collection grows (no store, no timing).

The fast two-stage search (index/fast_rerank.py) can only return pages its first stage proposes.
This script measures, on the synthetic pages of ``bench/retrieval.py`` (same generator, same seed),
how often the exact MaxSim top 5 is among the candidates, for the product's first stage (the union
of the top k pages by MaxSim on row means and on column means, as an exact scan: an upper bound for
Qdrant's pooled HNSW at the same k) and for an alternative pooling (means of 4 x 4 patch cells), at
several k. Everything is in RAM except the full vectors, which are scored against the queries chunk
by chunk for the ground truth and dropped.

    python bench/candidates.py --pages 100000 --queries 10      (~10 min on 2 cores, ~4 GB RAM)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import Table, device_label, log  # noqa: E402
from bench.retrieval import CHUNK, Synth, maxsim_scores, topk  # noqa: E402


def cell_means(full: np.ndarray, syn: Synth, cell: int = 4) -> np.ndarray:
    """[n, T, D] pages -> [n, (G / cell)^2, D]: means of cell x cell blocks of the patch grid."""
    n, _, d = full.shape
    g = syn.grid
    grid = full[:, syn.extra :, :].reshape(n, g // cell, cell, g // cell, cell, d)
    return grid.mean(axis=(2, 4)).reshape(n, -1, d)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=10000)
    ap.add_argument("--tokens", type=int, default=1139)
    ap.add_argument("--queries", type=int, default=10)
    ap.add_argument("--k", type=int, nargs="+", default=[100, 250, 500, 1000, 2000, 4000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    syn = Synth(args.pages, args.tokens, seed=args.seed)
    queries, _ = syn.queries(args.queries)
    n = args.pages
    g = syn.grid
    rows = np.empty((n, g, 128), dtype=np.float16)
    cols = np.empty((n, g, 128), dtype=np.float16)
    cells = np.empty((n, (g // 4) ** 2, 128), dtype=np.float16)
    exact = np.empty((len(queries), n), dtype=np.float32)
    t0 = time.perf_counter()
    for k in range(syn.n_chunks()):
        full, r, c, _ = syn.gen_chunk(k)
        lo = k * CHUNK
        rows[lo : lo + len(full)] = r
        cols[lo : lo + len(full)] = c
        cells[lo : lo + len(full)] = cell_means(full, syn)
        exact[:, lo : lo + len(full)] = maxsim_scores(full, queries)
        if k % 100 == 99:
            log(f"  {lo + len(full)} of {n} pages ({time.perf_counter() - t0:.0f} s)")
    truth = [set(topk(exact[i], 5)) for i in range(len(queries))]
    scores = {name: maxsim_scores(arr.astype(np.float32), queries) for name, arr in
              (("rows", rows), ("cols", cols), ("cells", cells))}

    def recall(names: tuple[str, ...], k: int) -> tuple[float, float]:
        got, sizes = [], []
        for i, t in enumerate(truth):
            cand: set[int] = set()
            for name in names:
                cand |= set(topk(scores[name][i], min(k, n)))
            got.append(len(cand & t) / len(t))
            sizes.append(len(cand))
        return float(np.mean(got)), float(np.mean(sizes))

    table = Table(f"first-stage candidate recall of the exact top 5: {n} synthetic pages x {args.tokens} tokens, "
                  f"{len(queries)} queries (exact pooled scans)")
    dev = device_label()
    for names, label in ((("rows", "cols"), "rows + cols means (the product's pooled vectors)"),
                         (("cells",), "4 x 4 cell means (64 per page)"),
                         (("rows", "cols", "cells"), "rows + cols + cells")):
        for k in args.k:
            r, size = recall(names, k)
            table.add(f"{label}, top {k} each ({n} pages): candidate recall@5", r, None, unit="",
                      higher_is_better=True, device=dev, note=f"{size:.0f} candidates on average")
            log(f"{label}, k={k}: recall {r:.3f} ({size:.0f} candidates)")
    table.print(args.out)


if __name__ == "__main__":
    main()
