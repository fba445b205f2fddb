"""The web UI a person keeps open all day (issue 18), in a real browser (Debian chromium + Playwright,
against the real server on loopback, tiny random models): state that survives a reload and can be
shared. Screenshots, desktop (1280 px) and phone (390 px), go to ``test-artifacts/ui-day/``."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlparse

import pytest
from conftest import REPO
from test_ui_browser import AWS, BROKEN, browser_page, open_finished, seed_collections, serve  # noqa: F401  (browser_page: a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = REPO / "test-artifacts" / "ui-day"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


def _shots(page, name: str) -> None:  # noqa: ANN001
    """Screenshots of the current view at desktop and phone width (then back to desktop)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size(DESKTOP)
    page.screenshot(path=str(ARTIFACTS / f"{name}_desktop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(ARTIFACTS / f"{name}_phone.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def _api_upload(url: str, collection: str, paths: tuple = (AWS, BROKEN)) -> dict:
    """Upload ``paths`` (default: the AWS invoice and a broken PDF) through the REST API (not the UI) and
    wait for the job."""
    import httpx

    files = [("files", (p.name, p.read_bytes(), "application/pdf")) for p in paths]
    r = httpx.post(f"{url}/v1/collections/{collection}/documents", files=files, timeout=60)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    deadline = time.monotonic() + 240
    while True:
        job = httpx.get(f"{url}/v1/jobs/{job_id}", timeout=30).json()
        if job["status"] not in ("queued", "running"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def _query(page) -> dict[str, list[str]]:  # noqa: ANN001
    return parse_qs(urlparse(page.url).query)


def test_reload_keeps_collection_question_mode_and_upload_history(browser_page, settings_factory) -> None:  # noqa: ANN001, F811
    """A link with ``?collection=&q=&mode=search`` opens that view; the uploads table comes from the job
    table (an API upload, with its failure reason, shows in a fresh browser); changing the collection,
    question or mode rewrites the URL, and a reload finds them all again."""
    from playwright.sync_api import expect


    settings = settings_factory(max_new_tokens=4, answer_top_k=2)
    seed_collections(settings, "alpha", "beta")
    page = browser_page
    with serve(settings) as url:
        job = _api_upload(url, "beta")
        failed = [d for d in job["documents"] if d["status"] == "failed"]
        assert [d["name"] for d in failed] == [BROKEN.name], job

        # a shared link: not the first collection alphabetically, a question, search-only mode
        page.goto(f"{url}/ui/?collection=beta&q=What+is+the+total%3F&mode=search")
        expect(page.locator("#pl-collection input")).to_have_value("beta")
        expect(page.locator("#pl-question textarea")).to_have_value("What is the total?")
        page.locator("#pl-ask-options").click()  # the options (mode, retrieval, k) are folded under the chat
        expect(page.locator("#pl-mode").get_by_label("Search only")).to_be_checked()
        expect(page.locator("#pl-coll-summary")).to_contain_text("document(s)")
        page.get_by_role("tab", name="Documents").click()
        progress = page.locator("#pl-progress")
        open_finished(page)  # the finished files are collapsed
        expect(progress.locator("tr.pl-row-indexed")).to_contain_text(AWS.name)  # uploaded by another door
        expect(progress.locator("tr.pl-row-failed")).to_contain_text(BROKEN.name)
        expect(progress.locator("tr.pl-row-failed .pl-err")).to_contain_text(failed[0]["errors"][0]["error"][:40])
        _shots(page, "01_shared_link_upload_history")

        # the UI rewrites the URL as the person changes things
        page.locator("#pl-collection input").click()
        page.get_by_role("option", name="alpha").click()
        expect(page.locator("#pl-progress")).to_contain_text("No uploads to this collection yet")
        page.get_by_role("tab", name="Ask").click()
        page.locator("#pl-question textarea").fill("Who signed the report?")
        page.locator("#pl-mode").get_by_label("Answer").check()
        expect(page).to_have_url(re.compile(r"collection=alpha"))
        expect(page).to_have_url(re.compile(r"q=Who\+signed\+the\+report%3F|q=Who%20signed%20the%20report%3F"))
        query = _query(page)
        assert query == {"collection": ["alpha"], "q": ["Who signed the report?"]}, query  # no mode: Answer

        # a reload mid-session finds the same view
        response = page.reload()
        assert response is not None and response.status == 200
        expect(page.locator("#pl-collection input")).to_have_value("alpha")
        expect(page.locator("#pl-question textarea")).to_have_value("Who signed the report?")
        page.locator("#pl-ask-options").click()
        expect(page.locator("#pl-mode").get_by_label("Answer")).to_be_checked()
        _shots(page, "02_after_reload")

        # back to beta after the reload: its upload history is still there (from the job table)
        page.locator("#pl-collection input").click()
        page.get_by_role("option", name="beta").click()
        page.get_by_role("tab", name="Documents").click()
        expect(page.locator("#pl-progress tr.pl-row-failed")).to_contain_text(BROKEN.name)
        expect(page).to_have_url(re.compile(r"collection=beta"))

        # a collection the URL names but that does not exist: the first one instead, and the URL says so
        page.goto(f"{url}/ui/?collection=nope")
        expect(page.locator("#pl-collection input")).to_have_value("alpha")
        expect(page).to_have_url(re.compile(r"collection=alpha"))
        page.goto("about:blank")  # close the UI's event stream before the server stops


def test_enter_asks_shift_enter_is_a_newline_and_sources_fit_a_phone(browser_page, settings_factory) -> None:  # noqa: ANN001, F811
    """Enter in the question box asks, Shift+Enter adds a line (the Chatbot's input, no script of ours);
    the answer's numbered source shows the whole document name and page, also at 390 px."""
    from playwright.sync_api import expect

    settings = settings_factory(max_new_tokens=4, answer_top_k=2)
    seed_collections(settings, "inv")
    page = browser_page
    with serve(settings) as url:
        _api_upload(url, "inv", (AWS,))
        page.goto(f"{url}/ui/?collection=inv")
        expect(page.locator("#pl-collection input")).to_have_value("inv")
        box = page.locator("#pl-question textarea")
        chat = page.locator("#pl-chat")
        box.click()
        box.type("total amount")
        box.press("Shift+Enter")
        box.type("and due date")
        expect(box).to_have_value("total amount\nand due date")  # a newline, nothing asked
        expect(chat.locator("[data-testid=user]")).to_have_count(0)
        box.press("Enter")
        expect(chat.locator("[data-testid=user]")).to_have_count(1)
        expect(chat.locator("[data-testid=user]")).to_contain_text("and due date")
        cites = chat.locator("li.pl-cite")
        expect(cites).to_have_count(1, timeout=60_000)  # one page in the collection: one page shown to the model
        expect(cites.first).to_have_text(f"[1] {AWS.name} — page 1")
        for width in (1280, 390):
            page.set_viewport_size({"width": width, "height": 844})
            el = cites.first.locator(".pl-cite-label")
            expect(el).to_be_visible()
            cut = el.evaluate("e => e.scrollWidth > e.clientWidth + 1 || getComputedStyle(e).textOverflow === 'ellipsis'")
            assert not cut, width
            box_ = cites.first.bounding_box()
            assert box_ is not None and box_["x"] >= 0 and box_["x"] + box_["width"] <= width, (width, box_)
        page.set_viewport_size(DESKTOP)
        _shots(page, "06_citations")
        page.goto("about:blank")


def test_documents_added_by_another_door_appear_without_refresh(browser_page, settings_factory) -> None:  # noqa: ANN001, F811
    """The Documents tab polls: a document uploaded through the REST API while the page is open appears in
    the uploads and documents tables and the counts, with no click on Refresh."""
    from playwright.sync_api import expect


    settings = settings_factory(max_new_tokens=4, answer_top_k=1)
    seed_collections(settings, "live")
    page = browser_page
    with serve(settings) as url:
        page.goto(f"{url}/ui/?collection=live")
        expect(page.locator("#pl-coll-summary")).to_contain_text("0 document(s)")
        page.get_by_role("tab", name="Documents").click()
        expect(page.locator("#pl-docs")).to_contain_text("No documents in this collection")
        expect(page.locator("#pl-progress")).to_contain_text("No uploads to this collection yet")
        _api_upload(url, "live", (AWS,))  # another door; the page is not touched
        expect(page.locator("#pl-docs")).to_contain_text(AWS.name, timeout=60_000)
        open_finished(page)  # the finished files are collapsed
        expect(page.locator("#pl-progress tr.pl-row-indexed")).to_contain_text(AWS.name)
        expect(page.locator("#pl-coll-summary")).to_contain_text("1 document(s), 1 page(s)")
        _shots(page, "07_live_documents")
        page.goto("about:blank")
