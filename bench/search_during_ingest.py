"""Searches while an upload is indexed: latency and recall of the default visual search during a
job's writes (issue "search never waits for ingest"), against the same searches on the idle store,
same run, same process.

A collection of ``--pages`` settled pages (``bench.retrieval.Synth``, ``--generator``, 1139 x 128 by
default) is built exactly as the product does (``open_store(Settings())``, upserts of 100 pages, then
``optimize()``: HNSW, the int8 cache, the self-check). Then:

* **idle**: ``--rounds`` rounds of ``--queries`` planted queries, ``two_stage`` top 10, one at a time;
* **two clients**: the same queries from two threads at once, against one (per-search latency and
  searches per second: what a search waits for another);
* **during**: a writer thread indexes ``--docs`` new documents of ``--doc-pages`` pages as the job
  worker does (at its CPU priority, ``indexing_nice``; one upsert per document, then the job's one
  ``repair``) while the same searches run in the main thread until the writer is done (at least one round);
* **after**: ``--rounds`` rounds again once the upload is in (what is slower then is not the writer).

Recall@5 is against exact MaxSim (torch fp32) over the settled pages, from the returned list with the
new pages taken out (they are not what the queries are about). A third thread sleeps 10 ms at a time
and records how late it wakes: what any other handler of the process (``/healthz``) would wait for the
GIL, since Qdrant Edge's optimizers hold it (``QdrantEdgeStore.repair``). Every figure: this machine,
synthetic vectors, the date and load printed with the table.

    python bench/search_during_ingest.py                       (2,000 settled pages, 50 documents x 8 pages)
    python bench/search_during_ingest.py --pages 10000 --data-dir /big/disk
    python bench/search_during_ingest.py --docs 8 --doc-pages 64 --stall-ms 300   (long documents; what
        every other thread was doing while a search took over 300 ms, printed after the table)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
import traceback
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
    points_for,
    recall,
    user_store,
)

COLLECTION = "bench"
HEARTBEAT_S = 0.010  # the heartbeat thread's sleep


def build(store: object, syn: Synth, settled: int, queries: np.ndarray) -> tuple[np.ndarray, list[tuple]]:
    """Upsert the first ``settled`` pages 100 at a time and optimize; returns the exact scores of
    ``queries`` over them [Q, settled] and the generated chunks of the rest (for the writer)."""
    store.create_collection(manifest(COLLECTION))  # type: ignore[attr-defined]
    exact = np.zeros((len(queries), settled), dtype=np.float32)
    later: list[tuple] = []
    for k in range(syn.n_chunks()):
        full, rows, cols, _ = syn.gen_chunk(k)
        lo = k * CHUNK
        if lo >= settled:
            later.append((lo, full, rows, cols))
            continue
        exact[:, lo : lo + len(full)] = maxsim_scores(full, queries)
        store.upsert(COLLECTION, points_for(lo, full, rows, cols))  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    store.optimize(COLLECTION)  # type: ignore[attr-defined]
    log(f"built {settled} settled pages; optimize (HNSW, int8 cache, self-check) {time.perf_counter() - t0:.1f} s")
    return exact, later


def search_round(store: object, queries: np.ndarray, truth: Exact, settled: int) -> tuple[list[float], list[float]]:
    """One round: (seconds per search, recall@5 per query over the settled pages)."""
    times, recalls = [], []
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        hits = store.search(COLLECTION, q, limit=10, mode="two_stage")  # type: ignore[attr-defined]
        times.append(time.perf_counter() - t0)
        got = [p for p in (page_of(h.id) for h in hits) if p < settled]
        recalls.append(recall(got, truth[i], 5, truth.scores[i]))
    return times, recalls


def clients_round(store: object, queries: np.ndarray, truth: Exact, settled: int,
                  clients: int) -> tuple[list[float], list[float], float]:
    """``clients`` threads each run one round (each from a different query on), all at once:
    (seconds per search, recall@5 per search, wall seconds of the whole)."""
    times: list[float] = []
    recalls: list[float] = []
    shift = max(1, len(queries) // clients)

    def client(c: int) -> None:
        order = np.roll(np.arange(len(queries)), -c * shift)
        t, r = search_round(store, queries[order], Exact(truth.scores[order]), settled)
        times.extend(t)
        recalls.extend(r)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return times, recalls, time.perf_counter() - t0


class Heartbeat(threading.Thread):
    """Sleeps ``HEARTBEAT_S`` at a time and records how late each wake-up is (seconds)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.late: list[float] = []
        self.woke: list[float] = []  # when each wake-up came (perf_counter)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.perf_counter()
            time.sleep(HEARTBEAT_S)
            now = time.perf_counter()
            self.late.append(now - t0 - HEARTBEAT_S)
            self.woke.append(now)

    def latest_between(self, start: float, end: float) -> float:
        """The latest wake-up (seconds late) of those that came between ``start`` and ``end``."""
        return max((late for late, at in zip(self.late, self.woke, strict=False) if start <= at <= end), default=0.0)


class StallWatch(threading.Thread):
    """Whenever one search has been running for ``limit_s``, records once what every other thread of the
    process is doing (``sys._current_frames``): the writer's stack names what a slow search waits for."""

    def __init__(self, limit_s: float) -> None:
        super().__init__(daemon=True)
        self.limit_s, self.stop = limit_s, threading.Event()
        self.since: float | None = None
        self.searcher = threading.get_ident()
        self.samples: list[str] = []

    def wrap(self, search):  # noqa: ANN001, ANN201
        def timed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            self.since = time.perf_counter()
            try:
                return search(*args, **kwargs)
            finally:
                took, self.since = time.perf_counter() - self.since, None
                if took >= self.limit_s and self.samples and not self.samples[-1].startswith("took"):
                    self.samples.append(f"took {1000 * took:.0f} ms")
        return timed

    def run(self) -> None:
        sampled: float | None = None
        while not self.stop.wait(0.02):
            since = self.since
            if since is None or since == sampled or time.perf_counter() - since < self.limit_s:
                continue
            sampled = since
            frames = sys._current_frames()
            stacks = [f"--- thread {ident}{' (the search)' if ident == self.searcher else ''}\n"
                      + "".join(traceback.format_stack(frame)[-8:])
                      for ident, frame in frames.items() if ident != threading.get_ident()]
            self.samples.append(f"search running for {1000 * (time.perf_counter() - since):.0f} ms:\n"
                                + "\n".join(stacks))


def add_collection_args(ap: argparse.ArgumentParser, pages: int) -> None:
    """The settled collection's options, shared with ``bench/search_during_embedding.py``."""
    ap.add_argument("--pages", type=int, default=pages, help="settled pages (a multiple of 100)")
    ap.add_argument("--tokens", type=int, default=1139)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--generator", choices=GENERATORS, default="aniso")
    ap.add_argument("--data-dir", type=Path, default=None, help="where the store goes (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=None, help="append the table to this markdown file")


def parse_collection_args(ap: argparse.ArgumentParser) -> argparse.Namespace:
    args = ap.parse_args()
    if args.pages % CHUNK:
        ap.error(f"--pages must be a multiple of {CHUNK}")
    return args


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_collection_args(ap, pages=2000)
    ap.add_argument("--docs", type=int, default=50, help="documents of the upload")
    ap.add_argument("--doc-pages", type=int, default=8, help="pages per uploaded document")
    ap.add_argument("--rounds", type=int, default=3, help="idle rounds")
    ap.add_argument("--wal-flush-mib", type=float, default=None,
                    help="flush Edge's log every this many MiB of vectors (default: the store's)")
    ap.add_argument("--stall-ms", type=float, default=None,
                    help="print every thread's stack whenever a search runs this long (diagnosis)")
    args = parse_collection_args(ap)
    new_pages = args.docs * args.doc_pages
    total = args.pages + ((new_pages + CHUNK - 1) // CHUNK) * CHUNK
    syn = Synth(total, args.tokens, generator=args.generator)
    # queries planted on settled pages (the generator's targets are drawn over every page: keep those)
    queries, targets = syn.queries(min(total, 4 * args.queries))
    queries = queries[targets < args.pages][: args.queries]
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="pagelens-during-"))
    store, _ = user_store(root)
    if args.wal_flush_mib is not None:
        store.wal_flush_bytes = int(args.wal_flush_mib * 1024 * 1024)  # type: ignore[attr-defined]
    try:
        exact_scores, later = build(store, syn, args.pages, queries)
        truth = Exact(exact_scores)
        search_round(store, queries[:3], truth, args.pages)  # warm-up
        idle_t: list[float] = []
        idle_r: list[float] = []
        beat = Heartbeat()
        beat.start()
        for _ in range(args.rounds):
            t, r = search_round(store, queries, truth, args.pages)
            idle_t += t
            idle_r += r
        idle_late = list(beat.late)
        one_t, _, one_wall = clients_round(store, queries, truth, args.pages, 1)
        two_t, two_r, two_wall = clients_round(store, queries, truth, args.pages, 2)
        beat.late.clear()
        beat.woke.clear()
        watch = StallWatch(args.stall_ms / 1000) if args.stall_ms else None
        if watch is not None:
            store.search = watch.wrap(store.search)  # type: ignore[attr-defined]
            watch.start()

        new_points = [p for lo, full, rows, cols in later for p in points_for(lo, full, rows, cols)][:new_pages]
        done = threading.Event()
        phases: dict[str, float] = {}

        def writer() -> None:
            from pagelens.core.cpu_priority import lower_thread_priority
            from pagelens.core.settings import Settings

            lower_thread_priority(Settings().tuning.indexing_nice)  # as the job worker's thread runs
            t0 = time.perf_counter()
            for d in range(args.docs):
                store.upsert(COLLECTION, new_points[d * args.doc_pages : (d + 1) * args.doc_pages])
            t1 = time.perf_counter()
            phases["upserts"], phases["upserts_at"] = t1 - t0, t0
            store.repair(COLLECTION)  # the job's one repair (pagelens.app.jobs)
            phases["repair"], phases["repair_at"] = time.perf_counter() - t1, t1
            done.set()

        during_t: list[float] = []
        during_r: list[float] = []
        w = threading.Thread(target=writer, daemon=True)
        w.start()
        rounds = 0
        while not done.is_set() or rounds == 0:
            t, r = search_round(store, queries, truth, args.pages)
            during_t += t
            during_r += r
            rounds += 1
        w.join()
        beat.stop.set()
        if watch is not None:
            watch.stop.set()
            del store.search  # type: ignore[attr-defined]  # the class's again
        during_late = list(beat.late)
        end = time.perf_counter()
        late_upserts = beat.latest_between(phases["upserts_at"], phases["repair_at"])
        late_repair = beat.latest_between(phases["repair_at"], end)
        after_t: list[float] = []  # the same searches once the upload is in: what is left is not the writer
        for _ in range(args.rounds):
            after_t += search_round(store, queries, truth, args.pages)[0]
    finally:
        store.close()
        if args.data_dir is None:
            shutil.rmtree(root, ignore_errors=True)

    dev = device_label()
    note = f"{args.pages} settled pages x {args.tokens} tokens, synthetic {args.generator}"
    table = Table(f"Searches during an upload of {args.docs} documents x {args.doc_pages} pages ({note})")
    table.add("search p50 (during vs idle)", percentile(during_t, 50), percentile(idle_t, 50),
              baseline_name="idle", device=dev, note=f"{len(during_t)} during, {len(idle_t)} idle")
    table.add("search p95 (during vs idle)", percentile(during_t, 95), percentile(idle_t, 95),
              baseline_name="idle", device=dev)
    table.add("search max (during vs idle)", max(during_t), max(idle_t), baseline_name="idle", device=dev)
    table.add("search p50 after the upload (vs idle before it)", percentile(after_t, 50), percentile(idle_t, 50),
              baseline_name="idle", device=dev, note=f"p95 {1000 * percentile(after_t, 95):.1f} ms")
    table.add("recall@5 vs exact, settled pages (during vs idle)", float(np.mean(during_r)),
              float(np.mean(idle_r)), unit="", higher_is_better=True, baseline_name="idle", device=dev)
    table.add("heartbeat: latest wake-up past 10 ms (during vs idle)", max(during_late or [0.0]),
              max(idle_late or [0.0]), baseline_name="idle", device=dev,
              note=f"what /healthz would wait for the GIL; during the upserts {1000 * late_upserts:.1f} ms, "
                   f"the repair {1000 * late_repair:.1f} ms")
    table.add("heartbeat: wake-ups over 50 ms late (during vs idle)", sum(x > 0.05 for x in during_late),
              sum(x > 0.05 for x in idle_late), unit="wake-ups", baseline_name="idle", device=dev,
              note=f"of {len(during_late)} / {len(idle_late)}; p99 during {1000 * percentile(during_late or [0.0], 99):.1f} ms")
    table.add("two clients searching at once: p50 per search (two vs one)", percentile(two_t, 50),
              percentile(one_t, 50), baseline_name="one client", device=dev,
              note=f"recall@5 {float(np.mean(two_r)):.3f}")
    table.add("two clients searching at once: searches per second (two vs one)", len(two_t) / two_wall,
              len(one_t) / one_wall, unit="/s", higher_is_better=True, baseline_name="one client", device=dev)
    table.add("upload: upserts, then the job's one repair", phases.get("upserts"), phases.get("repair"),
              baseline_name="repair", device=dev)
    table.print(args.out)
    for sample in watch.samples if watch is not None else []:
        print(sample, file=sys.stderr)


if __name__ == "__main__":
    main()
