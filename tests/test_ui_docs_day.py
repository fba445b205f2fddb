"""The web UI a person keeps open all day (issue 18), the Documents / Collections / first-run part, in a
real browser (Debian chromium + Playwright, the real server on loopback, tiny random models): uploads
that explain their progress (pages/s, time left, the finishing phase), Cancel and Retry with password on
the rows, the first run, selecting and deleting a collection by its row, the favicon. Screenshots,
desktop and phone, go to ``test-artifacts/ui-day/``."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from conftest import HOSTILE_PDFS, REAL_PDFS, REPO
from test_ui_browser import AWS, EMPTY, browser_page, open_finished, seed_collections, serve  # noqa: F401  (browser_page: a fixture)
from test_ui_day import _shots

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SLOW = REAL_PDFS / "paper_naacl06_shinyama.pdf"  # 8 pages
LOCKED = HOSTILE_PDFS / "h_enc_pw_test_4pages.pdf"  # password "test", 4 pages


def _slow_worker(monkeypatch: pytest.MonkeyPatch, page_s: float, finishing_s: float) -> None:
    """Every page of a job takes at least ``page_s`` and its closing index build ``finishing_s``: the
    worker's progress callback sleeps after recording each event (the server runs in this process)."""
    from pagelens.app.jobs import JobWorker

    original = JobWorker._progress

    def slowed(self, job, doc):  # noqa: ANN001, ANN202
        callback = original(self, job, doc)

        def wrapped(event: str, info: dict) -> None:
            callback(event, info)
            if event == "page_done":
                time.sleep(page_s)
            elif event == "optimize_start":
                time.sleep(finishing_s)

        return wrapped

    monkeypatch.setattr(JobWorker, "_progress", slowed)


def _documents_tab(page, url: str, collection: str) -> None:  # noqa: ANN001
    """Open the UI on ``collection``, wait until the page has loaded it, and go to the Documents tab."""
    from playwright.sync_api import expect

    page.goto(f"{url}/ui/?collection={collection}")
    expect(page.locator("#pl-collection input")).to_have_value(collection)
    page.get_by_role("tab", name="Documents").click()


def _upload_in_ui(page, paths: list, password: str = "") -> None:  # noqa: ANN001
    page.locator("#pl-files input[type=file]").set_input_files([str(p) for p in paths])
    for p in paths:
        from playwright.sync_api import expect

        expect(page.locator("#pl-files")).to_contain_text(p.stem)
    if password:
        page.locator("#pl-pdf-password input").fill(password)
    page.locator("#pl-upload").click()
@pytest.mark.extended


def test_upload_rows_show_rate_eta_finishing_and_cancel(browser_page, settings_factory, monkeypatch) -> None:  # noqa: ANN001, F811
    """A slow upload's row shows pages done/total, pages/s and the time left, then "finishing (building the
    search index)" while the closing index build runs, then done; a second upload is cancelled from its
    row, and the REST API says cancelled too."""
    from playwright.sync_api import expect


    _slow_worker(monkeypatch, page_s=1.0, finishing_s=5.0)  # the rate shows from 3 pages over 2 s
    settings = settings_factory(max_new_tokens=4, answer_top_k=1)
    seed_collections(settings, "slow")
    page = browser_page
    with serve(settings) as url:
        _documents_tab(page, url, "slow")
        _upload_in_ui(page, [SLOW])
        row = page.locator("#pl-progress tr.pl-row").filter(has_text=SLOW.name)
        expect(row.locator(".pl-status")).to_have_text("indexing", timeout=60_000)
        expect(row.locator(".pl-rate")).to_contain_text("pages/s", timeout=30_000)
        expect(row.locator(".pl-rate")).to_contain_text("left")
        expect(row.locator(".pl-pages")).to_contain_text("/ 8")
        expect(row.locator("button.pl-row-cancel")).to_be_visible()
        for _ in range(6):  # the live refresh shows no "processing 0.4s" timers over the tables
            texts = page.locator("#pl-progress, #pl-docs, #pl-coll-summary").all_inner_texts()
            assert not re.search(r"\d\.\ds\b|processing", " ".join(texts)), texts
            page.wait_for_timeout(300)
        _shots(page, "10_upload_rate_eta")
        expect(row.locator(".pl-status")).to_have_text("finishing (building the search index)", timeout=30_000)
        expect(row.locator(".pl-pages")).to_contain_text("8 / 8")
        job = httpx.get(f"{url}/v1/jobs?collection=slow", timeout=30).json()[0]
        assert job["phase"] == "finishing", job  # the API says the same
        _shots(page, "11_upload_finishing")
        open_finished(page, timeout=30_000)  # a finished file is collapsed under "1 finished"
        expect(row.locator(".pl-status")).to_have_text("done", timeout=30_000)
        expect(row.locator("button.pl-row-act")).to_have_count(0)

        # the same bytes again: skipped, and the row says why
        _upload_in_ui(page, [SLOW])
        skipped = page.locator("#pl-progress tr.pl-state-skipped").first
        expect(skipped).to_contain_text("already indexed (same content)", timeout=60_000)

        # cancel from the row: another file, stopped while it is being indexed
        _upload_in_ui(page, [REAL_PDFS / "paper_creativity_ml_thoma.pdf"])
        row = page.locator("#pl-progress tr.pl-row").filter(has_text="paper_creativity_ml_thoma.pdf")
        expect(row.locator(".pl-status")).to_have_text("indexing", timeout=60_000)
        row.locator("button.pl-row-cancel").click()
        expect(page.locator("#pl-upload-msg")).to_contain_text("Cancelling the upload of paper_creativity_ml_thoma.pdf")
        expect(row.locator(".pl-status")).to_have_text("cancelled", timeout=30_000)
        job = httpx.get(f"{url}/v1/jobs?collection=slow", timeout=30).json()[0]
        assert job["status"] == "cancelled" and job["documents"][0]["status"] == "cancelled", job
        expect(page.locator("#pl-docs")).not_to_contain_text("paper_creativity_ml_thoma")
        _shots(page, "12_upload_cancelled")
        page.goto("about:blank")


def test_uploads_list_keeps_refusals_collapses_finished_rows_and_uploads_a_cancelled_file_again(  # noqa: D103
        browser_page, settings_factory, monkeypatch) -> None:  # noqa: ANN001, F811
    """Issue 28: a cancelled upload keeps the pages it had done and is uploaded again from its row (the new
    row replaces it); a file refused before queueing stays listed, with its reason, across a reload until
    dismissed; finished files are collapsed under "N finished" (opened on demand), out of the way of the
    documents table."""
    from playwright.sync_api import expect

    _slow_worker(monkeypatch, page_s=1.0, finishing_s=0.0)
    settings = settings_factory(max_new_tokens=4, answer_top_k=1)
    seed_collections(settings, "up")
    page = browser_page
    with serve(settings) as url:
        _documents_tab(page, url, "up")
        opened = page.locator("#pl-progress-open")

        # cancel at page 2..7 of 8: the row keeps that count, then Upload again re-queues the kept file
        _upload_in_ui(page, [SLOW])
        row = opened.locator("tr.pl-row").filter(has_text=SLOW.name)
        expect(row.locator(".pl-pages")).to_have_text(re.compile(r"^[2-7] / 8"), timeout=60_000)
        row.locator("button.pl-row-cancel").click()
        expect(row.locator(".pl-status")).to_have_text("cancelled", timeout=30_000)
        expect(row.locator(".pl-pages")).to_have_text(re.compile(r"^[2-8] / 8"))  # not 0 / 8
        _shots(page, "16_upload_cancelled_keeps_pages")
        row.locator("button.pl-row-again").click()
        expect(page.locator("#pl-upload-msg")).to_contain_text(f"Queued '{SLOW.name}' for indexing again")
        expect(opened.locator("tr.pl-row-cancelled")).to_have_count(0)  # the new row replaced it
        finished = page.locator("#pl-uploads-finished")
        expect(finished).to_contain_text("1 finished", timeout=90_000)  # the new row, done: collapsed
        expect(opened.locator("tr.pl-row")).to_have_count(0)
        expect(opened).to_contain_text("Nothing running or failed")

        # a refused file next to a good one: the refusal stays listed, the good one joins the finished
        _upload_in_ui(page, [EMPTY, AWS])
        rejected = opened.locator("tr.pl-row-rejected").filter(has_text=EMPTY.name)
        expect(rejected).to_contain_text("empty (0 bytes)")
        expect(finished).to_contain_text("2 finished", timeout=90_000)
        done_rows = page.locator("#pl-progress-done tr.pl-state-done")
        expect(done_rows.filter(has_text=AWS.name)).to_be_hidden()  # collapsed
        finished.get_by_text("2 finished").click()
        expect(done_rows).to_have_count(2)
        expect(done_rows.filter(has_text=AWS.name)).to_be_visible()
        page.wait_for_timeout(6000)  # the idle poll redraws the uploads (POLL_S): the accordion stays open
        expect(done_rows.filter(has_text=SLOW.name)).to_be_visible()
        _shots(page, "17_uploads_finished_expanded")

        page.reload()  # the refusal is kept on the server, with its reason
        expect(page.locator("#pl-collection input")).to_have_value("up")
        page.get_by_role("tab", name="Documents").click()
        rejected = page.locator("#pl-progress-open tr.pl-row-rejected").filter(has_text=EMPTY.name)
        expect(rejected).to_contain_text("empty (0 bytes)")
        expect(page.locator("#pl-uploads-finished")).to_contain_text("2 finished")
        rejected.locator("button.pl-row-dismiss").click()
        expect(page.locator("#pl-upload-msg")).to_contain_text(f"Removed '{EMPTY.name}' from the uploads list")
        expect(page.locator("#pl-progress tr.pl-row-rejected")).to_have_count(0)
        page.wait_for_timeout(2000)  # a dismissal starts no progress timer: no "indexing finished" notice
        expect(page.get_by_text("Indexing finished in 'up'")).to_have_count(0)
        page.reload()
        expect(page.locator("#pl-collection input")).to_have_value("up")
        page.get_by_role("tab", name="Documents").click()
        expect(page.locator("#pl-uploads-finished")).to_contain_text("2 finished")
        expect(page.locator("#pl-progress tr.pl-row-rejected")).to_have_count(0)
        page.goto("about:blank")


def test_password_protected_pdf_fails_for_people_then_retry_on_the_row(browser_page, settings_factory,  # noqa: ANN001, F811
                                                                       monkeypatch) -> None:  # noqa: ANN001
    """A PDF with a password, uploaded with a wrong one next to a slow file: the row says so in plain words
    (not the API's), the password box is empty again; Retry with password is on the row as soon as the file
    failed, while the slow file is still indexed, and with the right password it indexes it: the new row
    replaces the failed one."""
    from playwright.sync_api import expect

    _slow_worker(monkeypatch, page_s=1.5, finishing_s=0.0)
    settings = settings_factory(max_new_tokens=4, answer_top_k=1)
    seed_collections(settings, "locked")
    page = browser_page
    with serve(settings) as url:
        _documents_tab(page, url, "locked")
        _upload_in_ui(page, [LOCKED, SLOW], password="nope")
        expect(page.locator("#pl-upload-msg")).to_contain_text("Queued 2 file(s)")
        expect(page.locator("#pl-pdf-password input")).to_have_value("")  # not kept in the page
        row = page.locator("#pl-progress tr.pl-row-failed").filter(has_text=LOCKED.name)
        expect(row.locator(".pl-err")).to_contain_text("The password given did not open this PDF", timeout=60_000)
        expect(row).not_to_contain_text("form field")
        retry = row.locator("button.pl-row-retry")
        expect(retry).to_be_visible()  # while the rest of the upload still runs
        slow_row = page.locator("#pl-progress-open tr.pl-row").filter(has_text=SLOW.name)
        expect(slow_row.locator(".pl-status")).to_have_text("indexing")
        _shots(page, "13_password_failed")

        retry.click()
        expect(page.locator("#pl-retry")).to_contain_text(LOCKED.name)
        page.locator("#pl-retry-password input").fill("test")
        _shots(page, "14_password_retry_form")
        page.locator("#pl-retry-btn").click()
        expect(page.locator("#pl-upload-msg")).to_contain_text(f"Retrying '{LOCKED.name}' with the password")
        expect(page.locator("#pl-retry")).to_be_hidden()
        expect(page.locator("#pl-progress tr.pl-row-failed")).to_have_count(0)  # the retry's row replaced it
        expect(page.locator("#pl-progress-open tr.pl-row").filter(has_text=LOCKED.name)).to_have_count(1)
        open_finished(page, timeout=60_000)
        done = page.locator("#pl-progress tr.pl-state-done").filter(has_text=LOCKED.name)
        expect(done).to_have_count(1, timeout=90_000)
        expect(done.locator(".pl-pages")).to_contain_text("4 / 4")
        expect(page.locator("#pl-progress tr.pl-row-failed")).to_have_count(0)  # the retry replaced its row
        expect(page.locator("#pl-progress button.pl-row-retry")).to_have_count(0)
        expect(page.locator("#pl-docs")).to_contain_text(LOCKED.name)
        _shots(page, "15_password_retried")
        page.goto("about:blank")


def test_first_run_create_and_upload_then_select_and_delete_a_collection_row(browser_page, settings_factory) -> None:  # noqa: ANN001, F811
    """An empty data dir: one "Create a collection and upload" panel, no tabs to ask in; uploading there
    creates the collection with its document. In the Collections tab a click on a row selects it, Delete
    asks about that one by name with its counts, and deletes only it; counts and the picker follow. The
    favicon is served and linked; the tables do not wrap headers letter by letter on a phone."""
    from playwright.sync_api import expect

    settings = settings_factory(max_new_tokens=4, answer_top_k=1)
    page = browser_page
    with serve(settings) as url:
        icon = httpx.get(f"{url}/ui/favicon.ico", timeout=30)
        assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/"), icon.headers
        assert icon.content == (REPO / "ui" / "static" / "favicon.png").read_bytes()  # ours, not Gradio's

        page.goto(f"{url}/ui/")
        first = page.locator("#pl-first-run")
        expect(first).to_be_visible()
        expect(first).to_contain_text("Create a collection and upload")
        expect(page.locator("#pl-tabs-wrap")).to_be_hidden()
        expect(page.locator("#pl-ask")).to_be_hidden()  # nothing to ask yet
        hrefs = page.locator("link[rel~='icon']").evaluate_all("els => els.map(e => e.href)")
        assert any("favicon" in h for h in hrefs), hrefs
        _shots(page, "16_first_run")

        page.locator("#pl-first-name input").fill("invoices-2024")
        staged = [AWS, REAL_PDFS / "inv_oyo_hotel_receipt_in.pdf", REAL_PDFS / "inv_flipkart_tax_invoice_in.pdf"]
        page.locator("#pl-first-files input[type=file]").set_input_files([str(p) for p in staged])
        for p in staged:  # every staged file is listed, not only the first two
            expect(page.locator("#pl-first-files").get_by_text(p.stem).first).to_be_visible()
        page.locator("#pl-first-upload").click()
        expect(first).to_be_hidden()
        expect(page.locator("#pl-collection input")).to_have_value("invoices-2024")
        expect(page.locator("#pl-upload-msg")).to_contain_text("Created collection 'invoices-2024'")
        open_finished(page, timeout=60_000)
        expect(page.locator("#pl-progress tr.pl-state-done")).to_have_count(3, timeout=60_000)
        expect(page.locator("#pl-docs")).to_contain_text(AWS.name)

        page.get_by_role("tab", name="Collections").click()
        page.locator("#pl-new-name input, #pl-new-name textarea").first.fill("other")
        page.locator("#pl-create").click()
        expect(page.locator("#pl-coll-msg")).to_contain_text("Created collection 'other'")
        expect(page.locator("#pl-collection input")).to_have_value("other")
        table = page.locator("#pl-collections")
        table.get_by_role("gridcell", name="invoices-2024", exact=True).click()
        expect(page.locator("#pl-coll-selected")).to_contain_text("Selected: invoices-2024 (3 document(s), 3 page(s))")
        expect(page.locator("#pl-coll-delete-btn")).to_have_text("Delete 'invoices-2024'…")
        expect(page.locator("#pl-coll-delete-btn")).to_be_enabled()
        page.locator("#pl-coll-delete-btn").click()
        expect(page.locator("#pl-coll-confirm")).to_contain_text(
            "Delete collection 'invoices-2024' with 3 documents / 3 pages? This cannot be undone.")
        _shots(page, "17_collection_delete_confirm")
        page.locator("#pl-coll-confirm-btn").click()
        expect(page.locator("#pl-coll-msg")).to_contain_text("Deleted collection 'invoices-2024'")
        expect(table).not_to_contain_text("invoices-2024")
        expect(table).to_contain_text("other")
        expect(page.locator("#pl-collection input")).to_have_value("other")  # the picker's one was not deleted
        expect(page.locator("#pl-coll-selected")).to_have_text("")
        expect(page.locator("#pl-coll-delete-btn")).to_be_disabled()  # no row selected: no implicit target
        expect(page.locator("#pl-coll-summary")).to_contain_text("nothing to ask yet: upload files")  # "other" is empty
        assert httpx.get(f"{url}/v1/collections", timeout=30).json()  # "other" is still there

        # a phone: headers in one line (scroll sideways instead of letters stacked)
        page.set_viewport_size({"width": 390, "height": 844})
        heights = table.locator("[role=columnheader]").evaluate_all("els => els.map(e => e.getBoundingClientRect().height)")
        assert heights and max(heights) < 60, heights
        _shots(page, "18_collections_after_delete")
        page.goto("about:blank")


def test_hostile_files_uploaded_in_the_ui_are_parsed_in_the_sandbox_and_fail_one_line_each(  # noqa: D103
        browser_page, settings_factory, monkeypatch) -> None:  # noqa: ANN001, F811
    """Issue 26: every file of the hostile corpus uploaded through the Documents tab (a real server, the default
    settings: the sandbox on) with this process' PyMuPDF made unusable, so nothing of them is parsed in the
    server: each file gets its row, the one the job store has (indexed, partial or failed); a failed row says
    why in one line with no server path; the empty file is refused at upload by name; the server goes on
    answering and the collection holds exactly the pages the rows report."""
    import pagelens.ingest.pdf as pdf
    from playwright.sync_api import expect

    from pagelens.core.settings import Settings

    assert Settings(_env_file=None).isolate_rendering is True  # type: ignore[call-arg]
    hostile = sorted(HOSTILE_PDFS.glob("*.pdf"))
    empty = [p for p in hostile if p.stat().st_size == 0]
    files = [p for p in hostile if p.stat().st_size > 0]
    assert len(files) >= 20 and len(empty) == 1

    def no_pymupdf_here() -> None:
        raise AssertionError("PyMuPDF was used in the server process")

    monkeypatch.setattr(pdf, "_pymupdf", no_pymupdf_here)
    settings = settings_factory(page_longest_edge=256, max_seconds_per_document=60, max_files_per_request=64,
                                max_new_tokens=4, answer_top_k=1)
    assert settings.isolate_rendering
    seed_collections(settings, "hostile")
    page = browser_page
    with serve(settings) as url:
        _documents_tab(page, url, "hostile")
        _upload_in_ui(page, [*files, *empty])
        expect(page.locator("#pl-upload-msg")).to_contain_text(f"Queued {len(files)} file(s)")
        refused = page.locator("#pl-progress-open tr.pl-row-rejected").filter(has_text=empty[0].name)
        expect(refused).to_contain_text("empty (0 bytes)")

        deadline = time.monotonic() + 600
        while True:  # the job's end, as the API reports it
            job = httpx.get(f"{url}/v1/jobs?collection=hostile", timeout=30).json()[0]
            if job["status"] in ("done", "failed", "cancelled") or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        assert job["status"] == "done", job
        assert sorted(d["name"] for d in job["documents"]) == sorted(p.name for p in files)
        open_finished(page, timeout=60_000)
        rows = page.locator("#pl-progress tr.pl-row")
        expect(rows.filter(has_text=files[-1].name)).to_have_count(1)
        words = {"indexed": "done", "partial": "partial", "failed": "failed"}
        outcome: dict[str, int] = {}
        for doc in job["documents"]:
            status = doc["status"]
            assert status in words, doc
            outcome[status] = outcome.get(status, 0) + 1
            row = rows.filter(has_text=doc["name"])
            expect(row).to_have_count(1)
            if status == "failed":
                expect(row.locator(".pl-status")).to_have_text("failed")
                errors = row.locator(".pl-err").all_inner_texts()
                assert errors, doc["name"]
                for text in errors:
                    assert text.strip() and "\n" not in text.strip(), (doc["name"], text)
                    assert str(settings.data_dir) not in text and "Traceback" not in text, (doc["name"], text)
                if "_enc_" in doc["name"]:  # said in plain words, with what to do on the row
                    assert "password-protected" in errors[0], errors
                    expect(row.locator("button.pl-row-retry")).to_be_visible()
                else:
                    assert errors[0].startswith(f"{doc['name']}: "), errors
            else:
                expect(row.locator(".pl-pages")).to_contain_text(f"{doc['pages_done']} / ")
        assert outcome.get("failed", 0) >= 3 and outcome.get("indexed", 0) >= 5, outcome
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        pages = httpx.get(f"{url}/v1/collections/hostile", timeout=30).json()["pages"]
        assert pages == sum(d["pages_done"] for d in job["documents"]) > 0
        print(f"hostile corpus via the UI: {len(files)} files -> {outcome}; {pages} pages indexed")
        page.goto("about:blank")
