"""Crash test: SIGKILL a batch index of the real PDFs mid-run, run the same command again, and get
every page exactly once with a complete payload (Qdrant Edge recovers from its WAL; worker processes
die with their parent)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pymupdf
import pytest
from conftest import REAL_PDFS

pytestmark = [pytest.mark.slow, pytest.mark.extended]

PAYLOAD_KEYS = {"doc_id", "doc_name", "page_no", "page_count", "sha256", "image_path", "text", "collection", "meta"}


def total_pages() -> int:
    total = 0
    for pdf in sorted(REAL_PDFS.glob("*.pdf")):
        with pymupdf.open(pdf) as doc:
            total += doc.page_count
    return total


def test_sigkill_mid_run_then_rerun_gives_every_page_once(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    from pagelens.index.stores.edge_store import QdrantEdgeStore

    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGELENS_")}
    env.update(
        PAGELENS_DATA_DIR=str(data),
        PAGELENS_RETRIEVER_MODEL=str(tiny_models["retriever"]),
        PAGELENS_PAGE_LONGEST_EDGE="512",
        PAGELENS_DEVICE="cpu",
        PAGELENS_OCR="off",  # not what this test is about (OCR of the real scans costs seconds per page)
        PAGELENS_INGEST_WORKERS="2",
        HF_HUB_OFFLINE="1",
    )
    cmd = [sys.executable, "-m", "pagelens.cli", "index", str(REAL_PDFS), "--collection", "c", "--json"]
    expected = total_pages()
    assert expected == 252

    with open(tmp_path / "run1.out", "w") as out, open(tmp_path / "run1.err", "w") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, cwd=tmp_path)
        pages_dir = data / "pages"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if pages_dir.is_dir() and sum(1 for _ in pages_dir.rglob("*.png")) > 100:
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"the run ended before it could be killed:\n{(tmp_path / 'run1.err').read_text()}"
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "expected worker processes"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    _, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, f"worker processes outlived their killed parent: {alive}"

    store = QdrantEdgeStore(data / "qdrant-edge")  # opens after the kill: WAL recovery
    try:
        partial = store.count("c")
    finally:
        store.close()
    assert 0 < partial < expected

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert report["errors"] == []
    assert report["pages_indexed"] == expected - partial  # only the missing pages were redone

    store = QdrantEdgeStore(data / "qdrant-edge")
    try:
        assert store.count("c") == expected
        payloads = [p for _, p in store.iter_payloads("c")]
    finally:
        store.close()
    assert len(payloads) == expected
    assert len({(p["doc_id"], p["page_no"]) for p in payloads}) == expected
    counts: dict[str, int] = {}
    for pdf in sorted(REAL_PDFS.glob("*.pdf")):
        with pymupdf.open(pdf) as doc:
            counts[pdf.name] = doc.page_count
    seen: dict[str, set[int]] = {}
    for p in payloads:
        assert set(p) >= PAYLOAD_KEYS, sorted(PAYLOAD_KEYS - set(p))
        assert p["page_count"] == counts[p["doc_name"]] and 1 <= p["page_no"] <= p["page_count"]
        assert len(p["sha256"]) == 64 and p["doc_id"] == p["sha256"][:16]
        # relative to the page-image root (default data_dir/pages), named by content and render size
        assert not Path(p["image_path"]).is_absolute()
        assert p["image_path"].endswith(f"/{p['page_no']}-{p['width']}x{p['height']}.png")
        assert (data / "pages" / p["image_path"]).is_file() and isinstance(p["text"], str)
        seen.setdefault(p["doc_name"], set()).add(p["page_no"])
    assert {name: len(pages) for name, pages in seen.items()} == counts
