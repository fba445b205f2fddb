"""The MCP server (pagelens/mcp) driven by the official SDK's own client: in-process for the tools'
behaviour, over stdio (`pagelens mcp` subprocess) and over streamable HTTP (a real `pagelens serve` on
loopback) for the transports and the keys: no key, no tools; a read-only key gets only read tools."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from api_helpers import pagelens_serve
from PIL import Image

from pagelens.app.access import OPEN, Principal
from pagelens.app.service import PagelensService
from pagelens.core.settings import Settings
from pagelens.mcp.images import encode_page_image
from pagelens.mcp.server import build_server
from pagelens.mcp.tools import PagelensTools

REPO = Path(__file__).resolve().parents[1]
READ_TOOLS = ["list_collections", "list_documents", "search_pages", "ask", "get_page"]
KEYS = "adm-key-0123:admin;ro-inv-key:r:inv;rw-inv-key:rw:inv;ro-other-key:r:other"


def _pdf(path: Path, lines: list[str], pages: int = 1) -> None:
    import pymupdf

    doc = pymupdf.open()
    for p in range(pages):
        page = doc.new_page(width=595, height=842)
        for n, line in enumerate(lines):
            page.insert_text((72, 100 + 24 * n), f"{line} (page {p + 1})", fontsize=14)
    doc.save(path)


def _settings(data_dir: Path, tiny_models: dict[str, Path], **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir, "retriever_model": str(tiny_models["retriever"]),
        "answer_model": str(tiny_models["answerer"]), "page_longest_edge": 1024, "answer_longest_edge": 512,
        "device": "cpu", "max_new_tokens": 4, "ingest_workers": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]) -> Path:
    """A data dir with collection ``inv``: acme.pdf (1 page) and globex.pdf (2 pages); closed."""
    root = tmp_path_factory.mktemp("mcp")
    docs = root / "docs"
    docs.mkdir()
    _pdf(docs / "acme.pdf", ["ACME GmbH", "Invoice 0042", "Total amount due: 1,234.00 EUR"])
    _pdf(docs / "globex.pdf", ["Globex Corp", "Quarterly report", "Revenue grew 12 percent"], pages=2)
    service = PagelensService(_settings(root / "data", tiny_models))
    try:
        tools = PagelensTools(service, local_files=True)
        result = tools.call(OPEN, "index_files", {"paths": [str(docs)], "collection": "inv"})
        assert not result.is_error, result.content[0].text
        assert result.structured_content["documents_indexed"] == 2
        assert result.structured_content["pages_indexed"] == 3
    finally:
        service.close()
    return root / "data"


def _copy(data: Path, dest: Path) -> Path:
    shutil.copytree(data, dest)
    return dest


@pytest.fixture(scope="module")
def service(indexed: Path, tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[PagelensService]:
    data = _copy(indexed, tmp_path_factory.mktemp("inproc") / "data")
    svc = PagelensService(_settings(data, tiny_models, mcp_image_max_edge=300))
    yield svc
    svc.close()


def _client_call(service: PagelensService, principal: Principal, calls: list[tuple[str, dict[str, Any]]]
                 ) -> tuple[list[str], list[Any]]:
    """Tool names listed for ``principal`` and the results of ``calls``, through the SDK's Client
    connected in-process to the server ``build_server`` makes."""
    from mcp import Client

    server = build_server(PagelensTools(service, local_files=True), lambda ctx: principal)

    async def run() -> tuple[list[str], list[Any]]:
        async with Client(server) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            return names, [await client.call_tool(name, args) for name, args in calls]

    return anyio.run(run)


def _texts(result: Any) -> str:
    return "\n".join(c.text for c in result.content if c.type == "text")


def _image(content: Any) -> Image.Image:
    assert content.type == "image" and content.mime_type in ("image/png", "image/jpeg")
    image = Image.open(io.BytesIO(base64.b64decode(content.data)))
    assert image.format == content.mime_type.split("/")[1].upper().replace("JPG", "JPEG")
    return image


# -- the tools, in-process ---------------------------------------------------------------------------
def test_tool_listing_follows_the_key_role(service: PagelensService) -> None:
    admin, _ = _client_call(service, OPEN, [])
    assert admin == [*READ_TOOLS, "delete_document", "index_files"]
    read_only, (refused,) = _client_call(service, Principal("key#2", "r", frozenset({"inv"})),
                                         [("delete_document", {"collection": "inv", "doc_id": "abc"})])
    assert read_only == READ_TOOLS
    assert refused.is_error and "read-only" in _texts(refused) and "role rw or admin" in _texts(refused)
    writer, _ = _client_call(service, Principal("key#3", "rw", frozenset({"inv"})), [])
    assert writer == admin


def test_search_pages_returns_ranked_pages_with_capped_images(service: PagelensService) -> None:
    _, (result, text_only) = _client_call(service, OPEN, [
        ("search_pages", {"query": "invoice total amount due", "k": 3, "mode": "visual", "with_text": True}),
        ("search_pages", {"query": "Globex revenue", "collection": "inv", "mode": "text", "images": False}),
    ])
    assert not result.is_error, _texts(result)
    hits = result.structured_content["results"]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert {(h["doc_name"], h["page_no"]) for h in hits} == {("acme.pdf", 1), ("globex.pdf", 1), ("globex.pdf", 2)}
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True) and all(h["visual_score"] == h["score"] for h in hits)
    assert result.structured_content["collection"] == "inv"  # the only collection: taken by default
    # content: a header, then per page its line and its image
    kinds = [c.type for c in result.content]
    assert kinds == ["text", "text", "image", "text", "image", "text", "image"]
    for hit, line, image in zip(hits, result.content[1::2], result.content[2::2], strict=True):
        assert f"{hit['doc_name']}, page {hit['page_no']} of {hit['page_count']}" in line.text
        assert f"doc_id {hit['doc_id']}" in line.text and "text: " in line.text
        decoded = _image(image)
        assert max(decoded.size) == 300  # mcp_image_max_edge; pages are 1024 px high
        assert hit["image"] == f"{decoded.width}x{decoded.height} px {decoded.format}"
        assert len(base64.b64decode(image.data)) <= service.settings.mcp_image_max_bytes
    acme = next(h for h in hits if h["doc_name"] == "acme.pdf")
    assert "Total amount due: 1,234.00 EUR" in acme["text"]
    assert "image_path" not in acme and "point_id" not in acme  # no server paths
    # text mode finds Globex by its words, without images
    assert not text_only.is_error
    assert [c.type for c in text_only.content] == ["text", "text", "text"]
    assert {h["doc_name"] for h in text_only.structured_content["results"]} == {"globex.pdf"}
    assert all(h["text_score"] is not None and h["visual_score"] is None
               for h in text_only.structured_content["results"])


def test_get_page_and_list_documents(service: PagelensService) -> None:
    _, (docs,) = _client_call(service, OPEN, [("list_documents", {})])
    by_name = {d["doc_name"]: d for d in docs.structured_content["documents"]}
    assert {n: (d["pages_indexed"], d["status"]) for n, d in by_name.items()} == {
        "acme.pdf": (1, "complete"), "globex.pdf": (2, "complete")}
    globex = by_name["globex.pdf"]["doc_id"]
    _, (page, no_image, past_end, unknown) = _client_call(service, OPEN, [
        ("get_page", {"doc_id": globex, "page_no": 2}),
        ("get_page", {"doc_id": globex, "page_no": 1, "image": False}),
        ("get_page", {"doc_id": globex, "page_no": 3}),
        ("get_page", {"doc_id": "0123abcd", "page_no": 1}),
    ])
    assert not page.is_error
    assert page.structured_content["page_count"] == 2 and page.structured_content["doc_name"] == "globex.pdf"
    assert "Revenue grew 12 percent (page 2)" in page.structured_content["text"]
    assert "globex.pdf, page 2 of 2" in page.content[0].text and "Revenue grew 12 percent" in page.content[0].text
    assert max(_image(page.content[1]).size) == 300
    assert [c.type for c in no_image.content] == ["text"] and "(page 1)" in no_image.content[0].text
    assert past_end.is_error and f"document '{globex}' has no page 3" in _texts(past_end)
    assert "2 pages indexed" in _texts(past_end)
    assert unknown.is_error and "document '0123abcd' is not in collection 'inv'" in _texts(unknown)


def test_ask_answers_with_citations(service: PagelensService) -> None:
    _, (result,) = _client_call(service, OPEN, [("ask", {"question": "What is the total amount due?", "k": 2})])
    assert not result.is_error, _texts(result)
    data = result.structured_content
    assert len(data["citations"]) == 2 and all("image_path" not in c for c in data["citations"])
    assert "Sources (the pages the model read):" in result.content[0].text
    for i, c in enumerate(data["citations"], start=1):
        assert f"[{i}] {c['doc_name']}, page {c['page_no']} (doc_id {c['doc_id']}" in result.content[0].text
    assert data["generated_tokens"] >= 1


def test_bad_arguments_are_tool_errors_naming_the_argument(service: PagelensService) -> None:
    _, results = _client_call(service, OPEN, [
        ("search_pages", {"query": "x", "k": 500}),
        ("search_pages", {"k": 2}),
        ("search_pages", {"query": "x", "colection": "inv"}),
        ("search_pages", {"query": "x", "mode": "fuzzy"}),
        ("get_page", {"doc_id": "../etc", "page_no": 0}),
        ("search_pages", {"query": "x", "collection": "missing"}),
        ("no_such_tool", {}),
    ])
    texts = [_texts(r) for r in results]
    assert all(r.is_error for r in results), texts
    assert "argument 'k'" in texts[0] and "less than or equal to 20" in texts[0] and "(got 500)" in texts[0]
    assert texts[1] == "search_pages: argument 'query' is required"
    assert "unknown argument 'colection'" in texts[2] and "query, collection, k" in texts[2]
    assert "argument 'mode'" in texts[3] and "'visual', 'text' or 'hybrid'" in texts[3]
    assert "argument 'doc_id'" in texts[4] and "argument 'page_no'" in texts[4]
    assert texts[5].startswith("collection 'missing' does not exist")
    assert texts[6].startswith("unknown tool 'no_such_tool'; the tools are: list_collections")
    assert all("Traceback" not in t for t in texts)


def test_collection_scopes_apply_to_every_tool(service: PagelensService) -> None:
    other = Principal("key#4", "r", frozenset({"other"}))
    names, (colls, search, page) = _client_call(service, other, [
        ("list_collections", {}),
        ("search_pages", {"query": "invoice", "collection": "inv"}),
        ("get_page", {"collection": "inv", "doc_id": "abc", "page_no": 1}),
    ])
    assert names == READ_TOOLS
    assert colls.structured_content == {"collections": []} and "No collections" in _texts(colls)
    for refused in (search, page):
        assert refused.is_error and _texts(refused) == "this API key has no access to collection 'inv'"


def test_page_images_meet_the_byte_cap(tmp_path: Path) -> None:
    import numpy as np

    noise = (np.random.default_rng(0).random((1400, 1000, 3)) * 255).astype("uint8")
    Image.fromarray(noise).save(tmp_path / "noise.png")
    Image.new("RGB", (500, 700), "white").save(tmp_path / "blank.png")
    capped = encode_page_image(tmp_path / "noise.png", max_edge=800, max_bytes=40_000)
    assert capped.mime_type == "image/jpeg" and len(capped.data) <= 40_000
    assert max(capped.width, capped.height) < 800  # shrunk below the edge limit to meet the byte cap
    blank = encode_page_image(tmp_path / "blank.png", max_edge=800, max_bytes=40_000)
    assert blank.mime_type == "image/png" and (blank.width, blank.height) == (500, 700)  # never enlarged


# -- the transports, with keys ---------------------------------------------------------------------
def _env(data: Path, tiny_models: dict[str, Path], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGELENS_")}
    env.update(PAGELENS_DATA_DIR=str(data), PAGELENS_RETRIEVER_MODEL=str(tiny_models["retriever"]),
               PAGELENS_ANSWER_MODEL=str(tiny_models["answerer"]), PAGELENS_DEVICE="cpu",
               PAGELENS_DTYPE="float32", PAGELENS_PAGE_LONGEST_EDGE="1024", PAGELENS_INGEST_WORKERS="0",
               PAGELENS_MAX_NEW_TOKENS="4", HF_HUB_OFFLINE="1", **extra)
    return env


async def _session(transport: Any, calls: list[tuple[str, dict[str, Any]]]) -> tuple[list[str], list[Any]]:
    from mcp import Client

    async with Client(transport, read_timeout_seconds=240) as client:
        names = [t.name for t in (await client.list_tools()).tools]
        return names, [await client.call_tool(name, args) for name, args in calls]


@pytest.mark.slow
def test_stdio_transport_with_keys(indexed: Path, tiny_models: dict[str, Path], tmp_path: Path) -> None:
    from mcp.client.stdio import StdioServerParameters

    data = _copy(indexed, tmp_path / "data")
    command = [sys.executable, "-m", "pagelens.cli", "mcp"]
    # keys configured, no key or a wrong key: the server does not start, and says why
    for extra, message in (({}, "needs one of those keys in PAGELENS_MCP_KEY"),
                           ({"PAGELENS_MCP_KEY": "nope"}, "PAGELENS_MCP_KEY is not one of the keys")):
        run = subprocess.run(command, env=_env(data, tiny_models, PAGELENS_API_KEYS=KEYS, **extra), cwd=REPO,
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and message in run.stderr and run.stdout == "", run.stderr
        assert "ro-inv-key" not in run.stderr
    # a read-only key: read tools only, a search returns page images
    params = StdioServerParameters(command=sys.executable, args=["-m", "pagelens.cli", "mcp"], cwd=str(REPO),
                                   env=_env(data, tiny_models, PAGELENS_API_KEYS=KEYS, PAGELENS_MCP_KEY="ro-inv-key"))
    with open(tmp_path / "stderr.log", "w") as errlog:
        from mcp.client.stdio import stdio_client

        names, (search, delete, bad) = anyio.run(_session, stdio_client(params, errlog=errlog), [
            ("search_pages", {"query": "Globex revenue", "mode": "text", "k": 2}),
            ("delete_document", {"doc_id": "abc"}),
            ("get_page", {"doc_id": "abc"}),
        ])
    assert names == READ_TOOLS
    assert not search.is_error, _texts(search)
    assert [c.type for c in search.content] == ["text", "text", "image", "text", "image"]
    assert {h["doc_name"] for h in search.structured_content["results"]} == {"globex.pdf"}
    assert max(_image(search.content[2]).size) == 1024
    assert delete.is_error and "read-only" in _texts(delete)
    assert bad.is_error and _texts(bad) == "get_page: argument 'page_no' is required"


@pytest.fixture
def served(indexed: Path, tiny_models: dict[str, Path], tmp_path: Path) -> Iterator[str]:
    """A real `pagelens serve` on loopback with KEYS, over a copy of the indexed data dir; its base URL."""
    data = _copy(indexed, tmp_path / "data")
    with pagelens_serve(_env(data, tiny_models, PAGELENS_API_KEYS=KEYS), tmp_path / "server.log", startup_s=180) as base:
        yield base


def _http(base: str, key: str | None, calls: list[tuple[str, dict[str, Any]]]) -> tuple[list[str], list[Any]]:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    async def run() -> tuple[list[str], list[Any]]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=240)) as http:
            return await _session(streamable_http_client(f"{base}/mcp", http_client=http), calls)

    return anyio.run(run)


@pytest.mark.slow
def test_http_endpoint_on_pagelens_serve_with_keys(served: str) -> None:
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                  "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                             "clientInfo": {"name": "t", "version": "1"}}}
    accept = {"Accept": "application/json, text/event-stream"}
    # no key / wrong key / malformed header: 401 before any MCP message is read, as on the REST API
    for headers, message in (({}, "missing API key"), ({"Authorization": "Bearer nope"}, "invalid API key"),
                             ({"Authorization": "Basic ro-inv-key"}, "malformed Authorization header")):
        r = httpx.post(f"{served}/mcp", json=initialize, headers={**accept, **headers}, timeout=30)
        assert r.status_code == 401, r.text
        assert r.json()["error"]["message"].startswith(message) and r.json()["error"]["data"]["http_status"] == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
    for key, message in ((None, "missing API key"), ("nope", "invalid API key")):  # the SDK client: no way in
        with pytest.raises(Exception) as refused:
            _http(served, key, [])
        assert message in str(refused.getrepr()), refused.getrepr()

    # a read-only key: read tools only; a write tool is refused; a search returns page images
    names, (search, delete, bad, other) = _http(served, "ro-inv-key", [
        ("search_pages", {"query": "ACME invoice total", "collection": "inv", "mode": "text", "k": 1}),
        ("delete_document", {"collection": "inv", "doc_id": "abc"}),
        ("search_pages", {"query": "x", "k": 0}),
        ("list_documents", {"collection": "other"}),
    ])
    assert names == READ_TOOLS
    assert not search.is_error, _texts(search)
    assert [c.type for c in search.content] == ["text", "text", "image"]
    assert search.structured_content["results"][0]["doc_name"] == "acme.pdf"
    assert max(_image(search.content[2]).size) == 1024
    assert delete.is_error and "read-only" in _texts(delete)
    assert bad.is_error and "argument 'k'" in _texts(bad) and "(got 0)" in _texts(bad)
    assert other.is_error and _texts(other) == "this API key has no access to collection 'other'"

    # the README's Python client, as written, against this server
    section = (REPO / "README.md").read_text().split("\n## MCP\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, re.S)
    block = (block.replace("http://127.0.0.1:8000", served).replace("s3cret-reader", "ro-inv-key")
             .replace('"invoices"', '"inv"').replace('"k": 3}', '"k": 3, "mode": "text"}'))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(block, "README.md#MCP", "exec"), {"__name__": "readme"})
    assert [line.split()[:2] for line in printed.getvalue().splitlines()] == [["1", "acme.pdf"]]

    # a key of another collection sees no collection; an rw key gets the write tools and they work
    names, (colls,) = _http(served, "ro-other-key", [("list_collections", {})])
    assert names == READ_TOOLS and colls.structured_content == {"collections": []}
    names, (docs,) = _http(served, "rw-inv-key", [("list_documents", {})])
    assert names == [*READ_TOOLS, "delete_document"]  # index_files (server paths) is stdio-only
    acme = next(d for d in docs.structured_content["documents"] if d["doc_name"] == "acme.pdf")
    _, (deleted, after) = _http(served, "rw-inv-key", [
        ("delete_document", {"doc_id": acme["doc_id"]}), ("list_documents", {})])
    assert not deleted.is_error and deleted.structured_content["pages_deleted"] == 1
    assert [d["doc_name"] for d in after.structured_content["documents"]] == ["globex.pdf"]
    # the REST API sees the same store
    r = httpx.get(f"{served}/v1/collections/inv/documents", headers={"Authorization": "Bearer adm-key-0123"},
                  timeout=30)
    assert [d["doc_name"] for d in r.json()] == ["globex.pdf"]


def test_http_endpoint_without_keys_accepts_loopback_hosts_only(tiny_models: dict[str, Path], tmp_path: Path
                                                                 ) -> None:
    from fastapi.testclient import TestClient

    from pagelens.server import create_app

    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                  "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                             "clientInfo": {"name": "t", "version": "1"}}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    settings = _settings(tmp_path / "data", tiny_models, mcp_allowed_hosts=["docs.example:8000"])
    with TestClient(create_app(settings, web_ui=False), base_url="http://127.0.0.1:8000") as client:
        ok = client.post("/mcp", json=initialize, headers=headers)
        assert ok.status_code == 200, ok.text
        assert ok.json()["result"]["serverInfo"]["name"] == "pagelens"
        rebound = client.post("/mcp", json=initialize, headers={**headers, "Host": "evil.example:8000"})
        # the server-wide Host check (pagelens/app/request_guard.py) answers before the MCP SDK's own (421)
        assert rebound.status_code == 400 and rebound.json()["error"]["code"] == "host_not_allowed"
        allowed = client.post("/mcp", json=initialize, headers={**headers, "Host": "docs.example:8000"})
        assert allowed.status_code == 200, allowed.text
