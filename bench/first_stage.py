"""Which first stage holds on anisotropic token vectors? Candidate coverage of the exact top 5, and the
int8 kernel's speed (issue 25).

For every page of a ``bench/retrieval.py`` ``Synth`` collection (in RAM) and every query, each method
scores all pages approximately; the figure is the share of exact MaxSim's top 5 found among the method's
best C pages (C = 5 ... 128): what an exact rerank of C candidates could recover. Methods:

* ``pooled k-means K``: each page's tokens clustered into K centroids (a token-pooling first stage);
* ``b-bit`` codes (1, 4, 8 bits per component, symmetric per token vector), of the raw vectors or of the
  vectors minus the collection's mean token ("centred": MaxSim's ranking is unchanged by the shift);
* ``PCA r + int8``: centred vectors projected on their top r principal directions;
* ``product``: what ``RerankCache.scan`` computes: centred int8 codes with ONE scale for the collection,
  an int8 copy of the query, int32 max and sum.

Then the time of the product's kernel (``segment_maxsim``: ``torch._int_mm``) against the bfloat16
widening it replaced, per 1,000 pages of 1139 tokens, on one thread, with the load average printed.

    python bench/first_stage.py [--generator aniso|iid] [--pages 1000] [--queries 40]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.retrieval import Synth, maxsim_scores  # noqa: E402

CS = (5, 10, 16, 32, 64, 128)


def coverage(approx: np.ndarray, exact: np.ndarray) -> list[float]:
    """Share of each query's exact top 5 within the top C of ``approx`` [Q, N], for each C of ``CS``."""
    out = []
    for c in CS:
        hits = [np.isin(np.argsort(-exact[q])[:5], np.argsort(-approx[q])[:c]).mean() for q in range(len(exact))]
        out.append(float(np.mean(hits)))
    return out


def maxsim(pages: torch.Tensor, queries: torch.Tensor) -> np.ndarray:
    """[N, T, D] x [Q, n, D] -> [Q, N] float MaxSim (chunked)."""
    out = []
    for s in range(0, len(pages), 100):
        p = pages[s : s + 100]
        sim = (p.reshape(-1, p.shape[-1]) @ queries.reshape(-1, queries.shape[-1]).T)
        out.append(sim.reshape(len(p), p.shape[1], len(queries), -1).amax(1).sum(-1))
    return torch.cat(out).T.numpy()


def quant(x: torch.Tensor, bits: int) -> torch.Tensor:
    if bits == 1:
        return torch.sign(x) * x.abs().mean(1, keepdim=True)
    levels = 2 ** (bits - 1) - 1
    s = x.abs().amax(1, keepdim=True).clamp(min=1e-12) / levels
    return torch.round(x / s).clamp(-levels, levels) * s


def pooled(x: torch.Tensor, k: int, iters: int = 8) -> torch.Tensor:
    c = x[torch.linspace(0, len(x) - 1, k).long()].clone()
    for _ in range(iters):
        a = (x @ c.T).argmax(1)
        total = torch.zeros_like(c).index_add_(0, a, x)
        c = total / torch.bincount(a, minlength=k).clamp(min=1)[:, None]
        c = c / c.norm(dim=1, keepdim=True).clamp(min=1e-6)
    total = torch.zeros_like(c).index_add_(0, a, x)
    return total / torch.bincount(a, minlength=k).clamp(min=1)[:, None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", default="aniso", choices=("aniso", "iid"))
    ap.add_argument("--pages", type=int, default=1000)
    ap.add_argument("--tokens", type=int, default=1139)
    ap.add_argument("--queries", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(1)
    syn = Synth(args.pages, args.tokens, generator=args.generator)
    pages = torch.from_numpy(np.concatenate([syn.gen_chunk(k)[0] for k in range(syn.n_chunks())]))
    queries = torch.from_numpy(syn.queries(args.queries)[0])
    n, t, d = pages.shape
    exact = maxsim_scores(pages.numpy(), queries.numpy())
    flat = pages.reshape(-1, d)
    mu = flat[:: max(1, len(flat) // 200_000)].mean(0)
    centred = flat - mu
    print(f"# {args.generator}, {n} pages x {t} tokens, {len(queries)} queries; load {os.getloadavg()[0]:.1f}; "
          f"coverage of the exact top 5 within the best C of each method")
    print("| method | " + " | ".join(f"C={c}" for c in CS) + " |")
    print("| --- |" + " ---: |" * len(CS))

    def row(name: str, approx: np.ndarray) -> None:
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in coverage(approx, exact)) + " |", flush=True)

    for k in (64, 128):
        row(f"pooled k-means K={k}", maxsim(torch.stack([pooled(pages[i], k) for i in range(n)]), queries))
    for bits in (1, 4, 8):
        row(f"{bits}-bit per token, raw", maxsim(quant(flat, bits).reshape(n, t, d), queries))
        row(f"{bits}-bit per token, centred", maxsim((quant(centred, bits) + mu).reshape(n, t, d), queries))
    sample = centred[torch.randperm(len(centred))[:200_000]]
    _, vecs = torch.linalg.eigh(sample.T @ sample)
    for r in (32, 64):
        v = vecs[:, -r:]
        row(f"PCA {r} + int8, centred", maxsim(quant(centred @ v, 8).reshape(n, t, r), queries @ v))
    scale = float(centred.abs().max()) * 1.25 / 127
    codes = torch.round(centred / scale).clamp(-127, 127)
    qs = queries.abs().amax(-1, keepdim=True) / 127
    qi = torch.round(queries / qs)
    sims = []
    for s in range(0, n, 100):
        p = codes.reshape(n, t, d)[s : s + 100]
        sim = (p.reshape(-1, d) @ qi.reshape(-1, d).T).reshape(len(p), t, len(queries), -1).amax(1)
        sims.append((sim * qs[..., 0][None] * scale).sum(-1))
    row("product: centred int8, one scale, int8 query", torch.cat(sims).T.numpy())

    # kernel speed: 64 pages x 1139 tokens, one thread
    from pagelens.index.ann.fast_rerank import quantize_query, segment_maxsim

    rows = 64 * 1139
    c8 = torch.randint(-127, 128, (rows, d), dtype=torch.int8)
    offsets = np.arange(0, rows + 1, 1139, dtype=np.int64)
    q = queries[0].numpy()
    qi8, qsc = quantize_query(q)
    qb = torch.from_numpy(q).to(torch.bfloat16)
    scales = torch.full((rows,), 0.01)

    def bf16_path() -> None:  # the kernel before (2026-12-01): int8 widened to bf16, scaled per token
        sim = (qb @ c8.to(torch.bfloat16).T).float() * scales
        sim.view(len(q), 64, 1139).amax(dim=2).sum(dim=0)

    def int_path() -> None:
        segment_maxsim(qi8, qsc, c8, offsets, 0.01, 0.0)

    for name, fn in (("int8 x int8 -> int32 (torch._int_mm), product", int_path), ("bf16 widening (before)", bf16_path)):
        fn()
        t0 = time.perf_counter()
        for _ in range(10):
            fn()
        ms = (time.perf_counter() - t0) / 10 * 1000 / 64 * 1000
        print(f"kernel {name}: {ms:.1f} ms per 1,000 pages x 1139 tokens (1 thread, load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
