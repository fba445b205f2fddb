"""Candidate recall of pooled first stages as a collection grows (no store, no timing).

The fast two-stage search (index/fast_rerank.py) can only return pages its first stage proposes.
This script measures, on the synthetic pages of ``bench/retrieval.py`` (same generator, same seed),
how often the exact MaxSim top 5 is among the candidates, for the product's first stage (the union
of the top k pages by MaxSim on row means and on column means, as an exact scan: an upper bound for
Qdrant's pooled HNSW at the same k), for an alternative pooling (means of 4 x 4 patch cells), at
several k, and for a prototype token-level first stage (``--centroids K``, PLAID-style): k-means
centroids of the token vectors (trained on the first pages), each page reduced to the set of
centroids its tokens fall in, inverted lists centroid -> pages; a query token probes its ``--nprobe``
best centroids, a page scores the sum over query tokens of the best probed centroid it contains, and
the top M pages are the candidates (timed: the candidate step alone, numpy/torch on the CPU).
Everything is in RAM except the full vectors, which are scored against the queries chunk by chunk
for the ground truth and dropped.

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


def kmeans(x: np.ndarray, k: int, iters: int = 8, seed: int = 0) -> np.ndarray:
    """Spherical k-means of unit vectors x [n, D] -> centroids [k, D] (unit), in torch."""
    import torch

    t = torch.from_numpy(x)
    g = torch.Generator().manual_seed(seed)
    c = t[torch.randperm(len(t), generator=g)[:k]].clone()
    for _ in range(iters):
        assign = (t @ c.T).argmax(dim=1)
        sums = torch.zeros_like(c).index_add_(0, assign, t)
        counts = torch.bincount(assign, minlength=k)
        empty = counts == 0
        sums[empty] = t[torch.randint(len(t), (int(empty.sum()),), generator=g)]
        c = torch.nn.functional.normalize(sums, dim=1)
    return c.numpy()


class CentroidLists:
    """Inverted lists centroid -> pages (the prototype token-level first stage)."""

    def __init__(self, centroids: np.ndarray, n_pages: int) -> None:
        self.centroids = centroids
        self.n_pages = n_pages
        self._pairs: list[np.ndarray] = []  # per chunk: [m, 2] (centroid, page) pairs, unique

    def add(self, lo: int, full: np.ndarray) -> None:
        import torch

        n, t, d = full.shape
        codes = (torch.from_numpy(full.reshape(-1, d)) @ torch.from_numpy(self.centroids).T).argmax(dim=1)
        pages = torch.arange(lo, lo + n).repeat_interleave(t)
        pairs = torch.unique(codes.to(torch.int64) * self.n_pages + pages)
        self._pairs.append(pairs.numpy())

    def finish(self) -> None:
        pairs = np.concatenate(self._pairs)  # sorted within chunks; sort all by centroid
        pairs.sort()
        k = len(self.centroids)
        self.cent = (pairs // self.n_pages).astype(np.int32)
        self.pages = (pairs % self.n_pages).astype(np.int32)
        self.offsets = np.searchsorted(self.cent, np.arange(k + 1))
        self._pairs = []
        log(f"centroid lists: {len(self.pages) / self.n_pages:.0f} centroids per page on average, "
            f"{len(self.pages) / k:.0f} pages per list")

    def candidates(self, q: np.ndarray, nprobe: int, m: int) -> list[int]:
        import torch

        sim = q @ self.centroids.T  # [n_q, K]
        best = np.argsort(-sim, axis=1)[:, :nprobe]
        total = torch.zeros(self.n_pages, dtype=torch.float32)
        for i in range(len(q)):
            row = torch.zeros(self.n_pages, dtype=torch.float32)
            for c in best[i][::-1]:  # worst first: the best probed centroid a page holds wins
                lo, hi = self.offsets[c], self.offsets[c + 1]
                row[torch.from_numpy(self.pages[lo:hi])] = float(sim[i, c])
            total += row
        return torch.topk(total, min(m, self.n_pages)).indices.tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=10000)
    ap.add_argument("--tokens", type=int, default=1139)
    ap.add_argument("--queries", type=int, default=10)
    ap.add_argument("--k", type=int, nargs="+", default=[100, 250, 500, 1000, 2000, 4000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--centroids", type=int, default=0, help="K of the prototype centroid lists (0: skip)")
    ap.add_argument("--train-pages", type=int, default=200, help="pages whose tokens train the centroids")
    ap.add_argument("--nprobe", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--m", type=int, nargs="+", default=[250, 500, 1000], help="candidates of the centroid stage")
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
    lists = None
    if args.centroids:
        sample = np.concatenate([syn.gen_chunk(k)[0] for k in range(max(1, args.train_pages // CHUNK))])
        t0 = time.perf_counter()
        cents = kmeans(sample.reshape(-1, sample.shape[-1]), args.centroids, seed=args.seed)
        log(f"k-means: {args.centroids} centroids from {len(sample)} pages in {time.perf_counter() - t0:.1f} s")
        lists = CentroidLists(cents, n)
        del sample
    t0 = time.perf_counter()
    for k in range(syn.n_chunks()):
        full, r, c, _ = syn.gen_chunk(k)
        lo = k * CHUNK
        if lists is not None:
            lists.add(lo, full)
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
    if lists is not None:
        lists.finish()
        for nprobe in args.nprobe:
            for m in args.m:
                got, times = [], []
                for i, t in enumerate(truth):
                    t1 = time.perf_counter()
                    cand = lists.candidates(queries[i], nprobe, m)
                    times.append(time.perf_counter() - t1)
                    got.append(len(set(cand) & t) / len(t))
                r = float(np.mean(got))
                table.add(f"prototype centroid lists, K={args.centroids}, nprobe {nprobe}, top {m} ({n} pages): "
                          "candidate recall@5", r, None, unit="", higher_is_better=True, device=dev,
                          note=f"candidate step p50 {np.median(times) * 1000:.0f} ms")
                log(f"centroids K={args.centroids} nprobe={nprobe} m={m}: recall {r:.3f}, "
                    f"{np.median(times) * 1000:.0f} ms")
    table.print(args.out)


if __name__ == "__main__":
    main()
