"""The Python library (``from pagelens import Pagelens``): the README's "Python" blocks run as written,
with the tiny models, and the facade's behaviour is checked on its own."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def _python_section_blocks() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def _invoice_pdf(path: Path, lines: list[str]) -> None:
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    for n, line in enumerate(lines):
        page.insert_text((72, 100 + 24 * n), line, fontsize=14)
    doc.save(path)


@pytest.fixture
def library_env(tmp_path: Path, tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with invoices/ (two invoices and one broken file) and the tiny models in the env."""
    folder = tmp_path / "work"
    (folder / "invoices").mkdir(parents=True)
    _invoice_pdf(folder / "invoices" / "acme-0042.pdf", ["ACME GmbH", "Invoice 0042", "Total amount due: 1,234.00 EUR"])
    _invoice_pdf(folder / "invoices" / "globex-7.pdf", ["Globex Corp", "Invoice 7", "Total amount due: 99.00 USD"])
    (folder / "invoices" / "broken.pdf").write_bytes(b"%PDF-1.7\n this is not a PDF body")
    monkeypatch.chdir(folder)
    for key, value in {
        "PAGELENS_RETRIEVER_MODEL": str(tiny_models["retriever"]),
        "PAGELENS_ANSWER_MODEL": str(tiny_models["answerer"]),
        "PAGELENS_PAGE_LONGEST_EDGE": "1024",
        "PAGELENS_ANSWER_LONGEST_EDGE": "512",
        "PAGELENS_DEVICE": "cpu",
        "PAGELENS_MAX_NEW_TOKENS": "8",
    }.items():
        monkeypatch.setenv(key, value)
    return folder


def test_readme_python_blocks_run(library_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pagelens import Pagelens

    blocks = _python_section_blocks()
    assert len(blocks) == 2
    exec(compile(blocks[0], "README.md:Python[1]", "exec"), {})
    printed = capsys.readouterr().out
    assert "2 pages;" in printed and "broken.pdf" in printed  # the bad file is reported, the others indexed
    with Pagelens("pagelens-data") as lens:
        docs = lens.documents("invoices")
        assert sorted(d.doc_name for d in docs) == ["acme-0042.pdf", "globex-7.pdf"]
        assert all(d.metadata == {"year": "2026"} and d.pages_indexed == d.page_count == 1 for d in docs)
    exec(compile(blocks[1], "README.md:Python[2]", "exec"), {})
    with Pagelens("pagelens-data") as lens:
        assert len(lens.documents("invoices")) == 1


def test_facade_search_filters_delete_and_settings(library_env: Path) -> None:
    from pagelens import Pagelens, PagelensError, SearchHit

    events: list[str] = []
    with Pagelens(library_env / "data", top_k=2) as lens:
        assert lens.settings.top_k == 2 and lens.settings.data_dir == library_env / "data"
        report = lens.index([Path("invoices/acme-0042.pdf"), "invoices/globex-7.pdf"], collection="c",
                            metadata={"vendor": "mixed"}, progress=lambda e, info: events.append(e))
        assert report.pages_indexed == 2 and not report.errors
        assert "page_done" in events
        hits = lens.search("total amount due", collection="c", mode="visual")
        assert len(hits) == 2 and all(isinstance(h, SearchHit) for h in hits)  # k defaults to top_k=2
        assert [h.rank for h in hits] == [1, 2]
        assert lens.search("total", collection="c", where={"vendor": "nobody"}) == []
        acme = next(d for d in lens.documents("c") if d.doc_name == "acme-0042.pdf")
        only = lens.search("total", collection="c", k=5, doc_ids=[acme.doc_id], mode="visual")
        assert [h.doc_name for h in only] == ["acme-0042.pdf"]
        assert [c.name for c in lens.collections()] == ["c"]
        assert lens.delete("c", doc_id=acme.doc_id) == 1
        assert lens.delete("c") == 1
        assert lens.collections() == []
        with pytest.raises(PagelensError, match="collection 'c'"):
            lens.documents("c")


def test_settings_and_keywords_are_exclusive(tmp_path: Path) -> None:
    from pagelens import Pagelens, PagelensError, Settings

    with pytest.raises(PagelensError, match="either settings"):
        Pagelens(tmp_path, settings=Settings(_env_file=None))  # type: ignore[call-arg]


def test_public_names_are_exported_and_documented() -> None:
    import pagelens

    assert set(pagelens.__all__) >= {"Pagelens", "Settings", "SearchHit", "Answer", "PagelensError"}
    for name in pagelens.__all__:
        obj: Any = getattr(pagelens, name)
        assert obj.__doc__, f"pagelens.{name} has no docstring"
    for method in ("index", "search", "ask", "ask_stream", "documents", "collections", "delete", "close"):
        assert getattr(pagelens.Pagelens, method).__doc__, method
    assert (REPO / "pagelens" / "py.typed").is_file()
