"""The web UI a person keeps open all day (issue 18), in a real browser (Debian chromium + Playwright,
against the real server on loopback, tiny random models): state that survives a reload and can be
shared. Screenshots, desktop (1280 px) and phone (390 px), go to ``test-artifacts/ui-day/``."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlparse

import pytest
from conftest import REPO
from test_ui_browser import AWS, BROKEN, browser_page, seed_collections, serve  # noqa: F401  (browser_page: a fixture)

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
        expect(page.locator("#pl-mode").get_by_label("Search only")).to_be_checked()
        expect(page.locator("#pl-coll-summary")).to_contain_text("document(s)")
        page.get_by_role("tab", name="Documents").click()
        progress = page.locator("#pl-progress")
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


def test_enter_asks_shift_enter_is_a_newline_empty_is_refused_and_stop_stops(browser_page, settings_factory) -> None:  # noqa: ANN001, F811
    """Enter in the question box asks, Shift+Enter adds a line; an empty question (button or Enter) is
    refused with a message and clears nothing; Stop ends a running answer, keeping what was written."""
    from playwright.sync_api import expect


    # many tokens: the answer runs long enough to be stopped (the tiny model is random; its text is not tested)
    settings = settings_factory(max_new_tokens=1500, answer_top_k=1)
    seed_collections(settings, "inv")
    page = browser_page
    with serve(settings) as url:
        _api_upload(url, "inv", (AWS,))
        page.goto(f"{url}/ui/?collection=inv&mode=search")
        expect(page.locator("#pl-collection input")).to_have_value("inv")
        box = page.locator("#pl-question textarea")
        answer = page.locator("#pl-answer")

        box.click()
        box.type("total amount")
        box.press("Shift+Enter")
        box.type("and due date")
        expect(box).to_have_value("total amount\nand due date")  # a newline, nothing asked
        expect(answer).not_to_contain_text("page(s)")
        box.press("Enter")
        expect(answer).to_contain_text("search only", timeout=60_000)
        expect(box).to_have_value("total amount\nand due date")  # Enter added no newline
        expect(page.locator("#pl-gallery")).to_contain_text(AWS.name)
        before = answer.inner_text()

        # empty: refused, nothing cleared (Enter, then the button after a good question cleared the message)
        box.fill("   ")
        box.press("Enter")
        msg = page.locator("#pl-ask-msg")
        expect(msg).to_contain_text("Type a question first")
        expect(answer).to_have_text(before)
        expect(page.locator("#pl-gallery")).to_contain_text(AWS.name)
        expect(box).to_have_value("   ")
        box.fill("invoice number")
        box.press("Enter")
        expect(msg).not_to_contain_text("Type a question first", timeout=60_000)
        expect(answer).to_contain_text("search only")
        before = answer.inner_text()
        box.fill("")
        page.locator("#pl-ask").click()
        expect(msg).to_contain_text("Type a question first")
        expect(answer).to_have_text(before)
        expect(page.locator("#pl-gallery")).to_contain_text(AWS.name)
        _shots(page, "03_empty_question_refused")

        # Stop: visible while answering, ends the answer and keeps its text
        page.locator("#pl-mode").get_by_label("Answer").check()
        box.fill("What is the total amount due?")
        box.press("Enter")
        stop = page.locator("#pl-stop")
        expect(stop).to_be_visible(timeout=60_000)
        _shots(page, "04_answering_with_stop")
        stop.click()
        expect(answer).to_contain_text("(stopped)")
        expect(stop).to_be_hidden()
        expect(page.locator("#pl-sim-caption")).to_contain_text("Stopped")
        _shots(page, "05_stopped")
        expect(answer).to_contain_text("(stopped)")  # still: no token streamed after the stop overwrote it
        expect(answer).not_to_contain_text("▍")

        # asking again works after a stop
        page.locator("#pl-mode").get_by_label("Search only").check()
        box.press("Enter")
        expect(answer).to_contain_text("search only", timeout=60_000)
        page.goto("about:blank")


def test_citations_are_numbered_linked_and_readable_on_a_phone(browser_page, settings_factory) -> None:  # noqa: ANN001, F811
    """After an answer: one numbered citation per page shown to the model, with the full document name
    and page (not cut, also at 390 px), gallery captions that wrap instead of ending in '...', and [n]
    links in the answer that lead to citation n. The model is random: the rendering is tested, not its text."""
    from playwright.sync_api import expect


    settings = settings_factory(max_new_tokens=4, answer_top_k=2)
    seed_collections(settings, "inv")
    page = browser_page
    with serve(settings) as url:
        _api_upload(url, "inv", (AWS,))
        page.goto(f"{url}/ui/?collection=inv")
        expect(page.locator("#pl-collection input")).to_have_value("inv")
        page.locator("#pl-question textarea").fill("What is the total amount due?")
        page.locator("#pl-ask").click()
        answer = page.locator("#pl-answer")
        expect(answer).to_contain_text("page(s) read", timeout=60_000)
        cites = page.locator("#pl-citations li.pl-cite")
        expect(cites).to_have_count(1)  # one page in the collection: one page shown to the model
        expect(cites.first).to_have_text(f"[1]{AWS.name} — page 1")
        link = answer.locator("a.pl-ref")
        expect(link).to_have_count(1)
        expect(link).to_have_text("[1]")
        assert link.get_attribute("href") == "#pl-cite-1"
        expect(page.locator("#pl-gallery")).to_contain_text(f"[1] {AWS.name} — page 1")

        for width in (1280, 390):
            page.set_viewport_size({"width": width, "height": 844})
            # nothing cut: the citation and the gallery caption show their whole text (no overflow, no ellipsis)
            for sel in ("#pl-citations li.pl-cite", "#pl-gallery .caption-label"):
                el = page.locator(sel).first
                expect(el).to_be_visible()
                cut = el.evaluate("e => e.scrollWidth > e.clientWidth + 1 || getComputedStyle(e).textOverflow === 'ellipsis'")
                assert not cut, (width, sel)
                box = el.bounding_box()
                assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (width, sel, box)
        page.set_viewport_size(DESKTOP)
        link.click()  # shows the citation in place: no navigation, nothing lost
        expect(cites.first).to_have_class(re.compile(r"\bpl-cite-on\b"))
        expect(page.locator("#pl-question textarea")).to_have_value("What is the total amount due?")
        expect(answer).to_contain_text("page(s) read")
        assert _query(page) == {"collection": ["inv"], "q": ["What is the total amount due?"]}, page.url
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
        expect(page.locator("#pl-progress tr.pl-row-indexed")).to_contain_text(AWS.name)
        expect(page.locator("#pl-coll-summary")).to_contain_text("1 document(s), 1 page(s)")
        _shots(page, "07_live_documents")
        page.goto("about:blank")
