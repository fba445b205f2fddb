"""Retrieval benchmark: MaxSim latency (p50/p95) and recall@5/@10 against exact MaxSim.

Synthetic, structured collections (see ``gen_chunk``): every page is a G x G patch grid (G = 32 at full
size: 4 x 4 tiles of 8 x 8) plus "extra" tokens (global tile + prompt; 1139 tokens in all at full
size). Patch tokens are drawn from a background vocabulary shared by all pages (white space, text
lines), the vocabulary of the page's cluster (pages of one cluster share patch vectors), and a small
localized block of page-unique vectors (the planted content a query is about), plus Gaussian noise,
L2-normalised. ``rows`` / ``cols`` are the means over grid rows / columns (as ``pool_rows_cols``).
A query (20 tokens) targets one planted page: tokens near its unique vectors, near its cluster's
vocabulary, and shared suffix-like tokens. Pooling dilutes the unique block, so prefetch is not
trivially perfect.

Systems (the product's own stores, public API only):
* ours: ``QdrantEdgeStore.search(mode="two_stage")`` after ``optimize()``, which measures the recall of
  each first stage on probe queries made from the collection (``index/ann/self_check.py``) and keeps the
  cheapest plan reaching the target: the product default. Then each first stage forced (the int8 scan
  of every page, the pooled means, the token index from ``token_index_min_pages``), to show what the
  check chose between;
* baselines: the same store with ``fast_rerank`` off (Qdrant reranks every prefetched page exactly,
  at the default prefetch), ``QdrantEdgeStore`` ``mode="exact"`` (brute force), ``QdrantServerStore`` on
  ``QdrantClient(":memory:")`` exact (first ``--local-pages`` pages only), exact MaxSim in torch
  (fp32, in RAM; also the ground truth);
* proposal (not product code): pooled MaxSim prefetch + exact rerank, both in torch in RAM.
``--real``: the same on tiny-model embeddings of real PDFs (``$PAGELENS_SHARED/pdfs/real``, see ``bench/common.py``).
``--generator aniso``: anisotropic pages (a narrow cone, a few dominant directions, near-duplicate
background patches, queries that only partly match; see ``Synth``) instead of iid Gaussian directions.
``--user-process``: what a user's process sees. The collection is built and searched only through
``open_store(Settings())`` (every product default, PAGELENS_* variables honoured); then a fresh process
imports, opens the store, runs the first query, then ``--warmup`` untimed and ``--rounds`` timed rounds
(stage times per search: int8 scan / token index / pooled scan, int8 rerank, the rest); ``--cold`` adds a run with
the collection's files evicted from the page cache first.

Quick:   python bench/retrieval.py                      (1000 pages x 1139 tokens)
Faster:  python bench/retrieval.py --tokens 300
Bigger:  python bench/retrieval.py --pages 10000        (~10 GB RAM at 1139 tokens; use --tokens)
User:    python bench/retrieval.py --user-process --pages 10000 --queries 40 --cold [--generator aniso]
Yours:   python bench/retrieval.py --vectors DIR [--data-dir D] [--exact]   (your own embeddings: bench/own_vectors.py)
         python bench/retrieval.py --pages 100000 --no-ram-baseline --data-dir /big/disk
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import REAL_PDFS, Table, device_label, log, require_cuda, time_calls  # noqa: F401

DIM = 128
Q_TOKENS = 20
CHUNK = 100  # pages per generated chunk (deterministic per chunk)


# --- synthetic data ---------------------------------------------------------------------------


GENERATORS = ("iid", "aniso", "lowrank")


class Synth:
    """Deterministic synthetic pages and planted queries (see the module docstring).

    ``generator``:
    * ``"iid"`` (the original): every vocabulary vector (background, cluster, page-unique, prompt) is an
      independent Gaussian direction in 128-d. Such vectors are nearly orthogonal (|cos| ~ 0.09), the
      easiest case for a patch-level inverted index: each query token falls into a cell of its own.
    * ``"aniso"``: closer to real ColSmol/ColPali token embeddings, which fill a narrow cone: every vector
      is ``unit(mean direction + low-rank part + small isotropic part)`` (one shared mean direction, an
      8-direction subspace whose first directions dominate), so any two tokens have cosine ~0.5-0.8;
      75% of the patches come from 12 near-duplicate background vectors (white margins, text lines)
      instead of 60% from 256; query tokens only partly match the page (each planted-content token is
      ``unit(0.6 * its unique vector + 0.4 * an unrelated cone vector)``), and 4 of the 20 match
      nothing in the collection.
    * ``"lowrank"``: ``"aniso"`` without the shared mean direction (``unit(low-rank + isotropic)``): the
      tokens still vary mostly along the same 8 directions, but random pairs have cosine ~0, so a test
      of the mean cosine does not see it (kept for the sketch first stage's gate, index/ann/sketch_index.py).
    """

    def __init__(self, pages: int, tokens: int, seed: int = 0, clusters: int | None = None,
                 generator: str = "iid") -> None:
        if generator not in GENERATORS:
            raise ValueError(f"generator must be one of {GENERATORS}, got {generator!r}")
        self.generator = generator
        self.pages = pages
        self.tokens = tokens
        self.grid = max(2, math.isqrt(max(4, tokens * 1024 // 1139)))
        self.extra = max(0, tokens - self.grid * self.grid)
        self.seed = seed
        self.n_clusters = clusters or max(1, pages // 25)
        rng = np.random.default_rng([seed, 10**6])
        aniso = generator in ("aniso", "lowrank")  # lowrank: the same vocabulary shapes, without the mean
        if aniso:
            arng = np.random.default_rng([seed, 4 * 10**6])
            self.mean_dir = _unit(arng.standard_normal(DIM, dtype=np.float32))
            basis = np.linalg.qr(arng.standard_normal((DIM, 9)).astype(np.float32))[0].T  # orthonormal [9, D]
            basis = basis[1:] - (basis[1:] @ self.mean_dir)[:, None] * self.mean_dir  # orthogonal to the mean
            self.basis = _unit(basis)  # [8, D]
            self.basis_scale = (0.8 * 0.7 ** np.arange(8)).astype(np.float32)  # a few dominant directions
        self.background = self.draw(rng, (12 if aniso else 256,))
        self.prompt = self.draw(rng, (max(1, self.extra),))
        self.background_share = 0.75 if aniso else 0.6
        self.noise = 0.15 if aniso else 0.5  # per-patch Gaussian noise (norm): near-duplicate patches in "aniso"
        self.cluster_vocab_size = 48
        self.unique_per_page = 6
        self.block = max(2, self.grid // 8)  # side of the planted block (4 x 4 at G=32)

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Unit vectors [*shape, D]: independent Gaussian directions ("iid"), or cone vectors
        ``unit(1.5 * mean + low-rank + isotropic of norm ~0.6)`` ("aniso")."""
        if self.generator == "iid":
            return _unit(rng.standard_normal((*shape, DIM), dtype=np.float32))
        low = rng.standard_normal((*shape, len(self.basis_scale)), dtype=np.float32) * self.basis_scale
        iso = rng.standard_normal((*shape, DIM), dtype=np.float32) * np.float32(0.6 / math.sqrt(DIM))
        if self.generator == "lowrank":
            return _unit(low @ self.basis + iso)
        return _unit(1.5 * self.mean_dir + low @ self.basis + iso)

    def cluster_vocab(self, c: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 2 * 10**6 + c])
        return self.draw(rng, (self.cluster_vocab_size,))

    def cluster_of(self, i: int) -> int:
        return (i * 7919) % self.n_clusters

    def gen_chunk(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Pages [k*CHUNK, ...): full [n, T, D], rows [n, G, D], cols [n, G, D], unique [n, U, D]."""
        lo, hi = k * CHUNK, min(self.pages, (k + 1) * CHUNK)
        n, g, d = hi - lo, self.grid, DIM
        rng = np.random.default_rng([self.seed, k])
        unique = self.draw(rng, (n, self.unique_per_page))
        grid = np.empty((n, g, g, d), dtype=np.float32)
        for j in range(n):
            vocab = self.cluster_vocab(self.cluster_of(lo + j))
            src = rng.random((g, g))
            bg = self.background[rng.integers(0, len(self.background), (g, g))]
            cv = vocab[rng.integers(0, len(vocab), (g, g))]
            grid[j] = np.where((src < self.background_share)[..., None], bg, cv)
            r0, c0 = rng.integers(0, g - self.block + 1, 2)
            blk = unique[j][rng.integers(0, self.unique_per_page, (self.block, self.block))]
            grid[j, r0 : r0 + self.block, c0 : c0 + self.block] = blk
        grid += rng.standard_normal(grid.shape, dtype=np.float32) * np.float32(self.noise / math.sqrt(d))
        grid = _unit(grid)
        patches = grid.reshape(n, g * g, d)
        if self.extra:
            extra = self.prompt[None] + rng.standard_normal((n, self.extra, d), dtype=np.float32) * np.float32(0.05)
            full = np.concatenate([_unit(extra), patches], axis=1)
        else:
            full = patches
        rows = grid.mean(axis=2)  # [n, G, D]: mean over columns of each row
        cols = grid.mean(axis=1)  # [n, G, D]
        return np.ascontiguousarray(full), rows, cols, unique

    def n_chunks(self) -> int:
        return (self.pages + CHUNK - 1) // CHUNK

    def queries(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """[n, 20, D] queries and their planted target pages [n]."""
        rng = np.random.default_rng([self.seed, 3 * 10**6])
        targets = rng.choice(self.pages, size=n, replace=False)
        qs = np.empty((n, Q_TOKENS, DIM), dtype=np.float32)
        suffix = self.background[:8]
        for qi, t in enumerate(targets):
            k = int(t) // CHUNK
            _, _, _, unique = self.gen_chunk(k)
            u = unique[int(t) - k * CHUNK]
            vocab = self.cluster_vocab(self.cluster_of(int(t)))
            if self.generator == "iid":
                toks = np.concatenate(
                    [u[rng.integers(0, len(u), 6)], vocab[rng.integers(0, len(vocab), 6)], suffix], axis=0
                )
            else:  # partial matches: content tokens pulled off their page vectors, 4 tokens about nothing here
                off = self.draw(rng, (12,))
                content = np.concatenate([u[rng.integers(0, len(u), 6)], vocab[rng.integers(0, len(vocab), 6)]])
                toks = np.concatenate([0.6 * content + 0.4 * off, self.draw(rng, (4,)),
                                       self.background[rng.integers(0, len(self.background), 4)]], axis=0)
            toks = toks + rng.standard_normal(toks.shape, dtype=np.float32) * np.float32(0.3 / math.sqrt(DIM))
            qs[qi] = _unit(toks)
        return qs, targets


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32, copy=False)


# --- exact MaxSim kernels ---------------------------------------------------------------------


def maxsim_scores(full: object, queries: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Exact MaxSim of every page: full [N, T, D] (numpy or torch), queries [Q, n_q, D] -> [Q, N]."""
    import torch

    f = full if isinstance(full, torch.Tensor) else torch.from_numpy(full)
    q = torch.from_numpy(queries).to(f.device, f.dtype)
    n, t, d = f.shape
    nq, lq, _ = q.shape
    out = torch.empty((nq, n), dtype=torch.float32)
    step = max(1, int(2e8 // (t * nq * lq * 4)))
    with torch.inference_mode():
        for s in range(0, n, step):
            sim = f[s : s + step].reshape(-1, d) @ q.reshape(-1, d).T  # [b*T, Q*n_q]
            sim = sim.reshape(-1, t, nq, lq).amax(dim=1).float().sum(dim=-1)  # [b, Q]
            out[:, s : s + step] = sim.T.cpu()
    return out.numpy()


def topk(scores: np.ndarray, k: int) -> list[int]:
    idx = np.argpartition(-scores, min(k, len(scores) - 1))[:k]
    return [int(i) for i in idx[np.argsort(-scores[idx], kind="stable")]]


def recall(got: list[int], exact: list[int], k: int, scores: np.ndarray | None = None) -> float:
    """|got[:k] & exact[:k]| / k. With the exact ``scores`` of all pages, ties count: a returned page
    whose exact score is within 1e-4 (relative) of the k-th best counts as a hit."""
    k = min(k, len(exact))
    if scores is None:
        return len(set(got[:k]) & set(exact[:k])) / float(k)
    kth = float(scores[exact[k - 1]])
    tol = 1e-4 * max(1.0, abs(kth))
    return sum(1 for g in got[:k] if float(scores[g]) >= kth - tol) / float(k)


class Exact(list):
    """Exact top-10 lists per query, with the exact score rows (for tie-aware recall)."""

    def __init__(self, scores: np.ndarray) -> None:
        super().__init__(topk(scores[i], 10) for i in range(len(scores)))
        self.scores = scores


# --- the product's stores --------------------------------------------------------------------


def pid(i: int) -> str:
    return str(uuid.UUID(int=i + 1))


def page_of(point_id: str) -> int:
    return uuid.UUID(point_id).int - 1


def points_for(lo: int, full: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> list:
    from pagelens.core.types import PageEmbedding, PagePoint

    return [
        PagePoint(
            id=pid(lo + j),
            embedding=PageEmbedding(full=full[j], rows=rows[j], cols=cols[j]),
            payload={"doc_id": f"d{(lo + j) // 10}", "doc_name": f"d{(lo + j) // 10}.pdf", "page_no": (lo + j) % 10 + 1},
        )
        for j in range(len(full))
    ]


def manifest(name: str):
    from pagelens.core.types import CollectionManifest

    return CollectionManifest(name=name, model_id="synthetic", model_revision=None, dim=DIM)


def read_through(path: Path) -> int:
    """Read a file once (into the page cache); returns its size in bytes."""
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 26):
            size += len(chunk)
    return size


def eval_store(table: Table, label: str, search, queries: np.ndarray, exact: list[list[int]], dev: str,
               baseline_p50: float | None, baseline_name: str, warmup: int = 2, note: str = "") -> dict:
    timing, results = time_calls(lambda qi: search(queries[qi]), list(range(len(queries))), warmup=warmup)
    r5 = float(np.mean([recall([page_of(h.id) for h in r], e, 5, exact.scores[i]) for i, (r, e) in enumerate(zip(results, exact, strict=False))]))
    r10 = float(np.mean([recall([page_of(h.id) for h in r], e, 10, exact.scores[i]) for i, (r, e) in enumerate(zip(results, exact, strict=False))]))
    table.add(f"{label} p50", timing.p50, baseline_p50, baseline_name=baseline_name, device=dev, note=note)
    table.add(f"{label} p95", timing.p95, None, device=dev)
    table.add(f"{label} recall@5 / @10", r5, None, unit="", higher_is_better=True, device=dev,
              note=f"@10 = {r10:.3f}")
    log(f"{label}: p50 {timing.p50 * 1000:.1f} ms p95 {timing.p95 * 1000:.1f} ms recall@5 {r5:.3f} @10 {r10:.3f}")
    return {"p50": timing.p50, "p95": timing.p95, "r5": r5, "r10": r10}


def run_synthetic(args: argparse.Namespace, table: Table) -> None:
    import torch

    dev = device_label()
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    if cuda is None:
        log("SKIP GPU rows (exact MaxSim and the fast rerank on the GPU): torch.cuda is not available")
    syn = Synth(args.pages, args.tokens, seed=args.seed, generator=args.generator)
    log(f"synthetic: {args.pages} pages x {syn.tokens} tokens (grid {syn.grid}x{syn.grid} + {syn.extra}), "
        f"{syn.n_clusters} clusters, {args.queries} queries")
    queries, targets = syn.queries(args.queries)
    reuse = args.reuse is not None
    root = args.reuse if reuse else Path(tempfile.mkdtemp(prefix="pagelens-bench-", dir=args.data_dir))
    truth_file = root / f"exact-{args.pages}-{args.tokens}-{args.queries}-{args.seed}.npy"
    try:
        from pagelens.index.stores.edge_store import QdrantEdgeStore

        store = QdrantEdgeStore(root / "edge", full_datatype=args.datatype, hnsw_m=args.hnsw_m)
        if args.token_index_min_pages is not None:
            store.token_index_min_pages = args.token_index_min_pages
        if reuse:
            if store.count("bench") != args.pages:
                raise SystemExit(f"--reuse {root}: its collection has {store.count('bench')} pages, not {args.pages}")
            log(f"reusing the collection in {root} (built by an earlier --keep run): no upsert/optimize rows")
        else:
            store.create_collection(manifest("bench"))
        keep_ram = not args.no_ram_baseline
        ram_full: list[np.ndarray] = []
        ram_rows: list[np.ndarray] = []
        ram_cols: list[np.ndarray] = []
        gen_s = up_s = 0.0
        exact_scores = np.zeros((len(queries), args.pages), dtype=np.float32)
        cached_truth = reuse and truth_file.exists() and not keep_ram
        if cached_truth:
            exact_scores = np.load(truth_file)
            log(f"exact scores from {truth_file}")
        for k in range(0 if cached_truth else syn.n_chunks()):
            t0 = time.perf_counter()
            full, rows, cols, _ = syn.gen_chunk(k)
            gen_s += time.perf_counter() - t0
            exact_scores[:, k * CHUNK : k * CHUNK + len(full)] = maxsim_scores(full, queries)
            t0 = time.perf_counter()
            if not reuse:
                store.upsert("bench", points_for(k * CHUNK, full, rows, cols))
            up_s += time.perf_counter() - t0
            if k % 50 == 49:
                log(f"  {min(args.pages, (k + 1) * CHUNK)} of {args.pages} pages generated and upserted")
            if keep_ram:
                ram_full.append(full.astype(np.float16) if args.ram_fp16 else full)
                ram_rows.append(rows)
                ram_cols.append(cols)
        if args.keep or reuse:
            np.save(truth_file, exact_scores)
        t0 = time.perf_counter()
        token_min = store.token_index_min_pages
        store.token_index_min_pages = 0  # timed apart below
        if not reuse:
            store.optimize("bench")
        opt_s = time.perf_counter() - t0
        store.token_index_min_pages = token_min
        store._rerank_file("bench").tokens.clear()  # (a reused collection's too: rebuilt by this code)
        t0 = time.perf_counter()
        store.sync_rerank_cache("bench")  # builds the token index (>= token_index_min_pages)
        tok_s = time.perf_counter() - t0
        has_tokens = store._rerank_file("bench").token_index_ready()
        t0 = time.perf_counter()
        store.self_check("bench", force=True)  # measured with every first stage built (the product's optimize does both)
        check_s = time.perf_counter() - t0
        log(f"self-check: {check_s:.1f} s")
        built = "reused" if reuse else f"Edge upsert {up_s:.1f} s ({args.pages / max(up_s, 1e-9):.0f} pages/s), optimize {opt_s:.1f} s"
        log(f"generated in {gen_s:.1f} s, {built}"
            f", token index {tok_s:.1f} s ({'built' if has_tokens else 'none: below token_index_min_pages'})")
        if not reuse:
            table.add("Edge upsert (pages/s)", args.pages / up_s, None, unit="pages/s", higher_is_better=True, device=dev)
            table.add("Edge optimize()", opt_s, None, device=dev)
        if has_tokens:
            tok_dir = root / "edge" / "bench" / "rerank" / "tokens"
            tok_gb = sum(f.stat().st_size for f in tok_dir.glob("*")) / 1e9
            table.add("token index build (in optimize: sample, train 256 x 256 codebook, assign every token)", tok_s,
                      None, device=dev, note=f"{tok_gb:.2f} GB")
        exact = Exact(exact_scores)
        planted5 = float(np.mean([t in e[:5] for t, e in zip(targets, exact, strict=False)]))
        log(f"planted page in exact top-5: {planted5:.2f}")

        # baseline: exact MaxSim in torch (in RAM)
        base_p50: float | None = None
        if keep_ram:
            full_all = torch.from_numpy(np.concatenate(ram_full))
            ram_full.clear()
            t, _ = time_calls(lambda qi: topk(maxsim_scores(full_all, queries[qi : qi + 1])[0], 10),
                              list(range(len(queries))))
            base_p50 = t.p50
            table.add(f"exact MaxSim torch {'fp16' if args.ram_fp16 else 'fp32'} in RAM ({args.pages} pages) p50",
                      t.p50, None, device=dev, note=f"p95 {t.p95 * 1000:.1f} ms, {torch.get_num_threads()} threads")
            log(f"torch exact: p50 {t.p50 * 1000:.1f} ms")
            if cuda:
                try:
                    gpu_full = full_all.to("cuda", torch.float16)
                    tg, _ = time_calls(lambda qi: topk(maxsim_scores(gpu_full, queries[qi : qi + 1], "cuda")[0], 10),
                                       list(range(len(queries))), cuda=True)
                    table.add(f"exact MaxSim torch fp16 on {cuda} ({args.pages} pages) p50", tg.p50, t.p50,
                              baseline_name="torch exact on the CPU", device=device_label(gpu=True))
                    del gpu_full
                except RuntimeError as exc:  # out of GPU memory at 100k pages
                    log(f"GPU exact MaxSim skipped: {exc}")

        # baseline: Edge brute force (on the first --exact-queries queries: ~13 s each at 100k pages)
        n_ex = min(len(queries), args.exact_queries or len(queries))
        ex_sub = Exact(exact.scores[:n_ex])
        edge_exact = eval_store(table, f"Edge exact ({args.pages} pages{'' if n_ex == len(queries) else f', {n_ex} queries'})",
                                lambda q: store.search("bench", q, 10, mode="exact"), queries[:n_ex], ex_sub, dev,
                                base_p50, "torch exact", warmup=1)
        # ours: Edge two_stage as the product runs it: the plan the self-check measured at optimize time;
        # then each first stage forced, to show what the check chose between (same run, same store)
        from pagelens.index.ann.self_check import SearchPlan

        from pagelens.core.settings import Tuning

        default_pf = int(Tuning.model_fields["prefetch_limit"].default)
        # the in-RAM baselines above pushed the rerank cache out of the page cache: read it back once,
        # as a long-running server has it (searches on a cold cache fault its pages in from disk)
        t0 = time.perf_counter()
        cached = sum(read_through(f) for f in sorted((root / "edge" / "bench" / "rerank").rglob("*"))
                     if f.is_file() and f.name != "index.bin")
        log(f"rerank cache read into the page cache: {cached / 1e9:.2f} GB in {time.perf_counter() - t0:.1f} s")
        plan = store._plan("bench")
        log(f"self-check ({plan.seconds:.1f} s): {plan.summary()}; geometry {plan.geometry}")
        eval_store(table, f"ours (product default): Edge two_stage, measured plan: {plan.summary()} ({args.pages} pages)",
                   lambda q: store.search("bench", q, 10, mode="two_stage"), queries, exact, dev, edge_exact["p50"],
                   "Edge exact")
        forced = [("scan", 0, 16), ("scan", 0, 32), ("pooled", default_pf, 16)]
        if has_tokens:
            forced.append(("tokens", 250, 16))
        if store._rerank_file("bench").dedup_ready():
            forced += [("dedup", 64, 16), ("dedup", 250, 16)]
        for stage, width, keep in forced:
            store.set_plan("bench", SearchPlan(first_stage=stage, candidates=width, rerank_keep=keep, recall=1.0,
                                               pages=args.pages))
            eval_store(table, f"forced: {stage} first stage{f' ({width} candidates)' if width else ''} -> int8 rerank "
                       f"-> {keep} exact ({args.pages} pages)",
                       lambda q: store.search("bench", q, 10, mode="two_stage"), queries, exact, dev,
                       edge_exact["p50"], "Edge exact")
        store.set_plan("bench", plan)
        store.fast_rerank = False
        eval_store(table, f"Edge two_stage, Qdrant's own pooled HNSW prefetch + rerank, prefetch={default_pf} "
                   f"({args.pages} pages)",
                   lambda q: store.search("bench", q, 10, mode="two_stage", prefetch_limit=default_pf),
                   queries, exact, dev, edge_exact["p50"], "Edge exact")
        store.fast_rerank = True
        if cuda:
            store.rerank_device = "cuda"
            eval_store(table, f"ours on {cuda}: fast int8 rerank on the GPU, prefetch={default_pf} ({args.pages} pages)",
                       lambda q: store.search("bench", q, 10, mode="two_stage", prefetch_limit=default_pf),
                       queries, exact, device_label(gpu=True), edge_exact["p50"], "Edge exact")
            store.rerank_device = "cpu"

        # proposal: pooled prefetch + exact rerank in torch (what an own fast kernel would give)
        if keep_ram:
            rows_all = torch.from_numpy(np.concatenate(ram_rows))
            cols_all = torch.from_numpy(np.concatenate(ram_cols))

            def pooled_two_stage(q: np.ndarray, k_cand: int = 100) -> list[int]:
                qq = q[None]
                s = maxsim_scores(rows_all, qq)[0] + maxsim_scores(cols_all, qq)[0]
                cand = topk(s, min(k_cand, len(s)))
                cand_t = torch.tensor(cand)
                sc = maxsim_scores(full_all.index_select(0, cand_t), qq)[0]
                return [cand[i] for i in topk(sc, 10)]

            t, res = time_calls(pooled_two_stage, list(queries))
            r5 = float(np.mean([recall(r, e, 5, exact.scores[i]) for i, (r, e) in enumerate(zip(res, exact, strict=False))]))
            r10 = float(np.mean([recall(r, e, 10, exact.scores[i]) for i, (r, e) in enumerate(zip(res, exact, strict=False))]))
            table.add(f"proposal: torch pooled rows+cols prefetch 100 + exact rerank ({args.pages} pages) p50", t.p50,
                      edge_exact["p50"], baseline_name="Edge exact", device=dev,
                      note=f"p95 {t.p95 * 1000:.1f} ms, recall@5 {r5:.3f} @10 {r10:.3f}")
            log(f"proposal torch two-stage: p50 {t.p50 * 1000:.1f} ms recall@5 {r5:.3f} @10 {r10:.3f}")

        # cost of fetching 100 full multivectors back out of Edge (what a rerank outside Edge would pay)
        ids = [pid(i) for i in range(min(100, args.pages))]
        t, _ = time_calls(lambda _: store.get_full_vectors("bench", ids), [0, 1, 2], warmup=1)
        table.add("Edge get_full_vectors(100 ids)", t.p50, None, device=dev)
        store.close()

        # baseline: qdrant-client local mode, on the first --local-pages pages
        if args.local_pages > 0:
            run_local(args, syn, queries, table, dev)
        du = sum(f.stat().st_size for f in (root / "edge").rglob("*") if f.is_file())
        cache = sum(f.stat().st_size for f in (root / "edge").rglob("rerank/*") if f.is_file())
        log(f"Edge on disk: {du / 1e9:.2f} GB, of which the int8 rerank cache {cache / 1e9:.2f} GB")
        table.add("Edge collection on disk (GB)", du / 1e9, None, unit="GB", device=dev,
                  note=f"of which the int8 rerank cache {cache / 1e9:.2f} GB")
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux -> GB
        table.add("peak RSS of the benchmark process (GB)", peak, None, unit="GB", device=dev,
                  note="in-RAM baselines included" if keep_ram else "no in-RAM baselines")
    finally:
        if args.keep or reuse:
            log(f"kept the collection in {root} (reuse it with --reuse {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)


def run_local(args: argparse.Namespace, syn: Synth, queries: np.ndarray, table: Table, dev: str) -> None:
    from pagelens.index.stores.edge_store import QdrantEdgeStore
    from pagelens.index.stores.server_store import QdrantServerStore
    from qdrant_client import QdrantClient

    n = min(args.local_pages, args.pages)
    nq = min(len(queries), args.local_queries)
    chunks = [syn.gen_chunk(k) for k in range((n + CHUNK - 1) // CHUNK)]
    full = np.concatenate([c[0] for c in chunks])[:n]
    rows = np.concatenate([c[1] for c in chunks])[:n]
    cols = np.concatenate([c[2] for c in chunks])[:n]
    exact_scores = maxsim_scores(full, queries[:nq])
    exact = Exact(exact_scores)
    local = QdrantServerStore(QdrantClient(":memory:"))
    local.create_collection(manifest("bench"))
    t0 = time.perf_counter()
    local.upsert("bench", points_for(0, full, rows, cols))
    up = time.perf_counter() - t0
    log(f"qdrant-client local mode: upsert {n} pages {up:.1f} s")
    # Edge on the same subset, for a like-for-like ratio
    root = Path(tempfile.mkdtemp(prefix="pagelens-bench-sub-", dir=args.data_dir))
    try:
        edge = QdrantEdgeStore(root, full_datatype=args.datatype)
        edge.create_collection(manifest("bench"))
        edge.upsert("bench", points_for(0, full, rows, cols))
        edge.optimize("bench")
        loc = eval_store(table, f"qdrant-client :memory: exact ({n} pages)",
                         lambda q: local.search("bench", q, 10, mode="exact"), queries[:nq], exact, dev, None, "",
                         warmup=1)
        eval_store(table, f"Edge two_stage ({n} pages)", lambda q: edge.search("bench", q, 10), queries[:nq], exact,
                   dev, loc["p50"], "qdrant-client local")
        edge.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- what a user's process sees: the product's own opening, a fresh process, first query, steady state ---


def user_store(root: Path):
    """(store, settings) exactly as the product opens them: ``open_store(Settings(data_dir=root))``:
    every default (and any PAGELENS_* variable set in the environment)."""
    from pagelens.index.stores.factory import open_store

    from pagelens.core.settings import Settings

    settings = Settings(data_dir=root)
    return open_store(settings), settings


def build_user_collection(args: argparse.Namespace, syn: Synth, queries: np.ndarray, root: Path) -> Path:
    """Build the collection through ``user_store`` (upserts of 100 pages, then ``optimize()``: HNSW, the
    int8 cache, the token index from ``token_index_min_pages``) and save the exact scores of
    ``queries`` next to it; returns the truth file."""
    truth = root / "exact.npy"
    store, settings = user_store(root)
    store.create_collection(manifest("bench"))
    exact_scores = np.zeros((len(queries), args.pages), dtype=np.float32)
    t0 = time.perf_counter()
    for k in range(syn.n_chunks()):
        full, rows, cols, _ = syn.gen_chunk(k)
        exact_scores[:, k * CHUNK : k * CHUNK + len(full)] = maxsim_scores(full, queries)
        store.upsert("bench", points_for(k * CHUNK, full, rows, cols))
        if k % 20 == 19:
            log(f"  {min(args.pages, (k + 1) * CHUNK)} of {args.pages} pages upserted")
    up_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.optimize("bench")
    log(f"built with the product's defaults: upsert + truth {up_s:.1f} s, optimize {time.perf_counter() - t0:.1f} s, "
        f"token index {'yes' if store._rerank_file('bench').token_index_ready() else 'no'}")
    store.close()
    np.save(truth, exact_scores)
    return truth


def evict(root: Path) -> None:
    """Drop the collection's files from the page cache (``posix_fadvise(DONTNEED)``; only these files):
    a process started after a reboot, or after other work pushed them out."""
    for f in root.rglob("*"):
        if f.is_file() and not f.is_symlink():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def user_process_worker(args: argparse.Namespace) -> None:
    """One fresh process, as a user's: import, open the store with ``Settings()``, first query, then
    ``--warmup`` untimed queries and ``--rounds`` timed rounds over the queries. Prints one JSON line.
    The search call is the one ``pagelens.retrieve.hybrid.search_pages`` makes for a visual search of
    ``--limit`` pages (a hybrid search asks the visual side for ``hybrid_candidates`` pages)."""
    import json

    t_start = time.perf_counter()
    import torch
    from pagelens.index.ann import fast_rerank

    root = args.user_process_worker
    spent: dict[str, float] = {}

    def timed(name: str, fn):  # bench instrumentation: seconds in each stage of a search
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t0
        return wrapper

    def timed_result(name: str, make):  # the stage functions a search takes under the lock, timed when called
        def wrapper(*a, **kw):
            fn = make(*a, **kw)
            return None if fn is None else timed(name, fn)
        return wrapper

    fast_rerank.RerankCache.token_search = timed_result("token index", fast_rerank.RerankCache.token_search)
    fast_rerank.RerankCache.pooled_search = timed_result("pooled scan", fast_rerank.RerankCache.pooled_search)
    fast_rerank.ScanView.best = timed("int8 scan (every page, or its distinct tokens)", fast_rerank.ScanView.best)
    fast_rerank.RerankView.maxsim = timed("int8 rerank", fast_rerank.RerankView.maxsim)
    t_import = time.perf_counter() - t_start
    syn = Synth(args.pages, args.tokens, seed=args.seed, generator=args.generator)
    queries, _ = syn.queries(args.queries)
    warm, _ = Synth(args.pages, args.tokens, seed=args.seed + 1, generator=args.generator).queries(args.warmup) \
        if args.warmup else (np.zeros((0, Q_TOKENS, DIM), np.float32), None)
    exact = Exact(np.load(root / "exact.npy"))
    t0 = time.perf_counter()
    store, settings = user_store(root)
    n = store.count("bench")
    t_open = time.perf_counter() - t0

    def search(q: np.ndarray) -> tuple[float, list[int], dict[str, float]]:
        spent.clear()
        t = time.perf_counter()
        hits = store.search("bench", q, args.limit, mode=settings.search_mode,
                            prefetch_limit=max(settings.tuning.prefetch_limit, args.limit))
        s = time.perf_counter() - t
        parts = dict(spent)
        parts["rest (Qdrant count + exact MaxSim of the kept pages, payloads)"] = s - sum(parts.values())
        return s, [page_of(h.id) for h in hits], parts

    first_s, first_ids, first_parts = search(queries[0])
    for q in warm:
        search(q)
    times: list[float] = []
    parts_all: dict[str, list[float]] = {}
    r5: list[float] = []
    for rnd in range(args.rounds):
        for i, q in enumerate(queries):
            s, ids, parts = search(q)
            times.append(s)
            for k, v in parts.items():
                parts_all.setdefault(k, []).append(v)
            if rnd == 0:
                r5.append(recall(ids, exact[i], 5, exact.scores[i]))
    cache = store._rerank_file("bench")
    try:
        from threadpoolctl import threadpool_info

        blas = sorted({f"{i.get('internal_api')}:{i.get('num_threads')}" for i in threadpool_info()})
    except ImportError:
        blas = []
    print(json.dumps({
        "pages": n, "import_s": t_import, "open_s": t_open, "first_query_s": first_s,
        "first_query_parts_s": first_parts, "p50_s": float(np.percentile(times, 50)),
        "p95_s": float(np.percentile(times, 95)), "samples": len(times), "recall@5": float(np.mean(r5)),
        "parts_p50_s": {k: float(np.percentile(v, 50)) for k, v in parts_all.items()},
        "first_stage": store._plan("bench").summary(), "token_index": cache.token_index_ready(),
        "torch_threads": torch.get_num_threads(), "search_threads": settings.tuning.search_threads, "blas_threads": blas,
        "full_vector_datatype": settings.full_vector_datatype, "load": os.getloadavg()[0],
    }), flush=True)
    store.close()


def run_user_process(args: argparse.Namespace, table: Table) -> None:
    """``--user-process``: the collection built and searched only through the product's own opening
    (``Settings()`` defaults), each measurement in a fresh process: open, first query, steady state."""
    import json
    import subprocess

    dev = device_label()
    if args.token_index_min_pages is not None:  # through the environment, as a user would set it
        os.environ["PAGELENS_TUNING__TOKEN_INDEX_MIN_PAGES"] = str(args.token_index_min_pages)
    syn = Synth(args.pages, args.tokens, seed=args.seed, generator=args.generator)
    queries, _ = syn.queries(args.queries)
    reuse = args.reuse is not None
    root = args.reuse if reuse else Path(tempfile.mkdtemp(prefix="pagelens-bench-user-", dir=args.data_dir))
    try:
        if not reuse or not (root / "exact.npy").exists():
            build_user_collection(args, syn, queries, root)
        for cold in (True, False) if args.cold else (False,):
            if cold:
                evict(root)
            else:  # warm: every file of the collection read once, as a long-running server has it
                for f in sorted(root.rglob("*")):
                    if f.is_file() and not f.is_symlink():
                        read_through(f)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--user-process-worker", str(root),
                   "--pages", str(args.pages), "--tokens", str(args.tokens), "--queries", str(args.queries),
                   "--seed", str(args.seed), "--generator", args.generator, "--limit", str(args.limit),
                   "--warmup", str(args.warmup), "--rounds", str(args.rounds)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            log(f"user process ({'cold' if cold else 'warm'} page cache): {res}")
            tag = (f"user process, {res['first_stage']}, {args.generator} pages, limit {args.limit}, "
                   f"{'cold' if cold else 'warm'} page cache ({res['pages']} pages)")
            parts = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in res["first_query_parts_s"].items())
            table.add(f"{tag}: open the store", res["open_s"], None, device=dev,
                      note=f"imports {res['import_s']:.1f} s before it")
            table.add(f"{tag}: first query", res["first_query_s"], None, device=dev, note=parts)
            steady = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in res["parts_p50_s"].items())
            table.add(f"{tag}: steady state p50", res["p50_s"], None, device=dev,
                      note=f"{res['samples']} searches after {args.warmup} warm-up; stage p50s: {steady}; "
                           f"search_threads {res['search_threads']} (0: torch's {res['torch_threads']})")
            table.add(f"{tag}: steady state p95", res["p95_s"], None, device=dev)
            table.add(f"{tag}: recall@5", res["recall@5"], None, unit="", higher_is_better=True, device=dev)
    finally:
        if args.keep or reuse:
            log(f"kept the collection in {root} (reuse it with --reuse {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)


# --- real PDFs through the tiny model ---------------------------------------------------------


REAL_QUESTIONS = [
    "What is the total amount due?", "invoice number and date", "Who signed the minutes?",
    "tax registration number", "hotel check-in date", "laboratory test results", "payment terms",
    "billing address", "What services were provided?", "VAT amount",
]


def run_real(args: argparse.Namespace, table: Table) -> None:
    from pagelens.index.stores.edge_store import QdrantEdgeStore
    from pagelens.ingest.loader import open_document

    from pagelens.core.settings import Settings
    from pagelens.models.embedder import ColSmolEmbedder
    from tests.make_tiny_models import build_tiny_models

    pdfs = sorted(REAL_PDFS.glob("*.pdf"))[: args.real_docs]
    if not pdfs:
        log(f"no PDFs in {REAL_PDFS}: skipping the real-PDF run")
        return
    dev = device_label()
    tmp = Path(tempfile.mkdtemp(prefix="pagelens-bench-real-"))
    try:
        paths = build_tiny_models(tmp / "models")
        settings = Settings(retriever_model=str(paths["retriever"]), device="cpu", page_longest_edge=1024,
                            data_dir=tmp / "data")
        emb = ColSmolEmbedder(settings)
        pages = []
        for p in pdfs:
            doc = open_document(p, settings)
            for page in doc.pages():
                pages.append(page.image)
                if len(pages) >= args.real_pages:
                    break
            if len(pages) >= args.real_pages:
                break
        t0 = time.perf_counter()
        embs = emb.embed_pages(pages)
        log(f"real: {len(pages)} pages from {len(pdfs)} PDFs embedded (tiny model, 1024 px) in {time.perf_counter() - t0:.1f} s")
        qs = emb.embed_queries(REAL_QUESTIONS)
        store = QdrantEdgeStore(tmp / "edge")
        store.create_collection(manifest("real"))
        from pagelens.core.types import PagePoint

        store.upsert("real", [PagePoint(id=pid(i), embedding=e, payload={"doc_id": "r", "page_no": i + 1})
                              for i, e in enumerate(embs)])
        store.optimize("real")
        n_tok = max(e.full.shape[0] for e in embs)
        full = np.zeros((len(embs), n_tok, DIM), dtype=np.float32)  # zero padding: adds 0 to no max (dots of
        for i, e in enumerate(embs):  # unit vectors can be negative, so pad with a copy of the first token)
            full[i, : e.full.shape[0]] = e.full
            full[i, e.full.shape[0] :] = e.full[0]
        exact = Exact(np.stack([maxsim_scores(full, q[None])[0] for q in qs]))
        e_ex = eval_store(table, f"real PDFs, tiny model: Edge exact ({len(embs)} pages)",
                          lambda i: store.search("real", qs[i], 10, mode="exact"), np.arange(len(qs)), exact, dev,
                          None, "", warmup=1)
        eval_store(table, f"real PDFs, tiny model: Edge two_stage ({len(embs)} pages)",
                   lambda i: store.search("real", qs[i], 10, mode="two_stage"), np.arange(len(qs)), exact, dev,
                   e_ex["p50"], "Edge exact", warmup=1)
        eval_store(table, f"real PDFs, tiny model: Edge two_stage prefetch=5 ({len(embs)} pages)",
                   lambda i: store.search("real", qs[i], 10, mode="two_stage", prefetch_limit=5), np.arange(len(qs)),
                   exact, dev, e_ex["p50"], "Edge exact", warmup=1,
                   note="prefetch < pages, so pooling is exercised")
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_own_vectors(args: argparse.Namespace) -> None:
    """``--vectors DIR``: the product on the caller's own embeddings (``bench/own_vectors.py``)."""
    import json
    import logging

    from bench.own_vectors import VectorsError, run

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = run(args.vectors, data_dir=Path(args.data_dir) if args.data_dir else None, exact=args.exact)
    except VectorsError as exc:
        sys.exit(f"error: {exc}")
    ms = np.asarray(result["search_ms"])
    log(f"{result['pages']} pages, {result['queries']} queries: built in {result['build_s']:.1f} s, search p50 "
        f"{np.percentile(ms, 50):.1f} ms p95 {np.percentile(ms, 95):.1f} ms, "
        + (f"{result['bytes_per_page'] / 1e6:.3f} MB per page on disk, " if result["bytes_per_page"] else "")
        + f"self-check {json.dumps(result['self_check'])}")
    if args.exact:
        print(f"recall@5 {result['recall']['at5']:.3f} recall@10 {result['recall']['at10']:.3f} (vs exact MaxSim)")
    print(f"wrote {args.vectors / 'pagelens.json'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=1000, help="synthetic pages (10000 / 100000 for the targets)")
    ap.add_argument("--tokens", type=int, default=1139, help="tokens per page (1139 = US letter at 2048 px)")
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--datatype", choices=["float32", "float16"], default="float32", help="Edge full-vector storage")
    ap.add_argument("--hnsw-m", type=int, default=None, help="HNSW m of the pooled vectors (default: the product's)")
    ap.add_argument("--exact-queries", type=int, default=0,
                    help="queries for the Edge brute-force baseline (0: all; it is ~13 s per query at 100k pages)")
    ap.add_argument("--local-pages", type=int, default=200, help="pages for qdrant-client local mode (0: skip)")
    ap.add_argument("--local-queries", type=int, default=5)
    ap.add_argument("--no-ram-baseline", action="store_true", help="skip the in-RAM torch baselines (100k pages)")
    ap.add_argument("--ram-fp16", action="store_true", help="keep the in-RAM baseline matrix in fp16")
    ap.add_argument("--real", action=argparse.BooleanOptionalAction, default=True, help="also run on real PDFs")
    ap.add_argument("--real-docs", type=int, default=30)
    ap.add_argument("--real-pages", type=int, default=40)
    ap.add_argument("--synthetic", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--data-dir", default=None, help="where the temporary collections go (on-disk runs)")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic collection and its exact scores")
    ap.add_argument("--reuse", type=Path, default=None,
                    help="search the collection an earlier --keep run left in this folder (same --pages/--tokens/"
                         "--queries/--seed/--datatype) instead of building it; the token index is rebuilt")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--generator", choices=GENERATORS, default="iid",
                    help="synthetic vectors: iid Gaussian directions, or aniso (a narrow cone with a few dominant "
                         "directions, near-duplicate background patches, queries that only partly match)")
    ap.add_argument("--token-index-min-pages", type=int, default=None,
                    help="build the token index from this many pages (default: the product's 5000)")
    ap.add_argument("--user-process", action="store_true",
                    help="measure what a user's process does: build through open_store(Settings()), then in a fresh "
                         "process open the store, time the first query, then the steady state")
    ap.add_argument("--cold", action="store_true", help="--user-process: also a run with the collection's files "
                    "evicted from the page cache first")
    ap.add_argument("--limit", type=int, default=10, help="--user-process: pages per search (hybrid asks 50)")
    ap.add_argument("--warmup", type=int, default=5, help="--user-process: untimed queries after the first")
    ap.add_argument("--rounds", type=int, default=3, help="--user-process: timed rounds over the queries")
    ap.add_argument("--user-process-worker", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help="append the markdown table to this file")
    ap.add_argument("--vectors", type=Path, default=None, metavar="DIR",
                    help="bring your own vectors: DIR/pages.npy [N, T, 128] and DIR/queries.npy [Q, t, 128] "
                    "(optional lengths.npy, query_lengths.npy) through the product's defaults; writes "
                    "DIR/pagelens.json (bench/own_vectors.py). --data-dir: the store's data dir (new or empty)")
    ap.add_argument("--exact", action="store_true",
                    help="--vectors: add exact MaxSim's top 10 (exact_top10) and print recall@5/@10 against it")
    args = ap.parse_args()
    if args.vectors is not None:
        run_own_vectors(args)
        return
    if args.user_process_worker is not None:
        user_process_worker(args)
        return
    if args.hnsw_m is None:
        from pagelens.core.settings import Tuning

        args.hnsw_m = int(Tuning.model_fields["hnsw_m"].default)

    table = Table(f"retrieval: {args.pages} synthetic pages ({args.generator}) x {args.tokens} tokens, {args.queries} "
                  f"queries x 20 tokens, Edge full vectors "
                  + (f"{args.datatype}, pooled HNSW m={args.hnsw_m}" if not args.user_process
                     else "and pooled HNSW as Settings() makes them")
                  + (", the product's Settings() defaults" if args.user_process else ""))
    if args.user_process:
        run_user_process(args, table)
        table.print(args.out)
        return
    if args.synthetic:
        run_synthetic(args, table)
    if args.real:
        run_real(args, table)
    table.print(args.out)


if __name__ == "__main__":
    main()
