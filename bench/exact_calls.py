"""Exact searches (``mode="exact"``, or a collection whose plan fell back to exact) in one Qdrant call
against the product's short calls of ``EXACT_CALL_ROWS`` token rows: latency, and how long any other thread
of the process waits meanwhile (Qdrant Edge holds the Python GIL through each call, so one call over every
page stalls ``/healthz`` for its whole run), same run, same store, same queries.

A collection of ``--pages`` pages (``bench.retrieval.Synth``, ``--generator``, 1139 x 128 by default) is
built as the product does (``open_store(Settings())``, upserts of 100 pages, ``optimize()``). Then, for each
setting, ``--rounds`` rounds of ``--queries`` planted queries, top 10, one at a time, with a thread beside
them that sleeps 10 ms at a time and records how late it wakes. The two settings must return the same
pages with the same scores (checked). Figures: this machine, synthetic vectors, date and load printed.

    python bench/exact_calls.py                    (2,000 pages)
    python bench/exact_calls.py --pages 10000 --data-dir /big/disk
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
from bench.common import Table, device_label, percentile  # noqa: E402
from bench.retrieval import Synth, user_store  # noqa: E402
from bench.search_during_ingest import (  # noqa: E402
    COLLECTION,
    Heartbeat,
    add_collection_args,
    build,
    parse_collection_args,
)


def exact_round(store: object, queries: np.ndarray) -> tuple[list[float], list[list[tuple[str, float]]]]:
    """One round of exact searches: (seconds per search, each search's (id, score) top 10)."""
    times, tops = [], []
    for q in queries:
        t0 = time.perf_counter()
        hits = store.search(COLLECTION, q, limit=10, mode="exact")  # type: ignore[attr-defined]
        times.append(time.perf_counter() - t0)
        tops.append([(h.id, round(h.score, 3)) for h in hits])
    return times, tops


def main() -> None:
    from pagelens.index.stores import edge_base

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_collection_args(ap, pages=2000)
    ap.add_argument("--rounds", type=int, default=2)
    args = parse_collection_args(ap)
    args.queries = min(args.queries, 10)
    syn = Synth(args.pages, args.tokens, generator=args.generator)
    queries, _ = syn.queries(args.queries)
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="pagelens-exact-"))
    store, _ = user_store(root)
    short = edge_base.EXACT_CALL_ROWS
    runs: dict[str, tuple[list[float], list[float]]] = {}
    tops: dict[str, list] = {}
    try:
        build(store, syn, args.pages, queries[:1])
        exact_round(store, queries[:2])  # warm-up
        for _ in range(args.rounds):
            for name, rows in (("one call", 10**12), ("short calls", short)):
                edge_base.EXACT_CALL_ROWS = rows
                beat = Heartbeat()
                beat.start()
                t, top = exact_round(store, queries)
                beat.stop.set()
                beat.join()
                times, late = runs.setdefault(name, ([], []))
                times += t
                late += beat.late
                tops.setdefault(name, top)
    finally:
        edge_base.EXACT_CALL_ROWS = short
        store.close()
        if args.data_dir is None:
            shutil.rmtree(root, ignore_errors=True)
    same = tops["one call"] == tops["short calls"]
    dev = device_label()
    note = f"{args.pages} pages x {args.tokens} tokens, synthetic {args.generator}, {args.queries} queries x {args.rounds}"
    table = Table(f"Exact searches in one Qdrant call vs calls of {short} token rows ({note})")
    (one_t, one_late), (short_t, short_late) = runs["one call"], runs["short calls"]
    table.add("exact search p50 (short calls vs one)", percentile(short_t, 50), percentile(one_t, 50),
              baseline_name="one call", device=dev, note=f"same top 10 and scores: {'yes' if same else 'NO'}")
    table.add("exact search p95 (short calls vs one)", percentile(short_t, 95), percentile(one_t, 95),
              baseline_name="one call", device=dev)
    table.add("heartbeat: latest wake-up past 10 ms (short calls vs one)", max(short_late or [0.0]),
              max(one_late or [0.0]), baseline_name="one call", device=dev,
              note="what /healthz would wait for the GIL while exact searches run")
    table.print(args.out)
    if not same:
        raise SystemExit("the short calls returned other pages or scores than one call")


if __name__ == "__main__":
    main()
