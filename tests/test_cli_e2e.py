"""End to end through the real ``pagelens`` CLI (subprocess) with the tiny random retriever."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pymupdf
import pytest
from conftest import HOSTILE_PDFS, REAL_PDFS

pytestmark = pytest.mark.slow

PAGELENS = [sys.executable, "-m", "pagelens.cli"]


def run_cli(env: dict[str, str], *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [*PAGELENS, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"pagelens {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def cli_env(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGELENS_")}
    env.update(
        PAGELENS_DATA_DIR=str(tmp_path_factory.mktemp("cli-data")),
        PAGELENS_RETRIEVER_MODEL=str(tiny_models["retriever"]),
        PAGELENS_ANSWER_MODEL=str(tiny_models["answerer"]),
        PAGELENS_PAGE_LONGEST_EDGE="1024",
        PAGELENS_ANSWER_LONGEST_EDGE="512",
        PAGELENS_MAX_NEW_TOKENS="8",
        PAGELENS_DEVICE="cpu",
        PAGELENS_OCR="off",  # OCR of the shared scans is tested in test_ocr.py / test_eval_e2e.py
        HF_HUB_OFFLINE="1",
    )
    return env


def readable_page_counts() -> dict[str, int]:
    counts = {}
    for pdf in sorted(REAL_PDFS.glob("*.pdf")):
        with pymupdf.open(pdf) as doc:
            counts[pdf.name] = doc.page_count
    return counts


@pytest.fixture(scope="module")
def indexed_real(cli_env: dict[str, str]) -> dict:
    proc = run_cli(cli_env, "index", str(REAL_PDFS), "--collection", "real", "--metadata", "source=shared",
                   "--json")
    return json.loads(proc.stdout)


def test_every_page_of_every_real_pdf_is_a_point(cli_env: dict[str, str], indexed_real: dict) -> None:
    expected = readable_page_counts()
    assert indexed_real["errors"] == []
    assert indexed_real["documents_indexed"] == len(expected)
    assert indexed_real["pages_indexed"] == sum(expected.values())

    docs = json.loads(run_cli(cli_env, "docs", "--collection", "real", "--json").stdout)
    by_name = {d["doc_name"]: d for d in docs}
    assert set(by_name) == set(expected)
    for name, pages in expected.items():
        assert by_name[name]["page_count"] == pages
        assert by_name[name]["pages_indexed"] == pages
        assert by_name[name]["status"] == "complete"
        assert by_name[name]["metadata"] == {"source": "shared"}
    assert [d["doc_name"] for d in docs] == sorted(by_name)  # by name
    window = json.loads(run_cli(cli_env, "docs", "--collection", "real", "--json", "--limit", "3",
                                "--offset", "2").stdout)
    assert window == docs[2:5]

    colls = json.loads(run_cli(cli_env, "collections", "--json").stdout)
    real = next(c for c in colls if c["name"] == "real")
    assert real["pages"] == sum(expected.values())
    assert real["documents"] == len(expected)


def test_search_json_returns_k_results(cli_env: dict[str, str], indexed_real: dict) -> None:
    for mode in ("two_stage", "exact"):
        proc = run_cli(cli_env, "search", "total amount due on the invoice", "--collection", "real", "-k", "5",
                       "--mode", mode, "--json")
        results = json.loads(proc.stdout)["results"]
        assert len(results) == 5
        assert [r["rank"] for r in results] == [1, 2, 3, 4, 5]
        scores = [r["score"] for r in results]
        assert scores == sorted(scores, reverse=True)
        for r in results:
            assert r["doc_name"].endswith(".pdf") and r["page_no"] >= 1 and r["doc_id"]
            assert Path(r["image_path"]).is_file()


def test_search_filters_by_document(cli_env: dict[str, str], indexed_real: dict) -> None:
    proc = run_cli(cli_env, "search", "results", "--collection", "real", "-k", "3",
                   "--doc-name", "paper_tam_review.pdf", "--json")
    results = json.loads(proc.stdout)["results"]
    assert len(results) == 3
    assert {r["doc_name"] for r in results} == {"paper_tam_review.pdf"}
@pytest.mark.extended


def test_reindex_adds_no_points(cli_env: dict[str, str], indexed_real: dict) -> None:
    before = json.loads(run_cli(cli_env, "collections", "--json").stdout)
    proc = run_cli(cli_env, "index", str(REAL_PDFS / "inv_aws_invoice_en.pdf"), str(REAL_PDFS / "paper_tam_review.pdf"),
                   "--collection", "real", "--json")
    report = json.loads(proc.stdout)
    assert report["documents_skipped"] == 2 and report["pages_indexed"] == 0
    forced = json.loads(run_cli(cli_env, "index", str(REAL_PDFS / "inv_aws_invoice_en.pdf"), "--collection", "real",
                                "--force", "--json").stdout)
    assert forced["pages_indexed"] == 1
    after = json.loads(run_cli(cli_env, "collections", "--json").stdout)
    assert [c["pages"] for c in after if c["name"] == "real"] == [c["pages"] for c in before if c["name"] == "real"]


def test_other_retriever_on_existing_collection_is_refused(cli_env: dict[str, str], indexed_real: dict,
                                                            tmp_path: Path) -> None:
    other = tmp_path / "other-retriever"
    shutil.copytree(cli_env["PAGELENS_RETRIEVER_MODEL"], other)
    env = dict(cli_env, PAGELENS_RETRIEVER_MODEL=str(other))
    proc = run_cli(env, "index", str(REAL_PDFS / "inv_aws_invoice_en.pdf"), "--collection", "real", check=False)
    assert proc.returncode == 2
    assert "collection 'real' was built with retriever model" in proc.stderr
    assert "PAGELENS_RETRIEVER_MODEL" in proc.stderr
    proc = run_cli(env, "search", "anything", "--collection", "real", check=False)
    assert proc.returncode == 2 and "was built with retriever model" in proc.stderr
@pytest.mark.extended


def test_hostile_files_fail_one_line_each_and_good_files_are_indexed(cli_env: dict[str, str]) -> None:
    hostile = sorted(HOSTILE_PDFS.glob("*.pdf"))
    good = [REAL_PDFS / "inv_aws_invoice_en.pdf", REAL_PDFS / "scan_huckfinn_page_en.pdf"]
    proc = run_cli(cli_env, "index", *map(str, hostile + good), "--collection", "mixed", "--json", check=False)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    by_path = {d["path"]: d for d in report["documents"]}
    for g in good:
        assert by_path[str(g)]["status"] == "indexed"
    failed = {d["path"] for d in report["documents"] if d["status"] in ("failed", "partial")}
    errors_by_file: dict[str, list[str]] = {}
    for e in report["errors"]:
        errors_by_file.setdefault(e["file"], []).append(e["error"])
    assert failed == set(errors_by_file)
    for path, messages in errors_by_file.items():
        for message in messages:
            assert Path(path).name in message, message
            assert "\n" not in message
    # every hostile file ends either indexed or reported
    for h in hostile:
        assert by_path[str(h)]["status"] in ("indexed", "failed", "partial")
    docs = json.loads(run_cli(cli_env, "docs", "--collection", "mixed", "--json").stdout)
    names = {d["doc_name"] for d in docs}
    assert {g.name for g in good} <= names
    # the human-readable run prints one line per failed file on stderr
    proc = run_cli(cli_env, "index", *map(str, hostile[:3]), "--collection", "mixed2", check=False)
    assert proc.returncode == 1
    failed_lines = [line for line in proc.stderr.splitlines() if line.startswith("failed:")]
    assert len(failed_lines) >= 1
@pytest.mark.extended


def test_delete_document_removes_it_from_search(cli_env: dict[str, str]) -> None:
    run_cli(cli_env, "index", str(REAL_PDFS / "inv_aws_invoice_en.pdf"), str(REAL_PDFS / "inv_oyo_hotel_receipt_in.pdf"),
            "--collection", "del")
    docs = json.loads(run_cli(cli_env, "docs", "--collection", "del", "--json").stdout)
    aws = next(d for d in docs if d["doc_name"] == "inv_aws_invoice_en.pdf")
    out = json.loads(run_cli(cli_env, "delete", "--collection", "del", "--doc", aws["doc_id"], "--json").stdout)
    assert out["pages_deleted"] == 1
    results = json.loads(run_cli(cli_env, "search", "invoice", "--collection", "del", "-k", "5", "--json").stdout)
    assert {r["doc_name"] for r in results["results"]} == {"inv_oyo_hotel_receipt_in.pdf"}
    proc = run_cli(cli_env, "delete", "--collection", "del", "--doc", aws["doc_id"], check=False)
    assert proc.returncode == 2 and "is not in collection 'del'" in proc.stderr


def test_unknown_collection_is_a_clear_error(cli_env: dict[str, str]) -> None:
    proc = run_cli(cli_env, "search", "x", "--collection", "nope", check=False)
    assert proc.returncode == 2
    assert "collection 'nope' does not exist" in proc.stderr


def test_ask_json_cites_exactly_the_retrieved_pages(cli_env: dict[str, str], indexed_real: dict) -> None:
    question = "What is the total amount due on the invoice?"
    search = json.loads(run_cli(cli_env, "search", question, "--collection", "real", "-k", "3", "--json").stdout)
    answer = json.loads(run_cli(cli_env, "ask", question, "--collection", "real", "-k", "3", "--json").stdout)
    retrieved = [(r["doc_id"], r["page_no"]) for r in search["results"]]
    cited = [(c["doc_id"], c["page_no"]) for c in answer["citations"]]
    assert cited == retrieved
    assert [c["score"] for c in answer["citations"]] == pytest.approx([r["score"] for r in search["results"]], rel=1e-4)
    assert answer["text"] and answer["generated_tokens"] >= 1 and answer["image_tokens"] > 0
    for key in ("retrieve_s", "prefill_s", "decode_s", "total_s"):
        assert answer["timings"][key] >= 0
    assert answer["timings"]["total_s"] > 0
    # the streamed terminal output carries the same greedy text, then the sources
    streamed = run_cli(cli_env, "ask", question, "--collection", "real", "-k", "3").stdout
    assert streamed.startswith(answer["text"])
    assert "Sources:" in streamed and f"{search['results'][0]['doc_name']}, page {search['results'][0]['page_no']}" in streamed
@pytest.mark.extended


def test_ask_errors_are_clear(cli_env: dict[str, str], indexed_real: dict, tmp_path: Path) -> None:
    proc = run_cli(cli_env, "ask", "anything", "--collection", "missing-coll", check=False)
    assert proc.returncode == 2 and "collection 'missing-coll' does not exist" in proc.stderr
    # a collection whose only document failed exists but holds no pages
    proc = run_cli(cli_env, "index", str(HOSTILE_PDFS / "h_empty_0_bytes.pdf"), "--collection", "empty", check=False)
    assert proc.returncode == 1
    proc = run_cli(cli_env, "ask", "anything", "--collection", "empty", check=False)
    assert proc.returncode == 2 and "holds no pages yet" in proc.stderr
    env = dict(cli_env, PAGELENS_ANSWER_MODEL=str(tmp_path / "no-such-model"))
    proc = run_cli(env, "ask", "anything", "--collection", "real", check=False)
    assert proc.returncode == 2
    assert "no-such-model" in proc.stderr and "PAGELENS_ANSWER_MODEL" in proc.stderr
