"""Cost of the sandbox (``Settings.isolate_rendering``, on by default) per page: real PDFs rendered and their
text extracted by ``open_document(...).pages()`` in-process (isolate_rendering=False) and in the sandboxed
child (memory/CPU/file-size limits, no network: ``pagelens.ingest.isolation``), OCR off.

Two passes per mode, interleaved (in-process, sandbox, in-process, sandbox) so load changes hit both: the
first sandbox pass includes one child start (interpreter + PyMuPDF import), the second reuses the idle child
(as a server does after its first document). Prints ms/page per pass and the ratio sandbox / in-process,
labelled with the machine, its load and the date.

With ``--images N`` (default 8) the same for image files, which Pillow reads in the same child: N synthetic
scans made here (half A4 gray PNGs at 300 dpi, 2480 x 3508 px, half 4000 x 3000 px JPEG photos), decoded
and downscaled to the page size.

    python bench/sandbox.py                     (14 PDFs, 19 pages, 2048 px: the default page_longest_edge)
    python bench/sandbox.py --pdfs 30 --edge 1024 --images 0
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
    parser.add_argument("--images", type=int, default=8, help="synthetic image files (0: none)")
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
        images = make_images(Path(tmp) / "images", args.images)
        load_before = load_average()
        tables = []
        for what, files in ((f"{len(paths)} real PDFs", paths), (f"{len(images)} synthetic image files", images)):
            if not files:
                continue
            sandbox.shutdown_idle()
            results: dict[str, list[float]] = {"in-process": [], "sandbox": []}
            pages = 0
            for _ in range(2):
                for name, settings in (("in-process", inproc), ("sandbox", boxed)):
                    pages, seconds = render_all(files, settings)
                    results[name].append(1000 * seconds / pages)
            sandbox.shutdown_idle()
            tables.append((what, pages, results))
    print(f"# sandbox cost per page: {args.edge} px, OCR off")
    print(f"# machine: {device_label()}; load (1/5/15 min) before {load_before}, after {load_average()}; "
          f"date {today()}")
    print("| files | pass | in-process ms/page | sandbox ms/page | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for what, pages, results in tables:
        for i, label in enumerate(("first (sandbox: one child start)", "second (warm child)")):
            a, b = results["in-process"][i], results["sandbox"][i]
            print(f"| {what}, {pages} pages | {label} | {a:.1f} | {b:.1f} | {b / a:.2f}x |")


def make_images(folder: Path, count: int) -> list[Path]:
    """``count`` synthetic image files: gray A4 scans at 300 dpi (PNG) and 12 Mpx photos (JPEG), with noise so
    they do not compress to nothing."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        if i % 2 == 0:
            pixels = np.full((3508, 2480), 245, np.uint8)
            pixels[200:3300:40, 150:2300] = rng.integers(0, 80, (78, 2150), dtype=np.uint8)  # "text lines"
            path = folder / f"scan_{i}.png"
            Image.fromarray(pixels, "L").save(path)
        else:
            pixels = rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8)
            path = folder / f"photo_{i}.jpg"
            Image.fromarray(pixels, "RGB").save(path, quality=85)
        out.append(path)
    return out


if __name__ == "__main__":
    main()
