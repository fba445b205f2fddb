"""Origin and Host checks of the whole server (pagelens/app/request_guard.py), through real ``pagelens serve``
processes on loopback (local mode and with API keys), plus a bounded fuzz pass (hypothesis) over the header
parsing and the middleware itself.

A web page on another site must not change anything (cross-origin JSON, ``text/plain`` and multipart
POSTs, DELETE, Gradio's upload and queue, MCP) and a foreign ``Host`` (DNS rebinding) must not read
anything (REST, UI, MCP, page images); the server's own pages, curl and SDK clients (no ``Origin``) keep
working, and CORS stays closed.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import assert_error, pagelens_serve, ui_page_session, wait_job
from conftest import REAL_PDFS
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from pagelens.app.request_guard import AllowedHosts, RequestGuard, host_allowed, origin_allowed, parse_host

AWS = REAL_PDFS / "inv_aws_invoice_en.pdf"
EVIL = "https://evil.example"
ADMIN = "adm-Gq81xGUARDadmin"
MCP_INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _env(tiny_models: dict[str, Path], data: Path, **extra: str) -> dict[str, str]:
    """A clean environment for a served app: no PAGELENS_ALLOWED_HOSTS (the suite's 'testserver')."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAGELENS_", "GRADIO_"))}
    env.update(PAGELENS_DATA_DIR=str(data), PAGELENS_RETRIEVER_MODEL=str(tiny_models["retriever"]),
               PAGELENS_ANSWER_MODEL=str(tiny_models["answerer"]), PAGELENS_DEVICE="cpu",
               PAGELENS_PAGE_LONGEST_EDGE="256", PAGELENS_ANSWER_LONGEST_EDGE="128", PAGELENS_MAX_NEW_TOKENS="4",
               PAGELENS_INGEST_WORKERS="0", PAGELENS_DTYPE="float32", PAGELENS_OCR="off", HF_HUB_OFFLINE="1",
               **extra)
    return env


@pytest.fixture(scope="module")
def local_server(tiny_models, tmp_path_factory) -> Any:
    """A real ``pagelens serve`` without keys, one document indexed (by curl-like requests: no Origin)."""
    data = tmp_path_factory.mktemp("guard")
    with pagelens_serve(_env(tiny_models, data / "d"), data / "server.log") as base, \
            httpx.Client(base_url=base, timeout=120) as http:
        assert http.post("/v1/collections", json={"name": "docs"}).status_code == 201
        r = http.post("/v1/collections/docs/documents",
                      files=[("files", (AWS.name, AWS.read_bytes(), "application/pdf"))])
        assert r.status_code == 202, r.text
        assert wait_job(http, r.json()["id"])["status"] == "done"
        doc_id = http.get("/v1/collections/docs/documents").json()[0]["doc_id"]
        yield http, base, f"/v1/collections/docs/documents/{doc_id}/pages/1.png"


def _collections(http: httpx.Client) -> list[str]:
    return sorted(c["name"] for c in http.get("/v1/collections").json())


def test_cross_origin_writes_are_refused_in_local_mode(local_server) -> None:
    http, base, _ = local_server
    before = _collections(http)
    jobs_before = http.get("/v1/jobs").json()
    attempts = [
        ("json POST", dict(method="POST", url="/v1/collections", json={"name": "pwned"}, headers={"Origin": EVIL})),
        ("text/plain POST (a 'simple' request, no preflight)",
         dict(method="POST", url="/v1/collections", content=b'{"name": "pwned"}',
              headers={"Origin": EVIL, "Content-Type": "text/plain"})),
        ("multipart upload", dict(method="POST", url="/v1/collections/docs/documents", headers={"Origin": EVIL},
                                  files=[("files", ("x.pdf", AWS.read_bytes(), "application/pdf"))])),
        ("DELETE", dict(method="DELETE", url="/v1/collections/docs", headers={"Origin": EVIL})),
        ("Origin null (sandboxed frame, file://)",
         dict(method="POST", url="/v1/collections", json={"name": "pwned"}, headers={"Origin": "null"})),
        ("same host, other port", dict(method="POST", url="/v1/collections", json={"name": "pwned"},
                                       headers={"Origin": "http://127.0.0.1:1"})),
        ("Sec-Fetch-Site cross-site, no Origin",
         dict(method="POST", url="/v1/collections", json={"name": "pwned"}, headers={"Sec-Fetch-Site": "cross-site"})),
        ("Gradio upload", dict(method="POST", url="/ui/gradio_api/upload", headers={"Origin": EVIL},
                               files=[("files", ("x.pdf", AWS.read_bytes(), "application/pdf"))])),
        ("Gradio queue", dict(method="POST", url="/ui/gradio_api/queue/join", headers={"Origin": EVIL},
                              json={"data": [], "fn_index": 0, "session_hash": "abc"})),
        ("MCP", dict(method="POST", url="/mcp", json=MCP_INIT, headers={**MCP_HEADERS, "Origin": EVIL})),
    ]
    for what, request in attempts:
        r = http.request(**request)  # type: ignore[arg-type]
        error = assert_error(r, 403, "cross_origin_request")
        assert "PAGELENS_CORS_ORIGINS" in error["message"], what
        assert "access-control-allow-origin" not in r.headers, what
    assert _collections(http) == before == ["docs"]
    assert http.get("/v1/jobs").json() == jobs_before


def test_foreign_host_reads_nothing(local_server) -> None:
    """DNS rebinding: the attacker's name resolves to 127.0.0.1; the browser sends ``Host: evil...``."""
    http, base, page_url = local_server
    port = base.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.nip.io", "", "local host"):
        for method, url in (("GET", "/v1/collections"), ("GET", "/ui/"), ("GET", "/ui/config"),
                            ("GET", page_url), ("POST", "/mcp"), ("GET", "/healthz"),
                            ("GET", "/ui/gradio_api/file=/etc/hostname")):
            r = http.request(method, url, headers={"Host": host, **MCP_HEADERS},
                             json=MCP_INIT if method == "POST" else None)
            error = assert_error(r, 400, "host_not_allowed")
            assert "PAGELENS_ALLOWED_HOSTS" in error["message"], (host, url)
            assert b"PNG" not in r.content and "docs" not in r.text
    # a same-origin request under the rebound name is still a foreign host
    r = http.post("/v1/collections", json={"name": "x"},
                  headers={"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"})
    assert_error(r, 400, "host_not_allowed")


def test_same_origin_and_originless_clients_keep_working(local_server) -> None:
    http, base, page_url = local_server
    port = base.rsplit(":", 1)[1]
    # curl / SDKs: no Origin
    assert http.post("/v1/collections", json={"name": "plain"}).status_code == 201
    # the server's own pages under each loopback name
    for name in ("127.0.0.1", "localhost"):
        origin = f"http://{name}:{port}"
        r = http.post("/v1/collections", json={"name": f"same-{name[:3]}"},
                      headers={"Origin": origin, "Host": f"{name}:{port}", "Sec-Fetch-Site": "same-origin"})
        assert r.status_code == 201, r.text
    r = http.delete("/v1/collections/plain", headers={"Origin": f"http://127.0.0.1:{port}"})
    assert r.status_code in (200, 204), r.text
    assert _collections(http) == ["docs", "same-127", "same-loc"]
    # reads from another origin are not refused here: without CORS headers the browser hides the answer
    r = http.get(page_url, headers={"Origin": EVIL})
    assert r.status_code == 200 and r.content[:4] == b"\x89PNG"
    assert "access-control-allow-origin" not in r.headers
    # CORS stays closed: a preflight from another origin gets no allow header
    r = http.options("/v1/collections", headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers
    # MCP from the server's own origin and without Origin
    for headers in ({}, {"Origin": f"http://127.0.0.1:{port}"}):
        r = http.post("/mcp", json=MCP_INIT, headers={**MCP_HEADERS, **headers})
        assert r.status_code == 200, r.text
        assert r.json()["result"]["serverInfo"]["name"] == "pagelens"
    # the Gradio page's own events (same origin): its load event through queue/join and queue/data
    config = http.get("/ui/config").json()
    own = {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"}
    assert ui_page_session(http, config, headers=own)


@pytest.mark.slow
def test_with_keys_the_same_checks_hold(tiny_models, tmp_path) -> None:
    """With API keys a valid key does not make a cross-site request acceptable, nor a foreign Host; names in
    PAGELENS_ALLOWED_HOSTS are accepted."""
    env = _env(tiny_models, tmp_path / "d", PAGELENS_API_KEYS=f"{ADMIN}:admin",
               PAGELENS_ALLOWED_HOSTS="docs.internal.example")
    auth = {"Authorization": f"Bearer {ADMIN}"}
    with pagelens_serve(env, tmp_path / "server.log") as base, httpx.Client(base_url=base, timeout=60) as http:
        port = base.rsplit(":", 1)[1]
        assert_error(http.post("/v1/collections", json={"name": "a"}, headers={**auth, "Origin": EVIL}),
                     403, "cross_origin_request")
        assert_error(http.get("/v1/collections", headers={**auth, "Host": "evil.example"}), 400, "host_not_allowed")
        assert_error(http.post("/mcp", json=MCP_INIT, headers={**auth, **MCP_HEADERS, "Host": "evil.example"}),
                     400, "host_not_allowed")
        assert http.get("/v1/collections", headers=auth).json() == []
        # the configured name, with its own origin
        named = {**auth, "Host": f"docs.internal.example:{port}", "Origin": f"https://docs.internal.example:{port}"}
        r = http.post("/v1/collections", json={"name": "b"}, headers=named)
        assert r.status_code == 201, r.text
        r = http.post("/mcp", json=MCP_INIT, headers={**MCP_HEADERS, **named})
        assert r.status_code == 200, r.text
        assert [c["name"] for c in http.get("/v1/collections", headers=auth).json()] == ["b"]


def test_ui_only_server_is_guarded_too(tiny_models, tmp_path) -> None:
    """``pagelens ui`` (create_ui_app) has the same middleware (in-process: no second real server)."""
    from fastapi.testclient import TestClient
    from pagelens.ui.app import create_ui_app

    from pagelens.core.settings import Settings

    settings = Settings(_env_file=None, data_dir=tmp_path, retriever_model=str(tiny_models["retriever"]),  # type: ignore[call-arg]
                        answer_model=str(tiny_models["answerer"]), device="cpu", allowed_hosts=[])
    with TestClient(create_ui_app(settings, bind="127.0.0.1"), base_url="http://127.0.0.1:7860") as client:
        assert client.get("/ui/config").status_code == 200
        assert_error(client.get("/ui/config", headers={"Host": "testserver"}), 400, "host_not_allowed")
        assert_error(client.post("/ui/gradio_api/upload", headers={"Origin": EVIL},
                                 files=[("files", ("a.pdf", b"%PDF-1.4", "application/pdf"))]),
                     403, "cross_origin_request")


# --- the parsing, unit-level and fuzzed ------------------------------------------------------------------

LOCAL = AllowedHosts.build("127.0.0.1", ["docs.example.com", "api.example.com:8443"])


def test_host_parsing_and_matching() -> None:
    assert parse_host("LocalHost:8000") == parse_host("localhost:8000")
    assert parse_host("[::1]:80") is not None and parse_host("[::1]:80").host == "::1"  # type: ignore[union-attr]
    for bad in ("", " ", "a b", "a:0", "a:65536", "a:-1", "a:1:2", "[::1", "[nothost]", "a/b", "u@h", "a:８０",
                "a" * 400, "h\x00", "[::1]x"):
        assert parse_host(bad) is None, bad
    for ok in ("127.0.0.1:9", "localhost", "[::1]:8000", "127.5.6.7", "docs.example.com:1",
               "api.example.com:8443"):
        assert host_allowed(ok, LOCAL), ok
    for foreign in ("api.example.com", "api.example.com:443", "evil.example", "localhost.evil.example",
                    "0.0.0.0", "[::2]", None):
        assert not host_allowed(foreign, LOCAL), foreign
    assert host_allowed("anything", AllowedHosts.build(None, ["*"]))
    with pytest.raises(ValueError, match="PAGELENS_ALLOWED_HOSTS"):
        AllowedHosts.build(None, ["bad host"])


def test_origin_matching() -> None:
    assert origin_allowed("http://127.0.0.1:8000", "127.0.0.1:8000", "http", [])
    assert origin_allowed("https://docs.example.com", "docs.example.com", "http", [])  # TLS proxy in front
    assert origin_allowed("https://app.example", "127.0.0.1:8000", "http", ["https://app.example/"])
    for origin in ("null", "http://127.0.0.1:8001", "http://localhost:8000", EVIL, "", "javascript:alert(1)",
                   "http://127.0.0.1:8000/path", "http://u:p@127.0.0.1:8000", "file://", "http://[::1"):
        assert not origin_allowed(origin, "127.0.0.1:8000", "http", []), origin


FUZZ = hsettings(max_examples=int(os.environ.get("PAGELENS_FUZZ_EXAMPLES", "300")), deadline=None,
                 derandomize=not os.environ.get("PAGELENS_FUZZ_RANDOM"), database=None,
                 suppress_health_check=[HealthCheck.too_slow])
header_text = st.one_of(st.text(max_size=80), st.sampled_from(
    ["127.0.0.1:8000", "localhost", "[::1]:1", "evil.example", "http://127.0.0.1:8000", "null", "[", ":", "[::1]:"]))


@FUZZ
@given(value=header_text, origin=header_text, scheme=st.sampled_from(["http", "https", "ws", ""]))
def test_fuzz_parsing_never_raises(value: str, origin: str, scheme: str) -> None:
    parsed = parse_host(value)
    assert parsed is None or (parsed.port is None or 0 < parsed.port < 65536)
    allowed = host_allowed(value, LOCAL)
    assert allowed == (parsed is not None and LOCAL.allows(parsed))
    if allowed and parsed is not None:
        assert parsed.host in LOCAL.names or parsed in LOCAL.exact or parsed.host.startswith("127.")
    assert isinstance(origin_allowed(origin, value, scheme, []), bool)


def _run_guard(method: str, headers: list[tuple[bytes, bytes]], kind: str = "http") -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    guard = RequestGuard(app, allowed_hosts=LOCAL)
    scope = {"type": kind, "method": method, "path": "/v1/x", "scheme": "http", "headers": headers,
             "extensions": {}}
    asyncio.run(guard(scope, receive, send))
    if kind == "websocket" and sent and sent[0]["type"] == "websocket.close":
        return 403, b""
    return int(sent[0]["status"]), b"".join(m.get("body", b"") for m in sent[1:])


@FUZZ
@given(method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
       headers=st.lists(st.tuples(st.sampled_from([b"host", b"origin", b"sec-fetch-site", b"x-other", b"HOST"]),
                                  st.binary(max_size=60)), max_size=5),
       kind=st.sampled_from(["http", "websocket"]))
def test_fuzz_the_middleware(method: str, headers: list[tuple[bytes, bytes]], kind: str) -> None:
    """Any header bytes: the guard answers 400/403 with the JSON error body or passes the request on, never
    raises; a pass means an allowed Host, and for writes no foreign Origin."""
    status, body = _run_guard(method, [(n.lower(), v) for n, v in headers], kind)
    assert status in (299, 400, 403)
    if status in (400, 403) and body:
        assert set(json.loads(body)["error"]) == {"code", "message", "detail"}
    first = {}
    for name, value in headers:
        first.setdefault(name.lower(), value.decode("latin-1"))
    if status == 299:
        assert host_allowed(first.get(b"host"), LOCAL)
        if kind == "websocket" or method in ("POST", "PUT", "PATCH", "DELETE"):
            origin = first.get(b"origin")
            assert origin is None or origin_allowed(origin, first[b"host"], "http", [])
