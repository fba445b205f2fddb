"""``pagelens eval`` end to end through the CLI (subprocess) with the tiny random models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REAL_PDFS

pytestmark = pytest.mark.slow

DOCS = ("fr_demolition_minutes_2023.pdf", "inv_aws_invoice_en.pdf", "scan_huckfinn_page_en.pdf")
KNOWN_ITEMS = Path(__file__).parent / "data" / "known_items.jsonl"


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    """A dataset folder: queries.jsonl (the known items of DOCS) and documents/ (links, no copies)."""
    if not REAL_PDFS.is_dir():
        pytest.skip(f"{REAL_PDFS} not found")
    root = tmp_path / "ds"
    (root / "documents").mkdir(parents=True)
    for name in DOCS:
        (root / "documents" / name).symlink_to(REAL_PDFS / name)
    rows = [json.loads(line) for line in KNOWN_ITEMS.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if r["relevant"][0]["doc"] in DOCS]
    assert any("answer" in r for r in rows)
    (root / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


def test_eval_writes_markdown_json_and_plot(tiny_models: dict[str, Path], dataset_dir: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGELENS_")}
    env.update(
        PAGELENS_DATA_DIR=str(tmp_path / "data"),
        PAGELENS_RETRIEVER_MODEL=str(tiny_models["retriever"]),
        PAGELENS_ANSWER_MODEL=str(tiny_models["answerer"]),
        PAGELENS_PAGE_LONGEST_EDGE="512",
        PAGELENS_ANSWER_LONGEST_EDGE="512",
        PAGELENS_MAX_NEW_TOKENS="4",
        PAGELENS_ANSWER_TOP_K="1",
        PAGELENS_INGEST_WORKERS="0",
        PAGELENS_DEVICE="cpu",
        HF_HUB_OFFLINE="1",
    )
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "pagelens.cli", "eval", str(dataset_dir), "--collection", "ev", "--answers",
         "--out", str(out), "--json"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["n_documents"] == len(DOCS) and summary["n_queries"] >= 3
    assert [m["mode"] for m in summary["modes"]] == ["visual", "text", "hybrid"]

    report = json.loads((out / "report.json").read_text())
    for mode in report["modes"]:
        s = mode["summary"]
        assert mode["error"] is None
        for key in ("ndcg@5", "recall@1", "recall@5", "recall@10", "mrr", "latency_p50_ms", "latency_p95_ms",
                    "exact_match", "anls"):
            assert s[key] >= 0 and (key.startswith("latency") or s[key] <= 1), (mode["mode"], key)
        assert len(mode["recall_curve"]) == 10 and len(mode["queries"]) == summary["n_queries"]
        assert all("anls" in q for q in mode["queries"] if "answer" in q)
    assert {m["mode"]: m["summary"]["recall@5"] for m in report["modes"]}["text"] >= 0.9

    markdown = (out / "report.md").read_text()
    assert "| text |" in markdown and "nDCG@5" in markdown and "ANLS" in markdown
    png = (out / "recall_at_k.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000

    # the collection is reused: a second run indexes nothing new, and an unknown mode is a usage error
    again = subprocess.run(
        [sys.executable, "-m", "pagelens.cli", "eval", str(dataset_dir), "-c", "ev", "--modes", "text,bm25",
         "--out", str(tmp_path / "r2")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert again.returncode == 2 and "bm25" in again.stderr
