"""``pagelens eval DATASET --retriever A --retriever B`` (issue 29.4): two tiny retrievers of different
families measured on the same documents and queries, through the CLI (subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

VENDORS = {"acme": "ACME GmbH invoice 0042 total 1234.00 EUR", "globex": "Globex Corp invoice 7 total 99.00 USD",
           "initech": "Initech LLC purchase order 31 staplers"}


def _pdf(path: Path, text: str) -> None:
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    page.insert_text((72, 100), text, fontsize=14)
    doc.save(path)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    (root / "documents").mkdir(parents=True)
    rows = []
    for name, text in VENDORS.items():
        _pdf(root / "documents" / f"{name}.pdf", text)
        rows.append({"qid": name, "query": text.split(" ", 2)[2], "relevant": [{"doc": f"{name}.pdf", "page": 1}]})
    (root / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root
@pytest.mark.extended


def test_eval_compares_two_retrievers(dataset: Path, tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    from make_tiny_families import build_colqwen2_5

    colqwen = build_colqwen2_5(tmp_path / "colqwen2_5")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGELENS_")}
    env.update(PAGELENS_DATA_DIR=str(tmp_path / "data"), PAGELENS_RETRIEVER_MODEL=str(tiny_models["retriever"]),
               PAGELENS_PAGE_LONGEST_EDGE="512", PAGELENS_INGEST_WORKERS="0", PAGELENS_DEVICE="cpu",
               PAGELENS_OCR="off", HF_HUB_OFFLINE="1")
    cli = [sys.executable, "-m", "pagelens.cli"]
    # the user's collection, built with the configured retriever: reused as it is for that retriever
    first = subprocess.run([*cli, "index", str(dataset / "documents"), "-c", "docs"], env=env, capture_output=True,
                           text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    out = tmp_path / "cmp"
    proc = subprocess.run(
        [*cli, "eval", str(dataset), "-c", "docs", "--modes", "visual,text", "--retriever", str(tiny_models["retriever"]),
         "--retriever", str(colqwen), "--out", str(out), "--json"],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    runs = summary["runs"]
    assert [r["retriever"] for r in runs] == [str(tiny_models["retriever"]), str(colqwen)]
    assert [r["family"] for r in runs] == ["ColIdefics3", "ColQwen2_5"]
    assert [r["collection"] for r in runs] == ["docs", "docs__colqwen2-5"]
    assert runs[0]["index_seconds"] >= 0 and runs[1]["index_seconds"] > 0
    for run in runs:
        modes = {m["mode"]: m["summary"] for m in run["modes"]}
        assert set(modes) == {"visual", "text"} and all(m["error"] is None for m in run["modes"])
        assert modes["text"]["recall@1"] == 1.0  # BM25 finds each vendor's own invoice, for either retriever
        assert 0.0 <= modes["visual"]["ndcg@5"] <= 1.0 and modes["visual"]["queries"] == 3.0
        assert modes["visual"]["recall@5"] == 1.0  # three documents: all returned
    markdown = (out / "comparison.md").read_text()
    assert "| retriever | family | mode | nDCG@5 |" in markdown
    assert "| colqwen2_5 | ColQwen2_5 | text | 1.000 |" in markdown and "Best nDCG@5 per mode:" in markdown
    assert (out / "1-retriever" / "report.json").is_file() and (out / "2-colqwen2-5" / "report.md").is_file()
    full = json.loads((out / "comparison.json").read_text())
    assert len(full["runs"][1]["result"]["modes"][0]["queries"]) == 3

    # the two collections now hold the two retrievers' vectors: each refuses the other's queries
    search = subprocess.run([*cli, "search", "staplers", "-c", "docs__colqwen2-5"], env=env, capture_output=True,
                            text=True, timeout=600)
    assert search.returncode == 2 and "--reindex" in search.stderr and "ColQwen2_5" in search.stderr

    dup = subprocess.run([*cli, "eval", str(dataset), "-c", "docs", "--retriever", str(colqwen), "--retriever",
                          str(colqwen)], env=env, capture_output=True, text=True, timeout=600)
    assert dup.returncode == 2 and "--retriever given twice" in dup.stderr
