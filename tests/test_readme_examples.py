"""The README's example output is real and stays so (issue 19.2).

``scripts/readme_examples.py`` runs every command of the README's example blocks on a generated corpus
with the tiny models and rewrites the blocks. Here: the committed blocks hold exactly the script's
commands and its shape check catches drift (fast), and a fresh run has the shape of the committed
README: commands, table columns, JSON keys, messages, exit codes (slow: it runs the CLI and a server).
Nothing here reads the shared PDFs: the corpus is generated."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def load_script() -> ModuleType:
    if "readme_examples" in sys.modules:
        return sys.modules["readme_examples"]
    spec = importlib.util.spec_from_file_location("readme_examples", REPO / "scripts" / "readme_examples.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["readme_examples"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rex() -> ModuleType:
    return load_script()


@pytest.fixture(scope="module")
def documented(rex: ModuleType) -> dict[str, str]:
    return rex.read_blocks(README.read_text(encoding="utf-8"))


def test_every_block_holds_the_scripts_commands(rex: ModuleType, documented: dict[str, str]) -> None:
    assert set(documented) == set(rex.STEPS)
    for name, steps in rex.STEPS.items():
        commands = [cmd for cmd, _ in rex.split_commands(documented[name]) if cmd != "echo $?"]
        assert [rex._mask(c) for c in commands] == [rex._mask(s.shown) for s in steps], name
        # a command expected to fail shows its exit code right after it
        pairs = rex.split_commands(documented[name])
        for step in steps:
            if step.exit:
                at = next(i for i, (cmd, _) in enumerate(pairs) if rex._mask(cmd) == rex._mask(step.shown))
                assert pairs[at + 1] == ("echo $?", str(step.exit)), (name, step.shown)
    assert "(placeholder)" not in README.read_text(encoding="utf-8")


def test_documented_outputs_say_which_score(rex: ModuleType, documented: dict[str, str]) -> None:
    """The committed output itself: hybrid scores are named rrf and bounded, visual ones maxsim."""
    pairs = dict(rex.split_commands(documented["cli-search"]))
    hybrid_json = json.loads(pairs['pagelens search "total amount due" --collection invoices -k 1 --json'])
    for hit in hybrid_json["results"]:
        assert hit["score_kind"] == "rrf" and 0 < hit["score"] <= 2 / 3 + 1e-9
        assert isinstance(hit["visual_score"], float) and isinstance(hit["text_score"], float)
    table = pairs['pagelens search "total amount due" --collection invoices -k 3']
    assert "score (rrf)" in table and "score = rrf:" in table
    assert "score (maxsim)" in pairs['pagelens search "total amount due" --collection invoices -k 3 --mode visual']
    api = rex.split_commands(documented["api"])
    search = next(out for cmd, out in api if cmd.endswith("""'{"question":"total amount due","k":2}'"""))
    results = json.loads(search.rpartition("\nHTTP ")[0])["results"]
    assert results and all(r["score_kind"] == "rrf" and r["visual_score"] is not None for r in results)
    text = README.read_text(encoding="utf-8")
    for stale in ("2.586", "3.151", "1.419", "2.933", "2.578"):  # figures the defaults cannot produce
        assert stale not in text


def _drifted(rex: ModuleType, name: str, block: str, changed: str) -> bool:
    return rex.shape(block, rex.STEPS[name]) != rex.shape(changed, rex.STEPS[name])


def test_shape_check_catches_drift(rex: ModuleType, documented: dict[str, str]) -> None:
    search = documented["cli-search"]
    assert rex.shape(search, rex.STEPS["cli-search"]) == rex.shape(search, rex.STEPS["cli-search"])
    # values may change from run to run: scores, times, ids
    assert not _drifted(rex, "cli-search", search, search.replace("0.667", "0.512").replace("1/2", "2/2"))
    assert not _drifted(rex, "cli-docs", documented["cli-docs"],
                        documented["cli-docs"].replace("2026-12-01T", "2027-01-31T"))
    # ... the shape may not: a renamed JSON key, a column, a message, an exit code, an HTTP status
    assert _drifted(rex, "cli-search", search, search.replace('"score_kind"', '"kind"'))
    assert _drifted(rex, "cli-search", search, search.replace("┃ BM25", "┃ text"))
    assert _drifted(rex, "cli-errors", documented["cli-errors"],
                    documented["cli-errors"].replace("does not exist", "is missing"))
    assert _drifted(rex, "cli-index", documented["cli-index"],
                    documented["cli-index"].replace("$ echo $?\n1", "$ echo $?\n0"))
    assert _drifted(rex, "api", documented["api"], documented["api"].replace("HTTP 403", "HTTP 401"))
    assert _drifted(rex, "api", documented["api"], documented["api"].replace("event: done", "event: end"))


# Development tools whose default data folder lies beside the checkout (each overridable by a setting).
OUTSIDE_DEFAULTS = {
    "Makefile": "DOCS ?= ../shared/pdfs/real",
    "scripts/gpu_pack.sh": "SHARED=${PAGELENS_SHARED_DIR:-../shared}",
}


# What no file outside tests/ may name: the shared folder beside the checkout and the original design
# sketch in it (its name spelled in parts, so that this guard is not itself a reference to it).
OUTSIDE_NAMES = ("../shared", "DESIGN" + ".md")


def test_nothing_outside_the_tests_refers_to_files_outside_the_repo() -> None:
    import subprocess

    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    offenders = []
    for name in files:
        if name.startswith("tests/") or not name.endswith((".py", ".md", ".sh", ".toml", ".yml", ".cfg", "Makefile",
                                                            "Dockerfile", ".txt")):
            continue
        text = (REPO / name).read_text(encoding="utf-8", errors="replace")
        allowed = OUTSIDE_DEFAULTS.get(name, "\0")
        for i, line in enumerate(text.splitlines(), start=1):
            if any(outside in line for outside in OUTSIDE_NAMES) and allowed not in line:
                offenders.append(f"{name}:{i}: {line.strip()}")
    assert not offenders, "references to files outside the repository:\n" + "\n".join(offenders)


def test_headline_figures_say_what_they_were_measured_on() -> None:
    """README's performance table: every row names its data/weights; the section names device and date.
    bench/README: outside figures (H100) only in their quoted section, with source and date."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Performance"):text.index("## Tests")]
    assert "AMD EPYC, 2 cores" in section and "2026-12-01" in section and "no GPU" in section
    rows = [ln for ln in section.splitlines() if ln.startswith("| ") and not ln.startswith("| ---")]
    header, body = rows[0], rows[1:]
    assert header.rstrip(" |").endswith("measured on") and len(body) >= 8
    for row in body:
        measured_on = row.strip().strip("|").split("|")[-1].strip()
        assert measured_on and any(w in measured_on for w in ("synthetic", "random weights", "real PDF", "as above")), row
    bench = (REPO / "bench" / "README.md").read_text(encoding="utf-8")
    outside = bench.index("## Figures from outside this repository")
    assert "2026-11-22" in bench[outside:]
    for anchor in ("H100", "62-64 pages/s", "18.5 tokens/s"):
        assert anchor in bench[outside:]
    assert "H100" not in text  # README: no outside figure stated as fact
    for path in ("pagelens/core/settings.py", "answer/fast_decode.py", "bench/ingest.py"):
        code = (REPO / path).read_text(encoding="utf-8")
        assert "62-64" not in code and "18.5 tokens/s" not in code, path


@pytest.mark.slow
def test_a_fresh_run_has_the_documented_shape(rex: ModuleType, tiny_models: dict[str, Path], tmp_path: Path) -> None:
    blocks = rex.generate(tmp_path / "work", tiny_models["retriever"].parent)
    problems = rex.check(README.read_text(encoding="utf-8"), blocks)
    assert not problems, "\n".join(problems) + (
        "\nIf the change is intended: python scripts/readme_examples.py --tiny-models DIR")
    # the fresh hybrid hits: fused, bounded, both inputs computed
    fresh: Any = json.loads(dict(rex.split_commands(blocks["cli-search"]))[
        'pagelens search "total amount due" --collection invoices -k 1 --json'])
    hit = fresh["results"][0]
    assert hit["score_kind"] == "rrf" and hit["score"] <= 2 / 3 + 1e-9
    assert hit["visual_score"] > 0 and hit["text_score"] > 0  # "total amount due" is on every invoice
