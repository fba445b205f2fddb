"""`make demo`: index a sample collection, then search and ask one question per document.

    python scripts/demo.py                          # the sample collection (built by scripts/make_sample_docs.py)
    python scripts/demo.py --docs ~/invoices --question "What is the VAT number?"

Order of work: the inputs are checked first (a missing path fails at once, before any model or store
is loaded); then, on a machine without a GPU, the demo says which resolution it uses and how long the
real models should take; then it indexes (progress on stderr), and for each document prints the pages
a search finds, the answer with its citations, and the timings.

Resolution on the CPU: pages are embedded at 1024 px (longest edge) instead of the product default of
2048 px, and answers look at the best page at 1024 px. An A4/Letter page at 2048 px is cut into 13
tiles of 512 px (4 x 3 + a global one), at 1024 px into 5, so indexing costs ~2.6x less, and the text
of an A4 page stays readable at 1024 px (~125 dpi). Set PAGELENS_PAGE_LONGEST_EDGE (and
PAGELENS_ANSWER_LONGEST_EDGE, PAGELENS_ANSWER_TOP_K, PAGELENS_MAX_NEW_TOKENS) to choose otherwise. With a
GPU the product defaults are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

DEFAULT_SAMPLES = REPO / ".demo-docs"
DEMO_EDGE = 1024  # px, CPU only (see the module docstring)
DEMO_ANSWER_EDGE = 1024
DEMO_NEW_TOKENS = 96

# Measured CPU cost of the colSmol-256M architecture (random weights), bench/README.md, 2026-12-01:
# 2-core AMD EPYC, one A4/Letter page at 2048 px (13 tiles of 512 px): 0.116 pages/s in bfloat16,
# 0.059 pages/s in float32 (idle machine). Per 512-px tile:
SECONDS_PER_TILE = {"bfloat16": 1 / 0.116 / 13, "float32": 1 / 0.059 / 13}
BENCH_CORES = 2
# SmolVLM-256M architecture on the same machine: time to first token for a 1-tile page 0.78 s
# (bfloat16) / 1.33 s (float32), decode 31.8 / 24.5 tokens/s; the prefill grows with the image tokens.
ANSWER_PREFILL_S_PER_TILE = {"bfloat16": 0.78, "float32": 1.33}
ANSWER_TOKENS_PER_S = {"bfloat16": 31.8, "float32": 24.5}


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def check_inputs(paths: list[Path]) -> list[Path]:
    """The files to index under ``paths`` (files and folders); exits with an error naming the path
    when one does not exist or nothing indexable is found. Loads nothing heavy."""
    from pagelens.ingest import discover_inputs

    for path in paths:
        if not path.exists():
            fail(f"{path}: file or folder not found; give existing documents with DOCS=... (make) or --docs, "
                 "or leave them out to use the sample collection")
    files = discover_inputs(paths)
    if not files:
        fail(f"no documents found under {', '.join(map(str, paths))} (PDF, images, office documents)")
    return files


def ensure_samples(folder: Path, office: bool) -> list[dict[str, Any]]:
    """Build the sample collection into ``folder`` unless it is there already; returns its questions."""
    questions = folder / "questions.json"
    if questions.is_file():
        entries = json.loads(questions.read_text(encoding="utf-8"))
        wanted_docx = office
        has_docx = any(e["file"].endswith(".docx") for e in entries)
        if all((folder / e["file"]).is_file() for e in entries) and has_docx == wanted_docx:
            return entries
    from make_sample_docs import build_samples

    started = time.monotonic()
    samples = build_samples(folder, office=office)
    print(f"built {len(samples)} sample documents in {folder} ({time.monotonic() - started:.1f} s)", file=sys.stderr)
    return json.loads(questions.read_text(encoding="utf-8"))


def page_sizes(files: list[Path]) -> list[tuple[float, float]]:
    """(width, height) of every page: PDF pages from the file, images from their header, anything else
    (office documents, before conversion) counted as one A4 page."""
    import pymupdf
    from PIL import Image

    sizes: list[tuple[float, float]] = []
    for path in files:
        try:
            if path.suffix.lower() == ".pdf":
                with pymupdf.open(path) as doc:
                    sizes += [(p.rect.width, p.rect.height) for p in doc]
                continue
            with Image.open(path) as im:
                sizes.append(im.size)
        except Exception:  # noqa: BLE001 - only an estimate
            sizes.append((595.0, 842.0))
    return sizes


def tiles(width: float, height: float, edge: int) -> int:
    """512-px tiles the Idefics3 processor cuts a page into at ``edge`` px (local tiles + the global one)."""
    from pagelens.answer.prompt import image_token_count

    return image_token_count(int(width), int(height), longest_edge=edge, tile_size=512, image_seq_len=64) // 64


def describe_plan(settings: Any, files: list[Path], n_questions: int, device: str, dtype: str) -> None:
    """Print the resolution and, on the CPU, an estimate of the time the real models take."""
    edge = settings.page_longest_edge
    sizes = page_sizes(files)
    if device != "cpu":
        print(f"device: {device}; pages at {edge} px, answers from the best {settings.answer_top_k} page(s) at "
              f"{settings.answer_longest_edge} px", file=sys.stderr)
        return
    cores = os.cpu_count() or 1
    speedup = max(1.0, min(cores, 8) / BENCH_CORES)  # more cores help, less than linearly past ~8
    per_tile = SECONDS_PER_TILE.get(dtype, SECONDS_PER_TILE["float32"]) / speedup
    n_tiles = sum(tiles(w, h, edge) for w, h in sizes)
    n_tiles_default = sum(tiles(w, h, 2048) for w, h in sizes)
    answer_tiles = tiles(595, 842, settings.answer_longest_edge) * settings.answer_top_k
    prefill = ANSWER_PREFILL_S_PER_TILE.get(dtype, 1.33) * answer_tiles / speedup
    decode = settings.max_new_tokens / ANSWER_TOKENS_PER_S.get(dtype, 24.5)
    index_s = n_tiles * per_tile
    ask_s = n_questions * (prefill + decode)
    default_note = (f"; at the default 2048 px ({n_tiles_default} tiles) it would take ~{_minutes(n_tiles_default * per_tile)}"
                    if edge != 2048 else "")
    print(
        f"No GPU: running on {cores} CPU cores in {dtype}.\n"
        f"  Resolution: pages at {edge} px ({n_tiles} tiles of 512 px for {len(sizes)} pages){default_note}; "
        f"answers read the best {settings.answer_top_k} page(s) at {settings.answer_longest_edge} px, "
        f"at most {settings.max_new_tokens} tokens.\n"
        f"  Estimate with the real models (colSmol-256M, SmolVLM-256M): indexing ~{_minutes(index_s)}, "
        f"{n_questions} answers ~{_minutes(ask_s)} (~{prefill + decode:.0f} s each), plus loading the models "
        "(and downloading them, ~1 GB, on the first run).\n"
        f"  From bench/README.md: {SECONDS_PER_TILE[dtype if dtype in SECONDS_PER_TILE else 'float32']:.2f} s "
        f"per tile on {BENCH_CORES} cores of an AMD EPYC (2026-12-01), scaled to {cores} cores; "
        "other CPUs and other models differ.",
        file=sys.stderr,
    )


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def demo_settings(on_cpu: bool) -> Any:
    """Settings from the environment, with the demo's resolution on the CPU where the user set none."""
    from pagelens.core.settings import Settings

    overrides: dict[str, Any] = {}
    if on_cpu:
        for env, field, value in (
            ("PAGELENS_PAGE_LONGEST_EDGE", "page_longest_edge", DEMO_EDGE),
            ("PAGELENS_ANSWER_LONGEST_EDGE", "answer_longest_edge", DEMO_ANSWER_EDGE),
            ("PAGELENS_ANSWER_TOP_K", "answer_top_k", 1),
            ("PAGELENS_MAX_NEW_TOKENS", "max_new_tokens", DEMO_NEW_TOKENS),
        ):
            if env not in os.environ:
                overrides[field] = value
    return Settings(**overrides)


def detect_device(settings: Any) -> tuple[str, str]:
    """(device type, dtype name) the retriever will run on, without loading a model."""
    from pagelens.core.devices import get_device, resolve_dtype

    device = get_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    return device.type, str(dtype).removeprefix("torch.")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=Path, nargs="*", default=None,
                    help="files or folders to index instead of the sample collection")
    ap.add_argument("--question", default=None, help="question for --docs (default: one per sample document)")
    ap.add_argument("--collection", default="demo")
    ap.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES, help="folder for the sample collection")
    ap.add_argument("--no-ask", action="store_true", help="search only (no answer model)")
    args = ap.parse_args(argv)
    started = time.monotonic()

    # 1. inputs, before anything heavy
    user_docs = [Path(p).expanduser() for p in args.docs] if args.docs else []
    if user_docs:
        files = check_inputs(user_docs)
        questions = [{"file": None, "question": args.question or "What is the total amount due?", "answer": ""}]
    else:
        from pagelens.ingest.office import find_soffice

        from pagelens.core.settings import Settings

        office = find_soffice(Settings()) is not None
        if not office:
            print("note: LibreOffice not found, so the Word document of the sample collection is left out; "
                  "install it with scripts/install-system-deps.sh to index office documents", file=sys.stderr)
        questions = ensure_samples(args.samples, office)
        files = check_inputs([args.samples / q["file"] for q in questions])

    # 2. where it runs, and how long it should take
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import torch  # noqa: F401 - imported here so that the checks above stay instant
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    from pagelens.core.settings import Settings

    device, dtype = detect_device(Settings())
    settings = demo_settings(on_cpu=device == "cpu")
    describe_plan(settings, files, 0 if args.no_ask else len(questions), device, dtype)

    # 3. index
    from pagelens.index.pipeline.indexer import IndexInput
    from rich.console import Console

    from pagelens.app.service import PagelensService
    from pagelens.core.errors import PagelensError
    from pagelens.core.progress import IndexProgress

    service = PagelensService(settings)
    err = Console(stderr=True, soft_wrap=True)
    try:
        t0 = time.monotonic()
        with IndexProgress(err, total_files=len(files)) as progress:
            report = service.indexer.index(args.collection, [IndexInput(f) for f in files],
                                           progress=progress.callback)
        for error in report.errors:
            print(f"failed: {error.error}", file=sys.stderr)
        print(f"\nindexed {report.count('indexed')} documents ({report.count('skipped')} already indexed, "
              f"{report.count('failed') + report.count('partial')} failed), {report.pages_indexed} pages in "
              f"{time.monotonic() - t0:.1f} s into collection '{args.collection}' ({settings.data_dir})")

        # 4. one search and one answer per document
        for entry in questions:
            question = entry["question"]
            print(f"\n=== {entry['file'] or 'your documents'}\nQ: {question}")
            t0 = time.monotonic()
            hits = service.search(args.collection, question, k=3)
            search_s = time.monotonic() - t0
            for hit in hits:
                mark = " <- this document" if entry["file"] and hit.doc_name == entry["file"] else ""
                print(f"  {hit.rank}. {hit.doc_name} page {hit.page_no}/{hit.page_count} (score {hit.score:.2f}){mark}")
            print(f"  search: {search_s * 1000:.0f} ms")
            if args.no_ask:
                continue
            t0 = time.monotonic()
            answer = service.ask(args.collection, question)
            print(f"A: {answer.text.strip()}")
            for i, c in enumerate(answer.citations, start=1):
                print(f"  [{i}] {c.doc_name}, page {c.page_no} (score {c.score:.2f})")
            timings = answer.timings.to_dict()
            detail = ", ".join(f"{k.removesuffix('_s')} {v:.2f} s" for k, v in timings.items() if v is not None)
            print(f"  answer: {time.monotonic() - t0:.1f} s ({detail}; {answer.generated_tokens} tokens)")
            if entry.get("answer"):
                print(f"  expected: {entry['answer']}")
    except PagelensError as exc:
        fail(exc.message)
    finally:
        service.close()
    print(f"\ndemo done in {time.monotonic() - started:.0f} s. Next: `pagelens serve` (API + web UI at "
          f"http://127.0.0.1:8000/ui/), or `pagelens ask \"...\" --collection {args.collection}`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
