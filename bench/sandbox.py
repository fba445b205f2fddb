"""Cost of the sandbox (``Settings.isolate_rendering``, on by default) per page: real PDFs rendered and their
text extracted by ``open_document(...).pages()`` in-process (isolate_rendering=False) and in the sandboxed
child (memory/CPU/file-size limits, no network: ``pagelens.ingest.isolation``), OCR off.

Two passes per mode, interleaved (in-process, sandbox, in-process, sandbox) so load changes hit both: the
first sandbox pass includes one child start (interpreter + PyMuPDF import), the second reuses the idle child
(as a server does after its first document). Prints ms/page per pass and the ratio sandbox / in-process,
labelled with the machine, its load and the date.

    python bench/sandbox.py                     (14 PDFs, 19 pages, 2048 px: the default page_longest_edge)
    python bench/sandbox.py --pdfs 30 --edge 1024
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REAL_PDFS, device_label, load_average, today  # noqa: E402


def render_all(paths: list[Path], settings: object) -> tuple[int, float]:
    """(pages, seconds) to render every page of ``paths`` with ``settings``."""
    from pagelens.ingest.loader import open_document

    pages, started = 0, time.perf_counter()
    for path in paths:
        doc = open_document(path, settings)  # type: ignore[arg-type]
        for page in doc.pages():
            pages += 1
            del page
        if doc.page_errors:
            raise SystemExit(f"{path.name}: page errors {doc.page_errors}")
    return pages, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pdfs", type=int, default=14, help="how many real PDFs (smallest files first)")
    parser.add_argument("--edge", type=int, default=2048, help="page_longest_edge (px)")
    args = parser.parse_args()

    from pagelens.ingest import sandbox

    from pagelens.core.settings import Settings

    paths = sorted(REAL_PDFS.glob("*.pdf"), key=lambda p: p.stat().st_size)[: args.pdfs]
    if not paths:
        raise SystemExit(f"no PDFs under {REAL_PDFS}")
    with tempfile.TemporaryDirectory() as tmp:
        base = dict(data_dir=Path(tmp), page_longest_edge=args.edge, ocr="off", device="cpu")
        inproc = Settings(_env_file=None, isolate_rendering=False, **base)  # type: ignore[call-arg]
        boxed = Settings(_env_file=None, isolate_rendering=True, **base)  # type: ignore[call-arg]
        sandbox.shutdown_idle()
        load_before = load_average()
        results: dict[str, list[float]] = {"in-process": [], "sandbox": []}
        pages = 0
        for _ in range(2):
            for name, settings in (("in-process", inproc), ("sandbox", boxed)):
                pages, seconds = render_all(paths, settings)
                results[name].append(1000 * seconds / pages)
        sandbox.shutdown_idle()
    print(f"# sandbox cost per page: {len(paths)} real PDFs, {pages} pages, {args.edge} px, OCR off")
    print(f"# machine: {device_label()}; load (1/5/15 min) before {load_before}, after {load_average()}; "
          f"date {today()}")
    print("| pass | in-process ms/page | sandbox ms/page | ratio |")
    print("| --- | --- | --- | --- |")
    for i, label in enumerate(("first (sandbox: one child start)", "second (warm child)")):
        a, b = results["in-process"][i], results["sandbox"][i]
        print(f"| {label} | {a:.1f} | {b:.1f} | {b / a:.2f}x |")


if __name__ == "__main__":
    main()
