"""Qdrant's own quantization against the product's visual search (issue "search that is right on real
embeddings": "Qdrant's own quantization may serve once vectors are centred: measure before writing your
own kernels").

For each ``--generator`` (``bench.retrieval.Synth``, ``--pages`` x ``--tokens`` x 128), same run, same
vectors, ``--queries`` of the generator's queries, recall@5 against exact MaxSim (torch float32, tie-aware,
``bench.retrieval.recall``):

* **the product**: a collection built exactly as indexing does (``open_store(Settings())``, upserts of
  100 pages, ``optimize()``: the self-check chooses the plan), searched with the default ``two_stage``;
* **Qdrant Edge, one multivector per page** (the full vectors only, mmapped, no HNSW: MaxSim over every
  page as the product's exact stage does), each ``--quantization`` in turn (``none``, ``int8``: scalar,
  ``binary``: 1 bit, ``binary2``: 2 bits, ``turbo4`` / ``turbo2``: TurboQuant 4 / 2 bits), built then
  ``optimize()`` (which writes the quantized copies), queried with Qdrant's quantized scoring and its own
  rescoring of ``oversampling`` x 5 pages with the original vectors (``--oversampling``, each in turn);
  the same vectors centred first (the collection's mean token subtracted, which leaves the MaxSim ranking
  unchanged) with ``--centred``.

Prints one table per generator: p50 per search and recall@5 for each, ratios against the product's p50,
and the bytes on disk per page of each Edge shard. Synthetic vectors; device and load printed with it.

    python bench/qdrant_quantization.py                        (1,000 pages, both generators, ~15 min)
    python bench/qdrant_quantization.py --pages 300 --generator aniso --quantization none int8
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import Table, device_label, log, percentile  # noqa: E402
from bench.retrieval import (  # noqa: E402
    CHUNK,
    GENERATORS,
    Exact,
    Synth,
    manifest,
    maxsim_scores,
    page_of,
    pid,
    points_for,
    recall,
    user_store,
)

QUANTIZATIONS = ("none", "int8", "binary", "binary2", "turbo4", "turbo2")
COLLECTION = "bench"


def quantization_config(qe: object, name: str) -> object | None:
    """The Edge quantization config called ``name`` (see the module docstring)."""
    if name == "none":
        return None
    if name == "int8":
        return qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=0.99, always_ram=True)  # type: ignore[attr-defined]
    if name in ("binary", "binary2"):
        enc = qe.BinaryQuantizationEncoding.OneBit if name == "binary" else qe.BinaryQuantizationEncoding.TwoBits  # type: ignore[attr-defined]
        return qe.BinaryQuantizationConfig(always_ram=True, encoding=enc,  # type: ignore[attr-defined]
                                           query_encoding=qe.BinaryQuantizationQueryEncoding.Scalar8Bits)  # type: ignore[attr-defined]
    bits = {"turbo4": qe.TurboQuantBitSize.Bits4, "turbo2": qe.TurboQuantBitSize.Bits2}[name]  # type: ignore[attr-defined]
    return qe.TurboQuantQuantizationConfig(always_ram=True, bits=bits)  # type: ignore[attr-defined]


def edge_shard(path: Path, quant: str, dim: int) -> object:
    """A fresh Edge shard with one MaxSim multivector ``full`` (mmapped, no HNSW, ``quant``)."""
    import qdrant_edge as qe

    params = qe.EdgeVectorParams(
        size=dim, distance=qe.Distance.Dot, on_disk=True,
        multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim),
        hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000),
        quantization_config=quantization_config(qe, quant),
    )
    return qe.EdgeShard.create(str(path), qe.EdgeConfig(vectors={"full": params}))


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_generator(args: argparse.Namespace, generator: str, root: Path) -> None:
    import qdrant_edge as qe

    dev = device_label()
    syn = Synth(args.pages, args.tokens, generator=generator)
    queries, _ = syn.queries(args.queries)
    chunks = [syn.gen_chunk(k) for k in range(syn.n_chunks())]
    exact = Exact(np.concatenate([maxsim_scores(full, queries) for full, _, _, _ in chunks], axis=1))
    note = f"{args.pages} pages x {args.tokens} tokens, synthetic {generator}, {len(queries)} queries"
    table = Table(f"Qdrant's quantization vs the product's search ({note})")

    def measure(search) -> tuple[float, float]:  # (p50 seconds, recall@5)
        for q in queries[:2]:
            search(q)
        times, recalls = [], []
        for _ in range(args.rounds):
            for i, q in enumerate(queries):
                t0 = time.perf_counter()
                got = search(q)
                times.append(time.perf_counter() - t0)
                recalls.append(recall(got, exact[i], 5, exact.scores[i]))
        return percentile(times, 50), float(np.mean(recalls))

    store, _ = user_store(root / f"product-{generator}")
    store.create_collection(manifest(COLLECTION))
    for k, (full, rows, cols, _) in enumerate(chunks):
        store.upsert(COLLECTION, points_for(k * CHUNK, full, rows, cols))
    store.optimize(COLLECTION)
    from pagelens.index.ann.self_check import SearchPlan

    check = store.search_status(COLLECTION).self_check
    summary = SearchPlan.from_dict(check).summary() if check else "no self-check"
    base_p50, base_r5 = measure(lambda q: [page_of(h.id) for h in store.search(COLLECTION, q, limit=5)])
    store.close()
    log(f"{generator}: product p50 {base_p50 * 1e3:.1f} ms recall@5 {base_r5:.3f} ({summary})")
    table.add("the product, default two_stage: p50", base_p50, None, device=dev, note=summary)
    table.add("the product: recall@5", base_r5, None, unit="", higher_is_better=True, device=dev)

    centre = None
    if args.centred:
        sums = sum(full.reshape(-1, full.shape[-1]).astype(np.float64).sum(axis=0) for full, _, _, _ in chunks)
        centre = (sums / sum(full.shape[0] * full.shape[1] for full, _, _, _ in chunks)).astype(np.float32)
    for quant in args.quantization:
        path = root / f"edge-{generator}-{quant}"
        shard = edge_shard(path, quant, queries.shape[-1])
        t0 = time.perf_counter()
        for k, (full, _, _, _) in enumerate(chunks):
            vecs = full - centre if centre is not None else full
            pts = [qe.Point(pid(k * CHUNK + j), {"full": vecs[j].tolist()}, {}) for j in range(len(vecs))]
            for s in range(0, len(pts), 10):
                shard.update(qe.UpdateOperation.upsert_points(pts[s : s + 10]))
        shard.optimize()
        shard.flush()
        build_s = time.perf_counter() - t0
        size = dir_bytes(path) / args.pages
        oversamplings = args.oversampling if quant != "none" else [1.0]
        for over in oversamplings:
            params = (qe.SearchParams(exact=True) if quant == "none" else
                      qe.SearchParams(quantization=qe.QuantizationSearchParams(rescore=True, oversampling=over)))

            def search(q: np.ndarray, params: object = params, shard: object = shard) -> list[int]:
                hits = shard.query(qe.QueryRequest(limit=5, query=qe.Query.Nearest(q.tolist(), using="full"),
                                                   params=params, with_payload=False))
                return [page_of(str(h.id)) for h in hits]

            p50, r5 = measure(search)
            label = "Edge exact MaxSim, float32, no quantization" if quant == "none" else \
                f"Edge {quant}{' (centred)' if centre is not None else ''}, rescore {over:g} x 5"
            log(f"{generator}: {label}: p50 {p50 * 1e3:.1f} ms recall@5 {r5:.3f}, {size / 1e6:.2f} MB per page")
            table.add(f"{label}: p50 (vs the product)", p50, base_p50, baseline_name="the product", device=dev,
                      note=f"{size / 1e6:.2f} MB per page on disk, build + optimize {build_s:.0f} s")
            table.add(f"{label}: recall@5", r5, base_r5, unit="", higher_is_better=True,
                      baseline_name="the product", device=dev)
        shard.close()
        shutil.rmtree(path, ignore_errors=True)
    table.print(args.out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=1000, help="pages (a multiple of 100)")
    ap.add_argument("--tokens", type=int, default=1139)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--generator", nargs="+", choices=GENERATORS, default=list(GENERATORS))
    ap.add_argument("--quantization", nargs="+", choices=QUANTIZATIONS, default=list(QUANTIZATIONS))
    ap.add_argument("--oversampling", nargs="+", type=float, default=[1.0, 4.0, 16.0])
    ap.add_argument("--centred", action="store_true", help="subtract the collection's mean token first")
    ap.add_argument("--data-dir", type=Path, default=None, help="where the stores go (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=None, help="append the tables to this markdown file")
    args = ap.parse_args()
    if args.pages % CHUNK:
        ap.error(f"--pages must be a multiple of {CHUNK}")
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="pagelens-qquant-"))
    try:
        for generator in args.generator:
            run_generator(args, generator, root)
    finally:
        if args.data_dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
