"""Listings and polling at 10k-100k pages (issue 19.4): what the document registry buys.

Builds one Qdrant Edge collection of synthetic page points (small random vectors: ``--tokens`` x
``--dim``, the rows/cols means of a 2-row grid; real-looking payloads with ``--text-chars`` of page text
and metadata; ``--pages-per-doc`` pages per document) in a temporary data dir, then through the
product's own paths (``create_app`` with a ``TestClient``, ``PagelensService``, the UI's refresh
functions) measures:

* ``GET /v1/collections`` and ``GET /v1/collections/{c}/documents`` (the first page of 100, a page in the
  middle, and the largest page, 1000; p50/p95 over ``--reps`` calls);
* a UI tab's poll when nothing changed (the change mark: ``listing_version`` + the in-flight documents) and
  one that redraws (one page of 50 documents + ``collection_info`` + the table HTML);
* store search p50 (``two_stage``, 20-token random queries, limit 5) alone, while a poller thread runs
  the idle poll every ``--poll-interval`` s (default 0.25 s: many open tabs), and while it redraws at
  each tick (a collection being written to all the time);

and the same listings through the scan the service used before the registry (every page payload,
text included: ``legacy_documents``) as the baseline, in the same run. First-listing cost (the
registry rebuilt from a small-keys scroll, as after a crash or on a data dir without a registry) is
printed too.

    python bench/listing.py --pages 10000 30000       # ~N min on 2 loaded cores (see bench/README.md)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import Table, Timing, log  # noqa: E402

COLL = "bench"


def _unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def make_points(lo: int, hi: int, args: argparse.Namespace, rng: np.random.Generator) -> list[Any]:
    """Pages lo..hi-1: ``args.pages_per_doc`` per document, text and metadata like real payloads."""
    from pagelens.core.types import PageEmbedding, PagePoint

    words = ["revenue", "total", "quarter", "audit", "report", "page", "figure", "table", "note", "income", "statement", "balance", "cash", "flow", "segment", "growth", "margin", "risk", "policy", "board", "review", "annual"]
    points = []
    for i in range(lo, hi):
        d, page_no = divmod(i, args.pages_per_doc)
        full = _unit(rng.standard_normal((args.tokens, args.dim)))
        grid = full[: (args.tokens // 2) * 2].reshape(2, -1, args.dim)
        text = " ".join(rng.choice(words, size=args.text_chars // 7))
        payload = {
            "doc_id": f"{d:016x}", "doc_name": f"report-{d:06d}.pdf", "page_no": page_no + 1,
            "page_count": args.pages_per_doc, "sha256": f"{d:064x}", "collection": COLL,
            "meta": {"year": 2000 + d % 25, "dept": f"d{d % 7}"}, "text": text,
            "image_path": f"/data/pages/{d:064x}/{page_no + 1}.png", "indexed_at": "2026-12-01T00:00:00+00:00",
        }
        points.append(PagePoint(str(uuid.UUID(int=i + 1)), PageEmbedding(full=full, rows=grid.mean(axis=1),
                                                                          cols=grid.mean(axis=0)), payload))
    return points


def legacy_documents(store: Any, collection: str) -> list[dict[str, Any]]:
    """The listing as the service did it before the registry: every page payload (text included)."""
    docs: dict[str, dict[str, Any]] = {}
    for _, p in store.iter_payloads(collection):
        d = docs.setdefault(p.get("doc_id", ""), {"doc_name": p.get("doc_name", ""), "pages": 0,
                                                  "indexed_at": ""})
        d["pages"] += 1
        d["indexed_at"] = max(d["indexed_at"], p.get("indexed_at", ""))
    return sorted(docs.values(), key=lambda d: d["doc_name"])


def timed(fn: Any, reps: int, warmup: int = 1) -> Timing:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return Timing(out)


def run(pages: int, args: argparse.Namespace, table: Table) -> None:
    from fastapi.testclient import TestClient
    from pagelens.index.stores.aliases import with_aliases
    from pagelens.index.stores.edge_store import QdrantEdgeStore
    from pagelens.index.stores.registry import REGISTRY_FILE, with_registry
    from pagelens.ui.app import UIContext, docs_html, documents_rows

    from pagelens.app.jobs import JobStore
    from pagelens.app.service import PagelensService
    from pagelens.core.settings import Settings
    from pagelens.core.types import CollectionManifest
    from pagelens.server import create_app

    tmp = Path(tempfile.mkdtemp(prefix="pagelens-listing-", dir=args.data_dir))
    settings = Settings(data_dir=tmp)
    edge = QdrantEdgeStore(settings.edge_dir, fast_rerank=False, token_index_min_pages=0)
    store = with_aliases(with_registry(edge, settings.data_dir))
    store.create_collection(CollectionManifest(name=COLL, model_id="synthetic", model_revision=None, dim=args.dim,
                                               created_at="2026-12-01T00:00:00+00:00"))
    rng = np.random.default_rng(pages)
    t0 = time.perf_counter()
    for lo in range(0, pages, 2000):
        store.upsert(COLL, make_points(lo, min(pages, lo + 2000), args, rng))
        log(f"{pages}: upserted {min(pages, lo + 2000)} pages")
    if pages <= args.optimize_max_pages:
        edge.optimize(COLL)
    log(f"{pages}: built in {time.perf_counter() - t0:.0f} s")
    n_docs = -(-pages // args.pages_per_doc)
    note = f"{pages} pages, {n_docs} docs, {args.text_chars}-char text" + (
        "" if pages <= args.optimize_max_pages else ", not optimized")

    # first listing without a registry (fresh data dir, crash, or the file deleted): one small-keys scroll
    store.registry.drop(store.identity, COLL)
    first = timed(lambda: store.list_documents(COLL), 1, warmup=0)
    assert (settings.data_dir / REGISTRY_FILE).is_file()

    service = PagelensService(settings, store=store)
    jobs = JobStore(settings.data_dir)
    ctx = UIContext(settings=settings, service=service, jobs=jobs)

    def ui_refresh() -> None:  # a tab's poll that redraws: one page of the table, the counts, the HTML
        store._forget(COLL)  # as after a write (what makes a tab redraw): no cached page of the listing
        rows, _ = documents_rows(ctx, COLL)
        info = service.collection_info(COLL)
        docs_html(rows, 0, info.documents)

    def ui_idle_poll() -> None:  # a tab's poll when nothing changed: the change mark only (ui/tabs/documents.py)
        sorted(jobs.inflight_doc_ids(COLL))
        service.listing_version(COLL)

    def legacy_ui_refresh() -> None:  # before: documents() and collection_info() each scanned every payload
        docs_html([[d["doc_name"], d["pages"], "complete", d["indexed_at"], ""] for d in legacy_documents(edge, COLL)])
        legacy_documents(edge, COLL)

    app = create_app(settings, service, web_ui=False)
    with TestClient(app) as client:
        r = client.get(f"/v1/collections/{COLL}/documents")
        assert r.status_code == 200 and len(r.json()) == min(100, n_docs), (r.status_code, len(r.json()))
        assert r.headers["x-total-count"] == str(n_docs), r.headers
        colls = timed(lambda: client.get("/v1/collections").raise_for_status(), args.reps)
        docs = timed(lambda: client.get(f"/v1/collections/{COLL}/documents").raise_for_status(), args.reps)
        mid = max(0, n_docs // 2)
        docs_mid = timed(lambda: client.get(f"/v1/collections/{COLL}/documents?offset={mid}").raise_for_status(),
                         args.reps)
        docs_max = timed(lambda: client.get(f"/v1/collections/{COLL}/documents?limit=1000").raise_for_status(),
                         args.reps)
    ui = timed(ui_refresh, args.reps)
    idle = timed(ui_idle_poll, args.reps)
    legacy_reps = max(2, args.reps // 10)
    legacy_list = timed(lambda: legacy_documents(edge, COLL), legacy_reps)
    legacy_ui = timed(legacy_ui_refresh, legacy_reps)

    queries = [_unit(rng.standard_normal((20, args.dim))) for _ in range(args.queries)]

    def search_p50() -> Timing:
        """Queries one after another for ``--search-seconds`` (so a poller runs many times meanwhile)."""
        for q in queries[:3]:
            store.search(COLL, q, limit=5, mode="two_stage", prefetch_limit=100)
        out: list[float] = []
        end = time.perf_counter() + args.search_seconds
        i = 0
        while time.perf_counter() < end or len(out) < len(queries):
            t0 = time.perf_counter()
            store.search(COLL, queries[i % len(queries)], limit=5, mode="two_stage", prefetch_limit=100)
            out.append(time.perf_counter() - t0)
            i += 1
        return Timing(out)

    def with_poller(refresh: Any) -> tuple[Timing, int]:
        stop = threading.Event()
        polls = [0]

        def poll() -> None:
            while not stop.is_set():
                refresh()
                polls[0] += 1
                stop.wait(args.poll_interval)

        th = threading.Thread(target=poll, daemon=True)
        th.start()
        try:
            return search_p50(), polls[0]
        finally:
            stop.set()
            th.join()

    alone = search_p50()
    polled, n_polls = with_poller(ui_idle_poll)
    redrawn, n_redraws = with_poller(ui_refresh)
    alone2 = search_p50()  # again, so drift from the shared machine's load shows
    legacy_polled, n_legacy = with_poller(legacy_ui_refresh)
    base = statistics.median([alone.p50, alone2.p50])

    dev = f"Qdrant Edge, CPU ({os.cpu_count()} cores, shared, loaded)"
    table.add(f"GET /v1/collections p50 [{note}]", colls.p50, legacy_list.p50, baseline_name="scan before",
              device=dev, note=f"p95 {colls.p95 * 1000:.1f} ms")
    table.add(f"GET /v1/collections/{{c}}/documents p50, first page (100) [{note}]", docs.p50, legacy_list.p50,
              baseline_name="scan before", device=dev, note=f"p95 {docs.p95 * 1000:.1f} ms")
    table.add(f"GET /v1/collections/{{c}}/documents?offset={mid} p50 [{note}]", docs_mid.p50, legacy_list.p50,
              baseline_name="scan before", device=dev, note=f"p95 {docs_mid.p95 * 1000:.1f} ms")
    table.add(f"GET /v1/collections/{{c}}/documents?limit=1000 p50 [{note}]", docs_max.p50, legacy_list.p50,
              baseline_name="scan before", device=dev, note=f"p95 {docs_max.p95 * 1000:.1f} ms")
    table.add(f"one UI poll, nothing changed, p50 [{note}]", idle.p50, legacy_ui.p50, baseline_name="2 scans before",
              device=dev, note=f"p95 {idle.p95 * 1000:.1f} ms")
    table.add(f"one UI poll that redraws (page of 50 + counts) p50 [{note}]", ui.p50, legacy_ui.p50,
              baseline_name="2 scans before", device=dev, note=f"p95 {ui.p95 * 1000:.1f} ms")
    table.add(f"first listing, registry rebuilt [{note}]", first.p50, legacy_list.p50,
              baseline_name="scan before", device=dev)
    table.add(f"search p50 while idle tabs poll every {args.poll_interval} s [{note}]", polled.p50, base,
              baseline_name="no polling", device=dev, note=f"p95 {polled.p95 * 1000:.1f} ms vs {alone.p95 * 1000:.1f} ms; {n_polls} polls")
    table.add(f"search p50 while a tab redraws every {args.poll_interval} s [{note}]", redrawn.p50, base,
              baseline_name="no polling", device=dev, note=f"p95 {redrawn.p95 * 1000:.1f} ms; {n_redraws} redraws")
    table.add(f"search p50 while polling, before the registry [{note}]", legacy_polled.p50, base,
              baseline_name="no polling", device=dev, note=f"p95 {legacy_polled.p95 * 1000:.1f} ms; {n_legacy} refreshes")
    edge.close()
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, nargs="+", default=[10000])
    ap.add_argument("--pages-per-doc", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--text-chars", type=int, default=1500)
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--poll-interval", type=float, default=0.25)
    ap.add_argument("--optimize-max-pages", type=int, default=30000,
                    help="optimize (HNSW build) collections up to this size; bigger ones are searched unoptimized")
    ap.add_argument("--search-seconds", type=float, default=8.0, help="how long each search p50 runs")
    ap.add_argument("--data-dir", type=Path, default=None, help="where the temporary collections go")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    table = Table("listings and polling (bench/listing.py, synthetic points)")
    for pages in args.pages:
        run(pages, args, table)
    table.print(args.out)


if __name__ == "__main__":
    main()
