"""Hostile documents through the REST API: one upload job with every file of the hostile corpus; each
document ends indexed (or partial) or failed with a one-line error naming it. Plus the per-document
rendering time limit (``max_seconds_per_document``)."""

from __future__ import annotations

import pytest
from api_helpers import assert_error, upload, wait_job
from conftest import HOSTILE_PDFS, REAL_PDFS
from fastapi.testclient import TestClient
from pagelens.ingest.loader import open_document

from pagelens.core.errors import IngestError
from pagelens.server import create_app

TWO_PAGES = REAL_PDFS / "fr_demolition_minutes_2023.pdf"


@pytest.mark.slow
def test_every_hostile_file_through_one_upload(settings_factory) -> None:
    hostile = sorted(HOSTILE_PDFS.glob("*.pdf"))
    assert len(hostile) >= 20
    empty = [p for p in hostile if p.stat().st_size == 0]
    files = [p for p in hostile if p.stat().st_size > 0]
    settings = settings_factory(page_longest_edge=256, max_seconds_per_document=60,
                                max_files_per_request=64, job_keep_uploads=False)
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/collections", json={"name": "h"}).status_code == 201
        for path in empty:  # an empty file is refused at upload, by name
            err = assert_error(upload(client, "h", [path]), 415, "unsupported_file")
            assert path.name in err["message"] and "\n" not in err["message"]
        r = upload(client, "h", files)
        assert r.status_code == 202, r.text
        job = wait_job(client, r.json()["id"], timeout=600)
        assert job["status"] == "done", job
        assert [d["name"] for d in job["documents"]] == [p.name for p in files]
        outcome: dict[str, int] = {}
        for doc in job["documents"]:
            outcome[doc["status"]] = outcome.get(doc["status"], 0) + 1
            assert doc["status"] in ("indexed", "partial", "failed"), doc
            if doc["status"] != "indexed":
                assert doc["errors"], doc
                for err in doc["errors"]:
                    assert doc["name"] in err["error"] and "\n" not in err["error"], err
                    assert str(settings.data_dir) not in err["error"], err  # no server paths
        pages = client.get("/v1/collections/h").json()["pages"]
        assert pages == sum(d["pages_done"] for d in job["documents"])
        print(f"hostile corpus via API: {len(files)} files in one job -> {outcome}; {len(empty)} refused at "
              f"upload; {pages} pages indexed")


def test_encrypted_with_password_setting(settings_factory) -> None:
    enc = HOSTILE_PDFS / "h_enc_rc4_40_pw_foo.pdf"
    with pytest.raises(IngestError, match=enc.name):
        list(open_document(enc, settings_factory()).pages())
    doc = open_document(enc, settings_factory(pdf_password="foo", page_longest_edge=128))
    assert len(list(doc.pages())) == doc.page_count


def test_time_limit_per_document(settings_factory) -> None:
    settings = settings_factory(page_longest_edge=128, max_seconds_per_document=1e-9)
    doc = open_document(TWO_PAGES, settings)
    with pytest.raises(IngestError) as info:
        list(doc.pages())
    assert TWO_PAGES.name in str(info.value) and "limit of 1e-09 s per document" in str(info.value)
    assert "PAGELENS_MAX_SECONDS_PER_DOCUMENT" in str(info.value)
    unlimited = open_document(TWO_PAGES, settings_factory(page_longest_edge=128, max_seconds_per_document=0))
    assert len(list(unlimited.pages())) == 2


@pytest.mark.slow
def test_time_limit_through_the_api(settings_factory) -> None:
    settings = settings_factory(page_longest_edge=128, max_seconds_per_document=1e-9)
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/collections", json={"name": "t"}).status_code == 201
        job = wait_job(client, upload(client, "t", [TWO_PAGES]).json()["id"])
        (doc,) = job["documents"]
        assert doc["status"] in ("partial", "failed"), doc
        assert any(TWO_PAGES.name in e["error"] and "per document" in e["error"] for e in doc["errors"]), doc
        assert client.get("/v1/collections/t").json()["pages"] == doc["pages_done"] < 2




@pytest.mark.slow
def test_hostile_corpus_with_subprocess_rasterizer(settings_factory) -> None:
    """``PAGELENS_RASTERIZER=poppler`` renders every page in a pdftoppm subprocess under a time and
    memory cap: every hostile file ends as pages (+ page errors naming file and page) or an IngestError."""
    import shutil
    import time

    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) is not installed")
    settings = settings_factory(rasterizer="poppler", page_longest_edge=128)
    outcome: dict[str, int] = {}
    for path in sorted(HOSTILE_PDFS.glob("*.pdf")):
        start = time.monotonic()
        try:
            doc = open_document(path, settings)
            pages = list(doc.pages())
            assert len(pages) + len(doc.page_errors) == doc.page_count
            for err in doc.page_errors:
                assert path.name in str(err) and err.page is not None
            key = "pages" if not doc.page_errors else "page errors"
        except IngestError as exc:
            assert path.name in str(exc) and "\n" not in str(exc)
            key = "IngestError"
        outcome[key] = outcome.get(key, 0) + 1
        assert time.monotonic() - start < 90, path.name
    print(f"hostile corpus, poppler subprocess rasterizer: {outcome}")


def test_subprocess_rasterizer_kill_is_reported(settings_factory, monkeypatch) -> None:
    """A pdftoppm that runs past its limit is killed; the page is reported by file and page."""
    import shutil

    import pagelens.ingest.pdf

    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) is not installed")
    monkeypatch.setattr(pagelens.ingest.pdf, "POPPLER_TIMEOUT_S", 0.0001)
    doc = open_document(TWO_PAGES, settings_factory(rasterizer="poppler", page_longest_edge=128))
    pages = list(doc.pages())
    assert len(pages) + len(doc.page_errors) == 2
    assert doc.page_errors, "pdftoppm finished within 0.1 ms?"
    for err in doc.page_errors:
        assert TWO_PAGES.name in str(err) and "pdftoppm took longer than" in str(err), err
