"""The sketch first stage (``index/ann/sketch_index.py``) against the whole-collection int8 scan it stands
in for, same run: the ranking's cost per token row, and how often each one's best W pages hold exact
MaxSim's top 5.

* **cost**: ``ScanView.best`` (the product's ranking: int8 product + per-page max) over ``--rows`` random
  codes of 128 dims (the scan) and of ``DIMS`` (the sketch), on one thread and on two (the product's pool);
  ns per token row and the ratio.
* **recall**: ``--pages`` synthetic pages (``bench.retrieval.Synth``, each ``--generator``) encoded as the
  cache does (``fit_codec`` / ``encode_centred``), projected as ``ensure_sketch_index`` does
  (``fit_projection`` on 65k sampled centred tokens, ``project_codes``); 32 self-check probe queries
  (``self_check.make_probes``) and 20 planted benchmark queries; recall@5 of the best W pages against
  exact MaxSim (torch fp32), for the sketch and for the full int8 scan.

    python bench/sketch.py                                   (20,000 pages x 300 tokens, iid and aniso)
    python bench/sketch.py --pages 10000 --tokens 1139 --generator aniso
    python bench/sketch.py --dims 32 64                      (two sketch widths side by side)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import Table, device_label, log  # noqa: E402
from bench.retrieval import GENERATORS, Synth  # noqa: E402

WIDTHS = (250, 500, 1000, 2000, 4000)


def view_of(codes: np.ndarray, lens: np.ndarray, centre: np.ndarray, scale: float):  # noqa: ANN201
    """A ``ScanView`` over stacked codes [rows, d] of pages of ``lens`` tokens, one thread."""
    import torch
    from pagelens.index.ann.fast_rerank import ScanView

    starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    recs = np.arange(len(lens))
    return ScanView(torch.from_numpy(codes), recs, starts, lens.astype(np.int64), np.ones(len(lens), dtype=bool),
                    [f"{i:07d}" for i in range(len(lens))], centre, scale, workers=1)


def kernel_costs(rows: int, tokens: int, dims: tuple[int, ...], workers: int,
                 rng: np.random.Generator) -> dict[int, float]:
    """Seconds per token row of ``ScanView.best`` over ``rows`` random int8 codes of each of ``dims`` on
    ``workers`` threads: the median of 5 searches, twice in alternation (the better of the two medians)."""
    from pagelens.index.ann.fast_rerank import ScanView

    pages = rows // tokens
    views = {}
    for d in dims:
        v = view_of(rng.integers(-127, 128, (pages * tokens, d), dtype=np.int8), np.full(pages, tokens),
                    np.zeros(d, dtype=np.float32), 0.01)
        views[d] = ScanView(v.codes, v.recs, v.starts, v.lens, v.live, v.ids, v.centre, v.scale, workers=workers)
    best: dict[int, float] = {}
    for _ in range(2):
        for d, view in views.items():
            query = rng.standard_normal((20, d)).astype(np.float32)
            view.best(query, 16)
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                view.best(query, 16)
                times.append(time.perf_counter() - t0)
            best[d] = min(best.get(d, float("inf")), float(np.median(times)) / (pages * tokens))
    return best


def recall_rows(table: Table, generator: str, pages: int, tokens: int, dims: int, rng: np.random.Generator) -> None:
    import torch
    from pagelens.index.ann.fast_rerank import encode_centred, fit_codec
    from pagelens.index.ann.self_check import make_probes
    from pagelens.index.ann.sketch_index import FIT_ROWS, fit_projection, project_codes

    syn = Synth(pages, tokens, seed=0, generator=generator)
    full = np.concatenate([syn.gen_chunk(k)[0] for k in range(syn.n_chunks())])[:pages]  # [N, T, D]
    flat = full.reshape(-1, full.shape[-1])
    centre, scale = fit_codec(flat[rng.choice(len(flat), min(len(flat), 1 << 16), replace=False)])
    codes = encode_centred(flat, centre, scale)
    sample = codes[rng.choice(len(codes), min(len(codes), FIT_ROWS), replace=False)].astype(np.float32) * scale
    components, sk_scale = fit_projection(sample, dims)
    sketch = np.concatenate([project_codes(codes[i : i + 1 << 18], scale, components, sk_scale)
                             for i in range(0, len(codes), 1 << 18)])
    lens = np.full(pages, tokens)
    scan = view_of(codes, lens, centre, scale)
    sk = view_of(sketch, lens, np.zeros(dims, dtype=np.float32), sk_scale)
    picked = rng.choice(pages, 32, replace=False)
    others = rng.choice(pages, 64, replace=False)
    sets = {"probes": make_probes([full[i] for i in picked], [full[i] for i in others], rng),
            "planted queries": syn.queries(20)[0]}
    x = torch.from_numpy(flat)
    variance = float(np.linalg.norm(sample @ components) ** 2 / np.linalg.norm(sample) ** 2)
    for name, queries in sets.items():
        hits = {("sketch", w): 0 for w in WIDTHS} | {("scan", w): 0 for w in WIDTHS}
        for q in queries:
            exact = (torch.from_numpy(np.ascontiguousarray(q)) @ x.T).view(len(q), pages, tokens).amax(2).sum(0)
            top5 = {f"{i:07d}" for i in torch.topk(exact, 5).indices.tolist()}
            got_scan = scan.best(q, max(WIDTHS))
            got_sketch = sk.best(np.asarray(q, dtype=np.float32) @ components, max(WIDTHS))
            for w in WIDTHS:
                hits[("scan", w)] += len(top5 & set(got_scan[:w]))
                hits[("sketch", w)] += len(top5 & set(got_sketch[:w]))
        for w in WIDTHS:
            table.add(f"recall@5 in the best {w} pages, {name} ({len(queries)}), {generator} {pages} x {tokens} "
                      f"(sketch: {dims} components, {variance:.0%} of the variance; baseline: the int8 scan)",
                      hits[("sketch", w)] / (5 * len(queries)), hits[("scan", w)] / (5 * len(queries)),
                      unit="", higher_is_better=True, baseline_name="scan", note="synthetic vectors")
        log(f"{generator} {name}: done")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=20000)
    ap.add_argument("--tokens", type=int, default=300)
    ap.add_argument("--generator", nargs="+", choices=GENERATORS, default=list(GENERATORS))
    ap.add_argument("--rows", type=int, default=3_000_000, help="token rows of the cost measurement")
    ap.add_argument("--no-recall", action="store_true", help="only the cost measurement")
    ap.add_argument("--out", type=Path, default=None, help="append the markdown table to this file")
    ap.add_argument("--dims", type=int, nargs="+", default=None,
                    help="sketch widths to compare (default: the product's DIMS)")
    args = ap.parse_args()
    from pagelens.index.ann.fast_rerank import kernel_threads
    from pagelens.index.ann.sketch_index import DIMS

    dims = args.dims or [DIMS]
    rng = np.random.default_rng(0)
    table = Table(f"sketch first stage vs the int8 scan ({device_label()})")
    with kernel_threads(1):
        for workers in (1, 2):
            cost = kernel_costs(args.rows, args.tokens, (128, *dims), workers, rng)
            for d in dims:
                table.add(f"ranking cost per token row, {workers} thread(s), {args.rows:,} rows of {args.tokens}-token "
                          f"pages (sketch: {d} dims; baseline: the scan, 128)", cost[d] * 1e9, cost[128] * 1e9,
                          unit="ns", baseline_name="scan", note="random int8 codes in RAM")
        for generator in [] if args.no_recall else args.generator:
            for d in dims:
                recall_rows(table, generator, args.pages, args.tokens, d, rng)
    table.print(args.out)


if __name__ == "__main__":
    main()
