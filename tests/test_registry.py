"""The document registry (``pagelens.index.stores.registry``): listings O(documents), exact under
re-upserts, metadata updates, deletes, crashes between the store write and the registry write, and a
missing registry file; rebuilt from a scroll that never reads the page text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pagelens.index.stores.edge_store import QdrantEdgeStore
from pagelens.index.stores.registry import REGISTRY_FILE, RegisteredStore, with_registry
from pagelens.index.stores.server_store import QdrantServerStore
from test_store_contract import COLL, MANIFEST, make_points

from pagelens.core.errors import InvalidRequestError
from pagelens.core.types import PageEmbedding, PageFilter, PagePoint


def scan(store: Any) -> dict[str, tuple[str, int, dict[str, Any]]]:
    """What a full payload scroll says: doc_id -> (doc_name, pages, meta)."""
    out: dict[str, tuple[str, int, dict[str, Any]]] = {}
    for _, p in store.iter_payloads(COLL):
        name, n, _ = out.get(p["doc_id"], (p["doc_name"], 0, {}))
        out[p["doc_id"]] = (p["doc_name"], n + 1, p["meta"])
    return out


def listed(store: RegisteredStore) -> dict[str, tuple[str, int, dict[str, Any]]]:
    return {d.doc_id: (d.doc_name, d.pages_indexed, d.metadata) for d in store.list_documents(COLL)}


class SpyStore:
    """Records the payload keys each ``iter_payloads`` asked for."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.scrolls: list[tuple[str, ...] | None] = []

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    def iter_payloads(self, collection: str, page_filter: PageFilter | None = None, keys: Any = None) -> Any:
        self.scrolls.append(None if keys is None else tuple(keys))
        return self.inner.iter_payloads(collection, page_filter, keys=keys)


@pytest.fixture(params=["edge", "server"])
def inner(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "edge":
        s: Any = QdrantEdgeStore(tmp_path / "edge", fast_rerank=False)
    else:
        from qdrant_client import QdrantClient

        s = QdrantServerStore(QdrantClient(":memory:"), prefix="t_")
    yield SpyStore(s)
    s.close()


def test_listing_matches_scan_and_never_reads_text(inner: Any, tmp_path: Path) -> None:
    store = with_registry(inner, tmp_path / "data")
    store.create_collection(MANIFEST)
    points = make_points(n_docs=4, pages=6)
    store.upsert(COLL, points[:10])
    store.upsert(COLL, points[10:])
    inner.scrolls.clear()
    assert listed(store) == scan(inner) == {f"doc-{d}": (f"report-{d}.pdf", 6, points[d * 6].payload["meta"])
                                            for d in range(4)}
    assert store.collection_totals(COLL) == (4, 24)
    assert inner.scrolls == [None]  # only the test's own scan: the listing read the registry
    docs = store.list_documents(COLL)
    assert [d.doc_name for d in docs] == sorted(d.doc_name for d in docs)
    assert {d.page_count for d in docs} == {6} and {d.sha256 for d in docs} == {f"{i:02d}" * 32 for i in range(4)}


def test_reupsert_and_metadata_update_stay_exact(inner: Any, tmp_path: Path) -> None:
    store = with_registry(inner, tmp_path / "data")
    store.create_collection(MANIFEST)
    points = make_points(n_docs=2, pages=3)
    store.upsert(COLL, points)
    store.upsert(COLL, points)  # same ids: pages are not counted twice
    renamed = [PagePoint(p.id, p.embedding, {**p.payload, "doc_name": "renamed.pdf", "meta": {"v": 2},
                                             "indexed_at": "2026-12-01T00:00:00+00:00"})
               for p in points if p.payload["doc_id"] == "doc-1"]
    store.upsert(COLL, renamed)
    got = {d.doc_id: d for d in store.list_documents(COLL)}
    assert {k: (d.doc_name, d.pages_indexed, d.metadata) for k, d in got.items()} == scan(inner)
    assert (got["doc-1"].doc_name, got["doc-1"].pages_indexed, got["doc-1"].metadata) == ("renamed.pdf", 3, {"v": 2})
    assert got["doc-1"].indexed_at == "2026-12-01T00:00:00+00:00"
    assert got["doc-0"].pages_indexed == 3


def test_delete_document_and_collection(inner: Any, tmp_path: Path) -> None:
    store = with_registry(inner, tmp_path / "data")
    store.create_collection(MANIFEST)
    store.upsert(COLL, make_points(n_docs=3, pages=4))
    assert store.delete_document(COLL, "doc-1") == 4
    assert set(listed(store)) == {"doc-0", "doc-2"}
    assert store.collection_totals(COLL) == (2, 8)
    assert store.delete_document(COLL, "doc-1") == 0
    store.delete_collection(COLL)
    store.create_collection(MANIFEST)
    assert store.list_documents(COLL) == []
    assert inner.scrolls == []  # every listing came from the registry


def test_crash_after_store_write_is_rebuilt(inner: Any, tmp_path: Path) -> None:
    """A write that reached the store but not the registry (the process died in between): the next
    listing sees the count disagree, or the dirty mark, and rebuilds from the small payload keys."""
    data = tmp_path / "data"
    store = with_registry(inner, data)
    store.create_collection(MANIFEST)
    points = make_points(n_docs=3, pages=2)
    store.upsert(COLL, points[:2])
    inner.inner.upsert(COLL, points[2:])  # new pages, registry not told: the counts disagree
    assert listed(store) == scan(inner)
    assert inner.scrolls[0] is not None and "text" not in inner.scrolls[0]
    # same page count, new names: only the dirty mark (committed before the store write) can tell
    inner.scrolls.clear()
    store.registry.mark_dirty(store.identity, COLL)
    inner.inner.upsert(COLL, [PagePoint(p.id, p.embedding, {**p.payload, "doc_name": "late.pdf"}) for p in points[:2]])
    assert listed(store)["doc-0"][0] == "late.pdf"
    assert len(inner.scrolls) == 1 and "text" not in (inner.scrolls[0] or ())
    # a failed store write leaves the mark: the next listing rebuilds
    inner.scrolls.clear()
    bad = PageEmbedding(full=np.ones((3, 7), np.float32), rows=points[0].embedding.rows, cols=points[0].embedding.cols)
    with pytest.raises(InvalidRequestError):
        store.upsert(COLL, [PagePoint(points[0].id, bad, points[0].payload)])
    assert listed(store) == scan(inner) and len(inner.scrolls) == 2
    inner.scrolls.clear()
    listed(store)
    assert inner.scrolls == []  # clean again


def test_missing_registry_file_is_rebuilt(tmp_path: Path) -> None:
    """A new process over an existing Edge store with no (or a deleted) registry lists the same documents."""
    root, data = tmp_path / "edge", tmp_path / "data"
    first = with_registry(QdrantEdgeStore(root, fast_rerank=False), data)
    first.create_collection(MANIFEST)
    first.upsert(COLL, make_points(n_docs=2, pages=5))
    expected = listed(first)
    first.close()
    (data / REGISTRY_FILE).unlink()
    second = with_registry(QdrantEdgeStore(root, fast_rerank=False), data)
    try:
        assert listed(second) == expected
        assert {d.pages_indexed for d in second.list_documents(COLL)} == {5}
    finally:
        second.close()


def test_two_stores_in_one_registry_file_do_not_mix(tmp_path: Path) -> None:
    data = tmp_path / "data"
    a = with_registry(QdrantEdgeStore(tmp_path / "a", fast_rerank=False), data)
    b = with_registry(QdrantEdgeStore(tmp_path / "b", fast_rerank=False), data)
    try:
        for s, n in ((a, 1), (b, 3)):
            s.create_collection(MANIFEST)
            s.upsert(COLL, make_points(n_docs=n, pages=2))
        assert len(a.list_documents(COLL)) == 1 and len(b.list_documents(COLL)) == 3
    finally:
        a.close()
        b.close()


def test_service_lists_from_the_registry(tmp_path: Path) -> None:
    """``PagelensService.documents``/``collection_info`` over an injected store: same values as a full
    scan, and no page-text scroll once the registry is built."""
    from pagelens.app.service import PagelensService
    from pagelens.core.settings import Settings

    spy = SpyStore(QdrantEdgeStore(tmp_path / "edge", fast_rerank=False))
    service = PagelensService(Settings(_env_file=None, data_dir=tmp_path / "data"), store=spy)  # type: ignore[call-arg]
    try:
        service.store.create_collection(MANIFEST)
        service.store.upsert(COLL, make_points(n_docs=3, pages=4))
        docs = service.documents(COLL)
        assert [(d.doc_name, d.pages_indexed, d.status) for d in docs] == [
            (f"report-{i}.pdf", 4, "complete") for i in range(3)]
        info = service.collection_info(COLL)
        assert (info.documents, info.pages) == (3, 12)
        assert service.delete_document(COLL, "doc-0") == 4
        assert [d.doc_id for d in service.documents(COLL)] == ["doc-1", "doc-2"]
        assert all(keys is not None and "text" not in keys for keys in spy.scrolls), spy.scrolls
    finally:
        service.close()


def test_hidden_documents_are_excluded_by_filter() -> None:
    """``search_visible`` asks the store for ``k`` hits with a must_not filter on the in-flight documents,
    keeping the caller's own filter; it no longer over-fetches ``k`` + their pages."""
    from types import SimpleNamespace

    from pagelens.app.visibility import search_visible

    calls: list[tuple[int, PageFilter | None]] = []

    class Service:
        def search(self, collection: str, question: str, k: int, mode: Any, page_filter: PageFilter | None) -> list:
            calls.append((k, page_filter))
            return []

    jobs = SimpleNamespace(inflight_doc_ids=lambda collection: {"busy", "other"})
    state: Any = SimpleNamespace(service=Service(), jobs=jobs)
    search_visible(state, COLL, "q", 5, None, None)
    search_visible(state, COLL, "q", 3, None, PageFilter(metadata={"year": 2020}, exclude_doc_ids=["x"]))
    search_visible(state, COLL, "q", 3, None, PageFilter(doc_ids=["calm"]))  # no overlap: no exclusion
    assert calls == [
        (5, PageFilter(exclude_doc_ids=["busy", "other"])),
        (3, PageFilter(metadata={"year": 2020}, exclude_doc_ids=["busy", "other", "x"])),
        (3, PageFilter(doc_ids=["calm"])),
    ]


def test_another_process_writing_the_registry_is_seen(tmp_path: Path) -> None:
    """Two wrappers over one server-side store (two processes sharing a Qdrant server and a data dir):
    a rename by one is listed by the other (SQLite ``data_version`` invalidates the in-memory cache)."""
    from qdrant_client import QdrantClient

    server = QdrantServerStore(QdrantClient(":memory:"), prefix="t_")
    a = with_registry(server, tmp_path / "data")
    b = with_registry(server, tmp_path / "data")
    b.identity = a.identity
    a.create_collection(MANIFEST)
    points = make_points(n_docs=2, pages=2)
    a.upsert(COLL, points)
    assert [d.doc_name for d in b.list_documents(COLL)] == ["report-0.pdf", "report-1.pdf"]
    a.upsert(COLL, [PagePoint(p.id, p.embedding, {**p.payload, "doc_name": "z.pdf"}) for p in points[:2]])
    assert [d.doc_name for d in b.list_documents(COLL)] == ["report-1.pdf", "z.pdf"]
    server.close()


def test_page_image_route_finds_one_page_by_filter(tmp_path: Path) -> None:
    """``GET .../documents/{doc_id}/pages/{n}.png`` reads the one point (doc_id, page_no) by filter: the
    right page's file, and distinct 404 codes for a missing page and a missing document."""
    import io

    from api_helpers import assert_error
    from fastapi.testclient import TestClient
    from PIL import Image

    from pagelens.app.service import PagelensService
    from pagelens.core.settings import Settings
    from pagelens.server import create_app

    settings = Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    spy = SpyStore(QdrantEdgeStore(settings.edge_dir, fast_rerank=False))
    service = PagelensService(settings, store=spy)
    points = make_points(n_docs=2, pages=3)
    for p in points:
        page_no = p.payload["page_no"]
        path = service.images.save(p.payload["sha256"], page_no, Image.new("RGB", (10 + page_no, 20)))
        p.payload["image_path"] = str(path)
    service.store.create_collection(MANIFEST)
    service.store.upsert(COLL, points)
    spy.scrolls.clear()
    with TestClient(create_app(settings, service, web_ui=False)) as client:
        r = client.get(f"/v1/collections/{COLL}/documents/doc-1/pages/3.png")
        assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (13, 20)
        assert_error(client.get(f"/v1/collections/{COLL}/documents/doc-1/pages/4.png"), 404, "page_not_found")
        assert_error(client.get(f"/v1/collections/{COLL}/documents/nodoc/pages/1.png"), 404, "document_not_found")
    assert spy.scrolls and all(keys is not None and "text" not in keys for keys in spy.scrolls)


def test_edge_verifies_once_per_process(tmp_path: Path) -> None:
    """The embedded store (one process per data dir) checks the count on the first listing only; a new
    process (a new wrapper) after a crash between store and registry writes still rebuilds, and an
    unfinished write (dirty mark) is honoured at every listing."""
    root, data = tmp_path / "edge", tmp_path / "data"
    edge = QdrantEdgeStore(root, fast_rerank=False)
    a = with_registry(edge, data)
    assert a.verify == "once"
    a.create_collection(MANIFEST)
    points = make_points(n_docs=3, pages=2)
    a.upsert(COLL, points[:2])
    assert set(listed(a)) == {"doc-0"}
    edge.upsert(COLL, points[2:])  # as if the process died after the store write
    b = with_registry(edge, data)  # the next process
    assert listed(b) == scan(edge)
    a.registry.mark_dirty(a.identity, COLL)  # a write that never finished
    assert listed(a) == scan(edge)
    edge.close()


def test_a_re_upload_rename_is_seen_by_the_registry(inner: Any, tmp_path: Path) -> None:
    """``set_payload`` (same bytes, new name/metadata: status 'updated') goes through the registry too."""
    store = with_registry(inner, tmp_path / "data")
    store.create_collection(MANIFEST)
    store.upsert(COLL, make_points(n_docs=2, pages=3))
    assert store.set_payload(COLL, "doc-1", {"doc_name": "renamed.pdf", "meta": {"k": "v"}}) == 3
    got = {d.doc_id: d for d in store.list_documents(COLL)}
    assert (got["doc-1"].doc_name, got["doc-1"].metadata, got["doc-1"].pages_indexed) == ("renamed.pdf", {"k": "v"}, 3)
    assert {k: (d.doc_name, d.pages_indexed, d.metadata) for k, d in got.items()} == scan(inner)


def test_listing_pages_and_version(inner: Any, tmp_path: Path) -> None:
    """``list_documents(offset, limit)`` returns that slice of the (name, id) order with the same facets as
    the whole listing; ``listing_version`` changes on every write and stays put while nothing changes."""
    store = with_registry(inner, tmp_path / "data")
    store.create_collection(MANIFEST)
    v0 = store.listing_version(COLL)
    store.upsert(COLL, make_points(n_docs=7, pages=2))
    v1 = store.listing_version(COLL)
    assert v1 != v0 and store.listing_version(COLL) == v1
    everything = store.list_documents(COLL)
    assert [d.doc_id for d in everything] == [f"doc-{i}" for i in range(7)]
    pages = [store.list_documents(COLL, offset=o, limit=3) for o in (0, 3, 6, 9)]
    assert [[d.doc_id for d in p] for p in pages] == [["doc-0", "doc-1", "doc-2"], ["doc-3", "doc-4", "doc-5"],
                                                      ["doc-6"], []]
    assert [d for p in pages for d in p] == everything  # same records, facets included
    assert [d.doc_id for d in store.list_documents(COLL, offset=5)] == ["doc-5", "doc-6"]
    assert store.listing_version(COLL) == v1  # reads do not move it
    store.delete_document(COLL, "doc-1")
    assert store.listing_version(COLL) != v1
    assert [d.doc_id for d in store.list_documents(COLL, offset=0, limit=3)] == ["doc-0", "doc-2", "doc-3"]


def test_documents_api_is_paged_with_total_and_next_link(tmp_path: Path) -> None:
    """``GET .../documents?limit=&offset=``: one page sorted by name, ``X-Total-Count``, a ``Link`` to the
    next page while more follow (none on the last), 100 by default, limits validated; the service, the
    library and MCP's list_documents page the same way."""
    from api_helpers import assert_error
    from fastapi.testclient import TestClient

    from pagelens.app.access import OPEN
    from pagelens.app.service import PagelensService
    from pagelens.core.settings import Settings
    from pagelens.mcp.tools import ListDocumentsArgs, PagelensTools
    from pagelens.server import create_app

    settings = Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    service = PagelensService(settings, store=QdrantEdgeStore(settings.edge_dir, fast_rerank=False))
    service.store.create_collection(MANIFEST)
    service.store.upsert(COLL, make_points(n_docs=5, pages=1))
    with TestClient(create_app(settings, service, web_ui=False)) as client:
        r = client.get(f"/v1/collections/{COLL}/documents", params={"limit": 2})
        assert r.status_code == 200 and [d["doc_id"] for d in r.json()] == ["doc-0", "doc-1"]
        assert r.headers["x-total-count"] == "5"
        nxt = r.headers["link"]
        assert nxt.endswith('>; rel="next"') and "offset=2" in nxt and "limit=2" in nxt
        r = client.get(nxt[1:nxt.index(">")])
        assert [d["doc_id"] for d in r.json()] == ["doc-2", "doc-3"]
        r = client.get(f"/v1/collections/{COLL}/documents", params={"limit": 2, "offset": 4})
        assert [d["doc_id"] for d in r.json()] == ["doc-4"] and "link" not in r.headers
        r = client.get(f"/v1/collections/{COLL}/documents")
        assert len(r.json()) == 5 and "link" not in r.headers
        assert_error(client.get(f"/v1/collections/{COLL}/documents", params={"limit": 0}), 422)
        assert_error(client.get(f"/v1/collections/{COLL}/documents", params={"limit": 1001}), 422)
        assert_error(client.get(f"/v1/collections/{COLL}/documents", params={"offset": -1}), 422)
    assert [d.doc_id for d in service.documents(COLL, offset=1, limit=2)] == ["doc-1", "doc-2"]
    assert service.document_count(COLL) == 5
    tools = PagelensTools(service)
    result = tools._list_documents(OPEN, ListDocumentsArgs(collection=COLL, limit=2, offset=2))
    data = result.structured_content
    assert [d["doc_id"] for d in data["documents"]] == ["doc-2", "doc-3"]
    assert (data["total"], data["next_offset"]) == (5, 4)
    assert "3-4 of 5 documents" in result.content[0].text and "offset 4" in result.content[0].text
    service.close()
