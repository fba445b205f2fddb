"""The Ask tab as a person keeps it open all day (issue 18), in a real browser (Debian chromium +
Playwright, the real server on loopback, tiny random models): the conversation thread, Copy and
Regenerate, the page viewer (zoom, previous/next, the page's text, download), the similarity map of an
answer after a collection switch, and the "still indexing" answer. Screenshots, desktop (1280 px) and
phone (390 px), go to ``test-artifacts/ui-day/``. The model is random: the rendering is tested, not its text."""

from __future__ import annotations

import re
import warnings

import pytest
from conftest import REAL_PDFS
from test_ui_browser import AWS, browser_page, seed_collections, serve  # noqa: F401  (browser_page: a fixture)
from test_ui_day import PHONE, _api_upload, _shots

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TWO_PAGES = REAL_PDFS / "inv_qualityhosting_de.pdf"  # 2 pages, with a text layer


def _ask(page, question: str) -> None:  # noqa: ANN001
    page.locator("#pl-question textarea").fill(question)
    page.locator("#pl-ask").click()


def _page_no(page) -> int:  # noqa: ANN001
    from playwright.sync_api import expect

    title = page.locator("#pl-viewer-title")
    expect(title).to_contain_text(re.compile(r"page \d+ of 2"))
    return int(re.search(r"page (\d+) of", title.inner_text()).group(1))  # type: ignore[union-attr]


def test_thread_copy_regenerate_viewer_and_map_after_a_switch(browser_page, settings_factory) -> None:  # noqa: ANN001, F811
    """Two questions stay in the thread, each with its own numbered citations; Copy puts the plain answer
    on the clipboard; a citation opens the viewer (zoom, next/previous page with its image and text, a
    download named <document>-p<N>.png); Regenerate after switching to another collection asks the last
    question again in its own collection and replaces its answer, and the similarity map still works."""
    from playwright.sync_api import expect


    settings = settings_factory(max_new_tokens=4, answer_top_k=1)
    seed_collections(settings, "inv", "other")
    page = browser_page
    with serve(settings) as url:
        _api_upload(url, "inv", (TWO_PAGES,))
        _api_upload(url, "other", (AWS,))
        page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
        page.goto(f"{url}/ui/?collection=inv")
        expect(page.locator("#pl-collection input")).to_have_value("inv")
        answer = page.locator("#pl-answer")

        # -- the thread: two questions, each with its own citations ----------------------------------------
        _ask(page, "What is the invoice number?")
        expect(answer).to_contain_text("page(s) read", timeout=60_000)
        _ask(page, "What is the total amount due?")
        expect(page.locator("#pl-current-q")).to_contain_text("What is the total amount due?", timeout=60_000)
        expect(answer).to_contain_text("page(s) read", timeout=60_000)
        thread = page.locator("#pl-thread")
        expect(thread.locator(".pl-turn")).to_have_count(1)
        expect(thread.locator(".pl-turn-q")).to_contain_text("What is the invoice number?")
        old_cite = thread.locator("li.pl-cite")
        expect(old_cite).to_have_count(1)
        expect(old_cite.first).to_have_text(re.compile(rf"^\[1\]{re.escape(TWO_PAGES.name)} — page [12]$"))
        assert old_cite.first.get_attribute("id") == "pl-t1-cite-1"
        assert thread.locator("a.pl-ref").first.get_attribute("href") == "#pl-t1-cite-1"
        cite = page.locator("#pl-citations li.pl-cite")
        expect(cite).to_have_count(1)
        expect(cite.first).to_have_text(re.compile(rf"^\[1\]{re.escape(TWO_PAGES.name)} — page [12]$"))
        assert answer.locator("a.pl-ref").first.get_attribute("href") == "#pl-cite-1"

        # -- Copy: the plain answer text on the clipboard ------------------------------------------------
        plain = page.locator("#pl-answer-plain textarea").input_value()
        page.locator("#pl-copy").click()
        expect(page.locator("#pl-copy")).to_contain_text("Copied")
        assert page.evaluate("navigator.clipboard.readText()") == plain
        assert "<" not in plain and "page(s) read" not in plain

        # -- the viewer, opened from a citation ----------------------------------------------------------
        # (the answer's follow-up already opened the top page; close it to see a click open it)
        page.locator("#pl-viewer-close").click()
        expect(page.locator("#pl-viewer")).to_be_hidden()
        cite.first.click()
        viewer = page.locator("#pl-viewer")
        expect(viewer).to_be_visible()
        expect(page.locator("#pl-viewer-title")).to_contain_text(TWO_PAGES.name)
        first = _page_no(page)
        img = page.locator("#pl-viewer-img img")
        expect(img).to_be_visible()
        fit_w = img.bounding_box()["width"]  # type: ignore[index]
        page.locator("#pl-zoom-in").click()
        expect(page.locator("#pl-zoom-fit")).to_contain_text("150%")
        assert img.bounding_box()["width"] > fit_w * 1.4  # type: ignore[index]
        page.locator("#pl-zoom-out").click()
        page.locator("#pl-zoom-out").click()
        expect(page.locator("#pl-zoom-fit")).to_contain_text("75%")
        assert img.bounding_box()["width"] < fit_w * 0.8  # type: ignore[index]
        page.locator("#pl-zoom-fit").click()
        assert abs(img.bounding_box()["width"] - fit_w) < 2  # type: ignore[index]
        text = page.locator("#pl-page-text")
        expect(text).to_contain_text(f"page {first}")
        expect(text).to_contain_text("source:")
        src = img.get_attribute("src")
        other_page = 2 if first == 1 else 1
        page.locator("#pl-next" if first == 1 else "#pl-prev").click()
        expect(page.locator("#pl-viewer-title")).to_contain_text(f"page {other_page} of 2")
        expect(text).to_contain_text(f"page {other_page}")
        expect(img).not_to_have_attribute("src", src or "")
        page.locator("#pl-prev" if first == 1 else "#pl-next").click()
        expect(page.locator("#pl-viewer-title")).to_contain_text(f"page {first} of 2")
        with page.expect_download() as dl:
            page.locator("#pl-download").click()
        assert dl.value.suggested_filename == f"{TWO_PAGES.stem}-p{first}.png"
        _shots(page, "ask_01_thread_and_viewer")
        page.set_viewport_size(PHONE)  # the viewer fits a phone: full width, its controls on screen
        for sel in ("#pl-viewer", "#pl-next", "#pl-zoom-in", "#pl-download", "#pl-thread li.pl-cite"):
            box = page.locator(sel).first.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 1, (sel, box)
        for sel in ("#pl-thread li.pl-cite", "#pl-citations li.pl-cite"):  # the whole name and page, wrapped
            cut = page.locator(sel).first.evaluate("e => e.scrollWidth > e.clientWidth + 1")
            assert not cut, sel
        page.set_viewport_size({"width": 1280, "height": 800})
        # an earlier turn's citation and a cited page's thumbnail open the viewer too
        old_page = int(re.search(r"page (\d)", old_cite.first.inner_text()).group(1))  # type: ignore[union-attr]
        old_cite.first.click()
        expect(page.locator("#pl-viewer-title")).to_contain_text(f"page {old_page} of 2")
        page.locator("#pl-viewer-close").click()
        expect(viewer).to_be_hidden()
        page.locator("#pl-gallery img").first.click()
        expect(viewer).to_be_visible()
        expect(page.locator("#pl-viewer-title")).to_contain_text(f"page {first} of 2")
        page.keyboard.press("Escape")  # the gallery's own preview

        # -- Regenerate after a collection switch: the same question in its own collection ---------------
        page.locator("#pl-collection input").click()
        page.get_by_role("option", name="other").click()
        expect(page).to_have_url(re.compile(r"collection=other"))
        page.locator("#pl-regenerate").click()
        expect(page.locator("#pl-sim")).to_be_visible(timeout=60_000)
        expect(page.locator("#pl-sim-caption")).to_contain_text(TWO_PAGES.name)
        expect(page.locator("#pl-sim-caption")).not_to_contain_text("gone")
        expect(answer).to_contain_text("page(s) read")
        expect(answer).to_contain_text("regenerated (answer 2)")  # a new answer in place of the last one
        expect(thread.locator(".pl-turn")).to_have_count(1)  # replaced, not added
        expect(page.locator("#pl-current-q")).to_contain_text("What is the total amount due?")
        expect(page.locator("#pl-current-q")).to_contain_text("in inv")
        expect(cite.first).to_contain_text(TWO_PAGES.name)
        _shots(page, "ask_02_regenerated_after_switch")

        # -- the thread survives switching tabs and a reload; New conversation clears it -----------------
        page.get_by_role("tab", name="Documents").click()
        page.get_by_role("tab", name="Ask").click()
        expect(thread.locator(".pl-turn")).to_have_count(1)
        # a reload keeps it too (the browser tab's session storage), citations still open their pages
        page.reload()
        expect(thread.locator(".pl-turn")).to_have_count(1)
        expect(thread.locator(".pl-turn-q")).to_contain_text("What is the invoice number?")
        expect(page.locator("#pl-current-q")).to_contain_text("What is the total amount due?")
        expect(answer).to_contain_text("regenerated (answer 2)")
        page.locator("#pl-citations li.pl-cite").first.click()
        expect(page.locator("#pl-viewer-title")).to_contain_text(TWO_PAGES.name)
        page.locator("#pl-new-conv").click()
        expect(thread).to_be_hidden()
        expect(page.locator("#pl-citations li.pl-cite")).to_have_count(0)
        page.reload()  # a new conversation stays new
        expect(page.locator("#pl-collection input")).to_have_value("other")
        expect(page.locator("#pl-current-q")).to_be_empty()
        expect(thread).to_be_hidden()
        page.goto("about:blank")


def _running_job(data_dir, collection: str) -> None:  # noqa: ANN001
    """A job of ``collection`` the worker holds: report.pdf half indexed (164/352 pages), annex.pdf waiting.
    Written straight into the job table as ``running`` (the worker only takes ``queued`` jobs, so it stays
    so while the test runs; no file behind it)."""
    import json

    from pagelens.app.jobs import JobStore

    docs = [{"index": i, "name": name, "path": f"/nonexistent/{name}", "size": 1, "sha256": f"{i}" * 64,
             "doc_id": f"{i}" * 16, "status": status, "page_count": total, "pages_done": done, "errors": [],
             "password_given": False}
            for i, (name, status, total, done) in enumerate([("report.pdf", "running", 352, 164),
                                                             ("annex.pdf", "queued", None, 0)], start=1)]
    jobs = JobStore(data_dir)
    try:
        jobs._conn.execute(  # noqa: SLF001
            "INSERT INTO jobs (id, collection, status, created_at, updated_at, force, metadata, documents, "
            "pages_done, pages_total) VALUES (?, ?, 'running', '2026-01-01T00:00:00', '2026-01-01T00:00:00', 0, "
            "'{}', ?, 164, 352)", (JobStore.new_id(), collection, json.dumps(docs)))
    finally:
        jobs.close()


def test_asking_while_a_document_is_indexing_names_it_and_its_progress(browser_page, settings_factory) -> None:  # noqa: ANN001, F811
    """A question asked while a document of the collection is being indexed says which document and how
    far (its pages are not searched yet), both with results and when no page is found."""
    from playwright.sync_api import expect


    # answers long enough to switch the collection while one is written (the tiny model is random)
    settings = settings_factory(max_new_tokens=48, answer_top_k=1)
    seed_collections(settings, "big", "empty")
    page = browser_page
    with serve(settings) as url:
        _api_upload(url, "big", (AWS,))
        _running_job(settings.data_dir, "big")
        _running_job(settings.data_dir, "empty")
        page.goto(f"{url}/ui/?collection=big&mode=search")
        expect(page.locator("#pl-collection input")).to_have_value("big")
        _ask(page, "What is the total amount due?")
        answer = page.locator("#pl-answer")
        expect(answer).to_contain_text("search only", timeout=60_000)
        expect(answer).to_contain_text("report.pdf is still indexing: 164/352 pages; its pages are not searched yet.")
        expect(answer).to_contain_text("annex.pdf is waiting to be indexed")
        expect(page.locator("#pl-citations")).to_contain_text(AWS.name)
        _shots(page, "ask_03_still_indexing")

        page.goto(f"{url}/ui/?collection=empty&mode=search")
        expect(page.locator("#pl-collection input")).to_have_value("empty")
        _ask(page, "What is the total amount due?")
        expect(answer).to_contain_text("No pages found", timeout=60_000)
        expect(answer).to_contain_text("report.pdf is still indexing: 164/352 pages")
        expect(answer).not_to_contain_text("is the collection empty")

        # switching the collection mid-answer: the similarity map comes from the collection asked in
        page.goto(f"{url}/ui/?collection=big")
        expect(page.locator("#pl-collection input")).to_have_value("big")
        _ask(page, "What is the total amount due?")
        expect(page.locator("#pl-stop")).to_be_visible(timeout=60_000)
        page.locator("#pl-collection input").click()
        page.get_by_role("option", name="empty").click()
        mid_answer = page.locator("#pl-stop").is_visible()
        expect(page.locator("#pl-sim")).to_be_visible(timeout=90_000)
        expect(page.locator("#pl-sim-caption")).to_contain_text(AWS.name)
        expect(page.locator("#pl-sim-caption")).not_to_contain_text("gone")
        expect(page.locator("#pl-viewer-title")).to_contain_text(AWS.name)  # the viewer: the top page, too
        expect(page.locator("#pl-collection input")).to_have_value("empty")
        if not mid_answer:  # a machine fast enough to write 48 tokens before the click: the map still holds
            warnings.warn("the answer ended before the collection switch: the mid-answer case was not exercised",
                          stacklevel=1)
        page.goto("about:blank")
