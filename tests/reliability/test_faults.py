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
from typing import Any

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
            # until the worker has met the locked store (it first loads the model and prepares pages:
            # how long that takes depends on the machine's load, so no fixed wait)
            deadline = time.monotonic() + 300
            while not worker.store_outage:
                job = client.get(f"/v1/jobs/{job_id}").json()
                assert job["status"] in ("queued", "running"), job  # waits, never fails
                assert time.monotonic() < deadline, "the worker never reached the store"
                time.sleep(0.2)
            for _ in range(5):  # and keeps waiting
                job = client.get(f"/v1/jobs/{job_id}").json()
                assert job["status"] in ("queued", "running"), job
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


# --- retried server calls after a lost reply ------------------------------------------------------


class LostReplies:
    """A ``QdrantClient(":memory:")`` behind a faulty network: the first call of each method named in
    ``lose`` reaches the server and is applied, then its reply is lost (``httpx.ReadError``, a transient
    error the store retries). Alias changes follow a strict server: creating an alias that exists or
    deleting one that does not is refused (older Qdrant servers did), so a blind retry of an applied
    change fails. ``outage``: after each lost reply, that many further calls fail before reaching the
    server (``httpx.ConnectError``). ``before``: {method: callable} run once before that call is applied
    (another client)."""

    def __init__(self, lose: set[str], outage: int = 0, before: dict[str, Any] | None = None) -> None:
        from qdrant_client import QdrantClient

        self.inner = QdrantClient(":memory:")
        self.lose = set(lose)
        self.outage = outage
        self.before = dict(before or {})
        self.lost: list[str] = []
        self.calls: dict[str, int] = {}
        self._down = 0

    def update_collection_aliases(self, change_aliases_operations: list[Any], **kwargs: Any) -> Any:
        from qdrant_client import models
        from qdrant_client.http.exceptions import UnexpectedResponse

        existing = {a.alias_name for a in self.inner.get_aliases().aliases}
        for op in change_aliases_operations:  # applied in order, all or nothing
            if isinstance(op, models.CreateAliasOperation):
                if op.create_alias.alias_name in existing:
                    raise UnexpectedResponse(409, "Conflict", b'{"status":{"error":"alias already exists"}}', None)  # type: ignore[arg-type]
                existing.add(op.create_alias.alias_name)
            if isinstance(op, models.DeleteAliasOperation):
                if op.delete_alias.alias_name not in existing:
                    raise UnexpectedResponse(404, "Not Found", b'{"status":{"error":"alias not found"}}', None)  # type: ignore[arg-type]
                existing.discard(op.delete_alias.alias_name)
        return self._faulty("update_collection_aliases", self.inner.update_collection_aliases)(
            change_aliases_operations=change_aliases_operations, **kwargs)

    def _faulty(self, name: str, fn: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            import httpx

            self.calls[name] = self.calls.get(name, 0) + 1
            if self._down:
                self._down -= 1
                raise httpx.ConnectError("connection refused (the server is still away)")
            if name in self.before:
                self.before.pop(name)()
            result = fn(*args, **kwargs)
            if name in self.lose and name not in self.lost:
                self.lost.append(name)
                self._down = self.outage
                raise httpx.ReadError("connection reset by peer (the reply was lost)")
            return result

        return call

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.inner, name)
        return self._faulty(name, value) if callable(value) and not name.startswith("_") else value


def _lossy_store(client: LostReplies) -> Any:
    from pagelens.index.stores.aliases import with_aliases
    from pagelens.index.stores.server_store import QdrantServerStore

    return with_aliases(QdrantServerStore(client, prefix="p_", retries=3, retry_base_s=0.0))  # type: ignore[arg-type]


def _manifest(name: str, dim: int = 8, created_at: str = "2026-12-01T00:00:00+00:00") -> Any:
    from pagelens.core.types import CollectionManifest

    return CollectionManifest(name=name, model_id="m", model_revision=None, dim=dim, created_at=created_at)


@pytest.mark.parametrize("outage", [0, 1])
def test_create_collection_retried_after_a_lost_reply_succeeds(outage: int) -> None:
    """The create reached the server, its reply did not. Back at once (outage 0): the collection is
    found with this request's configuration, success without a resend. Still away for one call
    (outage 1): the create is retried, and its "already exists" with the same configuration is
    success. Either way the collection is there once, as asked."""
    client = LostReplies(lose={"create_collection"}, outage=outage)
    store = _lossy_store(client)
    store.create_collection(_manifest("c"))
    assert client.lost == ["create_collection"] and client.calls["create_collection"] == 1 + outage
    assert store.list_collections() == ["c"]
    assert store.get_manifest("c") == _manifest("c")


def test_create_collection_racing_another_config_is_a_clear_error() -> None:
    """Another client creates the same name with another configuration between our check and our
    create: a clear 409 naming the collection and the difference, never success."""
    from qdrant_client import models

    from pagelens.core.errors import CollectionExistsError

    client = LostReplies(lose=set())
    vectors = {v: models.VectorParams(size=16, distance=models.Distance.DOT) for v in ("colsmol", "colsmol_rows")}
    client.before["create_collection"] = lambda: client.inner.create_collection(
        "p_c", vectors_config=vectors, metadata={"pagelens_manifest": _manifest("c", dim=16).to_dict()})
    store = _lossy_store(client)
    with pytest.raises(CollectionExistsError) as info:
        store.create_collection(_manifest("c"))
    message = info.value.message
    assert "'c' already exists" in message and "different configuration" in message, message
    assert "dim=16 (wanted 8)" in message and "pagelens delete --collection c --all" in message, message


def test_alias_swap_retried_after_a_lost_reply_ends_in_the_same_state() -> None:
    """Create, switch and remove an alias, each reply lost once: every retry ends where one clean call
    would (a blind resend of "create alias" would be refused by the strict server here)."""
    client = LostReplies(lose={"update_collection_aliases"}, outage=1)
    store = _lossy_store(client)
    for name in ("v1", "v2"):
        store.create_collection(_manifest(name))
    store.aliases.set("live", "v1")  # first create of the alias, reply lost
    assert client.lost == ["update_collection_aliases"]
    assert store.aliases.all() == {"live": "v1"} and store.resolve_alias("live") == "v1"
    for target in ("v2", "v1"):  # switches: delete + create in one atomic request, reply lost each time
        client.lost.clear()
        store.aliases.set("live", target)
        assert client.lost == ["update_collection_aliases"]
        assert store.aliases.all() == {"live": target}
    client.lost.clear()
    store.aliases.remove("live")
    assert client.lost == ["update_collection_aliases"] and store.aliases.all() == {}
    assert store.list_collections() == ["v1", "v2"]


def test_readyz_tells_reasons_to_an_admin_key_only(settings_factory) -> None:
    """Not ready (the Qdrant server away): without a key, with a wrong key or with a non-admin key,
    /readyz answers the status alone (503), with no exception text, data dir path or Qdrant URL; an
    admin key gets the reasons. /healthz stays open."""
    keys = "adm-k3y:admin;read-k3y:r:*"
    settings = settings_factory(qdrant_url="http://127.0.0.1:9", qdrant_retries=0, qdrant_timeout_s=1,
                                api_keys=keys)
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer read-k3y"}):
            r = client.get("/readyz", headers=headers)
            assert r.status_code == 503, r.text
            body = r.json()
            assert body == {"status": "unavailable", "detail": "the reasons are shown to an admin API key "
                                                                "(Authorization: Bearer KEY)"}, body
            for secret in ("127.0.0.1", str(settings.data_dir), "StoreUnavailableError", "unreachable"):
                assert secret not in r.text, (secret, r.text)
        r = client.get("/readyz", headers={"Authorization": "Bearer adm-k3y"})
        assert r.status_code == 503
        reasons = r.json()["reasons"]
        assert any(x.startswith("store: StoreUnavailableError") and "127.0.0.1:9" in x for x in reasons), reasons
    ready = settings_factory(api_keys=keys)
    with TestClient(create_app(ready)) as client:
        assert client.get("/readyz").json() == {"status": "ok"}
        r = client.get("/readyz", headers={"Authorization": "Bearer adm-k3y"})
        assert r.status_code == 200 and r.json() == {"status": "ok", "reasons": [], "worker": "running"}
