"""Restart test through a real server process: a job is accepted, `pagelens serve` is SIGKILLed while
it indexes, a new server on the same data dir finishes the job with exact page counts, no duplicates."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pymupdf
import pytest
from api_helpers import free_port, start_serve, stop_serve
from conftest import REAL_PDFS

pytestmark = [pytest.mark.slow, pytest.mark.extended]

DOCS = [REAL_PDFS / "paper_tam_review.pdf", REAL_PDFS / "inv_aws_invoice_en.pdf", REAL_PDFS / "paper_naacl06_shinyama.pdf"]


def test_sigkill_during_indexing_then_restart_completes_exactly(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGELENS_")}
    env.update(
        PAGELENS_DATA_DIR=str(tmp_path / "data"),
        PAGELENS_RETRIEVER_MODEL=str(tiny_models["retriever"]),
        PAGELENS_ANSWER_MODEL=str(tiny_models["answerer"]),
        PAGELENS_PAGE_LONGEST_EDGE="1024",
        PAGELENS_DEVICE="cpu",
        PAGELENS_OCR="off",  # not what this test is about (OCR of the real scans costs seconds per page)
        PAGELENS_TUNING__EMBED_BATCH_SIZE="1",
        HF_HUB_OFFLINE="1",
    )
    expected = {}
    for path in DOCS:
        with pymupdf.open(path) as doc:
            expected[path.name] = doc.page_count
    port = free_port()
    log = tmp_path / "server.log"
    server, base = start_serve(env, log, port=port, startup_s=90)
    try:
        assert httpx.post(f"{base}/v1/collections", json={"name": "crash"}, timeout=60).status_code == 201
        files = [("files", (p.name, p.read_bytes(), "application/pdf")) for p in DOCS]
        accepted = httpx.post(f"{base}/v1/collections/crash/documents", files=files, timeout=60)
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["id"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # kill once some, not all, pages are in
            job = httpx.get(f"{base}/v1/jobs/{job_id}", timeout=10).json()
            if job["pages_done"] >= 3:
                break
            time.sleep(0.2)
        assert job["status"] == "running" and 3 <= job["pages_done"] < sum(expected.values()), job
    finally:
        stop_serve(server, graceful=False)

    server, _ = start_serve(env, log, port=port, startup_s=90)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            job = httpx.get(f"{base}/v1/jobs/{job_id}", timeout=10).json()
            if job["status"] not in ("queued", "running"):
                break
            time.sleep(0.5)
        assert job["status"] == "done", job
        assert [d["status"] for d in job["documents"]] == ["indexed"] * len(DOCS)
        info = httpx.get(f"{base}/v1/collections/crash", timeout=30).json()
        assert info["pages"] == sum(expected.values()) and info["documents"] == len(DOCS)
        docs = httpx.get(f"{base}/v1/collections/crash/documents", timeout=30).json()
        assert {d["doc_name"]: (d["pages_indexed"], d["page_count"], d["status"]) for d in docs} == {
            name: (pages, pages, "complete") for name, pages in expected.items()
        }
    finally:
        stop_serve(server)
