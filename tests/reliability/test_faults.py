"""Faults seen through the API: the vector store down or locked, a model that does not load, a full disk.

Every outage answers 503 (507 for a full disk) with the one JSON error shape, a message a user can act
on and ``Retry-After``; ``/healthz`` stays 200 while ``/readyz`` says why it is not ready; accepted
jobs wait for the store and resume; nothing partial is left behind.
"""

from __future__ import annotations

import errno
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from api_helpers import assert_error, upload, wait_job
from conftest import REAL_PDFS
from fastapi.testclient import TestClient

from pagelens.server import create_app

AWS = REAL_PDFS / "inv_aws_invoice_en.pdf"
REPO = Path(__file__).resolve().parents[2]


def _closed_port_settings(settings_factory):
    # Port 9 (discard) on loopback: nothing listens, connections are refused at once.
    return settings_factory(qdrant_url="http://127.0.0.1:9", qdrant_retries=0, qdrant_timeout_s=1)


def test_server_store_down_is_503_with_retry_after(settings_factory) -> None:
    settings = _closed_port_settings(settings_factory)
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        r = client.get("/readyz")
        assert r.status_code == 503
        assert any(reason.startswith("store: StoreUnavailableError") and "127.0.0.1:9" in reason
                   for reason in r.json()["reasons"]), r.json()
        for method, url, body in (
            ("GET", "/v1/collections", None),
            ("POST", "/v1/collections", {"name": "c"}),
            ("GET", "/v1/collections/c", None),
            ("POST", "/v1/collections/c/search", {"question": "total"}),
            ("POST", "/v1/collections/c/ask", {"question": "total"}),
        ):
            r = client.request(method, url, json=body)
            err = assert_error(r, 503, "store_unavailable")
            assert "127.0.0.1:9" in err["message"] and "unreachable" in err["message"], err
            assert r.headers["retry-after"].isdigit(), (url, r.headers)
        r = upload(client, "c", [AWS])
        assert_error(r, 503, "store_unavailable")
        assert r.headers["retry-after"].isdigit()
        assert not any((settings.data_dir / "uploads").glob("*/*")), "an upload of a refused request was kept"


_HOLD_EDGE = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {repo!r})
    from pathlib import Path
    from pagelens.index.stores.edge_store import QdrantEdgeStore
    store = QdrantEdgeStore(Path({root!r}))
    store.count({collection!r})  # opens the shard: its WAL is now locked by this process
    print("locked", flush=True)
    time.sleep(120)
""")


def _hold_edge(root: Path, collection: str) -> subprocess.Popen[str]:
    code = _HOLD_EDGE.format(repo=str(REPO), root=str(root), collection=collection)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "locked", line
    return proc


@pytest.mark.slow
def test_edge_locked_by_another_process_then_job_resumes(settings_factory) -> None:
    """A second process holding the embedded store: 503 naming the data dir; an accepted upload
    waits (queued, retried with backoff) and is indexed once the other process is gone."""
    settings = settings_factory()
    app = create_app(settings)
    with TestClient(app) as client:
        assert client.post("/v1/collections", json={"name": "c"}).status_code == 201
    # the app (and its shard) is closed now; another process takes the store
    holder = _hold_edge(settings.edge_dir, "c")
    try:
        app = create_app(settings)
        worker = app.state.pagelens.worker
        worker.store_retry_base_s = 0.2
        worker.store_retry_max_s = 0.5
        with TestClient(app) as client:
            r = client.post("/v1/collections/c/search", json={"question": "total"})
            err = assert_error(r, 503, "store_unavailable")
            assert str(settings.data_dir) in err["message"] and "another pagelens process" in err["message"]
            assert r.headers["retry-after"].isdigit()
            assert client.get("/readyz").status_code in (200, 503)  # list_collections reads manifests only

            r = upload(client, "c", [AWS])
            assert r.status_code == 202, r.text  # accepted: the upload is safe on disk
            job_id = r.json()["id"]
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                job = client.get(f"/v1/jobs/{job_id}").json()
                assert job["status"] in ("queued", "running"), job  # waits, never fails
                time.sleep(0.2)
            assert worker.store_outage and "another pagelens process" in worker.store_outage
            ready = client.get("/readyz")
            assert ready.status_code == 503 and "queued jobs wait" in " ".join(ready.json()["reasons"]), ready.text

            holder.terminate()
            holder.wait(10)
            job = wait_job(client, job_id, timeout=120)
            assert job["status"] == "done", job
            assert [d["status"] for d in job["documents"]] == ["indexed"], job
            assert client.get("/v1/collections/c").json()["pages"] == 1
            assert worker.store_outage is None
            assert client.get("/readyz").status_code == 200
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)


def test_model_load_failure(settings_factory, tiny_models, tmp_path) -> None:
    """Weights that do not load: search and ask 503 model_unavailable; /readyz 503 with the reason;
    /healthz 200."""
    broken = tmp_path / "broken-retriever"
    shutil.copytree(tiny_models["retriever"], broken)
    for weights in list(broken.glob("*.safetensors")) + list(broken.glob("*.bin")):
        weights.write_bytes(b"not a weights file")
    good = settings_factory()
    with TestClient(create_app(good)) as client:  # a collection to search, built by the good model
        assert client.post("/v1/collections", json={"name": "c"}).status_code == 201
    settings = settings_factory(retriever_model=str(broken))
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        for path in ("/v1/collections/c/search", "/v1/collections/c/ask"):
            r = client.post(path, json={"question": "total"})
            if r.status_code == 409:  # the manifest names the good model; use a collection of this one
                break
            err = assert_error(r, 503, "model_unavailable")
            assert r.headers["retry-after"].isdigit()
            assert str(broken) in err["message"] or "load" in err["message"], err
        # a collection bound to the broken model: creating it may already need the model
        r = client.post("/v1/collections", json={"name": "b"})
        if r.status_code == 201:
            r = client.post("/v1/collections/b/search", json={"question": "total"})
        err = assert_error(r, 503, "model_unavailable")
        assert r.headers["retry-after"].isdigit()
        ready = client.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert any(reason.startswith("model load failed:") for reason in ready.json()["reasons"]), ready.json()
        assert client.get("/healthz").json() == {"status": "ok"}


class _FullDisk:
    """A file writer that accepts ``room`` bytes, then fails like a full disk."""

    def __init__(self, path: Path, room: int) -> None:
        self.fh = open(path, "xb")  # noqa: SIM115
        self.room = room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            self.fh.write(data[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.fh.write(data)

    def close(self) -> None:
        self.fh.close()


def test_disk_full_while_saving_upload(settings_factory, monkeypatch) -> None:
    import pagelens.api.uploads

    settings = settings_factory()
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/collections", json={"name": "c"}).status_code == 201
        monkeypatch.setattr(pagelens.api.uploads, "_open_part", lambda path: _FullDisk(path, room=4096))
        r = upload(client, "c", [AWS, REAL_PDFS / "inv_oyo_hotel_receipt_in.pdf"])
        err = assert_error(r, 507, "insufficient_storage")
        assert "no space left" in err["message"]
        assert client.get("/v1/jobs").json() == []
        uploads = settings.data_dir / "uploads"
        assert not uploads.exists() or not any(uploads.rglob("*")), list(uploads.rglob("*"))

        # another I/O failure: 503 with Retry-After, nothing kept either
        def broken(path: Path):
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(pagelens.api.uploads, "_open_part", broken)
        r = upload(client, "c", [AWS])
        assert_error(r, 503, "storage_unavailable")
        assert r.headers["retry-after"].isdigit()
        assert not uploads.exists() or not any(uploads.rglob("*"))

        # the job table itself full: 507, the saved files are removed again
        monkeypatch.undo()
        import sqlite3

        def full(*args, **kwargs):
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(app_jobs(client), "create", full)
        r = upload(client, "c", [AWS])
        assert_error(r, 507, "insufficient_storage")
        assert not uploads.exists() or not any(uploads.rglob("*"))
        monkeypatch.undo()
        r = upload(client, "c", [AWS])  # and it works again afterwards
        assert r.status_code == 202, r.text
        assert wait_job(client, r.json()["id"])["status"] == "done"


def app_jobs(client: TestClient):
    return client.app.state.pagelens.jobs
