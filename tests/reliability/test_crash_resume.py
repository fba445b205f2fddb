"""SIGKILL of ``pagelens serve`` while its worker indexes an uploaded job; a restart on the same data
dir resumes the job and ends with exact counts (no page lost, none duplicated)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from api_helpers import start_serve, stop_serve
from conftest import REAL_PDFS

pytestmark = [pytest.mark.slow, pytest.mark.extended]

DOCS = [REAL_PDFS / "paper_tracemonkey_pldi09.pdf", REAL_PDFS / "paper_naacl06_shinyama.pdf",
        REAL_PDFS / "inv_aws_invoice_en.pdf"]


def _serve(data: Path, tiny_models, log: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PAGELENS_DATA_DIR": str(data), "PAGELENS_RETRIEVER_MODEL": str(tiny_models["retriever"]),
           "PAGELENS_ANSWER_MODEL": str(tiny_models["answerer"]), "PAGELENS_DEVICE": "cpu",
           "PAGELENS_PAGE_LONGEST_EDGE": "512", "PAGELENS_INGEST_WORKERS": "0"}
    for name in ("PAGELENS_API_KEYS", "PAGELENS_QDRANT_URL"):
        env.pop(name, None)
    return start_serve(env, log)


def _kill(proc: subprocess.Popen, sig: int) -> None:
    stop_serve(proc, graceful=sig != signal.SIGKILL, timeout_s=30)


def test_sigkill_during_api_job_resumes_exactly(tmp_path: Path, tiny_models) -> None:
    import httpx

    data, log = tmp_path / "data", tmp_path / "server.log"
    proc, base = _serve(data, tiny_models, log)
    try:
        assert httpx.post(f"{base}/v1/collections", json={"name": "k"}, timeout=60).status_code == 201
        files = [("files", (p.name, p.read_bytes(), "application/pdf")) for p in DOCS]
        r = httpx.post(f"{base}/v1/collections/k/documents", files=files, timeout=60)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        deadline = time.monotonic() + 180
        while True:
            job = httpx.get(f"{base}/v1/jobs/{job_id}", timeout=30).json()
            if job["status"] == "running" and job["pages_done"] >= 3:
                break
            assert job["status"] in ("queued", "running") and time.monotonic() < deadline, job
            time.sleep(0.05)
        _kill(proc, signal.SIGKILL)
        killed_at = job["pages_done"]

        proc, base = _serve(data, tiny_models, log)  # same data dir: the job resumes
        deadline = time.monotonic() + 300
        while True:
            job = httpx.get(f"{base}/v1/jobs/{job_id}", timeout=30).json()
            if job["status"] not in ("queued", "running"):
                break
            assert time.monotonic() < deadline, job
            time.sleep(0.3)
        assert job["status"] == "done", job
        assert [d["status"] for d in job["documents"]] == ["indexed"] * len(DOCS), job
        import pymupdf

        expected = sum(pymupdf.open(p).page_count for p in DOCS)
        assert job["pages_total"] == job["pages_done"] == expected, job
        info = httpx.get(f"{base}/v1/collections/k", timeout=30).json()
        assert (info["documents"], info["pages"]) == (len(DOCS), expected), info
        docs = httpx.get(f"{base}/v1/collections/k/documents", timeout=30).json()
        assert all(d["status"] == "complete" and d["pages_indexed"] == d["page_count"] for d in docs), docs
        print(f"SIGKILL after {killed_at} pages; after restart {info['pages']} points = {expected} pages")
    finally:
        _kill(proc, signal.SIGTERM)
