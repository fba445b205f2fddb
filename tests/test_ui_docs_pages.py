"""The Documents table at many documents (issues 18 and 19.4), in a real browser against the real server:
one page of ``DOCS_PAGE`` documents at a time with Previous / Next and a line saying which ones, and an
idle tab's poll that reads no listing until something changed."""

from __future__ import annotations

import time

import pytest
from test_store_contract import MANIFEST, make_points
from test_ui_browser import AWS, browser_page, serve  # noqa: F401  (browser_page: a fixture)
from test_ui_day import _api_upload, _shots

pytestmark = [pytest.mark.browser, pytest.mark.slow]
@pytest.mark.extended


def test_documents_table_pages_and_idle_polls_read_no_listing(browser_page, settings_factory,  # noqa: ANN001, F811
                                                              monkeypatch) -> None:
    from pagelens.ui.state import POLL_S
    from playwright.sync_api import expect

    from pagelens.app.service import PagelensService

    settings = settings_factory()
    service = PagelensService(settings)
    service.indexer.ensure_collection(MANIFEST.name)  # the configured (tiny) model's manifest: uploads work
    assert service.store.get_manifest(MANIFEST.name).dim == MANIFEST.dim
    service.store.upsert(MANIFEST.name, make_points(n_docs=120, pages=1))
    service.close()
    listings: list[int] = []  # the server runs in this process: count the documents listings it reads
    original = PagelensService.documents

    def counted(self, collection, offset=0, limit=None):  # noqa: ANN001, ANN202
        listings.append(offset)
        return original(self, collection, offset=offset, limit=limit)

    monkeypatch.setattr(PagelensService, "documents", counted)
    page = browser_page
    with serve(settings) as url:
        page.goto(f"{url}/ui/?collection={MANIFEST.name}")
        page.get_by_role("tab", name="Documents").click()
        shown = page.locator("#pl-docs-range")
        expect(shown).to_have_text("Documents 1–50 of 120, by name")
        assert page.locator("#pl-docs-table tbody tr").count() == 50
        first = sorted(f"report-{d}.pdf" for d in range(120))  # by name: report-0, report-1, report-10, ...
        expect(page.locator("#pl-docs-table tbody tr").first).to_contain_text(first[0])
        expect(page.locator("#pl-docs-prev")).to_be_disabled()
        page.locator("#pl-docs-next").click()
        expect(shown).to_have_text("Documents 51–100 of 120, by name")
        expect(page.locator("#pl-docs-table tbody tr").first).to_contain_text(first[50])
        page.locator("#pl-docs-next").click()
        expect(shown).to_have_text("Documents 101–120 of 120, by name")
        assert page.locator("#pl-docs-table tbody tr").count() == 20
        expect(page.locator("#pl-docs-next")).to_be_disabled()
        _shots(page, "docs_pages_last")

        # an idle tab: its polls (every POLL_S) draw nothing and read no listing; the page stays put
        time.sleep(POLL_S + 1)
        listings.clear()
        time.sleep(2 * POLL_S + 1)
        assert listings == [], listings
        expect(shown).to_have_text("Documents 101–120 of 120, by name")

        # a document added through the REST API: the next poll redraws this page with the new total
        job = _api_upload(url, MANIFEST.name, (AWS,))
        assert job["status"] == "done", job
        expect(shown).to_have_text("Documents 101–121 of 121, by name", timeout=4 * POLL_S * 1000)
        assert listings and set(listings) == {100}, listings
        page.locator("#pl-docs-prev").click()
        expect(shown).to_have_text("Documents 51–100 of 121, by name")

        # the name filter and the order (issue 28.4): the first page of the matches, drawn at once
        rows = page.locator("#pl-docs-table tbody tr")
        box = page.locator("#pl-docs-filter input, #pl-docs-filter textarea").first
        box.fill("REPORT-11")  # case-insensitive: report-11 and report-110 ... report-119
        expect(rows).to_have_count(11)
        expect(rows.first).to_contain_text("report-11.pdf")
        box.fill("no-such-name")
        expect(page.locator("#pl-docs")).to_contain_text("No document name matches the filter.")
        box.fill("")
        expect(shown).to_have_text("Documents 1–50 of 121, by name")
        page.locator("#pl-docs-sort input").click()
        page.get_by_role("option", name="Newest first").click()
        expect(shown).to_have_text("Documents 1–50 of 121, newest first")
        expect(rows.first).to_contain_text(AWS.name)  # uploaded last
        _shots(page, "docs_filter_sort")

        # an empty collection: Ask is not live (nothing to search) until its first pages are indexed
        import httpx

        assert httpx.post(f"{url}/v1/collections", json={"name": "empty"}, timeout=60).status_code == 201
        page.goto(f"{url}/ui/?collection=empty")
        expect(page.locator("#pl-ask")).to_be_disabled()
        expect(page.locator("#pl-coll-summary")).to_contain_text("nothing to ask yet")
        job = _api_upload(url, "empty", (AWS,))
        assert job["status"] == "done", job
        expect(page.locator("#pl-ask")).to_be_enabled(timeout=4 * POLL_S * 1000)
