"""One contract suite every ``VectorStore`` backend passes (Qdrant Edge, qdrant-client local mode)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pagelens.index.stores.base import VectorStore
from pagelens.index.stores.edge_store import QdrantEdgeStore
from pagelens.index.stores.server_store import QdrantServerStore

from pagelens.core.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    InvalidRequestError,
    StoreUnavailableError,
)
from pagelens.core.types import CollectionManifest, PageEmbedding, PageFilter, PagePoint, page_point_id

DIM = 128
COLL = "contract"


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def synthetic_embedding(rng: np.random.Generator) -> PageEmbedding:
    """A page as an [r, c] patch grid: full [r*c, DIM] unit vectors; rows [r, DIM], cols [c, DIM] means."""
    r, c = int(rng.integers(5, 10)), int(rng.integers(8, 10))
    full = unit(rng.standard_normal((r * c, DIM)))
    grid = full.reshape(r, c, DIM)
    return PageEmbedding(full=full, rows=grid.mean(axis=1), cols=grid.mean(axis=0))


def make_points(n_docs: int = 4, pages: int = 6, seed: int = 0, collection: str = COLL) -> list[PagePoint]:
    rng = np.random.default_rng(seed)
    points = []
    for d in range(n_docs):
        sha = f"{d:02d}" * 32
        for page_no in range(1, pages + 1):
            payload: dict[str, Any] = {
                "doc_id": f"doc-{d}",
                "doc_name": f"report-{d}.pdf",
                "page_no": page_no,
                "page_count": pages,
                "sha256": sha,
                "collection": collection,
                "meta": {"lang": "en" if d % 2 else "de", "year": 2020 + d, "tags": ["a", "b"], "score": 0.5},
                "text": f"page {page_no} of doc {d} — ünïcode",
                "image_path": None,
                "indexed_at": "2026-01-01T00:00:00+00:00",
            }
            points.append(PagePoint(page_point_id(collection, sha, page_no), synthetic_embedding(rng), payload))
    return points


def maxsim(q: np.ndarray, d: np.ndarray) -> float:
    """sum over query tokens of max dot: q [n_q, DIM], d [n_t, DIM]."""
    return float((q @ d.T).max(axis=1).sum())


MANIFEST = CollectionManifest(name=COLL, model_id="vidore/colSmol-256M", model_revision=None, dim=DIM,
                              created_at="2026-01-01T00:00:00+00:00")


@pytest.fixture(params=["edge", "edge-qdrant-rerank", "server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    """Qdrant Edge with the fast rerank over its int8 cache (default) and without it, and the server backend.
    ``rerank_candidates=3`` makes the fast path choose among the prefetched pages even here."""
    if request.param == "edge":
        s: VectorStore = QdrantEdgeStore(tmp_path / "edge", rerank_candidates=3)
    elif request.param == "edge-qdrant-rerank":
        s = QdrantEdgeStore(tmp_path / "edge", fast_rerank=False)
    else:
        from qdrant_client import QdrantClient

        s = QdrantServerStore(QdrantClient(":memory:"), prefix="t_")
    yield s
    s.close()


@pytest.fixture
def filled(store: VectorStore) -> tuple[VectorStore, list[PagePoint]]:
    points = make_points()
    store.create_collection(MANIFEST)
    store.upsert(COLL, points)
    return store, points


def test_is_a_vector_store(store: VectorStore) -> None:
    assert isinstance(store, VectorStore)


def test_create_list_manifest_roundtrip(store: VectorStore) -> None:
    assert store.list_collections() == []
    store.create_collection(MANIFEST)
    store.create_collection(CollectionManifest(name="a.second-one", model_id="m", model_revision="r1", dim=DIM))
    assert store.list_collections() == ["a.second-one", COLL]
    assert store.get_manifest(COLL) == MANIFEST
    assert store.get_manifest("a.second-one").model_revision == "r1"  # type: ignore[union-attr]
    assert store.get_manifest("nope") is None
    with pytest.raises(CollectionExistsError):
        store.create_collection(MANIFEST)
    assert store.count(COLL) == 0


@pytest.mark.parametrize("bad", ["", "has space", "../up", "-leading", "x" * 65, "a/b"])
def test_invalid_collection_names(store: VectorStore, bad: str) -> None:
    with pytest.raises(InvalidRequestError, match="collection name"):
        store.create_collection(CollectionManifest(name=bad, model_id="m", model_revision=None, dim=DIM))
    with pytest.raises(InvalidRequestError):
        store.count(bad)


def test_upsert_count_idempotent(filled: tuple[VectorStore, list[PagePoint]]) -> None:
    store, points = filled
    assert store.count(COLL) == len(points)
    store.upsert(COLL, points[:10])
    assert store.count(COLL) == len(points)
    # replacing a point replaces its payload
    changed = PagePoint(points[0].id, points[0].embedding, {**points[0].payload, "text": "new"})
    store.upsert(COLL, [changed])
    payloads = dict(store.iter_payloads(COLL))
    assert payloads[points[0].id]["text"] == "new"


def test_upsert_rejects_bad_vectors(filled: tuple[VectorStore, list[PagePoint]]) -> None:
    store, points = filled
    p = points[0]
    bad = PagePoint(p.id, PageEmbedding(full=np.ones((3, DIM - 1), np.float32), rows=p.embedding.rows,
                                        cols=p.embedding.cols), p.payload)
    with pytest.raises(InvalidRequestError, match="full"):
        store.upsert(COLL, [bad])


def test_delete_document(filled: tuple[VectorStore, list[PagePoint]]) -> None:
    store, points = filled
    assert store.delete_document(COLL, "doc-1") == 6
    assert store.count(COLL) == len(points) - 6
    assert store.count(COLL, PageFilter(doc_ids=["doc-1"])) == 0
    assert store.delete_document(COLL, "doc-1") == 0
    remaining = {pid for pid, _ in store.iter_payloads(COLL)}
    assert remaining == {p.id for p in points if p.payload["doc_id"] != "doc-1"}


def test_set_payload_updates_every_page_of_one_document(filled: tuple[VectorStore, list[PagePoint]]) -> None:
    store, points = filled
    before = dict(store.iter_payloads(COLL))
    query = points[0].embedding.full[:3]
    scores = {h.id: h.score for h in store.search(COLL, query, limit=5, mode="exact")}
    assert store.set_payload(COLL, "doc-1", {"doc_name": "renamed.pdf", "meta": {"year": 1999}}) == 6
    after = dict(store.iter_payloads(COLL))
    for pid, payload in after.items():
        if before[pid]["doc_id"] == "doc-1":
            # the named keys replaced whole (meta's old keys are gone), every other key kept
            assert payload == {**before[pid], "doc_name": "renamed.pdf", "meta": {"year": 1999}}
        else:
            assert payload == before[pid]
    assert store.count(COLL, PageFilter(doc_names=["renamed.pdf"])) == 6
    assert store.count(COLL, PageFilter(metadata={"year": 1999})) == 6
    assert store.count(COLL, PageFilter(doc_names=["report-1.pdf"])) == 0
    # vectors untouched: the same exact scores
    assert {h.id: h.score for h in store.search(COLL, query, limit=5, mode="exact")} == pytest.approx(scores)
    assert store.set_payload(COLL, "no-such-doc", {"doc_name": "x"}) == 0
    with pytest.raises(CollectionNotFoundError):
        store.set_payload("nope", "doc-1", {"doc_name": "x"})


def test_iter_payloads_intact(filled: tuple[VectorStore, list[PagePoint]]) -> None:
    store, points = filled
    got = dict(store.iter_payloads(COLL))
    assert got == {p.id: p.payload for p in points}
    only = dict(store.iter_payloads(COLL, PageFilter(doc_ids=["doc-2"])))
    assert set(only) == {p.id for p in points if p.payload["doc_id"] == "doc-2"}


def test_iter_payloads_pages_through_many(store: VectorStore) -> None:
    store.create_collection(MANIFEST)
    points = make_points(n_docs=1, pages=300, seed=3)  # more than one scroll page (256)
    store.upsert(COLL, points)
    assert len(dict(store.iter_payloads(COLL))) == 300


@pytest.mark.parametrize(
    ("page_filter", "expected"),
    [
        (PageFilter(doc_ids=["doc-0", "doc-3"]), lambda p: p["doc_id"] in ("doc-0", "doc-3")),
        (PageFilter(doc_names=["report-2.pdf"]), lambda p: p["doc_name"] == "report-2.pdf"),
        (PageFilter(metadata={"lang": "en"}), lambda p: p["meta"]["lang"] == "en"),
        (PageFilter(metadata={"year": [2020, 2022]}), lambda p: p["meta"]["year"] in (2020, 2022)),
        (PageFilter(metadata={"tags": "b"}), lambda p: True),
        (PageFilter(metadata={"score": 0.5}), lambda p: True),
        (PageFilter(metadata={"lang": "de", "year": 2022}, doc_ids=["doc-2", "doc-1"]),
         lambda p: p["doc_id"] == "doc-2"),
        (PageFilter(doc_ids=["nope"]), lambda p: False),
        (PageFilter(), lambda p: True),
    ],
)
def test_filters_in_count_and_search(
    filled: tuple[VectorStore, list[PagePoint]], page_filter: PageFilter, expected: Any
) -> None:
    store, points = filled
    want = {p.id for p in points if expected(p.payload)}
    assert store.count(COLL, page_filter) == len(want)
    q = unit(np.random.default_rng(9).standard_normal((12, DIM)))
    for mode in ("exact", "two_stage"):
        hits = store.search(COLL, q, limit=100, mode=mode, page_filter=page_filter)  # type: ignore[arg-type]
        assert {h.id for h in hits} == want, mode


def test_bad_metadata_filter(filled: tuple[VectorStore, list[PagePoint]]) -> None:
    store, _ = filled
    with pytest.raises(InvalidRequestError):
        store.count(COLL, PageFilter(metadata={"a.b": "x"}))
    with pytest.raises(InvalidRequestError):
        store.count(COLL, PageFilter(metadata={"k": {"nested": 1}}))


def test_search_sorted_with_payload_and_exact_scores(filled: tuple[VectorStore, list[PagePoint]]) -> None:
    store, points = filled
    by_id = {p.id: p for p in points}
    rng = np.random.default_rng(5)
    # a query made of (noisy) tokens of one page: that page must come first
    target = points[7]
    q = unit(target.embedding.full[:10] + 0.3 * rng.standard_normal((10, DIM)))
    brute = sorted(((maxsim(q, p.embedding.full), p.id) for p in points), key=lambda t: (-t[0], t[1]))
    for mode in ("exact", "two_stage"):
        hits = store.search(COLL, q, limit=5, mode=mode)  # type: ignore[arg-type]
        assert len(hits) == 5
        assert hits[0].id == target.id
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        for h in hits:
            assert h.payload == by_id[h.id].payload
            assert h.score == pytest.approx(maxsim(q, by_id[h.id].embedding.full), abs=1e-3)
    exact = store.search(COLL, q, limit=10, mode="exact")
    assert [h.id for h in exact] == [pid for _, pid in brute[:10]]
    np.testing.assert_allclose([h.score for h in exact], [s for s, _ in brute[:10]], atol=1e-3)


def test_search_rejects_bad_query(filled: tuple[VectorStore, list[PagePoint]]) -> None:
    store, _ = filled
    with pytest.raises(InvalidRequestError):
        store.search(COLL, np.ones((3, DIM + 1), np.float32), limit=3)
    with pytest.raises(InvalidRequestError):
        store.search(COLL, np.ones((DIM,), np.float32), limit=3)


def test_get_full_vectors_roundtrip(filled: tuple[VectorStore, list[PagePoint]]) -> None:
    store, points = filled
    ids = [points[0].id, points[5].id, "00000000-0000-0000-0000-000000000000", "not-a-uuid"]
    got = store.get_full_vectors(COLL, ids)
    assert set(got) == {points[0].id, points[5].id}
    for pid in got:
        ref = next(p for p in points if p.id == pid).embedding.full
        assert got[pid].dtype == np.float32 and got[pid].shape == ref.shape
        np.testing.assert_allclose(got[pid], ref, atol=1e-6)


def test_missing_collection_errors(store: VectorStore) -> None:
    q = np.ones((2, DIM), np.float32)
    calls = [
        lambda: store.delete_collection("ghost"),
        lambda: store.upsert("ghost", make_points(1, 1, collection="ghost")),
        lambda: store.delete_document("ghost", "d"),
        lambda: store.count("ghost"),
        lambda: store.iter_payloads("ghost"),
        lambda: store.search("ghost", q, limit=3),
        lambda: store.search("ghost", q, limit=3, mode="exact"),
        lambda: store.get_full_vectors("ghost", []),
    ]
    for call in calls:
        with pytest.raises(CollectionNotFoundError, match="ghost"):
            call()


def test_search_status_and_repair(store: VectorStore) -> None:
    """Every backend says whether its search structures are current and repairs them
    (pagelens.index.stores.search_status): an empty collection is current; after ``repair`` a filled one is, and a
    second repair has nothing to do."""
    from pagelens.index.stores.search_status import SearchStatus

    store.create_collection(MANIFEST)
    assert store.search_status(COLL) == SearchStatus(COLL, True, points=0)
    store.upsert(COLL, make_points())
    result = store.repair(COLL, force=True)
    assert result.collection == COLL and result.after.current and result.seconds >= 0
    status = store.search_status(COLL)
    assert status.current and status.stale == () and status.points == 24
    again = store.repair(COLL)
    assert not again.ran and again.rebuilt == [] and again.after == status
    for call in (lambda: store.search_status("ghost"), lambda: store.repair("ghost")):
        with pytest.raises(CollectionNotFoundError, match="ghost"):
            call()


def test_delete_collection(filled: tuple[VectorStore, list[PagePoint]]) -> None:
    store, points = filled
    store.delete_collection(COLL)
    assert store.list_collections() == []
    assert store.get_manifest(COLL) is None
    with pytest.raises(CollectionNotFoundError):
        store.count(COLL)
    store.create_collection(MANIFEST)  # recreate from scratch
    assert store.count(COLL) == 0
    store.upsert(COLL, points[:3])
    assert store.count(COLL) == 3


def test_close_twice(filled: tuple[VectorStore, list[PagePoint]]) -> None:
    store, _ = filled
    store.close()
    store.close()


# --- backend-specific -----------------------------------------------------------------------


def test_edge_persistence(tmp_path: Path) -> None:
    points = make_points()
    store = QdrantEdgeStore(tmp_path / "edge")
    store.create_collection(MANIFEST)
    store.upsert(COLL, points)
    store.close()
    reopened = QdrantEdgeStore(tmp_path / "edge")
    try:
        assert reopened.list_collections() == [COLL]
        assert reopened.get_manifest(COLL) == MANIFEST
        assert reopened.count(COLL) == len(points)
        assert reopened.count(COLL, PageFilter(doc_ids=["doc-0"])) == 6
        q = unit(points[3].embedding.full[:8])
        assert reopened.search(COLL, q, limit=1, mode="exact")[0].id == points[3].id
        assert reopened.optimize(COLL) in (True, False)
    finally:
        reopened.close()
    assert (tmp_path / "edge" / COLL / "manifest.json").is_file()


def test_edge_float16_scores_close(tmp_path: Path) -> None:
    points = make_points(seed=4)
    store = QdrantEdgeStore(tmp_path / "edge16", full_datatype="float16")
    try:
        store.create_collection(MANIFEST)
        store.upsert(COLL, points)
        q = unit(np.random.default_rng(1).standard_normal((20, DIM)))
        for h in store.search(COLL, q, limit=10, mode="exact"):
            ref = maxsim(q, next(p for p in points if p.id == h.id).embedding.full)
            assert abs(h.score - ref) < 1e-2
    finally:
        store.close()


def test_server_hides_foreign_collections() -> None:
    from qdrant_client import QdrantClient, models

    client = QdrantClient(":memory:")
    client.create_collection("t_foreign", vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT))
    client.create_collection("other", vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT))
    store = QdrantServerStore(client, prefix="t_")
    store.create_collection(MANIFEST)
    assert store.list_collections() == [COLL]
    assert client.collection_exists("t_" + COLL)


def test_server_unreachable_is_store_unavailable() -> None:
    from pagelens.core.settings import Settings

    settings = Settings(_env_file=None, qdrant_url="http://127.0.0.1:9", qdrant_timeout_s=2)  # type: ignore[call-arg]
    store = QdrantServerStore.from_settings(settings)
    with pytest.raises(StoreUnavailableError, match="127.0.0.1:9"):
        store.list_collections()


def test_open_store_picks_backend(tmp_path: Path) -> None:
    from pagelens.index.stores.factory import open_store

    from pagelens.core.settings import Settings

    edge = open_store(Settings(_env_file=None, data_dir=tmp_path))  # type: ignore[call-arg]
    assert isinstance(edge, QdrantEdgeStore) and edge.root == tmp_path / "qdrant-edge"
    server = open_store(Settings(_env_file=None, data_dir=tmp_path, qdrant_url="http://127.0.0.1:9"))  # type: ignore[call-arg]
    assert isinstance(server, QdrantServerStore)
    server.close()


def test_concurrent_calls(filled: tuple[VectorStore, list[PagePoint]]) -> None:
    """Searches, counts and upserts from several threads (the API calls the store from a pool)."""
    from concurrent.futures import ThreadPoolExecutor

    store, points = filled
    q = unit(points[2].embedding.full[:6])

    def work(i: int) -> str:
        store.upsert(COLL, [points[i % len(points)]])
        assert store.count(COLL) == len(points)
        return store.search(COLL, q, limit=3, mode="exact" if i % 2 else "two_stage")[0].id

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert set(pool.map(work, range(16))) == {points[2].id}


# --- text (BM25 sparse vector derived from payload["text"]) --------------------------------

TEXTS = [
    "Quarterly revenue of the Zephyr division grew 12% to 4,512 million euros.",
    "The committee approved the demolition permit for the old warehouse on Rue Lafayette.",
    "Zephyr engineers measured 4,512 vibrations per second in the turbine test.",
    "",  # a scanned page: no text layer
    "Minutes of the meeting: the warehouse demolition starts in March 2023.",
    "Invoice total due: 89.90 EUR, fiber subscription, reference FR-7781.",
]


def text_points(collection: str = COLL) -> list[PagePoint]:
    points = make_points(n_docs=2, pages=3, seed=11, collection=collection)
    for p, text in zip(points, TEXTS, strict=True):
        p.payload["text"] = text
    return points


@pytest.fixture
def text_filled(store: VectorStore) -> tuple[VectorStore, list[PagePoint]]:
    points = text_points()
    store.create_collection(MANIFEST)
    store.upsert(COLL, points)
    return store, points


def test_text_index_on_new_collections(text_filled: tuple[VectorStore, list[PagePoint]]) -> None:
    store, _ = text_filled
    assert store.has_text_index(COLL) is True
    assert store.get_manifest(COLL) == MANIFEST  # the text index does not change the manifest
    with pytest.raises(CollectionNotFoundError):
        store.has_text_index("ghost")
    with pytest.raises(CollectionNotFoundError):
        store.search_text("ghost", "zephyr", limit=3)


def test_search_text_ranks_by_bm25(text_filled: tuple[VectorStore, list[PagePoint]]) -> None:
    store, points = text_filled
    ids = [p.id for p in points]
    hits = store.search_text(COLL, "warehouse demolition permit", limit=10)
    assert [h.id for h in hits] == [ids[1], ids[4]]  # only pages sharing a term; 3 terms beat 2
    assert hits[0].score > hits[1].score > 0
    assert hits[0].payload == points[1].payload
    # a rare term (IDF) decides between two pages that both say "Zephyr 4,512"
    hits = store.search_text(COLL, "Zephyr turbine 4,512", limit=10)
    assert [h.id for h in hits][:2] == [ids[2], ids[0]]
    # stemming: "invoices" finds "Invoice"; numbers and codes are terms
    assert store.search_text(COLL, "invoices", limit=3)[0].id == ids[5]
    assert store.search_text(COLL, "FR-7781", limit=3)[0].id == ids[5]


def test_search_text_edge_cases(text_filled: tuple[VectorStore, list[PagePoint]]) -> None:
    store, points = text_filled
    assert store.search_text(COLL, "the of and", limit=5) == []  # stopwords only
    assert store.search_text(COLL, "nonexistentword", limit=5) == []
    scanned = points[3].id
    all_hits = store.search_text(COLL, "zephyr warehouse invoice minutes revenue", limit=100)
    assert scanned not in {h.id for h in all_hits}  # empty text: never a text hit...
    q = unit(points[3].embedding.full[:8])
    assert store.search(COLL, q, limit=1, mode="exact")[0].id == scanned  # ...but found visually
    with pytest.raises(InvalidRequestError):
        store.search_text(COLL, "zephyr", limit=0)


def test_search_text_filters_and_upsert_replaces(text_filled: tuple[VectorStore, list[PagePoint]]) -> None:
    store, points = text_filled
    hits = store.search_text(COLL, "zephyr", limit=10, page_filter=PageFilter(doc_ids=["doc-1"]))
    assert hits == []  # doc-1 never says zephyr
    hits = store.search_text(COLL, "zephyr", limit=10, page_filter=PageFilter(doc_ids=["doc-0"]))
    assert {h.id for h in hits} == {points[0].id, points[2].id}
    # replacing a point's payload re-derives its sparse vector
    changed = PagePoint(points[5].id, points[5].embedding, {**points[5].payload, "text": "zephyr zephyr"})
    store.upsert(COLL, [changed])
    assert store.search_text(COLL, "FR-7781", limit=3) == []
    assert points[5].id in {h.id for h in store.search_text(COLL, "zephyr", limit=10)}
    assert store.count(COLL) == len(points)


def test_text_ranking_same_on_both_backends(tmp_path: Path) -> None:
    from qdrant_client import QdrantClient

    stores: list[VectorStore] = [QdrantEdgeStore(tmp_path / "e"), QdrantServerStore(QdrantClient(":memory:"))]
    rankings = []
    for s in stores:
        s.create_collection(MANIFEST)
        s.upsert(COLL, text_points())
        rankings.append([[h.id for h in s.search_text(COLL, q, limit=10)]
                         for q in ("zephyr 4,512", "warehouse", "demolition 2023 march", "fiber invoice")])
        s.close()
    assert rankings[0] == rankings[1]


def _legacy_collection(kind: str, tmp_path: Path) -> VectorStore:
    """A collection as created before the text index existed (no sparse vector)."""
    if kind == "edge":
        import json

        import qdrant_edge as qe

        class Legacy(QdrantEdgeStore):
            def _edge_config(self, dim: int) -> Any:
                return qe.EdgeConfig(vectors=super()._edge_config(dim).vectors)

        legacy = Legacy(tmp_path / "legacy")
        legacy.create_collection(MANIFEST)
        legacy.close()
        path = tmp_path / "legacy" / COLL / "manifest.json"
        data = json.loads(path.read_text())
        data.pop("text_index")
        path.write_text(json.dumps(data))
        return QdrantEdgeStore(tmp_path / "legacy")
    from pagelens.index.stores.server_store import MANIFEST_KEY
    from qdrant_client import QdrantClient, models

    from pagelens.core.types import COLS_VECTOR, FULL_VECTOR, ROWS_VECTOR

    client = QdrantClient(":memory:")
    maxsim = models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM)
    client.create_collection(
        COLL,
        vectors_config={name: models.VectorParams(size=DIM, distance=models.Distance.DOT, multivector_config=maxsim)
                        for name in (FULL_VECTOR, ROWS_VECTOR, COLS_VECTOR)},
        metadata={MANIFEST_KEY: MANIFEST.to_dict()},
    )
    return QdrantServerStore(client)


@pytest.mark.parametrize("kind", ["edge", "server"])
def test_legacy_collection_without_text_index(kind: str, tmp_path: Path) -> None:
    from pagelens.core.errors import TextIndexMissingError

    store = _legacy_collection(kind, tmp_path)
    try:
        points = text_points()
        store.upsert(COLL, points)  # no sparse vector is written
        assert store.count(COLL) == len(points)
        assert store.has_text_index(COLL) is False
        with pytest.raises(TextIndexMissingError, match="re-index"):
            store.search_text(COLL, "zephyr", limit=3)
        q = unit(points[2].embedding.full[:8])
        assert store.search(COLL, q, limit=1, mode="exact")[0].id == points[2].id
    finally:
        store.close()


def test_iter_payloads_payload_selector(filled: tuple[VectorStore, list[PagePoint]]) -> None:
    """``keys`` reads only those payload keys: a listing never reads the page text."""
    store, points = filled
    got = dict(store.iter_payloads(COLL, keys=("doc_id", "page_no", "meta")))
    assert got == {p.id: {"doc_id": p.payload["doc_id"], "page_no": p.payload["page_no"], "meta": p.payload["meta"]}
                   for p in points}
    only = dict(store.iter_payloads(COLL, PageFilter(doc_ids=["doc-3"]), keys=["sha256"]))
    assert only == {p.id: {"sha256": "03" * 32} for p in points if p.payload["doc_id"] == "doc-3"}


def test_filter_by_page_no(filled: tuple[VectorStore, list[PagePoint]]) -> None:
    store, points = filled
    one = dict(store.iter_payloads(COLL, PageFilter(doc_ids=["doc-2"], page_nos=[4])))
    assert [(p["doc_id"], p["page_no"]) for p in one.values()] == [("doc-2", 4)]
    assert set(one) == {page_point_id(COLL, "02" * 32, 4)}
    assert store.count(COLL, PageFilter(page_nos=[1, 6])) == 8  # 4 documents x 2 pages
    assert store.count(COLL, PageFilter(doc_ids=["doc-2"], page_nos=[7])) == 0
    with pytest.raises(InvalidRequestError, match="page numbers"):
        store.count(COLL, PageFilter(page_nos=[0]))


def test_filter_excludes_documents(filled: tuple[VectorStore, list[PagePoint]]) -> None:
    """``exclude_doc_ids`` (must_not): counts, listings and every search mode leave those documents out."""
    store, points = filled
    hidden = PageFilter(exclude_doc_ids=["doc-0", "doc-3"])
    assert store.count(COLL, hidden) == 12
    assert {p["doc_id"] for _, p in store.iter_payloads(COLL, hidden, keys=["doc_id"])} == {"doc-1", "doc-2"}
    both = PageFilter(doc_ids=["doc-1", "doc-3"], exclude_doc_ids=["doc-3"])
    assert store.count(COLL, both) == 6
    rng = np.random.default_rng(11)
    q = unit(rng.standard_normal((5, DIM)))
    for mode in ("exact", "two_stage"):
        hits = store.search(COLL, q, limit=24, mode=mode, page_filter=hidden)  # type: ignore[arg-type]
        assert {h.payload["doc_id"] for h in hits} == {"doc-1", "doc-2"}
        assert len(hits) == 12
    text_hits = store.search_text(COLL, "page doc", limit=24, page_filter=hidden)
    assert text_hits and {h.payload["doc_id"] for h in text_hits} <= {"doc-1", "doc-2"}


@pytest.mark.slow
def test_the_default_search_is_right_on_an_anisotropic_collection_after_repair(store: VectorStore) -> None:
    """Issue 25, on every backend: 300 anisotropic pages (a narrow cone, near-duplicate background
    patches, queries that only partly match; bench/retrieval.py ``Synth``). ``repair`` measures the
    recall of the backend's first stages on probe queries and keeps a plan that reaches 0.95; the
    default two_stage search then returns exact MaxSim's top 5 for queries the check never saw."""
    from bench.retrieval import Synth, page_of, points_for, recall

    syn = Synth(300, 60, generator="aniso")
    store.create_collection(CollectionManifest(name=COLL, model_id="synthetic", model_revision=None, dim=DIM))
    for k in range(syn.n_chunks()):
        full, rows, cols, _ = syn.gen_chunk(k)
        store.upsert(COLL, points_for(k * 100, full, rows, cols))
    store.repair(COLL, force=True)
    check = store.search_status(COLL).self_check
    if isinstance(store, QdrantEdgeStore) and not store.fast_rerank:
        assert check is None  # no int8 cache: nothing to measure, Qdrant's own prefetch as before
        return
    assert check is not None and check["recall"] >= 0.95 and check["pages"] == 300
    got = []
    for q in syn.queries(12)[0]:
        exact = store.search(COLL, q, 300, mode="exact")
        scores = np.zeros(300, dtype=np.float32)
        for h in exact:
            scores[page_of(h.id)] = h.score
        hits = store.search(COLL, q, 5)
        got.append(recall([page_of(h.id) for h in hits], [page_of(h.id) for h in exact[:5]], 5, scores))
    assert float(np.mean(got)) >= 0.95, got
