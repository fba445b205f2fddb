"""One typed store interface and one alias resolution per request (issue 26 item 5, issue 25 item 5).

* Both backends implement every ``VectorStore`` method; the registry and alias wrappers implement every
  ``CatalogStore`` method explicitly (no ``__getattr__`` forwarding).
* A search resolves its collection once: an alias switched (``pagelens index --reindex``) between the
  checks and the search does not make the search run on another collection than the checks, and one
  hybrid search reads the aliases once.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pagelens.index.stores.aliases import AliasedStore, with_aliases
from pagelens.index.stores.base import CatalogStore, VectorStore, backend_of
from pagelens.index.stores.edge_store import QdrantEdgeStore
from pagelens.index.stores.registry import RegisteredStore, with_registry
from pagelens.index.stores.server_store import QdrantServerStore
from test_hybrid import FakeEmbedder
from test_store_contract import MANIFEST, text_points

from pagelens.app.service import PagelensService
from pagelens.core.settings import Settings
from pagelens.core.types import PagePoint

CALLS = ("get_manifest", "has_text_index", "text_spec_version", "count", "search", "search_text", "get_full_vectors")


def _members(protocol: type) -> set[str]:
    return {name for name, value in vars(protocol).items() if callable(value) and not name.startswith("_")}


def test_backends_implement_every_store_method() -> None:
    protocol = _members(VectorStore)
    assert {"claim", "search", "search_text", "text_spec_version", "text_languages", "optimize", "repair"} <= protocol
    for backend in (QdrantEdgeStore, QdrantServerStore):
        for name in protocol:
            assert callable(getattr(backend, name, None)), f"{backend.__name__} lacks {name}"
            want = list(inspect.signature(getattr(VectorStore, name)).parameters)
            got = list(inspect.signature(getattr(backend, name)).parameters)
            assert got[: len(want)] == want, f"{backend.__name__}.{name}{got} vs the protocol's {want}"


def test_wrappers_are_explicit() -> None:
    catalog = _members(CatalogStore) | _members(VectorStore)
    assert {"pin", "resolve_alias", "list_documents", "collection_totals", "listing_version"} <= catalog
    for wrapper in (RegisteredStore, AliasedStore):
        assert "__getattr__" not in vars(wrapper), f"{wrapper.__name__} forwards attributes"
        missing = sorted(name for name in catalog if name not in vars(wrapper))
        assert not missing, f"{wrapper.__name__} does not define {missing}"


@pytest.fixture(params=["edge", "server"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AliasedStore]:
    """The service's store stack (aliases over the registry over a backend) with two versions of one
    collection: ``v1`` (documents named ``old-*``) and ``v2`` (``new-*``), the alias ``lib`` on ``v1``."""
    if request.param == "edge":
        backend: VectorStore = QdrantEdgeStore(tmp_path / "edge", fast_rerank=False)
    else:
        from qdrant_client import QdrantClient

        backend = QdrantServerStore(QdrantClient(":memory:"), prefix="t_")
    store = with_aliases(with_registry(backend, tmp_path / "data"))
    assert isinstance(store, AliasedStore) and isinstance(store, CatalogStore)
    for name, label in (("v1", "old"), ("v2", "new")):
        store.create_collection(replace(MANIFEST, name=name))
        store.upsert(name, [PagePoint(p.id, p.embedding, {**p.payload, "doc_name": f"{label}-{p.payload['doc_name']}"})
                            for p in text_points(collection=name)])
    store.aliases.set("lib", "v1")
    yield store
    store.close()


def record_backend(monkeypatch: pytest.MonkeyPatch, store: AliasedStore,
                   before: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """Record (method, collection) of every read the backend gets; ``before[method]()`` runs first."""
    backend = backend_of(store)
    seen: list[tuple[str, str]] = []
    for name in CALLS:
        real = getattr(backend, name)

        def call(collection: str, *args: Any, _name: str = name, _real: Any = real, **kwargs: Any) -> Any:
            seen.append((_name, collection))
            if before and _name in before:
                before[_name]()
            return _real(collection, *args, **kwargs)

        monkeypatch.setattr(backend, name, call)
    return seen


@pytest.mark.parametrize("mode", ["visual", "text", "hybrid", "exact"])
def test_alias_switch_mid_search_stays_on_one_collection(stack: AliasedStore, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    points = text_points(collection="v1")
    service = PagelensService(Settings(_env_file=None, data_dir=tmp_path / "data"),  # type: ignore[call-arg]
                              store=stack, embedder=FakeEmbedder(points))  # type: ignore[arg-type]
    assert service.store is stack
    switched: list[str] = []

    def reindex_finishes() -> None:  # between the checks (manifest, text index, count) and the search
        if not switched:
            stack.aliases.set("lib", "v2")
            switched.append("v2")

    seen = record_backend(monkeypatch, stack, before={"count": reindex_finishes})
    hits = service.search("lib", "warehouse demolition #4", k=3, mode=mode)  # type: ignore[arg-type]
    assert switched == ["v2"] and stack.resolve_alias("lib") == "v2"  # the switch did happen mid-search
    assert hits and {h.doc_name.split("-")[0] for h in hits} == {"old"}, [h.doc_name for h in hits]
    assert {collection for _, collection in seen} == {"v1"}, seen
    assert [name for name, _ in seen][:1] == ["get_manifest"]
    # the next search sees the new version, whole
    seen.clear()
    hits = service.search("lib", "warehouse demolition #4", k=3, mode=mode)  # type: ignore[arg-type]
    assert {h.doc_name.split("-")[0] for h in hits} == {"new"} and {c for _, c in seen} == {"v2"}


def test_one_hybrid_search_reads_the_aliases_once(stack: AliasedStore, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    service = PagelensService(Settings(_env_file=None, data_dir=tmp_path / "data"),  # type: ignore[call-arg]
                              store=stack, embedder=FakeEmbedder(text_points(collection="v1")))  # type: ignore[arg-type]
    reads: list[int] = []
    real = type(stack.aliases).all

    def counted(self: Any) -> dict[str, str]:
        reads.append(1)
        return real(self)

    monkeypatch.setattr(type(stack.aliases), "all", counted)
    seen = record_backend(monkeypatch, stack)
    hits = service.search("lib", "warehouse demolition #4", k=5, mode="hybrid")
    assert len(hits) == 5 and all(h.visual_score is not None and h.text_score is not None for h in hits)
    assert len(reads) == 1
    assert len(seen) >= 5 and {c for _, c in seen} == {"v1"}  # several backend reads, one resolution
    reads.clear()
    service.search("v2", "warehouse #1", k=2, mode="visual")  # a concrete name: one read too
    assert len(reads) == 1
    reads.clear()
    service._answerer = EchoAnswerer()  # type: ignore[assignment]
    answer = service.ask("lib", "warehouse demolition #4", k=3, mode="hybrid")
    assert len(answer) == 3 and {name.split("-")[0] for name in answer} == {"old"}
    assert len(reads) == 1  # an answer: one resolution too
    info = service.collection_info("lib")
    assert (info.name, info.pages, info.documents) == ("lib", 6, 2)


class EchoAnswerer:
    """Answers with the names of the documents it was given (the answer model is not under test here)."""

    def answer(self, question: str, hits: list[Any], k: int, retrieve_s: float = 0.0) -> list[str]:
        return [h.doc_name for h in hits[:k]]


def test_pin_and_listings(stack: AliasedStore) -> None:
    from pagelens.index.stores.registry import store_identity

    backend = backend_of(stack)
    assert stack.text_query_languages == stack.inner.text_query_languages == backend.text_query_languages == "all"
    assert store_identity(stack) == store_identity(stack.inner) == stack.inner.identity == store_identity(backend)  # type: ignore[attr-defined]
    target, inner = stack.pin("lib")
    assert (target, inner) == ("v1", stack.inner)
    assert inner.pin("v1") == ("v1", inner)  # type: ignore[attr-defined]
    assert stack.collection_totals("lib") == (2, 6) == stack.inner.collection_totals("v1")  # type: ignore[attr-defined]
    assert [d.doc_name for d in stack.list_documents("lib")] == ["old-report-0.pdf", "old-report-1.pdf"]
    bare = with_aliases(backend_of(stack))
    assert isinstance(bare, AliasedStore)
    assert bare.count("lib") == 6
    with pytest.raises(TypeError, match="with_registry"):
        bare.list_documents("lib")
