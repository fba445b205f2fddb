"""`make demo` from the repository alone: the sample collection, input checks before any load, the demo run."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pymupdf
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_sample_collection_is_small_deterministic_and_shows_the_product(tmp_path: Path) -> None:
    from make_sample_docs import build_samples

    samples = build_samples(tmp_path / "a")
    build_samples(tmp_path / "b")
    assert digests(tmp_path / "a") == digests(tmp_path / "b")  # same bytes: a second demo run skips them
    assert sum(p.stat().st_size for p in (tmp_path / "a").iterdir()) < 1_000_000
    by_file = {s.file: s for s in samples}
    assert {s.language for s in samples} >= {"en", "de", "nl", "pl", "fr"}
    questions = json.loads((tmp_path / "a" / "questions.json").read_text(encoding="utf-8"))
    assert [q["file"] for q in questions] == [s.file for s in samples]

    def text(name: str) -> str:
        with pymupdf.open(tmp_path / "a" / name) as doc:
            return " ".join(" ".join(p.get_text().split()) for p in doc)

    # each invoice prints the total the demo asks for
    for name in ("invoice_northwind_en.pdf", "rechnung_mueller_de.pdf", "factuur_vandijk_nl.pdf",
                 "faktura_kowalski_pl.pdf"):
        assert by_file[name].answer in text(name), name
    assert "3.813,75 USD" not in text("invoice_northwind_en.pdf")  # English number format there
    assert "Zapłata przelewem" in text("faktura_kowalski_pl.pdf")
    # the multi-page report: a table and a chart
    with pymupdf.open(tmp_path / "a" / "rapport_annuel_lumiere_fr.pdf") as report:
        assert report.page_count == 3
        assert "Auvergne-Rhône-Alpes 7,84 48 %" in " ".join(report[1].get_text().split())
        assert len(report[2].get_images()) == 1
    # the scan: one image, no text layer
    with pymupdf.open(tmp_path / "a" / "scan_lease_letter_en.pdf") as scan:
        assert scan.page_count == 1 and scan[0].get_text().strip() == "" and len(scan[0].get_images()) == 1
    assert any(s.file.endswith(".docx") for s in samples)
    assert not any(s.file.endswith(".docx") for s in build_samples(tmp_path / "c", office=False))


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO,
                          timeout=120)


def test_missing_input_fails_before_any_model_or_store_is_loaded(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGELENS_")}
    env.update(PAGELENS_DATA_DIR=str(data_dir), PAGELENS_RETRIEVER_MODEL=str(tmp_path / "no-model"),
               PYTHONPATH=str(REPO))
    missing = tmp_path / "shared" / "pdfs" / "real"
    cli = run_python(
        "import sys\nfrom pagelens.cli import app\n"
        f"try:\n    app(['index', {str(missing)!r}, '--collection', 'demo'])\n"
        "except SystemExit as exc:\n"
        "    print('exit', exc.code, 'torch' in sys.modules, 'transformers' in sys.modules)\n", env)
    assert cli.stdout.strip() == "exit 2 False False", cli.stdout + cli.stderr  # nothing heavy imported
    assert f"failed: {missing}: file not found" in cli.stderr
    assert "none of the inputs exist; nothing was indexed" in cli.stderr
    demo = run_python(
        "import sys\nsys.path.insert(0, 'scripts')\nimport demo\n"
        f"try:\n    demo.main(['--docs', {str(missing)!r}])\n"
        "except SystemExit as exc:\n    print('exit', exc.code, 'torch' in sys.modules)\n", env)
    assert demo.stdout.strip() == "exit 2 False", demo.stdout + demo.stderr
    assert f"error: {missing}: file or folder not found" in demo.stderr
    assert not data_dir.exists()  # no store was opened


@pytest.mark.extended
@pytest.mark.slow
def test_demo_indexes_the_samples_then_searches_and_answers_each(tiny_models: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    import torch

    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGELENS_")}
    env.update(PAGELENS_DATA_DIR=str(tmp_path / "data"), PAGELENS_RETRIEVER_MODEL=str(tiny_models["retriever"]),
               PAGELENS_ANSWER_MODEL=str(tiny_models["answerer"]), PAGELENS_MAX_NEW_TOKENS="8",
               PAGELENS_DEVICE="cpu", PAGELENS_DTYPE="float32", HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "demo.py"), "--samples", str(tmp_path / "docs")],
                          env=env, capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    questions = json.loads((tmp_path / "docs" / "questions.json").read_text(encoding="utf-8"))
    out = proc.stdout
    if not torch.cuda.is_available():
        assert "No GPU: running on" in proc.stderr and "pages at 1024 px" in proc.stderr
        assert "Estimate with the real models" in proc.stderr and "bench/README.md" in proc.stderr
    pages = 8 + any(q["file"].endswith(".docx") for q in questions)  # 4 invoices, 3-page report, scan, docx
    assert f"indexed {len(questions)} documents (0 already indexed, 0 failed), {pages} pages" in out, out
    blocks = out.split("\n=== ")[1:]
    assert [b.splitlines()[0] for b in blocks] == [q["file"] for q in questions]
    for block, q in zip(blocks, questions, strict=True):
        assert f"Q: {q['question']}" in block
        assert "\n  1. " in block and "  search: " in block and " ms" in block
        assert "\nA: " in block and "\n  [1] " in block  # the answer and its citation
        assert "  answer: " in block and "prefill" in block and "decode" in block
        assert f"  expected: {q['answer']}" in block
    # BM25 over the text layers finds every invoice even with a random visual model
    for block in blocks[:4]:
        assert "1. " + block.splitlines()[0] in block and "<- this document" in block.split("  2. ")[0]
