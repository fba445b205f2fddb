"""Query-path benchmark: question -> top pages -> the top page's image, p50/p95 end to end from the API.

ours      = ``pagelens serve``'s app (``pagelens.server.create_app``) under uvicorn on 127.0.0.1, driven by an
            httpx client in a separate process: ``POST /v1/collections/{c}/search`` (k=5, visual two_stage), then ``GET`` the
            top result's ``image_url`` (the PNG). Figures: search alone, and search + page image.
baselines (same run, same collection, same process):
* library  = ``PagelensService.search`` called directly (no HTTP): the API's own overhead is the difference;
* plain    = colpali-engine's ``process_queries`` + model forward, Qdrant Edge brute-force MaxSim
             (``mode="exact"``) and reading the PNG file from disk: what a naive query path costs.
Also printed: query encoding alone (``ColSmolEmbedder.embed_queries``).

The collection holds ``--pages`` synthetic pages (``bench/retrieval.py``'s structured generator, 1139
x 128 fp32, the size of a US-letter page) written through the product's store with the payloads the
indexer writes, each pointing at one of a few real page images (``$PAGELENS_SHARED/pdfs/real`` rendered at
1024 px) stored through ``PageImageStore``. Query encoders (random weights, real processor files):
* tiny  (``tests/make_tiny_models.py``): isolates the search and HTTP costs;
* real  colSmol-256M architecture (``ColIdefics3`` from ``$PAGELENS_SHARED/models/SmolVLM-256M-Instruct``):
        the real query-encoding compute (``--no-real`` to skip).

CPU (here):  python bench/query.py                    (1000 pages, 30 queries, ~3 min)
GPU (lent):  python bench/query.py --device cuda --pages 10000
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import multiprocessing
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import REAL_PDFS, Table, Timing, device_label, log, require_cuda, time_calls  # noqa: E402
from bench.retrieval import CHUNK, Synth  # noqa: E402

QUESTIONS = [
    "What is the total amount due?", "Who signed the report?", "When is the payment deadline?",
    "What was the revenue in the last quarter?", "Which figure shows the results?", "What is the invoice number?",
    "How many employees does the company have?", "What are the main findings?", "Where is the head office?",
    "What is the tax rate applied?",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render_real_pages(n: int, longest_edge: int = 1024) -> list[Any]:
    """The first ``n`` pages of ``$PAGELENS_SHARED/pdfs/real`` as PIL images (longest edge ``longest_edge``)."""
    import pymupdf
    from PIL import Image

    images = []
    for pdf in sorted(REAL_PDFS.glob("*.pdf")):
        with pymupdf.open(pdf) as doc:
            for page in doc:
                zoom = longest_edge / max(page.rect.width, page.rect.height)
                pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom))
                images.append(Image.frombytes("RGB", (pix.width, pix.height), pix.samples))
                if len(images) >= n:
                    return images
    return images


def fill_collection(service: Any, name: str, pages: int, images: list[Any]) -> None:
    """``pages`` synthetic pages into ``name`` with indexer-shaped payloads and stored page images."""
    from pagelens.core.types import PageEmbedding, PagePoint, page_point_id

    saved = []
    for i, img in enumerate(images):
        sha = hashlib.sha256(f"bench-image-{i}".encode()).hexdigest()
        saved.append((sha, service.images.save(sha, 1, img), img.size))  # path relative to the image root
    syn = Synth(pages, 1139, seed=0)
    for k in range(syn.n_chunks()):
        full, rows, cols, _ = syn.gen_chunk(k)
        points = []
        for j in range(len(full)):
            i = k * CHUNK + j
            doc_sha = hashlib.sha256(f"bench-doc-{i // 10}".encode()).hexdigest()
            _, image_path, (w, h) = saved[i % len(saved)]
            points.append(PagePoint(
                id=page_point_id(name, doc_sha, i % 10 + 1),
                embedding=PageEmbedding(full=full[j], rows=rows[j], cols=cols[j]),
                payload={"doc_id": doc_sha[:16], "doc_name": f"doc{i // 10}.pdf", "page_no": i % 10 + 1,
                         "page_count": 10, "sha256": doc_sha, "collection": name, "meta": {},
                         "text": "", "image_path": image_path, "width": w, "height": h,
                         "indexed_at": "2026-01-01T00:00:00Z"},
            ))
        service.store.upsert(name, points)
    service.store.optimize(name)


class Server:
    """The product's FastAPI app under uvicorn in a thread, on a free loopback port."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start within 60 s")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def client_timings(base_url: str, collection: str, questions: list[str], warmup: int = 2
                   ) -> tuple[list[float], list[float], list[int]]:
    """In a separate process: per-question seconds of ``POST .../search`` alone and of search + ``GET``
    of the top page's PNG, and the PNG sizes (bytes)."""
    import httpx

    with httpx.Client(base_url=base_url, timeout=120) as client:
        def api_search(q: str) -> dict[str, Any]:
            r = client.post(f"/v1/collections/{collection}/search", json={"question": q, "k": 5, "mode": "two_stage"})
            r.raise_for_status()
            return dict(r.json())

        def api_search_and_page(q: str) -> int:
            top = api_search(q)["results"][0]
            r = client.get(top["image_url"])
            r.raise_for_status()
            assert r.headers["content-type"] == "image/png"
            return len(r.content)

        s_only, _ = time_calls(api_search, questions, warmup=warmup)
        s_page, sizes = time_calls(api_search_and_page, questions, warmup=warmup)
    return s_only.samples, s_page.samples, sizes


def plain_query_path(model: Any, processor: Any, store: Any, collection: str, question: str, device: str,
                     images_root: Path) -> int:
    """Naive baseline: colpali-engine encode -> Edge brute-force MaxSim -> read the top page's PNG."""
    import torch

    with torch.inference_mode():
        batch = processor.process_queries([question]).to(device)
        q = model(**batch)[0].float().cpu().numpy()  # [n_q, 128]
    hits = store.search(collection, q, 5, mode="exact")
    return len((images_root / hits[0].payload["image_path"]).read_bytes())


def run_model(label: str, model_dir: Path, args: argparse.Namespace, table: Table, images: list[Any],
              tmp: Path, dtype: str = "auto") -> None:
    from pagelens.app.service import PagelensService
    from pagelens.core.settings import Settings
    from pagelens.server import create_app

    dev = device_label(gpu=args.device == "cuda")
    settings = Settings(retriever_model=str(model_dir), answer_model=str(model_dir), device=args.device,
                        data_dir=tmp / ("data-" + re.sub(r"[^A-Za-z0-9]+", "-", label)), retrieval_mode="visual",
                        search_mode="two_stage", dtype=dtype)
    service = PagelensService(settings)
    name = "bench"
    log(f"{label}: loading the retriever, filling {args.pages} pages")
    service.embedder.load()
    service.create_collection(name)
    t0 = time.perf_counter()
    fill_collection(service, name, args.pages, images)
    log(f"{label}: collection ready in {time.perf_counter() - t0:.1f} s")
    questions = [QUESTIONS[i % len(QUESTIONS)] + ("" if i < len(QUESTIONS) else f" ({i})") for i in range(args.queries)]
    tag = f"{label}, {args.pages} pages, k=5"

    enc, _ = time_calls(lambda q: service.embedder.embed_queries([q]), questions, warmup=2)
    table.add(f"{tag}: query encoding (embed_queries) p50", enc.p50, None, device=dev,
              note=f"p95 {enc.p95 * 1000:.1f} ms")

    lib, _ = time_calls(lambda q: service.search(name, q, k=5), questions, warmup=2)
    embedder: Any = service.embedder
    plain, _ = time_calls(
        lambda q: plain_query_path(embedder._model, embedder.processor, service.store, name, q, args.device,
                                   service.images.root),
        questions[: max(3, args.queries // 3)], warmup=1,
    )
    # the UI is mounted where gradio is installed (the GPU machine's image lacks it); /v1 is the same
    app = create_app(settings, service=service, web_ui=importlib.util.find_spec("gradio") is not None)
    with Server(app) as server, ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        # the client runs in its own process, as a real one would (no GIL shared with the server)
        s_times, p_times, sizes = pool.submit(client_timings, f"http://127.0.0.1:{server.port}", name,
                                              questions).result()
    s_only, s_page = Timing(s_times), Timing(p_times)
    table.add(f"{tag}: API search p50", s_only.p50, lib.p50, baseline_name="library call, no HTTP", device=dev,
              note=f"p95 {s_only.p95 * 1000:.1f} ms; library p95 {lib.p95 * 1000:.1f} ms")
    table.add(f"{tag}: API search + top page PNG p50", s_page.p50, plain.p50,
              baseline_name="plain: colpali-engine encode + Edge exact + PNG read", device=dev,
              note=f"p95 {s_page.p95 * 1000:.1f} ms; PNG {sum(sizes) / len(sizes) / 1024:.0f} KiB; "
                   f"plain p95 {plain.p95 * 1000:.1f} ms")
    log(f"{label}: encode {enc.p50 * 1000:.1f} ms, library {lib.p50 * 1000:.1f} ms, API {s_only.p50 * 1000:.1f} ms, "
        f"API+PNG {s_page.p50 * 1000:.1f} ms, plain {plain.p50 * 1000:.1f} ms")
    service.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=1000, help="synthetic pages in the collection (default 1000)")
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--no-real", action="store_true", help="skip the colSmol-256M-architecture encoder")
    ap.add_argument("--real-dtypes", nargs="+", default=["auto"], choices=["auto", "float32", "bfloat16"],
                    help="PAGELENS_DTYPE values for the colSmol-256M-architecture runs (auto: bfloat16 on "
                    "CPUs with native bf16)")
    ap.add_argument("--out", type=Path, help="append the markdown table to this file")
    args = ap.parse_args()
    if args.device == "cuda" and not require_cuda("query path on the GPU"):
        return
    from bench.ingest import build_real_model
    from tests.make_tiny_models import build_tiny_models

    tmp = Path(tempfile.mkdtemp(prefix="pagelens-bench-query-"))
    table = Table(f"query path: {args.pages} synthetic pages x 1139 tokens, {args.queries} queries, {args.device}")
    try:
        images = render_real_pages(8)
        tiny = build_tiny_models(tmp / "tiny")["retriever"]
        run_model("tiny retriever", tiny, args, table, images, tmp, "float32")
        if not args.no_real:
            log("building the colSmol-256M architecture (random weights)")
            real = build_real_model(tmp / "real")
            for dtype in args.real_dtypes:
                run_model(f"colSmol-256M arch (random), dtype {dtype}", real, args, table, images, tmp, dtype)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    table.print(args.out)


if __name__ == "__main__":
    main()
