"""Issue 28.4 in a real browser (Debian chromium + Playwright, the real server, tiny random models): a
collection created or filled through the REST API appears in the open UI within one poll, with fresh
counts, and deleted elsewhere it goes; a question can be limited to chosen documents from the Ask tab."""

from __future__ import annotations

import re

import httpx
import pytest
from conftest import REAL_PDFS
from pagelens.ui.state import POLL_S
from test_ui_browser import AWS, browser_page, seed_collections, serve  # noqa: F401  (browser_page: a fixture)
from test_ui_day import _api_upload, _shots

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TWO_PAGES = REAL_PDFS / "inv_qualityhosting_de.pdf"
POLL_MS = int(3 * POLL_S * 1000)


def test_collections_appear_with_fresh_counts_and_questions_can_be_scoped(browser_page, settings_factory) -> None:  # noqa: ANN001, F811
    from playwright.sync_api import expect

    settings = settings_factory(max_new_tokens=4, answer_top_k=3)
    seed_collections(settings, "inv")
    page = browser_page
    with serve(settings) as url:
        _api_upload(url, "inv", (AWS, TWO_PAGES))
        page.goto(f"{url}/ui/?collection=inv")
        expect(page.locator("#pl-collection input")).to_have_value("inv")
        page.get_by_role("tab", name="Collections").click()
        table = page.locator("#pl-collections")
        expect(table).to_contain_text("inv")

        # created elsewhere: in the table and the picker within a poll, without Refresh
        assert httpx.post(f"{url}/v1/collections", json={"name": "fresh"}, timeout=30).status_code in (200, 201)
        expect(table.get_by_role("gridcell", name="fresh", exact=True)).to_be_visible(timeout=POLL_MS)
        page.locator("#pl-collection input").click()
        expect(page.get_by_role("option", name="fresh")).to_be_visible()
        page.keyboard.press("Escape")
        expect(page.locator("#pl-collection input")).to_have_value("inv")  # the picker keeps its choice
        # filled elsewhere: the counts follow
        _api_upload(url, "fresh", (AWS,))
        row = table.get_by_role("row").filter(has=page.get_by_role("gridcell", name="fresh", exact=True))
        expect(row).to_contain_text(re.compile(r"fresh\s+1\s+1"), timeout=POLL_MS)
        # deleted elsewhere: gone
        assert httpx.delete(f"{url}/v1/collections/fresh", timeout=30).status_code in (200, 204)
        expect(table.get_by_role("gridcell", name="fresh", exact=True)).to_have_count(0, timeout=POLL_MS)
        _shots(page, "live_01_collections")

        # a question limited to one document: every source is from it
        page.get_by_role("tab", name="Ask").click()
        page.locator("#pl-ask-options").click()
        page.locator("#pl-mode").get_by_label("Search only").check()
        page.locator("#pl-scope input").click()
        page.get_by_role("option", name=TWO_PAGES.name).click()
        page.keyboard.press("Escape")
        page.locator("#pl-question textarea").fill("What is the total amount due?")
        page.locator("#pl-question textarea").press("Enter")
        cites = page.locator("#pl-chat li.pl-cite")
        expect(cites).to_have_count(2, timeout=60_000)  # its two pages, though k is 3 and AWS has one more
        for i in range(2):
            expect(cites.nth(i)).to_contain_text(TWO_PAGES.name)
        expect(page.locator("#pl-chat [data-testid=user]")).to_contain_text("1 document(s) only")
        _shots(page, "live_02_scoped_question")
        page.goto("about:blank")


def test_the_viewer_draws_the_cited_regions_and_they_can_be_hidden(browser_page, settings_factory,  # noqa: ANN001, F811
                                                                  monkeypatch) -> None:  # noqa: ANN001
    """The real search, with regions added to its hits as issue 27's search will give them: a click on a
    source opens the page with its regions drawn (a legend names them by kind); the toggle hides them."""
    from dataclasses import replace

    from pagelens.ui.tabs import ask as ask_mod
    from playwright.sync_api import expect

    real = ask_mod.search_visible

    def with_regions(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        hits = real(*args, **kwargs)
        regions = [{"x0": 0.1, "y0": 0.1, "x1": 0.5, "y1": 0.2, "source": "text", "score": 0.9, "text": "Total"},
                   {"x0": 0.2, "y0": 0.5, "x1": 0.8, "y1": 0.7, "source": "visual", "score": 0.6}]
        try:
            return [replace(h, regions=regions) for h in hits]  # issue 27's SearchHit
        except TypeError:
            for h in hits:
                object.__setattr__(h, "regions", regions)
            return hits

    monkeypatch.setattr(ask_mod, "search_visible", with_regions)
    settings = settings_factory(max_new_tokens=4, answer_top_k=1)
    seed_collections(settings, "inv")
    page = browser_page
    with serve(settings) as url:
        _api_upload(url, "inv", (AWS,))
        page.goto(f"{url}/ui/?collection=inv&mode=search")
        expect(page.locator("#pl-collection input")).to_have_value("inv")
        page.locator("#pl-question textarea").fill("What is the total amount due?")
        page.locator("#pl-question textarea").press("Enter")
        page.locator("#pl-chat li.pl-cite").first.click(timeout=60_000)
        img = page.locator("#pl-viewer-img img")
        expect(img).to_have_attribute("src", re.compile(r"/pages/rg/"))
        expect(page.locator("#pl-regions input")).to_be_checked()
        expect(page.locator("#pl-regions-legend")).to_contain_text("1 text region(s)")
        expect(page.locator("#pl-regions-legend")).to_contain_text("1 visual region(s)")
        _shots(page, "live_03_regions")
        page.locator("#pl-regions input").uncheck()
        expect(img).not_to_have_attribute("src", re.compile(r"/rg/"))
        page.goto("about:blank")
