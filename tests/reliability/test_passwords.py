"""Encrypted PDFs through the API and the UI: a password per upload (form field ``password``), kept in
server memory only: never in the job JSON, the logs or the job table (``jobs.sqlite3``)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from api_helpers import upload, wait_job
from conftest import HOSTILE_PDFS, REAL_PDFS
from fastapi.testclient import TestClient

from pagelens.app.jobs import JobFile, JobStore
from pagelens.server import create_app

ENC = HOSTILE_PDFS / "h_enc_rc4_40_pw_foo.pdf"  # password "foo"
PLAIN = REAL_PDFS / "inv_aws_invoice_en.pdf"
SECRET = "foo"


def _locked(tmp_path: Path) -> Path:
    """The encrypted PDF under a name that does not contain the password (so a leak is detectable)."""
    path = tmp_path / "locked.pdf"
    shutil.copyfile(ENC, path)
    return path


def _stored_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("jobs.sqlite3*")))


def test_password_per_upload(settings_factory, tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    locked = _locked(tmp_path)
    settings = settings_factory(page_longest_edge=128)
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/collections", json={"name": "e"}).status_code == 201
        # without a password: the document fails, by name, saying how to pass the password
        job = wait_job(client, upload(client, "e", [locked]).json()["id"])
        (doc,) = job["documents"]
        assert doc["status"] == "failed", doc
        (err,) = doc["errors"]
        assert err["code"] == "encrypted_document"
        assert "locked.pdf" in err["error"] and "'password' form field" in err["error"], err
        assert "\n" not in err["error"]
        # with the wrong password: the same, saying it is wrong
        job = wait_job(client, upload(client, "e", [locked], password="bar").json()["id"])
        assert "wrong" in job["documents"][0]["errors"][0]["error"], job
        # with the password: indexed, a plain PDF of the same upload too
        r = upload(client, "e", [locked, PLAIN], password=SECRET)
        assert r.status_code == 202, r.text
        assert SECRET not in r.text
        job = wait_job(client, r.json()["id"])
        assert [d["status"] for d in job["documents"]] == ["indexed", "indexed"], job
        assert job["documents"][0]["password_given"] is True
        for view in (client.get(f"/v1/jobs/{job['id']}").text, client.get("/v1/jobs").text):
            assert SECRET not in view
        assert client.get("/v1/collections/e").json()["documents"] == 2
    assert SECRET.encode() not in _stored_bytes(settings.data_dir)
    assert SECRET not in caplog.text
    assert all(SECRET not in str(r.args) for r in caplog.records)


def test_password_lost_after_restart(settings_factory, tmp_path) -> None:
    """A job queued with a password, then the server restarted before running it: the encrypted PDF
    fails with a clear message, the plain one is still indexed."""
    settings = settings_factory(page_longest_edge=128)
    with TestClient(create_app(settings)) as client:  # creates the collection, then "stops"
        assert client.post("/v1/collections", json={"name": "r"}).status_code == 201
    before = JobStore(settings.data_dir)  # the process that accepted the upload
    job_id = before.new_id()
    dest = before.upload_dir(job_id)
    dest.mkdir(parents=True)
    files = []
    for n, src in enumerate([_locked(tmp_path), PLAIN], start=1):
        target = dest / f"{n:03d}_{src.stem}.pdf"
        shutil.copyfile(src, target)
        import hashlib

        files.append(JobFile(name=src.name, path=target, size=target.stat().st_size,
                             sha256=hashlib.sha256(target.read_bytes()).hexdigest()))
    before.create(job_id, "r", files, password=SECRET)
    assert before.password(job_id) == SECRET
    before.close()
    assert SECRET.encode() not in _stored_bytes(settings.data_dir)
    with TestClient(create_app(settings)) as client:  # the restarted server
        job = wait_job(client, job_id)
    enc, plain = job["documents"]
    assert plain["status"] == "indexed", plain
    assert enc["status"] == "failed", enc
    message = enc["errors"][0]["error"]
    assert "locked.pdf" in message and "password needed again after a restart: re-upload with the password" in message


def test_password_through_the_ui(settings_factory, tmp_path) -> None:
    from pagelens.ui.app import enqueue_files

    from pagelens.app.access import Principal

    settings = settings_factory(page_longest_edge=128)
    app = create_app(settings)
    with TestClient(app) as client:
        assert client.post("/v1/collections", json={"name": "u"}).status_code == 201
        state = app.state.pagelens
        from pagelens.ui.app import UIContext

        ctx = UIContext(settings=settings, service=state.service, jobs=state.jobs, worker=state.worker)
        job, rejected = enqueue_files(ctx, Principal("t", "admin"), "u", [str(_locked(tmp_path))], SECRET)
        assert job is not None and not rejected
        done = wait_job(client, job.id)
        assert done["documents"][0]["status"] == "indexed", done
    assert SECRET.encode() not in _stored_bytes(settings.data_dir)
