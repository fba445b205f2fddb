"""The REST API end to end with the tiny random models through FastAPI's TestClient."""

from __future__ import annotations

import io

import pytest
from api_helpers import assert_error, parse_sse, upload, wait_job
from conftest import HOSTILE_PDFS, REAL_PDFS
from fastapi.testclient import TestClient
from PIL import Image

from pagelens.app.jobs import JobStore
from pagelens.server import create_app

pytestmark = pytest.mark.slow

AWS = REAL_PDFS / "inv_aws_invoice_en.pdf"
OYO = REAL_PDFS / "inv_oyo_hotel_receipt_in.pdf"
TWO_PAGES = REAL_PDFS / "fr_demolition_minutes_2023.pdf"


def _citation_keys(citations: list[dict]) -> list[tuple[str, int]]:
    return [(c["doc_id"], int(c["page_no"])) for c in citations]


def test_end_to_end(settings_factory) -> None:
    settings = settings_factory(max_new_tokens=8)
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        r = client.post("/v1/collections", json={"name": "inv"})
        assert r.status_code == 201, r.text
        assert r.json()["name"] == "inv" and r.json()["pages"] == 0
        assert_error(client.post("/v1/collections", json={"name": "inv"}), 409, "collection_exists")

        r = upload(client, "inv", [AWS, OYO], metadata='{"source": "api"}')
        assert r.status_code == 202, r.text
        assert r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
        assert r.json()["status"] in ("queued", "running")
        job = wait_job(client, r.json()["id"])
        assert job["status"] == "done", str(job)
        assert job["pages_done"] == job["pages_total"] == 2
        assert [d["status"] for d in job["documents"]] == ["indexed", "indexed"]
        assert all("path" not in d for d in job["documents"])
        assert [j["id"] for j in client.get("/v1/jobs").json()] == [job["id"]]

        docs = client.get("/v1/collections/inv/documents").json()
        assert sorted(d["doc_name"] for d in docs) == sorted([AWS.name, OYO.name])
        assert all(d["status"] == "complete" and d["metadata"] == {"source": "api"} for d in docs)
        info = client.get("/v1/collections/inv").json()
        assert (info["documents"], info["pages"]) == (2, 2)

        r = client.post("/v1/collections/inv/search", json={"question": "total amount due", "k": 2})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert [h["rank"] for h in results] == [1, 2]
        assert {h["doc_name"] for h in results} == {AWS.name, OYO.name}
        for h in results:
            assert h["image_url"] == f"/v1/collections/inv/documents/{h['doc_id']}/pages/1.png"
            assert "image_path" not in h

        # ask, JSON
        r = client.post("/v1/collections/inv/ask", json={"question": "total amount due", "k": 2})
        assert r.status_code == 200, r.text
        answer = r.json()
        assert isinstance(answer["text"], str)
        assert sorted(_citation_keys(answer["citations"])) == sorted((h["doc_id"], 1) for h in results)
        assert answer["timings"]

        # ask, Server-Sent Events
        r = client.post("/v1/collections/inv/ask", json={"question": "total amount due", "k": 2, "stream": True})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(r.text)
        kinds = [e for e, _ in events]
        assert kinds[-1] == "done" and set(kinds[:-1]) <= {"token"}, kinds
        done = events[-1][1]
        assert "".join(d["text"] for e, d in events if e == "token") == done["text"]
        assert sorted(_citation_keys(done["citations"])) == sorted((h["doc_id"], 1) for h in results)

        # page image
        url = results[0]["image_url"]
        r = client.get(url)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.content[:8] == b"\x89PNG\r\n\x1a\n"
        image = Image.open(io.BytesIO(r.content))
        assert max(image.size) == settings.page_longest_edge
        assert_error(client.get(url.replace("/1.png", "/2.png")), 404)
        assert_error(client.get("/v1/collections/inv/documents/ffffffffffffffff/pages/1.png"), 404)

        # a document a job is indexing right now is listed as such and never searchable
        aws_id = next(d["doc_id"] for d in docs if d["doc_name"] == AWS.name)
        oyo_id = next(d["doc_id"] for d in docs if d["doc_name"] == OYO.name)
        jobs: JobStore = client.app.state.pagelens.jobs
        fake = jobs.create(JobStore.new_id(), "inv", [])
        fake.status, fake.documents = "running", [{"index": 0, "name": AWS.name, "path": "", "size": 1,
                                                   "sha256": "", "doc_id": aws_id, "status": "running",
                                                   "page_count": 1, "pages_done": 0, "errors": []}]
        jobs.save(fake)
        hidden = client.post("/v1/collections/inv/search", json={"question": "total", "k": 5}).json()["results"]
        assert [h["doc_id"] for h in hidden] == [oyo_id]
        by_id = {d["doc_id"]: d for d in client.get("/v1/collections/inv/documents").json()}
        assert by_id[aws_id]["status"] == "indexing"
        assert_error(client.delete(f"/v1/collections/inv/documents/{aws_id}"), 409, "document_busy")
        fake.status = "cancelled"
        jobs.save(fake)

        # delete a document: gone from search and listing
        r = client.delete(f"/v1/collections/inv/documents/{aws_id}")
        assert r.status_code == 200 and r.json()["pages_deleted"] == 1
        after = client.post("/v1/collections/inv/search", json={"question": "total", "k": 5}).json()["results"]
        assert [h["doc_id"] for h in after] == [oyo_id]
        assert [d["doc_id"] for d in client.get("/v1/collections/inv/documents").json()] == [oyo_id]
        assert_error(client.delete(f"/v1/collections/inv/documents/{aws_id}"), 404, "document_not_found")

        # errors are JSON, never a stack trace
        assert_error(client.post("/v1/collections/nope/search", json={"question": "x"}), 404, "collection_not_found")
        assert_error(client.post("/v1/collections/inv/search", json={"question": ""}), 422, "validation_error")
        assert_error(client.post("/v1/collections/inv/search", json={"question": "x", "k": 0}), 422)
        assert_error(client.post("/v1/collections/inv/search", content=b"{not json",
                                 headers={"content-type": "application/json"}), 400, "invalid_json")
        assert_error(client.get("/v1/collections/-bad!/documents"), 422)
        assert_error(client.get("/v1/jobs/" + "0" * 32), 404, "job_not_found")
        assert_error(client.get("/v1/nothing-here"), 404)
        assert client.get("/openapi.json").status_code == 200

        r = client.delete("/v1/collections/inv")
        assert r.status_code == 200
        assert client.get("/v1/collections").json() == []


def test_hostile_uploads_and_limits(settings_factory) -> None:
    settings = settings_factory(max_new_tokens=8, max_files_per_request=4,
                                max_upload_bytes=AWS.stat().st_size + 16 * 1024)
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/collections", json={"name": "h"}).status_code == 201
        uploads = settings.data_dir / "uploads"

        # a good file and two broken PDFs in one upload: the good one is indexed, the others are errors
        bad = [HOSTILE_PDFS / "h_header_plus_eof_only.pdf", HOSTILE_PDFS / "h_enc_aes256_r6_pw_usersecret.pdf",
               HOSTILE_PDFS / "h_xref_keyword_missing.pdf"]  # the last one is repairable
        r = upload(client, "h", [bad[0], AWS, bad[1], bad[2]])
        assert r.status_code == 202, r.text
        job = wait_job(client, r.json()["id"])
        assert job["status"] == "done"
        by_name = {d["name"]: d for d in job["documents"]}
        assert by_name[AWS.name]["status"] == "indexed" and by_name[AWS.name]["errors"] == []
        failed = [d for d in job["documents"] if d["status"] not in ("indexed", "skipped")]
        assert {d["name"] for d in failed} >= {bad[0].name, bad[1].name}
        assert all(d["status"] == "failed" for d in failed)
        for doc in failed:
            assert doc["errors"] and all(e["error"] for e in doc["errors"])
            assert str(uploads) not in str(doc["errors"])  # no server paths in messages
        assert job["documents_failed"] == len(failed)
        assert job["pages_done"] >= 1
        docs = client.get("/v1/collections/h/documents").json()
        assert AWS.name in {d["doc_name"] for d in docs}
        assert not any(uploads.glob("*")), "uploads are removed once the job is finished"

        # type by content: a text file named .pdf, an empty file -> 415, nothing kept
        assert_error(upload(client, "h", [("notes.pdf", b"hello, I am text\n" * 10)]), 415, "unsupported_file")
        assert_error(upload(client, "h", [HOSTILE_PDFS / "h_empty_0_bytes.pdf"]), 415, "unsupported_file")
        # over the size limit -> 413 while streaming, partial file deleted
        big = AWS.read_bytes() + b"\0" * (128 * 1024)
        assert_error(upload(client, "h", [("big.pdf", big)]), 413, "upload_too_large")
        assert AWS.stat().st_size + OYO.stat().st_size > settings.max_upload_bytes
        assert_error(upload(client, "h", [AWS, OYO]), 413, "upload_too_large")
        # too many files
        assert_error(upload(client, "h", [("a.png", b"\x89PNG\r\n\x1a\n" + b"0" * 10)] * 5), 413, "too_many_files")
        # not multipart, no files, bad metadata, unknown collection
        assert_error(client.post("/v1/collections/h/documents", json={"files": []}), 415)
        assert_error(client.post("/v1/collections/h/documents", data={"force": "true"},
                                 files={"x": ("", b"")}), 422)
        assert_error(upload(client, "h", [AWS], metadata="[1, 2]"), 422)
        assert_error(upload(client, "nope", [AWS]), 404, "collection_not_found")
        assert not any(uploads.glob("*")), "rejected uploads leave nothing on disk"

        # traversal in the file name cannot leave the job folder; the name is kept as a display name
        r = upload(client, "h", [("../../../../etc/evil.pdf", OYO.read_bytes())])
        assert r.status_code == 202, r.text
        assert r.json()["documents"][0]["name"] == "evil.pdf"
        job = wait_job(client, r.json()["id"])
        assert job["documents"][0]["status"] == "indexed"
        assert not (settings.data_dir.parent / "etc").exists()


def test_job_resumes_after_restart(settings_factory) -> None:
    settings = settings_factory(max_new_tokens=8)
    # first server: accepts the upload, then "dies" before its worker indexes anything
    app = create_app(settings)
    client = TestClient(app)  # no `with`: the lifespan (and so the worker) never starts
    assert client.post("/v1/collections", json={"name": "r"}).status_code == 201
    r = upload(client, "r", [AWS, OYO])
    assert r.status_code == 202
    job_id = r.json()["id"]
    state = app.state.pagelens
    # simulate a crash in the middle of the job: the row says running, the first document half-way
    job = state.jobs.get(job_id)
    job.status = "running"
    job.documents[0]["status"] = "running"
    state.jobs.save(job)
    assert len(list((settings.data_dir / "uploads" / job_id).iterdir())) == 2
    state.service.close()
    state.jobs.close()

    # second server on the same data dir: resumes the job and finishes it
    with TestClient(create_app(settings)) as client2:
        job = wait_job(client2, job_id)
        assert job["status"] == "done", str(job)
        assert job["pages_done"] == job["pages_total"] == 2
        info = client2.get("/v1/collections/r").json()
        assert (info["documents"], info["pages"]) == (2, 2)  # exact, no duplicates
        # upload again: idempotent, skipped, still no duplicates
        again = wait_job(client2, upload(client2, "r", [AWS]).json()["id"])
        assert again["documents"][0]["status"] == "skipped"
        assert client2.get("/v1/collections/r").json()["pages"] == 2


def test_worker_stopped_mid_document_resumes_without_duplicates(settings_factory) -> None:
    settings = settings_factory(max_new_tokens=8, embed_batch_size=1)
    app = create_app(settings)
    state = app.state.pagelens
    with TestClient(app) as client:
        assert client.post("/v1/collections", json={"name": "s"}).status_code == 201
        state.worker.stop()  # no worker: the job stays queued
        job_id = upload(client, "s", [AWS, TWO_PAGES]).json()["id"]
        # run it by hand and stop the worker after the first page of the 2-page document
        original = state.worker._progress

        def progress(job, doc):  # noqa: ANN001, ANN202
            inner = original(job, doc)

            def callback(event, info):  # noqa: ANN001, ANN202
                if event == "page_done" and doc["index"] == 1:
                    state.worker._stop.set()
                inner(event, info)

            return callback

        state.worker._progress = progress  # type: ignore[method-assign]
        state.worker._stop.clear()
        state.worker.run_job(state.jobs.get(job_id))
        job = state.jobs.get(job_id)
        assert job.status == "queued"
        assert [d["status"] for d in job.documents] == ["indexed", "queued"]
        # the document cut half-way was removed again: never a half document in the collection
        assert client.get("/v1/collections/s").json()["pages"] == 1
    state.service.close()  # one process per embedded store: release it before the "restart"

    with TestClient(create_app(settings)) as client2:
        job = wait_job(client2, job_id)
        assert job["status"] == "done", str(job)
        assert job["pages_done"] == job["pages_total"] == 3
        info = client2.get("/v1/collections/s").json()
        assert (info["documents"], info["pages"]) == (2, 3)


def test_cancel_queued_job(settings_factory) -> None:
    settings = settings_factory()
    app = create_app(settings)
    client = TestClient(app)  # worker not started
    assert client.post("/v1/collections", json={"name": "c"}).status_code == 201
    job_id = upload(client, "c", [AWS]).json()["id"]
    r = client.post(f"/v1/jobs/{job_id}/cancel")
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    assert r.json()["documents"][0]["status"] == "cancelled"
    assert not (settings.data_dir / "uploads" / job_id).exists()
    assert client.get("/v1/jobs?collection=c&status=cancelled").json()[0]["id"] == job_id
    app.state.pagelens.service.close()


def test_readyz(settings_factory, tmp_path) -> None:
    with TestClient(create_app(settings_factory())) as client:
        r = client.get("/readyz")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "ok"
    with TestClient(create_app(settings_factory(retriever_model=str(tmp_path / "missing")))) as client:
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["reasons"]
        assert client.get("/healthz").status_code == 200


def test_api_without_the_web_ui(settings_factory) -> None:
    """``create_app(web_ui=False)``: the same /v1 API with no Gradio mount (API-only deployments and
    machines without gradio); by default the UI is at /ui."""
    settings = settings_factory()
    with TestClient(create_app(settings, web_ui=False)) as client:
        assert client.get("/v1/collections").status_code == 200
        assert client.get("/ui/").status_code == 404
    with TestClient(create_app(settings)) as client:
        r = client.get("/ui/")
        assert r.status_code == 200 and "gradio" in r.text.lower()
