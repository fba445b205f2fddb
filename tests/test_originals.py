"""Issue 28.4: a document's original file can be downloaded, by REST and from the UI's Documents table, by a
key that may read its collection (and only such a key). The server keeps one copy per distinct content
(``index/stores/originals.py``), removed with the last document that has it; a document without one says
so and how to get one (index the file again)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from conftest import REPO
from pagelens.index.stores.originals import OriginalStore, media_type
from test_ui_browser import AWS, browser_page, seed_collections, serve  # noqa: F401  (browser_page: a fixture)

KEYS = "adm-key:admin;a-key:r:alpha;b-key:rw:beta"
ARTIFACTS = REPO / "test-artifacts" / "originals"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_store_keeps_one_copy_per_content_and_refuses_changed_files(tmp_path: Path) -> None:
    store = OriginalStore(tmp_path / "originals")
    data = b"%PDF-1.4 not really a pdf but bytes\n" * 100
    a, b = tmp_path / "a.pdf", tmp_path / "copy of a.pdf"
    a.write_bytes(data)
    b.write_bytes(data)
    sha = _sha(data)
    kept = store.keep(a, sha, "pdf")
    assert kept == tmp_path / "originals" / sha[:2] / f"{sha}.pdf" and kept.read_bytes() == data
    assert store.keep(b, sha, "pdf") == kept  # the same bytes under another name: the same copy
    assert sorted(p.name for p in (tmp_path / "originals").rglob("*")) == [sha[:2], f"{sha}.pdf"]
    assert store.find(sha) == kept and media_type(kept) == "application/pdf"
    # bytes that are no longer those of the sha256 the document was opened with: not kept, nothing left
    other = tmp_path / "changed.png"
    other.write_bytes(b"changed after it was opened")
    assert store.keep(other, "ab" * 32, "png") is None
    assert store.find("ab" * 32) is None and not list((tmp_path / "originals" / "ab").glob("*"))
    assert store.find("../../etc/passwd") is None and store.find("") is None
    assert store.discard(sha) is True and store.find(sha) is None and not kept.exists()
    assert store.discard(sha) is False
    assert media_type(Path("x.docx")).endswith("wordprocessingml.document")
    assert media_type(Path("x.png")) == "image/png" and media_type(Path("x.bin")) == "application/octet-stream"


def _wait(url: str, job: str) -> dict:
    import time

    import httpx

    deadline = time.monotonic() + 240
    while True:
        got = httpx.get(f"{url}/v1/jobs/{job}", headers={"Authorization": "Bearer adm-key"}, timeout=30).json()
        if got["status"] not in ("queued", "running"):
            return got
        assert time.monotonic() < deadline, got
        time.sleep(0.2)


def _upload(url: str, collection: str, key: str = "adm-key") -> dict:
    import httpx

    r = httpx.post(f"{url}/v1/collections/{collection}/documents", headers={"Authorization": f"Bearer {key}"},
                   files=[("files", (AWS.name, AWS.read_bytes(), "application/pdf"))], timeout=60)
    assert r.status_code == 202, r.text
    return _wait(url, r.json()["id"])


@pytest.mark.slow
def test_download_the_original_through_a_real_server(settings_factory) -> None:  # noqa: ANN001
    """REST and the UI's route, through the real server: the file's bytes, type and name for a key that may
    read the collection; 403 for a key scoped to another collection, 401 without one, 404 for another
    collection's document; one copy for two collections; "not kept" says to index again, and doing so
    brings it back; the copy goes with the last document that has it."""
    import httpx

    settings = settings_factory(api_keys=KEYS, max_new_tokens=4)
    seed_collections(settings, "alpha", "beta")
    data = AWS.read_bytes()
    sha = _sha(data)
    doc_id = sha[:16]
    kept = settings.data_dir / "originals" / sha[:2] / f"{sha}.pdf"
    with serve(settings) as url:
        assert _upload(url, "alpha")["status"] == "done"
        assert kept.read_bytes() == data  # kept while indexing (the upload itself is removed after the job)
        rest = f"{url}/v1/collections/alpha/documents/{doc_id}/original"
        ui = f"{url}/ui/original/alpha/{doc_id}"
        for target in (rest, ui):
            for key, status in (("a-key", 200), ("adm-key", 200), ("b-key", 403), (None, 401)):
                got = httpx.get(target, headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=30)
                assert got.status_code == status, (target, key, got.status_code, got.text[:200])
                if status == 200:
                    assert got.content == data
                    assert got.headers["content-type"] == "application/pdf"
                    assert got.headers["content-disposition"] == f'attachment; filename="{AWS.name}"'
                    assert got.headers["x-content-type-options"] == "nosniff"
                else:
                    assert b"%PDF" not in got.content
                    assert got.json()["error"]["code"] in ("forbidden", "unauthorized")
        # a browser without a session (expired, signed out) gets the sign-in page, not the file
        got = httpx.get(ui, headers={"Accept": "text/html"}, timeout=30)
        assert got.status_code == 401 and 'id="pl-key"' in got.text and b"%PDF" not in got.content
        # a key that may read beta asks for alpha's document through beta: not there
        got = httpx.get(f"{url}/v1/collections/beta/documents/{doc_id}/original",
                        headers={"Authorization": "Bearer b-key"}, timeout=30)
        assert got.status_code == 404 and got.json()["error"]["code"] == "document_not_found"
        for bad in ("..%2F..%2Fregistry.sqlite3", "0123456789abcdef"):
            got = httpx.get(f"{url}/v1/collections/alpha/documents/{bad}/original",
                            headers={"Authorization": "Bearer adm-key"}, timeout=30)
            assert got.status_code in (404, 422) and b"SQLite" not in got.content, (bad, got.status_code)
        # the same bytes in beta: one copy
        assert _upload(url, "beta", "b-key")["status"] == "done"
        assert [p.name for p in (settings.data_dir / "originals").rglob("*.pdf")] == [kept.name]
        # deleting alpha's document keeps the copy beta still has
        r = httpx.delete(f"{url}/v1/collections/alpha/documents/{doc_id}", headers={"Authorization": "Bearer adm-key"})
        assert r.status_code == 200 and kept.exists()
        beta = f"{url}/v1/collections/beta/documents/{doc_id}/original"
        assert httpx.get(beta, headers={"Authorization": "Bearer b-key"}, timeout=30).content == data
        # a document whose original is not kept (indexed before, or with PAGELENS_KEEP_ORIGINALS off)
        kept.unlink()
        got = httpx.get(beta, headers={"Authorization": "Bearer b-key"}, timeout=30)
        assert got.status_code == 404 and got.json()["error"]["code"] == "original_not_kept"
        assert "index the file again" in got.json()["error"]["message"], got.text
        assert AWS.name in got.json()["error"]["message"]
        # ... indexing the file again (same bytes: nothing re-embedded) keeps it
        again = _upload(url, "beta", "b-key")
        assert again["status"] == "done" and kept.read_bytes() == data
        assert httpx.get(beta, headers={"Authorization": "Bearer b-key"}, timeout=30).content == data
        r = httpx.delete(f"{url}/v1/collections/beta/documents/{doc_id}", headers={"Authorization": "Bearer b-key"})
        assert r.status_code == 200
        assert not kept.exists()  # the last document with that content is gone: so is its copy


@pytest.mark.slow
def test_keep_originals_off_keeps_none_and_says_so(settings_factory) -> None:  # noqa: ANN001
    import httpx

    settings = settings_factory(api_keys=KEYS, keep_originals=False)
    seed_collections(settings, "alpha")
    with serve(settings) as url:
        assert _upload(url, "alpha")["status"] == "done"
        got = httpx.get(f"{url}/v1/collections/alpha/documents/{_sha(AWS.read_bytes())[:16]}/original",
                        headers={"Authorization": "Bearer a-key"}, timeout=30)
    assert got.status_code == 404 and got.json()["error"]["code"] == "original_not_kept"
    assert "PAGELENS_KEEP_ORIGINALS is off" in got.json()["error"]["message"]
    assert not list((settings.data_dir / "originals").rglob("*.pdf"))


@pytest.mark.browser
@pytest.mark.slow
def test_documents_table_downloads_the_original_and_collections_row_is_marked(browser_page,  # noqa: ANN001, F811
                                                                             settings_factory) -> None:  # noqa: ANN001
    """In a real browser: the Documents table shows names (no raw ids) and a Download link that saves the
    original under its name, refused to a key scoped elsewhere even with the exact URL; on the
    Collections tab the clicked row is visibly marked, and only it."""
    import httpx
    from playwright.sync_api import expect
    from test_ui_browser import _sign_in

    settings = settings_factory(api_keys=KEYS, max_new_tokens=4)
    seed_collections(settings, "alpha", "beta")
    page = browser_page
    doc_id = _sha(AWS.read_bytes())[:16]
    with serve(settings) as url:
        assert _upload(url, "alpha")["status"] == "done"
        page.goto(f"{url}/ui/")
        _sign_in(page, "adm-key")
        expect(page.locator("#pl-collection input")).to_have_value("alpha")
        page.get_by_role("tab", name="Documents").click()
        table = page.locator("#pl-docs-table")
        expect(table).to_contain_text(AWS.name)
        assert doc_id not in table.inner_text()  # the id only in the name's tooltip
        assert table.locator("td.pl-file").first.get_attribute("title") == f"Document ID: {doc_id}"
        link = table.locator("a.pl-download")
        expect(link).to_have_count(1)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "documents_download.png"), full_page=True)
        with page.expect_download() as info:
            link.click()
        download = info.value
        assert download.suggested_filename == AWS.name
        assert Path(download.path()).read_bytes() == AWS.read_bytes()
        href = link.evaluate("a => a.href")
        assert href == f"{url}/ui/original/alpha/{doc_id}"
        assert httpx.get(href, headers={"Authorization": "Bearer b-key"}, timeout=30).status_code == 403

        page.get_by_role("tab", name="Collections").click()
        coll = page.locator("#pl-collections")
        expect(coll).to_contain_text("beta")
        marked = coll.locator(".pl-row-selected")
        expect(marked).to_have_count(0)  # nothing selected yet: nothing marked
        for name in ("beta", "alpha"):
            coll.get_by_role("gridcell", name=name, exact=True).click()
            expect(page.locator("#pl-coll-selected")).to_contain_text(f"Selected: {name}")
            expect(marked).to_have_count(1)
            expect(marked.locator("[role=gridcell]").first).to_have_text(name)
            colour = marked.locator("[role=gridcell]").nth(1).evaluate("e => getComputedStyle(e).backgroundColor")
            other = coll.locator("[role=row]:not(.pl-row-selected) [role=gridcell]").nth(1).evaluate(
                "e => getComputedStyle(e).backgroundColor")
            assert colour != other, (colour, other)  # visibly marked
        page.get_by_role("tab", name="Documents").click()
        page.get_by_role("tab", name="Collections").click()
        expect(marked).to_have_count(1)  # still marked after the tab was redrawn
        expect(marked.locator("[role=gridcell]").first).to_have_text("alpha")
        page.screenshot(path=str(ARTIFACTS / "collections_selected_row.png"), full_page=True)
        page.goto("about:blank")


@pytest.mark.slow
def test_the_service_keeps_originals_of_files_indexed_by_path_and_drops_them_with_the_collection(
        settings_factory, tmp_path: Path) -> None:  # noqa: ANN001
    """What the CLI does (``pagelens index -c C FILE``): the file indexed by its path is kept; deleting the
    collection removes the copy unless another collection still has the document."""
    from pagelens.index.pipeline.indexer import IndexInput

    from pagelens.app.service import PagelensService
    from pagelens.core.errors import DocumentNotFoundError

    local = tmp_path / "renamed invoice.pdf"
    local.write_bytes(AWS.read_bytes())
    sha = _sha(local.read_bytes())
    service = PagelensService(settings_factory())
    try:
        for name in ("one", "two"):
            report = service.index(name, [IndexInput(local)])
            assert report.ok and report.documents[0].status == "indexed", report.to_dict()
        found = service.original("one", sha[:16])
        assert found.filename == "renamed invoice.pdf" and found.media_type == "application/pdf"
        assert found.path.read_bytes() == local.read_bytes() and found.path.parent.parent == service.originals.root
        with pytest.raises(DocumentNotFoundError):
            service.original("one", "0" * 16)
        service.delete_collection("one")
        assert found.path.exists()  # "two" still has it
        service.delete_collection("two")
        assert not found.path.exists()
    finally:
        service.close()
