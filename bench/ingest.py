"""Ingest benchmark: PDF files -> Qdrant Edge points, end to end, pages/s.

ours     = the product's ``pagelens.index.pipeline.indexer.Indexer.index`` (``ColSmolEmbedder`` + ``QdrantEdgeStore`` +
           ``PageImageStore``, worker processes as ``Settings.ingest_workers`` decides);
baseline = the plain loop: pymupdf render (150 dpi) -> ``processor.process_images`` -> forward
           (batch ``--batch``) -> row/col pooling -> ``QdrantEdgeStore.upsert``, one page batch at a time;
GPU only: the model forward alone on ready-made pixel batches (compare with the outside forward figure
quoted in bench/README.md, "Figures from outside this repository").

Models (both random weights, real processor files from ``$PAGELENS_SHARED/models/SmolVLM-256M-Instruct``,
the data folder of ``bench/common.py``, not part of the repository):
* tiny  (tests/make_tiny_models.py) at ``--tiny-edge`` px (1024);
* real  colSmol-256M architecture (ColIdefics3 from the real config.json, random init, save_pretrained
        to a temp dir) at ``--real-edge`` px (2048), loaded through ``ColSmolEmbedder``.
Pages come from the first single/few-page PDFs of ``$PAGELENS_SHARED/pdfs/real`` until ``--pages`` is reached.

CPU (here):  python bench/ingest.py                       (tiny 12 pages, real arch 3 pages)
GPU (lent):  python bench/ingest.py --gpu --pages 64 --real-pages 64 --batch 16
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import REAL_PDFS, SHARED_SMOLVLM, Table, device_label, log, require_cuda  # noqa: E402


def pick_pdfs(n_pages: int) -> list[tuple[Path, int]]:
    """(pdf, page_count) of the first PDFs (sorted by name, short ones first) totalling >= n_pages."""
    import pymupdf

    docs = []
    for p in sorted(REAL_PDFS.glob("*.pdf")):
        with pymupdf.open(p) as d:
            docs.append((d.page_count, p.name, p))
    docs.sort()
    out, total = [], 0
    for count, _, p in docs:
        if total >= n_pages:
            break
        out.append((p, count))
        total += count
    return out


def build_real_model(outdir: Path) -> Path:
    """ColIdefics3 with the colSmol-256M architecture, random weights, + the real processor files."""
    import json

    import torch
    from colpali_engine.models import ColIdefics3, ColIdefics3Processor
    from transformers import Idefics3Config

    torch.manual_seed(0)
    config = Idefics3Config(**json.loads((SHARED_SMOLVLM / "config.json").read_text()))
    model = ColIdefics3(config)
    model.save_pretrained(outdir)
    ColIdefics3Processor.from_pretrained(SHARED_SMOLVLM).save_pretrained(outdir)
    return outdir


def settings_for(model_dir: Path, data_dir: Path, edge: int, device: str, batch: int, dtype: str,
                 backend: str = "pil", preprocess: str = "cpu", compile_: bool = False, across: str = "auto"):
    from pagelens.core.settings import Settings

    return Settings(retriever_model=str(model_dir), device=device, page_longest_edge=edge, data_dir=data_dir,
                    embed_batch_size=batch, dtype=dtype, image_processor_backend=backend,
                    preprocess_device=preprocess, torch_compile=compile_, batch_across_documents=across)


def run_ours(settings, pdfs: list[tuple[Path, int]], tmp: Path) -> tuple[float, int]:
    """The product's Indexer, model already loaded: (seconds, pages indexed)."""
    from pagelens.index.pipeline.indexer import Indexer, IndexInput
    from pagelens.index.stores.edge_store import QdrantEdgeStore
    from pagelens.index.stores.page_images import PageImageStore

    from pagelens.models.embedder import ColSmolEmbedder

    emb = ColSmolEmbedder(settings)
    emb.load()
    store = QdrantEdgeStore(tmp / "ours-store")
    ix = Indexer(settings, emb, store, PageImageStore(tmp / "ours-images"))
    ix.ensure_collection("bench")
    if settings.tuning.torch_compile:  # compile outside the timing: index the same PDFs once first
        ix.ensure_collection("warm-up")
        ix.index("warm-up", [IndexInput(path=p) for p, _ in pdfs])
    t0 = time.perf_counter()
    report = ix.index("bench", [IndexInput(path=p) for p, _ in pdfs])
    dt = time.perf_counter() - t0
    store.close()
    return dt, report.pages_indexed


def run_plain(settings, pdfs: list[tuple[Path, int]], tmp: Path, batch: int) -> tuple[float, int, dict]:
    """The plain loop (see the module docstring): (seconds, pages, per-stage seconds)."""
    import pymupdf
    import torch
    from pagelens.index.stores.edge_store import QdrantEdgeStore
    from PIL import Image

    from pagelens.core.types import CollectionManifest, PageEmbedding, PagePoint, page_point_id
    from pagelens.models.embedder import ColSmolEmbedder, pool_rows_cols

    emb = ColSmolEmbedder(settings)
    emb.load()
    model, proc = emb._model, emb.processor  # the plain colpali objects
    store = QdrantEdgeStore(tmp / "plain-store")
    store.create_collection(CollectionManifest(name="plain", model_id=emb.model_id, model_revision=None, dim=128))
    stages = {"render": 0.0, "process_images": 0.0, "forward": 0.0, "upsert": 0.0}
    image_token_id = int(model.config.image_token_id)
    n = 0
    t_all = time.perf_counter()
    pending: list[tuple[str, int, Image.Image]] = []

    def flush() -> None:
        nonlocal n
        if not pending:
            return
        t0 = time.perf_counter()
        b = proc.process_images([im for _, _, im in pending])
        t1 = time.perf_counter()
        with torch.inference_mode():
            out = model(**emb._to_device(b)).float().cpu()  # [B, L, 128]
        t2 = time.perf_counter()
        points = []
        for i, (sha, page_no, im) in enumerate(pending):
            mask = b["attention_mask"][i].bool()
            img = out[i][(b["input_ids"][i] == image_token_id) & mask]
            n_tiles = img.shape[0] // 64
            grid = emb._tile_grid(b["input_ids"][i], im, n_tiles) if n_tiles > 1 else (1, 1)
            rows, cols = pool_rows_cols(img, grid, 64)
            points.append(PagePoint(page_point_id("plain", sha, page_no),
                                    PageEmbedding(out[i][mask].numpy(), rows.numpy(), cols.numpy()),
                                    {"doc_id": sha[:16], "page_no": page_no}))
        store.upsert("plain", points)
        t3 = time.perf_counter()
        stages["process_images"] += t1 - t0
        stages["forward"] += t2 - t1
        stages["upsert"] += t3 - t2
        n += len(pending)
        pending.clear()

    import hashlib

    for path, _ in pdfs:
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        with pymupdf.open(path) as doc:
            for page_no, page in enumerate(doc, start=1):
                t0 = time.perf_counter()
                pix = page.get_pixmap(dpi=150)
                im = Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
                stages["render"] += time.perf_counter() - t0
                pending.append((sha, page_no, im))
                if len(pending) >= batch:
                    flush()
    flush()
    dt = time.perf_counter() - t_all
    store.close()
    return dt, n, stages


def forward_only(settings, pdfs: list[tuple[Path, int]], batch: int, iters: int = 5) -> float:
    """GPU: pages/s of the model forward alone on one ready-made batch of real pages."""
    import pymupdf
    import torch
    from PIL import Image

    from pagelens.models.embedder import ColSmolEmbedder

    emb = ColSmolEmbedder(settings)
    emb.load()
    ims = []
    for path, _ in pdfs:
        with pymupdf.open(path) as doc:
            for page in doc:
                pix = page.get_pixmap(dpi=150)
                ims.append(Image.frombytes("RGB", (pix.width, pix.height), pix.samples))
    ims = (ims * batch)[:batch]
    b = emb._to_device(emb.processor.process_images(ims))
    with torch.inference_mode():
        for _ in range(2):
            emb._model(**b)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(iters):
            emb._model(**b)
        torch.cuda.synchronize()
    return batch * iters / (time.perf_counter() - t0)


_PLAIN: dict[tuple, tuple[float, int, dict]] = {}  # plain-loop results by (model, edge, device, batch, dtype, backend)


def bench_model(table: Table, label: str, model_dir: Path, edge: int, n_pages: int, device: str, batch: int,
                dtype: str, tmp: Path, backend: str = "pil", preprocess: str = "cpu", compile_: bool = False,
                across: str = "auto") -> None:
    pdfs = pick_pdfs(n_pages)
    total = sum(c for _, c in pdfs)
    dev = device_label(gpu=device != "cpu")
    label = (f"{label}, {backend} image processor" + (" on the model's device" if preprocess == "model" else "")
             + (", torch.compile" if compile_ else "") + (", one document per forward" if across == "off" else ""))
    settings = settings_for(model_dir, tmp / f"data-{label}", edge, device, batch, dtype, backend, preprocess,
                            compile_, across)
    log(f"{label}: {total} pages from {len(pdfs)} PDFs at {edge} px on {device}, batch {batch}")
    key = (str(model_dir), edge, device, batch, dtype, backend, n_pages)
    if key not in _PLAIN:  # the plain loop (pil or torchvision processor on the CPU) once per configuration
        _PLAIN[key] = run_plain(settings, pdfs, tmp / f"plain-{label}", batch)
    pt, pn, stages = _PLAIN[key]
    log(f"{label} plain loop: {pn} pages in {pt:.1f} s = {pn / pt:.2f} pages/s; stages "
        + ", ".join(f"{k} {v / max(pn, 1):.3f} s/page" for k, v in stages.items()))
    ot, on = run_ours(settings, pdfs, tmp / f"ours-{label}")
    log(f"{label} ours (Indexer): {on} pages in {ot:.1f} s = {on / ot:.2f} pages/s")
    table.add(f"{label}: PDF -> points, {edge} px, {device}, batch {batch} ({on} pages)", on / ot, pn / pt,
              unit="pages/s", higher_is_better=True, baseline_name="plain loop", device=dev,
              note="plain loop per page: " + ", ".join(f"{k} {v / max(pn, 1):.3f} s" for k, v in stages.items()))
    if device != "cpu":
        fps = forward_only(settings, pdfs, batch)
        table.add(f"{label}: forward alone, batch {batch}", fps, None, unit="pages/s", higher_is_better=True,
                  device=dev, note="target >= 100 pages/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=12, help="pages for the tiny model")
    ap.add_argument("--real-pages", type=int, default=1, help="pages for the real 256M architecture (0: skip; ~40 s per page on 2 CPU cores)")
    ap.add_argument("--tiny-edge", type=int, default=1024)
    ap.add_argument("--real-edge", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--gpu", action="store_true", help="also run the GPU section (skips without CUDA)")
    ap.add_argument("--gpu-only", action="store_true", help="only the GPU section")
    ap.add_argument("--cpu-dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"],
                    help="dtypes of the CPU rows (bfloat16 is native on CPUs with AVX512-BF16/AMX)")
    ap.add_argument("--image-processors", nargs="+", default=["pil", "torchvision"], choices=["pil", "torchvision"],
                    help="PAGELENS_TUNING__IMAGE_PROCESSOR_BACKEND values of the tiny-model and GPU rows (the CPU rows "
                         "of the real architecture use the first)")
    ap.add_argument("--compile", action="store_true",
                    help="GPU: also a row with PAGELENS_TUNING__TORCH_COMPILE (torchvision processor on the GPU; compiled "
                         "by indexing the PDFs once before the timing)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from tests.make_tiny_models import build_tiny_models

    table = Table("ingest: PDF -> Qdrant Edge points, end to end")
    tmp = Path(tempfile.mkdtemp(prefix="pagelens-bench-ingest-"))
    try:
        tiny = build_tiny_models(tmp / "tiny")["retriever"]
        real = build_real_model(tmp / "real256") if args.real_pages > 0 else None
        if not args.gpu_only:
            for backend in args.image_processors:
                bench_model(table, "tiny model", tiny, args.tiny_edge, args.pages, "cpu", args.batch, "float32", tmp,
                            backend)
            if real is not None:
                for dtype in args.cpu_dtypes:
                    bench_model(table, f"colSmol-256M arch (random), {dtype}", real, args.real_edge, args.real_pages,
                                "cpu", args.batch, dtype, tmp, args.image_processors[0])
        if (args.gpu or args.gpu_only) and require_cuda("ingest GPU section"):
            if real is not None:
                for backend in args.image_processors:
                    bench_model(table, "colSmol-256M arch (random)", real, args.real_edge, args.real_pages, "cuda",
                                args.batch, "bfloat16", tmp, backend)
                if "torchvision" in args.image_processors:  # resize + normalise on the GPU, workers rasterize
                    bench_model(table, "colSmol-256M arch (random)", real, args.real_edge, args.real_pages, "cuda",
                                args.batch, "bfloat16", tmp, "torchvision", "model")
                    # what batching across documents (the CUDA default) gains on these short PDFs
                    bench_model(table, "colSmol-256M arch (random)", real, args.real_edge, args.real_pages, "cuda",
                                args.batch, "bfloat16", tmp, "torchvision", "model", across="off")
                    if args.compile:
                        bench_model(table, "colSmol-256M arch (random)", real, args.real_edge, args.real_pages,
                                    "cuda", args.batch, "bfloat16", tmp, "torchvision", "model", compile_=True)
        elif not (args.gpu or args.gpu_only):
            require_cuda("ingest GPU section (pass --gpu on a lent GPU)")
        table.print(args.out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
