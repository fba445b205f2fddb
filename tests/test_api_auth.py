"""API keys: the authorization matrix, key parsing, and the `serve` loopback rule."""

from __future__ import annotations

import logging

import pytest
from api_helpers import assert_error, upload, wait_job
from conftest import REAL_PDFS
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from pagelens.app.access import ApiKeys, parse_api_keys
from pagelens.core.errors import ApiError
from pagelens.server import create_app

AWS = REAL_PDFS / "inv_aws_invoice_en.pdf"
KEYS = "adm-0123456789:admin; rw-alpha-secret:rw:alpha ;ro-alpha-secret:r:alpha;ro-all:r:*"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


ADMIN, RW_A, RO_A, RO_ALL = (bearer(k) for k in ("adm-0123456789", "rw-alpha-secret", "ro-alpha-secret", "ro-all"))


def test_parse_api_keys() -> None:
    entries = parse_api_keys(KEYS)
    roles = [(p.role, p.collections) for _, p in entries]
    assert roles == [("admin", None), ("rw", frozenset({"alpha"})), ("r", frozenset({"alpha"})), ("r", None)]
    assert parse_api_keys("") == [] and parse_api_keys(None) == []
    for bad in ("justakey", "k:root", "k:rw", "k:r:a:b"):
        with pytest.raises(ValueError) as info:
            parse_api_keys(bad)
        assert "k" not in str(info.value).split(":")[-1] or "key" in str(info.value).lower()
    keys = ApiKeys(KEYS)
    assert keys.authenticate("Bearer ro-alpha-secret").role == "r"
    for header in (None, "", "Bearer", "Basic ro-alpha-secret", "Bearer ro-alpha-secre", "Bearer ro-alpha-secretX"):
        with pytest.raises(ApiError) as err:
            keys.authenticate(header)
        assert err.value.http_status == 401
    assert ApiKeys(None).authenticate(None).role == "admin"  # no keys: open


@pytest.mark.slow
def test_auth_matrix(settings_factory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = settings_factory(api_keys=KEYS, max_new_tokens=4)
    with TestClient(create_app(settings)) as client:
        # open endpoints
        assert client.get("/healthz").status_code == 200
        assert client.get("/openapi.json").status_code == 200
        # no key / wrong key
        r = client.get("/v1/collections")
        assert_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert_error(client.get("/v1/collections", headers=bearer("nope")), 401)
        assert_error(client.post("/v1/collections", json={"name": "alpha"}), 401)

        # creating: admin anything, rw its own collections only, read-only never
        assert_error(client.post("/v1/collections", json={"name": "alpha"}, headers=RO_A), 403, "forbidden")
        assert_error(client.post("/v1/collections", json={"name": "beta"}, headers=RW_A), 403)
        assert client.post("/v1/collections", json={"name": "alpha"}, headers=RW_A).status_code == 201
        assert client.post("/v1/collections", json={"name": "beta"}, headers=ADMIN).status_code == 201

        # uploads
        assert_error(upload(client, "alpha", [AWS]), 401)
        assert_error(upload(client, "alpha", [AWS], headers=RO_A), 403)
        assert_error(upload(client, "beta", [AWS], headers=RW_A), 403)
        assert_error(upload(client, "beta", [AWS], headers=RO_ALL), 403)
        r = upload(client, "alpha", [AWS], headers=RW_A)
        assert r.status_code == 202, r.text
        alpha_job = wait_job(client, r.json()["id"], headers=RO_A)
        assert alpha_job["status"] == "done"
        r = upload(client, "beta", [AWS], headers=ADMIN)
        beta_job = wait_job(client, r.json()["id"], headers=ADMIN)
        assert beta_job["status"] == "done"
        assert not any(settings.data_dir.glob("uploads/*"))

        # listing is filtered by scope
        assert [c["name"] for c in client.get("/v1/collections", headers=RO_A).json()] == ["alpha"]
        assert [c["name"] for c in client.get("/v1/collections", headers=ADMIN).json()] == ["alpha", "beta"]
        assert [c["name"] for c in client.get("/v1/collections", headers=RO_ALL).json()] == ["alpha", "beta"]
        assert [j["id"] for j in client.get("/v1/jobs", headers=RO_A).json()] == [alpha_job["id"]]
        assert len(client.get("/v1/jobs", headers=ADMIN).json()) == 2
        assert_error(client.get(f"/v1/jobs/{beta_job['id']}", headers=RO_A), 404, "job_not_found")
        assert_error(client.get("/v1/jobs?collection=beta", headers=RO_A), 403)
        assert_error(client.post(f"/v1/jobs/{alpha_job['id']}/cancel", headers=RO_A), 403)

        # reading: scoped keys see only their collections
        question = {"question": "invoice total", "k": 1}
        r = client.post("/v1/collections/alpha/search", json=question, headers=RO_A)
        assert r.status_code == 200, r.text
        image_url = r.json()["results"][0]["image_url"]
        doc_id = r.json()["results"][0]["doc_id"]
        assert_error(client.post("/v1/collections/beta/search", json=question, headers=RO_A), 403)
        assert_error(client.post("/v1/collections/beta/ask", json=question, headers=RW_A), 403)
        assert_error(client.get("/v1/collections/beta", headers=RO_A), 403)
        assert_error(client.get("/v1/collections/beta/documents", headers=RW_A), 403)
        assert_error(client.post("/v1/collections/alpha/search", json=question), 401)
        # the page image is protected like the rest
        assert client.get(image_url, headers=RO_A).status_code == 200
        assert_error(client.get(image_url), 401)
        assert_error(client.get(image_url, headers=bearer("wrong")), 401)
        assert_error(client.get(image_url.replace("/alpha/", "/beta/"), headers=RO_A), 403)
        assert client.get(image_url.replace("/alpha/", "/beta/"), headers=RO_ALL).status_code == 200

        # deleting: read-only never, rw its own, admin all
        assert_error(client.delete(f"/v1/collections/alpha/documents/{doc_id}", headers=RO_A), 403)
        assert_error(client.delete(f"/v1/collections/beta/documents/{doc_id}", headers=RW_A), 403)
        assert_error(client.delete("/v1/collections/beta", headers=RO_ALL), 403)
        assert client.delete(f"/v1/collections/alpha/documents/{doc_id}", headers=RW_A).status_code == 200
        assert client.post("/v1/collections/beta/ask", json=question, headers=ADMIN).status_code == 200
        assert client.delete("/v1/collections/beta", headers=ADMIN).status_code == 200

    logged = caplog.text
    for key in ("adm-0123456789", "rw-alpha-secret", "ro-alpha-secret"):
        assert key not in logged


def test_serve_refuses_public_bind_without_keys(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from pagelens import cli

    monkeypatch.setenv("PAGELENS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PAGELENS_API_KEYS", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env
    started: list[tuple] = []

    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: started.append((host, port)))
    runner = CliRunner()
    result = runner.invoke(cli.app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "--insecure" in result.output
    result = runner.invoke(cli.app, ["ui", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "refusing to serve the UI on 0.0.0.0" in result.output
    assert started == []
    assert cli.is_loopback("127.0.0.1") and cli.is_loopback("::1") and not cli.is_loopback("10.0.0.1")
    monkeypatch.setenv("PAGELENS_API_KEYS", "k:admin")
    started.clear()
    result = runner.invoke(cli.app, ["serve", "--host", "0.0.0.0", "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert started == [("0.0.0.0", 8123)]
