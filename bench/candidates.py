"""Candidate recall of pooled first stages as a collection grows (no store, no timing).

The fast two-stage search (index/ann/fast_rerank.py) can only return pages its first stage proposes.
This script measures, on the synthetic pages of ``bench/retrieval.py`` (same generator, same seed),
how often the exact MaxSim top 5 is among the candidates, for the product's first stage (the union
of the top k pages by MaxSim on row means and on column means, as an exact scan: an upper bound for
Qdrant's pooled HNSW at the same k), for an alternative pooling (means of 4 x 4 patch cells), at
several k, and for a prototype token-level first stage (``--centroids K``, PLAID-style): k-means
centroids of the token vectors (trained on the first pages), each page reduced to the set of
centroids its tokens fall in, inverted lists centroid -> pages; a query token probes its ``--nprobe``
best centroids, a page scores the sum over query tokens of the best probed centroid it contains, and
the top M pages are the candidates (timed: the candidate step alone, numpy/torch on the CPU).
``--token-index``: the product's token-level first stage (``index/ann/token_index.py``) the same way:
its 256 x 256 codebook trained on ``--sample-per-page`` tokens of every page, every token assigned,
candidates scored by ``candidate_scores`` at several ``--coarse-probe`` / ``--nprobe`` / ``--m``.
Everything is in RAM except the full vectors, which are scored against the queries chunk by chunk
for the ground truth and dropped.

    python bench/candidates.py --pages 100000 --queries 10      (~10 min on 2 cores, ~4 GB RAM)
    python bench/candidates.py --pages 100000 --queries 20 --token-index --nprobe 4 8 16 --m 50 100 250
                                                                (~18 min, ~8 GB RAM)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import Table, device_label, log  # noqa: E402
from bench.retrieval import CHUNK, GENERATORS, Synth, maxsim_scores, topk  # noqa: E402


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
    ap.add_argument("--generator", choices=GENERATORS, default="iid",
                    help="synthetic vectors (bench/retrieval.py Synth): iid Gaussian directions or aniso (a cone)")
    ap.add_argument("--centroids", type=int, default=0, help="K of the prototype centroid lists (0: skip)")
    ap.add_argument("--train-pages", type=int, default=200, help="pages whose tokens train the centroids")
    ap.add_argument("--nprobe", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--m", type=int, nargs="+", default=[250, 500, 1000], help="candidates of the centroid stage")
    ap.add_argument("--token-index", action="store_true",
                    help="the product's token-level first stage (index/ann/token_index.py): a two-level codebook "
                         "trained on a sample of every page's tokens, inverted lists, probed per query token")
    ap.add_argument("--coarse", type=int, default=256)
    ap.add_argument("--fine", type=int, default=256)
    ap.add_argument("--sample-per-page", type=int, default=5, help="tokens per page in the codebook's sample")
    ap.add_argument("--coarse-probe", type=int, nargs="+", default=[4])
    ap.add_argument("--max-list-share", type=float, nargs="+", default=[0.2])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    syn = Synth(args.pages, args.tokens, seed=args.seed, generator=args.generator)
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
    codebook = None
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    assign_s = 0.0
    if args.token_index:
        import torch
        from pagelens.index.ann.token_index import train_codebook, unique_pairs

        rng = np.random.default_rng(args.seed)
        t0 = time.perf_counter()
        sample = []
        for k in range(syn.n_chunks()):  # a first pass for the sample: the product samples its cache
            full = syn.gen_chunk(k)[0]
            pick = rng.integers(0, full.shape[1], (len(full), args.sample_per_page))
            sample.append(full[np.arange(len(full))[:, None], pick].reshape(-1, full.shape[-1]))
        sample_arr = np.concatenate(sample)
        log(f"sample: {len(sample_arr)} tokens in {time.perf_counter() - t0:.0f} s")
        t0 = time.perf_counter()
        codebook = train_codebook(sample_arr, coarse=args.coarse, fine=args.fine, seed=args.seed)
        train_s = time.perf_counter() - t0
        log(f"codebook {args.coarse} x {args.fine} trained in {train_s:.1f} s")
        del sample, sample_arr
    t0 = time.perf_counter()
    for k in range(syn.n_chunks()):
        full, r, c, _ = syn.gen_chunk(k)
        lo = k * CHUNK
        if lists is not None:
            lists.add(lo, full)
        if codebook is not None:
            t1 = time.perf_counter()
            x = torch.from_numpy(full.reshape(-1, full.shape[-1]))
            recs = torch.arange(lo, lo + len(full)).repeat_interleave(full.shape[1])
            pairs.append(unique_pairs(codebook.assign(x), recs))
            assign_s += time.perf_counter() - t1
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

    table = Table(f"first-stage candidate recall of the exact top 5: {n} synthetic pages ({args.generator}) x {args.tokens} tokens, "
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
    if codebook is not None:
        from pagelens.index.ann.token_index import CellLists, candidate_scores

        t0 = time.perf_counter()
        cl = CellLists.from_record_ordered(np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs]),
                                  codebook.n_cells)
        del pairs
        lens = np.diff(cl.offsets)
        log(f"token index: assignment {assign_s:.0f} s, lists {time.perf_counter() - t0:.0f} s; "
            f"{len(cl.records) / n:.0f} cells per page, {np.count_nonzero(lens)} cells used, "
            f"list length p50 {np.median(lens[lens > 0]):.0f} max {lens.max()}")
        table.add(f"token index {args.coarse} x {args.fine}: codebook training + assigning {n} pages", train_s + assign_s,
                  None, unit="s", device=dev, note=f"{len(cl.records) * 4 / 1e9:.2f} GB of lists")
        import torch

        for share in args.max_list_share:
            for cp in args.coarse_probe:
                for nprobe in args.nprobe:
                    for m in args.m:
                        got, times = [], []
                        for i, t in enumerate(truth):
                            t1 = time.perf_counter()
                            cells, sc = codebook.probe(queries[i], nprobe, cp)
                            total = candidate_scores([cl], cells, sc, n, max(1, int(share * n)))
                            cand = torch.topk(total, min(m, n)).indices.tolist()
                            times.append(time.perf_counter() - t1)
                            got.append(len(set(cand) & t) / len(t))
                        r = float(np.mean(got))
                        label = (f"token index {args.coarse} x {args.fine}, coarse probe {cp}, nprobe {nprobe}, "
                                 f"lists <= {share:.0%}, top {m} ({n} pages): candidate recall@5")
                        table.add(label, r, None, unit="", higher_is_better=True, device=dev,
                                  note=f"candidate step p50 {np.median(times) * 1000:.1f} ms")
                        log(f"{label}: {r:.3f}, {np.median(times) * 1000:.1f} ms")
    table.print(args.out)


if __name__ == "__main__":
    main()
