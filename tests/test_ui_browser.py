"""The web UI in a real browser: Debian's headless chromium driven by Playwright against the real server
(uvicorn on 127.0.0.1, ``create_app`` + ``mount_ui``, tiny random models).

Screenshots of every step go to ``test-artifacts/ui/`` (repo root, git-ignored). Needs ``/usr/bin/chromium``
(``apt-get install -y chromium``); skipped with the reason when it is missing.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import HOSTILE_PDFS, REAL_PDFS, REPO

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts" / "ui"
AWS = REAL_PDFS / "inv_aws_invoice_en.pdf"
EMPTY = HOSTILE_PDFS / "h_empty_0_bytes.pdf"
BROKEN = HOSTILE_PDFS / "h_header_plus_eof_only.pdf"
INDEX_TIMEOUT_MS = 120_000


def open_finished(page, timeout: float = INDEX_TIMEOUT_MS) -> None:  # noqa: ANN001
    """Open the uploads' collapsed "N finished" part (``ui/uploads_view.py``) once a file has finished;
    it stays open through the live refreshes."""
    import re

    from playwright.sync_api import expect

    finished = page.locator("#pl-uploads-finished")
    expect(finished).to_contain_text(re.compile(r"\d+ finished"), timeout=timeout)
    if not page.locator("#pl-progress-done table").is_visible():
        finished.get_by_text(re.compile(r"^\d+ finished$")).click()
    expect(page.locator("#pl-progress-done table")).to_be_visible()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed_collections(settings, *names: str) -> None:  # noqa: ANN001
    """Create empty collections ``names`` in ``settings``' data dir (before a server opens it)."""
    from pagelens.app.service import PagelensService

    service = PagelensService(settings)
    try:
        for name in names:
            service.create_collection(name)
    finally:
        service.close()


@contextmanager
def serve(settings) -> Iterator[str]:  # noqa: ANN001
    """The real app (REST API + UI at /ui) served by uvicorn in a thread; yields the base URL."""
    import uvicorn
    from pagelens.ui.app import mount_ui

    from pagelens.server import create_app

    app = create_app(settings)
    if not any(getattr(r, "path", "") == "/ui" for r in app.routes):  # create_app may mount it already
        mount_ui(app, settings, app.state.pagelens.service)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def ui_server(settings_factory) -> Iterator[str]:
    with serve(settings_factory(max_new_tokens=12, answer_top_k=2)) as url:
        yield url


@pytest.fixture
def browser_page() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def test_ui_end_to_end(ui_server: str, browser_page) -> None:  # noqa: ANN001
    from playwright.sync_api import expect

    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    step = iter(range(1, 100))

    for old in ARTIFACTS.glob("[0-9]*.png"):
        old.unlink()

    def shot(name: str) -> None:
        page.screenshot(path=str(ARTIFACTS / f"{next(step):02d}_{name}.png"), full_page=True)

    def tab(name: str) -> None:
        page.get_by_role("tab", name=name).click()

    page.goto(f"{ui_server}/ui/")
    expect(page.locator("#pl-coll-summary")).to_contain_text("No collections yet")
    shot("start")

    # -- create a collection (the first run: one create+upload panel, no tabs yet) -----------------
    expect(page.locator("#pl-first-run")).to_be_visible()
    page.locator("#pl-first-name input").fill("invoices")
    page.locator("#pl-first-upload").click()
    expect(page.locator("#pl-upload-msg")).to_contain_text("Created collection 'invoices'")
    tab("Collections")
    expect(page.locator("#pl-collections")).to_contain_text("invoices")
    expect(page.locator("#pl-collection input")).to_have_value("invoices")
    shot("collection_created")

    # -- upload a real PDF and watch it being indexed -----------------------------------------------
    tab("Documents")
    page.locator("#pl-files input[type=file]").set_input_files([str(AWS)])
    expect(page.locator("#pl-files")).to_contain_text(AWS.stem)
    page.locator("#pl-upload").click()
    expect(page.locator("#pl-upload-msg")).to_contain_text("Queued 1 file(s)")
    expect(page.locator("#pl-progress")).to_contain_text(AWS.name)
    shot("upload_queued")
    open_finished(page)  # a finished file is collapsed under "1 finished"
    indexed = page.locator("#pl-progress .pl-status-done")
    expect(indexed).to_have_count(1, timeout=INDEX_TIMEOUT_MS)
    expect(page.get_by_text("Indexing finished in 'invoices'")).to_be_visible()  # a notice, on any tab
    expect(page.locator("#pl-progress")).to_contain_text("1 / 1")
    expect(page.locator("#pl-docs")).to_contain_text(AWS.name)
    expect(page.locator("#pl-docs .pl-status-done")).to_have_count(1)
    shot("indexed")

    # -- ask: streamed answer, cited pages, similarity map -----------------------------------------
    tab("Ask")
    page.locator("#pl-question textarea").fill("What is the total amount due?")
    page.locator("#pl-ask").click()
    chat = page.locator("#pl-chat")
    thumbs = chat.locator(".pl-sources img.pl-thumb")
    expect(thumbs.first).to_be_visible(timeout=60_000)
    expect(chat.locator(".pl-sources")).to_contain_text("page(s) read", timeout=60_000)  # the final footer
    answer_text = chat.locator("[data-testid=bot]").first.inner_text()
    assert answer_text.strip() and "⚠" not in answer_text, answer_text
    expect(chat.locator("#pl-t1-cite-1")).to_have_text(f"[1] {AWS.name} — page 1")  # no raw scores
    expect(page.locator("#pl-sim img")).to_be_visible(timeout=60_000)
    expect(page.locator("#pl-sim-caption")).to_contain_text("patch grid")
    shot("answer")

    # search-only mode with k
    page.locator("#pl-ask-options").click()
    page.get_by_label("Search only").check()
    page.locator("#pl-question textarea").fill("What is the total amount due?")
    page.locator("#pl-ask").click()
    expect(chat.locator("[data-testid=bot]").filter(has_text="search only")).to_have_count(1, timeout=60_000)
    expect(thumbs).to_have_count(2)

    # -- phone width with results -------------------------------------------------------------------
    page.set_viewport_size({"width": 390, "height": 844})
    shot("phone_ask")
    tab("Documents")
    shot("phone_documents")
    page.set_viewport_size({"width": 1280, "height": 800})

    # -- delete the document (with confirmation) ---------------------------------------------------
    tab("Documents")
    page.locator("#pl-doc-delete-btn").click()
    expect(page.locator("#pl-doc-confirm")).to_contain_text(AWS.name)
    page.locator("#pl-doc-confirm-btn").click()
    expect(page.locator("#pl-docs-msg")).to_contain_text(f"Deleted '{AWS.name}' (1 page(s))")
    expect(page.locator("#pl-docs")).not_to_contain_text(AWS.name)
    shot("document_deleted")

    # -- hostile uploads: an error per file, the page stays usable ----------------------------------
    page.locator("#pl-files input[type=file]").set_input_files([str(EMPTY), str(BROKEN)])
    expect(page.locator("#pl-files")).to_contain_text(BROKEN.stem)
    page.locator("#pl-upload").click()
    rejected = page.locator("#pl-progress tr.pl-row-rejected")
    expect(rejected).to_contain_text(EMPTY.name)
    expect(rejected).to_contain_text("empty")
    failed = page.locator("#pl-progress tr.pl-row-failed")
    expect(failed).to_contain_text(BROKEN.name, timeout=INDEX_TIMEOUT_MS)
    expect(failed.locator(".pl-err")).not_to_be_empty()
    shot("hostile_upload_errors")

    tab("Ask")  # still usable; with no page and no upload running there is nothing to ask, and it says so
    page.locator("#pl-question textarea").fill("anything there?")
    expect(page.locator("#pl-ask")).to_be_disabled()
    expect(page.locator("#pl-coll-summary")).to_contain_text("nothing to ask yet")
    shot("still_usable")

    # -- delete the collection (with confirmation) -------------------------------------------------
    tab("Collections")
    expect(page.locator("#pl-coll-delete-btn")).to_be_disabled()  # no row selected: nothing to delete
    page.locator("#pl-collections").get_by_role("gridcell", name="invoices", exact=True).click()
    expect(page.locator("#pl-coll-delete-btn")).to_be_enabled()
    page.locator("#pl-coll-delete-btn").click()
    expect(page.locator("#pl-coll-confirm")).to_contain_text("Delete collection 'invoices' with 0 documents / 0 pages?")
    page.locator("#pl-coll-confirm-btn").click()
    expect(page.locator("#pl-first-run")).to_be_visible()  # none left: the first-run panel again

    # -- phone width: the empty state --------------------------------------------------------------
    page.set_viewport_size({"width": 390, "height": 844})
    shot("phone_first_run")
    assert not errors, errors
    page.goto("about:blank")


def _sign_in(page, key: str, submit: str = "click") -> None:  # noqa: ANN001
    """Fill the sign-in page's key box and send it (button or Enter)."""
    page.locator("#pl-key").fill(key)
    if submit == "enter":
        page.locator("#pl-key").press("Enter")
    else:
        page.locator("#pl-sign-in").click()


def test_ui_api_keys_gate_and_scoping(browser_page, settings_factory) -> None:  # noqa: ANN001
    """With API keys configured the UI asks for one; a read-only key sees its collections but no write
    controls; an admin key gets them all."""
    from playwright.sync_api import expect


    settings = settings_factory(api_keys="adm-key:admin;ro-key:r:invoices")
    seed_collections(settings, "invoices", "private")
    page = browser_page
    with serve(settings) as url:
        page.goto(f"{url}/ui/")
        expect(page.locator("#pl-gate")).to_be_visible()
        expect(page.locator("#pl-main")).to_have_count(0)
        _sign_in(page, "wrong-key")
        expect(page.locator("#pl-gate-msg")).to_contain_text("not valid")
        page.screenshot(path=str(ARTIFACTS / "auth_gate.png"), full_page=True)

        _sign_in(page, "ro-key")
        expect(page.locator("#pl-main")).to_be_visible()
        expect(page.locator("#pl-collection input")).to_have_value("invoices")
        expect(page.locator("#pl-coll-summary")).to_contain_text("read-only")
        page.get_by_role("tab", name="Documents").click()
        expect(page.locator("#pl-upload-group")).to_be_hidden()
        expect(page.get_by_text("Read-only access")).to_be_visible()
        page.get_by_role("tab", name="Collections").click()
        expect(page.locator("#pl-collections")).to_contain_text("invoices")
        expect(page.locator("#pl-collections")).not_to_contain_text("private")
        expect(page.locator("#pl-create-group")).to_be_hidden()
        expect(page.locator("#pl-coll-delete")).to_be_hidden()
        page.screenshot(path=str(ARTIFACTS / "auth_read_only.png"), full_page=True)

        page.locator("#pl-sign-out").click()
        expect(page.locator("#pl-gate")).to_be_visible()
        _sign_in(page, "adm-key", submit="enter")
        expect(page.locator("#pl-main")).to_be_visible()
        page.get_by_role("tab", name="Collections").click()
        expect(page.locator("#pl-collections")).to_contain_text("private")
        expect(page.locator("#pl-create-group")).to_be_visible()
        expect(page.locator("#pl-coll-delete")).to_be_visible()
        page.goto("about:blank")  # close the UI's event stream before the server stops


def test_ui_sign_in_survives_a_reload_and_signed_out_sees_only_the_gate(browser_page, settings_factory) -> None:  # noqa: ANN001
    """The browser keeps the sign-in in an HTTP-only, SameSite=Strict cookie (never the key): a reload stays
    signed in; signed out (or never signed in) the page is only the sign-in gate, with a 401, no Gradio app
    and no collection name, also for the UI's config and file URLs."""
    from playwright.sync_api import expect


    settings = settings_factory(api_keys="adm-key:admin;ro-key:r:invoices")
    seed_collections(settings, "invoices")
    page = browser_page
    with serve(settings) as url:
        response = page.goto(f"{url}/ui/")
        assert response is not None and response.status == 401
        expect(page.locator("#pl-gate")).to_contain_text("API key")
        expect(page.locator("#pl-gate")).to_contain_text("Authorization: Bearer")  # says how scripts sign in
        expect(page.locator("gradio-app, #pl-main")).to_have_count(0)
        assert "invoices" not in page.content()
        assert page.request.get(f"{url}/ui/config").status == 401

        _sign_in(page, "ro-key")
        expect(page.locator("#pl-collection input")).to_have_value("invoices")
        (cookie,) = page.context.cookies()
        assert cookie["name"] == "pagelens_ui" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert cookie["path"] == "/ui" and "ro-key" not in cookie["value"]
        assert page.evaluate("document.cookie") == ""  # not readable by scripts

        response = page.reload()
        assert response is not None and response.status == 200
        expect(page.locator("#pl-main")).to_be_visible()
        expect(page.locator("#pl-collection input")).to_have_value("invoices")
        expect(page.locator("#pl-gate")).to_have_count(0)
        page.screenshot(path=str(ARTIFACTS / "auth_after_reload.png"), full_page=True)

        page.locator("#pl-sign-out").click()
        expect(page.locator("#pl-gate")).to_be_visible()
        assert page.context.cookies() == []
        response = page.goto(f"{url}/ui/")
        assert response is not None and response.status == 401
        expect(page.locator("#pl-gate")).to_be_visible()
        expect(page.locator("gradio-app, #pl-main")).to_have_count(0)
        assert page.request.get(f"{url}/ui/config").status == 401
        # the old session id is dead on the server, not only forgotten by the browser
        page.context.add_cookies([{**cookie}])
        assert page.request.get(f"{url}/ui/config").status == 401
        page.goto("about:blank")
