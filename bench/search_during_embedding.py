"""Searches while a job embeds pages on the same cores: what the embedder costs the searches with the
indexing thread at the searches' CPU priority, and lowered as the server's job worker lowers it
(``indexing_nice``, ``pagelens/core/cpu_priority.py``), same run, same process.

A settled collection of ``--pages`` synthetic pages (``bench.retrieval.Synth``, ``--generator``, 1139 x 128)
is built as ``bench/search_during_ingest.py`` builds it (the product's ``Settings()`` store, upserts, then
``optimize()``). An indexing thread then loops as a job does per batch: embed ``--batch`` page images
(``--edge`` px on the longest side) with the colSmol-256M architecture (``ColIdefics3``, random weights,
the real processor files from ``$PAGELENS_SHARED/models/SmolVLM-256M-Instruct``; loaded through the
product's ``ColSmolEmbedder``), then upsert ``--batch`` synthetic pages (a random model's vectors carry
nothing to search for). Phases, each at least ``--seconds`` of searches one at a time, ``--gap`` seconds apart, so that each
arrives while a batch is being embedded, as a user's would (``two_stage`` top 10, planted queries):

* **idle**: no indexing thread;
* **nice 0**: the indexing thread at the searches' priority (what the server did before);
* **nice N**: a new indexing thread that first calls ``lower_thread_priority(N)`` (``--nice``; the
  product's default ``indexing_nice``), as ``JobWorker`` does.

Reported: search p50 / p95 / max and recall@5 against exact MaxSim over the settled pages in each phase,
and pages embedded per second in each indexing phase (what the priority costs indexing while searches
run). Every figure: this machine, synthetic vectors + random weights, the date and load printed.

    python bench/search_during_embedding.py                       (1,000 settled pages, 40 s per phase)
    python bench/search_during_embedding.py --pages 10000 --data-dir /big/disk
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import SHARED_SMOLVLM, Table, device_label, log, percentile  # noqa: E402
from bench.ingest import build_real_model  # noqa: E402
from bench.retrieval import CHUNK, Exact, Synth, points_for, user_store  # noqa: E402
from bench.search_during_ingest import (  # noqa: E402
    COLLECTION,
    add_collection_args,
    build,
    parse_collection_args,
    search_round,
)


def page_images(n: int, edge: int, rng: np.random.Generator) -> list:
    """``n`` letter-shaped RGB pages ``edge`` px high: dark strokes on white (the model's cost depends on
    the size only)."""
    from PIL import Image

    w = int(edge * 8.5 / 11)
    out = []
    for _ in range(n):
        a = np.full((edge, w, 3), 255, dtype=np.uint8)
        for _ in range(200):
            y, x = int(rng.integers(0, edge - 12)), int(rng.integers(0, w - 200))
            a[y : y + 10, x : x + int(rng.integers(20, 200))] = rng.integers(0, 80)
        out.append(Image.fromarray(a))
    return out


class Indexing(threading.Thread):
    """Embeds ``images`` and upserts the next synthetic pages, batch after batch, until ``stop``."""

    def __init__(self, embedder: object, store: object, images: list, points: list, nice: int) -> None:
        super().__init__(daemon=True)
        self.embedder, self.store, self.images, self.points, self.nice = embedder, store, images, points, nice
        self.stop = threading.Event()
        self.pages = 0
        self.seconds = 0.0
        self.niced: int | None = None

    def run(self) -> None:
        from pagelens.core.cpu_priority import lower_thread_priority

        self.niced = lower_thread_priority(self.nice)
        t0 = time.perf_counter()
        while not self.stop.is_set():
            self.embedder.embed_pages(self.images)  # type: ignore[attr-defined]
            self.pages += len(self.images)
            batch, self.points = self.points[: len(self.images)], self.points[len(self.images) :]
            if batch:
                self.store.upsert(COLLECTION, batch)  # type: ignore[attr-defined]
        self.seconds = time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_collection_args(ap, pages=1000)
    ap.add_argument("--seconds", type=float, default=40.0, help="searches per phase, at least")
    ap.add_argument("--gap", type=float, default=0.5, help="seconds between two searches")
    ap.add_argument("--batch", type=int, default=2, help="pages per embedding batch")
    ap.add_argument("--edge", type=int, default=1024, help="page images' longest side, px")
    ap.add_argument("--nice", type=int, default=None, help="the lowered phase's nice (default: indexing_nice)")
    args = parse_collection_args(ap)
    from pagelens.core.settings import Settings
    from pagelens.models.embedder import ColSmolEmbedder

    nice = Settings().tuning.indexing_nice if args.nice is None else args.nice
    total = args.pages + 2 * CHUNK  # two chunks of new pages for the indexing phases
    syn = Synth(total, args.tokens, generator=args.generator)
    queries, targets = syn.queries(min(total, 4 * args.queries))
    queries = queries[targets < args.pages][: args.queries]
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="pagelens-embedding-"))
    store, _ = user_store(root / "store")
    try:
        exact_scores, later = build(store, syn, args.pages, queries)
        truth = Exact(exact_scores)
        new_points = [p for lo, full, rows, cols in later for p in points_for(lo, full, rows, cols)]
        log(f"building the colSmol-256M architecture (random weights) from {SHARED_SMOLVLM}")
        model_dir = build_real_model(root / "model")
        embedder = ColSmolEmbedder(Settings(retriever_model=str(model_dir), device="cpu", data_dir=root / "data",
                                            page_longest_edge=args.edge, embed_batch_size=args.batch))
        embedder.load()
        images = page_images(args.batch, args.edge, np.random.default_rng(0))
        embedder.embed_pages(images)  # warm-up, outside every phase
        search_round(store, queries[:3], truth, args.pages)

        def phase(indexing: Indexing | None) -> tuple[list[float], list[float]]:
            times: list[float] = []
            recalls: list[float] = []
            if indexing is not None:
                indexing.start()
                time.sleep(1.0)  # into its first batch
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < args.seconds:
                for i in range(len(queries)):  # one at a time, --gap apart: a search arrives mid-batch
                    t, r = search_round(store, queries[i : i + 1], Exact(truth.scores[i : i + 1]), args.pages)
                    times += t
                    recalls += r
                    time.sleep(args.gap)
            if indexing is not None:
                indexing.stop.set()
                indexing.join()
            return times, recalls

        half = len(new_points) // 2
        results = {"idle": phase(None)}
        log(f"idle: p50 {percentile(results['idle'][0], 50) * 1e3:.1f} ms")
        at_zero = Indexing(embedder, store, images, new_points[:half], 0)
        results["nice 0"] = phase(at_zero)
        log(f"nice 0: p50 {percentile(results['nice 0'][0], 50) * 1e3:.1f} ms, {at_zero.pages} pages embedded")
        lowered = Indexing(embedder, store, images, new_points[half:], nice)
        results[f"nice {nice}"] = phase(lowered)
        log(f"nice {nice} (thread at {lowered.niced}): p50 {percentile(results[f'nice {nice}'][0], 50) * 1e3:.1f} ms, "
            f"{lowered.pages} pages embedded")
    finally:
        store.close()
        if args.data_dir is None:
            shutil.rmtree(root, ignore_errors=True)

    where = (f"{args.pages:,} settled {args.generator} pages x {args.tokens} tokens; indexing: colSmol-256M "
             f"architecture, random weights, {args.batch} x {args.edge} px pages per batch + their upserts")
    table = Table(f"searches while a job embeds ({device_label()}; {where})")
    idle_t = results["idle"][0]
    for name in ("nice 0", f"nice {nice}"):
        t = results[name][0]
        for q in (50, 95):
            table.add(f"search p{q} while indexing at {name} (baseline: idle)", percentile(t, q) * 1e3,
                      percentile(idle_t, q) * 1e3, unit="ms", baseline_name="idle", note="synthetic vectors")
        table.add(f"search max while indexing at {name} (baseline: idle)", max(t) * 1e3, max(idle_t) * 1e3,
                  unit="ms", baseline_name="idle", note="synthetic vectors")
        table.add(f"recall@5 vs exact while indexing at {name} (baseline: idle)", float(np.mean(results[name][1])),
                  float(np.mean(results["idle"][1])), unit="", higher_is_better=True, baseline_name="idle",
                  note="synthetic vectors")
    zero_t, low_t = results["nice 0"][0], results[f"nice {nice}"][0]
    for q in (50, 95):
        table.add(f"search p{q} while indexing, nice {nice} (baseline: nice 0)", percentile(low_t, q) * 1e3,
                  percentile(zero_t, q) * 1e3, unit="ms", baseline_name="nice 0", note="synthetic vectors")
    table.add(f"pages embedded per second while searches run, nice {nice} (baseline: nice 0)",
              lowered.pages / max(lowered.seconds, 1e-9), at_zero.pages / max(at_zero.seconds, 1e-9), unit="",
              higher_is_better=True, baseline_name="nice 0", note="random weights")
    table.print(args.out)


if __name__ == "__main__":
    main()
