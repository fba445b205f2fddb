"""Regions everywhere (issue 27): the Python API, the REST API (search, ask, streamed ask, the page image's
``highlight``), the MCP tools and ``pagelens search/ask --json`` return the same regions for the same hit;
old collections (pages indexed before word boxes) keep working without text regions."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from api_helpers import parse_sse
from fastapi.testclient import TestClient
from PIL import Image

from pagelens.app.access import OPEN
from pagelens.app.library import Pagelens
from pagelens.app.service import PagelensService
from pagelens.core.settings import Settings
from pagelens.mcp.tools import PagelensTools
from pagelens.server import create_app

pytestmark = pytest.mark.slow

QUESTION = "invoice total amount"


def _pdf(path: Path) -> None:
    import pymupdf

    doc = pymupdf.open()
    for lines in (["ACME GmbH", "Invoice 0042", "Total amount due: 1,234.00 EUR"],
                  ["Globex Corp", "Quarterly report", "Revenue grew 12 percent in total"]):
        page = doc.new_page(width=595, height=842)
        for n, line in enumerate(lines):
            page.insert_text((72, 100 + 30 * n), line, fontsize=16)
    doc.save(path)


def _settings(data: Path, tiny_models: dict[str, Path], **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data, "retriever_model": str(tiny_models["retriever"]),
        "answer_model": str(tiny_models["answerer"]), "page_longest_edge": 1024, "answer_longest_edge": 512,
        "device": "cpu", "max_new_tokens": 4, "ingest_workers": 0, "relevance_threshold": 0.0,
        "relevance_threshold_text": 0.0, "retrieval_mode": "hybrid",
    }
    values.update(extra)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]) -> tuple[Path, list[dict]]:
    """A data dir with collection ``inv`` (one two-page PDF) and the Python API's hits for QUESTION."""
    root = tmp_path_factory.mktemp("regions")
    _pdf(root / "acme.pdf")
    with Pagelens(settings=_settings(root / "data", tiny_models)) as lens:
        report = lens.index(root / "acme.pdf", collection="inv")
        assert report.pages_indexed == 2, report
        hits = lens.search(QUESTION, collection="inv", k=2, mode="hybrid")
    return root / "data", [{"doc_id": h.doc_id, "page_no": h.page_no, "regions": h.regions} for h in hits]


def _by_page(items: list[dict]) -> dict[tuple[str, int], list[dict]]:
    return {(i["doc_id"], int(i["page_no"])): i["regions"] for i in items}


def test_python_hits_carry_text_and_visual_regions(indexed: tuple[Path, list[dict]]) -> None:
    _, hits = indexed
    first = next(h for h in hits if h["page_no"] == 1)
    text = [r for r in first["regions"] if r["source"] == "text"]
    assert {r["text"] for r in text} == {"Invoice", "Total amount"}  # neighbours on a line: one region
    assert all(set(r) == {"x0", "y0", "x1", "y1", "source", "score", "text"} for r in text)
    # the tiny random model's maxima fall on patches of some pages, on prompt tokens for others
    visual = [r for h in hits for r in h["regions"] if r["source"] == "visual"]
    assert visual and all(set(r) == {"x0", "y0", "x1", "y1", "source", "score"} for r in visual)
    for r in first["regions"]:
        assert 0 <= r["x0"] <= r["x1"] <= 1 and 0 <= r["y0"] <= r["y1"] <= 1
    assert len(first["regions"]) <= 8
    # "Invoice 0042" is written at x 72 pt on the baseline y 130 pt (16 pt type) of a 595 x 842 pt page
    invoice = next(r for r in text if r["text"] == "Invoice")
    assert invoice["x0"] == pytest.approx(72 / 595, abs=0.01) and 0.12 < invoice["y0"] < 130 / 842 < invoice["y1"] < 0.17


def test_rest_mcp_and_cli_return_the_same_regions(indexed: tuple[Path, list[dict]], tiny_models: dict[str, Path],
                                                   tmp_path: Path) -> None:
    data, hits = indexed
    expected = _by_page(hits)
    settings = _settings(data, tiny_models)
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/collections/inv/search", json={"question": QUESTION, "k": 2, "mode": "hybrid"})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert _by_page(results) == expected
        # the ask citations carry the regions of the hits they cite (JSON and the streamed done event)
        r = client.post("/v1/collections/inv/ask", json={"question": QUESTION, "k": 2, "mode": "hybrid"})
        assert r.status_code == 200, r.text
        citations = r.json()["citations"]
        assert citations and all(_by_page([c])[(c["doc_id"], c["page_no"])] == expected[(c["doc_id"], c["page_no"])]
                                 for c in citations)
        r = client.post("/v1/collections/inv/ask", json={"question": QUESTION, "k": 2, "mode": "hybrid",
                                                         "stream": True})
        done = [d for e, d in parse_sse(r.text) if e == "done"][0]
        assert _by_page(done["citations"]) == _by_page(citations)
        # the page image with its regions drawn server-side
        hit = results[0]
        assert hit["highlight_url"].startswith(hit["image_url"] + "?highlight=")
        plain = np.asarray(Image.open(io.BytesIO(client.get(hit["image_url"]).content)).convert("RGB")).astype(int)
        r = client.get(hit["highlight_url"])
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        drawn = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)
        assert drawn.shape == plain.shape
        height, width = plain.shape[:2]
        for region in hit["regions"]:
            x, y = int((region["x0"] + region["x1"]) / 2 * width), int((region["y0"] + region["y1"]) / 2 * height)
            assert np.abs(drawn[y, x] - plain[y, x]).sum() > 0, region  # tinted
        assert np.array_equal(drawn[height - 2, 1], plain[height - 2, 1])  # untouched outside
        bad = client.get(hit["image_url"] + "?highlight=t:0.5,0.5,2,1")
        assert bad.status_code == 400 and "page fractions" in bad.json()["error"]["message"]

    service = PagelensService(settings)
    try:
        tools = PagelensTools(service, local_files=True)
        result = tools.call(OPEN, "search_pages", {"query": QUESTION, "k": 2, "mode": "hybrid"})
        assert not result.is_error
        assert _by_page(result.structured_content["results"]) == expected
        assert "where: " in result.content[1].text
        answer = tools.call(OPEN, "ask", {"question": QUESTION, "k": 2, "mode": "hybrid"})
        assert all(_by_page([c])[(c["doc_id"], c["page_no"])] == expected[(c["doc_id"], c["page_no"])]
                   for c in answer.structured_content["citations"])
    finally:
        service.close()

    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGELENS_")}
    env.update(PAGELENS_DATA_DIR=str(data), PAGELENS_RETRIEVER_MODEL=str(tiny_models["retriever"]),
               PAGELENS_ANSWER_MODEL=str(tiny_models["answerer"]), PAGELENS_PAGE_LONGEST_EDGE="1024",
               PAGELENS_DEVICE="cpu", PAGELENS_OCR="off", HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "pagelens.cli", "search", QUESTION, "-c", "inv", "-k", "2",
                           "--mode", "hybrid", "--json"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert _by_page(json.loads(proc.stdout)["results"]) == expected


def test_old_pages_without_word_boxes_keep_working(indexed: tuple[Path, list[dict]], tiny_models: dict[str, Path],
                                                   tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Pages indexed before word boxes (no ``words`` in the payload): no text regions, one warning with the
    fix; visual regions still come."""
    import shutil

    data = tmp_path / "old"
    shutil.copytree(indexed[0], data)
    service = PagelensService(_settings(data, tiny_models))
    try:
        from pagelens.retrieve import retriever

        retriever._WARNED_NO_BOXES.discard("inv")
        service.store.set_payload("inv", indexed[1][0]["doc_id"], {"words": None})  # as before word boxes
        with caplog.at_level("WARNING"):
            for _ in range(2):
                hits = service.search("inv", QUESTION, k=2, mode="hybrid")
        assert hits and all(r["source"] == "visual" for h in hits for r in h.regions)
        assert any(h.regions for h in hits)
        warnings = [r.getMessage() for r in caplog.records if "before word boxes" in r.getMessage()]
        assert len(warnings) == 1 and "--reindex" in warnings[0]
    finally:
        service.close()
