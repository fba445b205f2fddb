"""Collection aliases, so a re-index with a new retriever model switches atomically.

``pagelens index --reindex --collection NAME`` builds ``NAME__<model-slug>-<UTC time>`` from scratch
and, once the run is over, points the alias ``NAME`` at it in one atomic step; searches through
``NAME`` see the old complete index until then and the new complete index after, never a half-built
one. Previous versions stay as ordinary collections (``pagelens collections`` lists them; delete them
with ``pagelens delete --collection NAME__... --all``).

Backends:

* Qdrant server: real Qdrant collection aliases (``update_collection_aliases``, delete + create in one
  request, safe to retry after a lost reply), so other Qdrant clients can query ``NAME`` too.
* Qdrant Edge: ``<edge root>/aliases.json`` ({alias: collection}), replaced atomically (temp file +
  ``os.replace``) and read on every store call.

``AliasedStore`` wraps a ``VectorStore``: every method whose first argument is a collection name gets
the alias resolved first (one read of the aliases per call); ``list_collections`` shows an alias in
place of the collection it points to. A search or an answer resolves once (``AliasedStore.pin``) and
runs every step on the concrete collection (``pagelens.retrieve.retriever``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pagelens.index.stores.filters import validate_collection_name

from pagelens.core.errors import CollectionExistsError, CollectionNotFoundError
from pagelens.core.types import CollectionManifest, PageFilter, PagePoint, ScoredPage, SearchMode

if TYPE_CHECKING:
    import numpy as np
    from pagelens.index.stores.base import VectorStore
    from pagelens.index.stores.registry import DocumentRecord, RegisteredStore
    from pagelens.index.stores.search_status import RepairResult, SearchStatus

log = logging.getLogger(__name__)

ALIASES_FILE = "aliases.json"


class EdgeAliases:
    """{alias: collection} in ``root/aliases.json`` (one process per Edge root, like the store).

    ``claim``: called before every write (the store's ``claim``: the data dir's one-process lock)."""

    def __init__(self, root: Path, claim: Callable[[], None] | None = None) -> None:
        self.path = Path(root) / ALIASES_FILE
        self._claim = claim

    def all(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return {str(k): str(v) for k, v in dict(data).items()}

    def _write(self, data: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".aliases-", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def set(self, alias: str, collection: str) -> None:
        if self._claim is not None:  # before reading: the read-modify-write is this process's alone
            self._claim()
        data = self.all()
        data[alias] = collection
        self._write(data)

    def remove(self, alias: str) -> None:
        if self._claim is not None:
            self._claim()
        data = self.all()
        if data.pop(alias, None) is not None:
            self._write(data)


class ServerAliases:
    """Qdrant collection aliases of a ``QdrantServerStore`` (its ``prefix`` applies to both names).

    ``set`` and ``remove`` are safe to retry (``QdrantServerStore`` retries transient errors, and the
    reply of a change that was applied may be the one lost): each try reads the aliases first and sends
    only what is still to do, all of it in one atomic ``update_collection_aliases`` (delete + create), so
    a retry after a lost reply finds the alias already at its target and ends there."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def _all_raw(self) -> dict[str, str]:
        """{alias: collection}, prefixed names; a raw client call (inside ``store._call``)."""
        return {a.alias_name: a.collection_name for a in self.store.client.get_aliases().aliases}

    def all(self) -> dict[str, str]:
        prefix = self.store.prefix
        raw = self.store._call(self._all_raw)
        return {
            alias[len(prefix):]: collection[len(prefix):]
            for alias, collection in raw.items()
            if alias.startswith(prefix) and collection.startswith(prefix)
        }

    def set(self, alias: str, collection: str) -> None:
        from qdrant_client import models

        name, target = self.store.prefix + alias, self.store.prefix + collection

        def attempt() -> None:
            current = self._all_raw().get(name)
            if current == target:  # done (by an earlier try whose reply was lost, or before)
                return
            ops: list[Any] = []
            if current is not None:
                ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=name)))
            ops.append(models.CreateAliasOperation(create_alias=models.CreateAlias(
                collection_name=target, alias_name=name)))
            self.store.client.update_collection_aliases(change_aliases_operations=ops)

        self.store._call(attempt)

    def remove(self, alias: str) -> None:
        from qdrant_client import models

        name = self.store.prefix + alias

        def attempt() -> None:
            if name not in self._all_raw():  # gone (by an earlier try whose reply was lost, or before)
                return
            op = models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=name))
            self.store.client.update_collection_aliases(change_aliases_operations=[op])

        self.store._call(attempt)


class AliasedStore:
    """A ``CatalogStore`` (``pagelens.index.stores.base``) with collection names resolved through
    ``aliases`` (see the module docstring), one explicit method each: every collection argument is
    resolved (one read of the aliases per call) before the wrapped store sees it. A request that makes
    several calls resolves once with ``pin`` and makes them on the store it returns.

    ``inner``: a ``RegisteredStore`` (the service's stack: its listings are offered here too), or a bare
    backend (then only the ``VectorStore`` methods work; a listing raises ``TypeError``)."""

    def __init__(self, inner: VectorStore, aliases: EdgeAliases | ServerAliases) -> None:
        self.inner = inner
        self.aliases = aliases

    def resolve_alias(self, name: str) -> str:
        return self.aliases.all().get(name, name)

    def pin(self, collection: str) -> tuple[str, VectorStore]:
        """(the collection ``collection`` names now, the store below the alias layer): one read."""
        return self.resolve_alias(collection), self.inner

    # --- names: aliases shown, created, deleted --------------------------------------------
    def create_collection(self, manifest: CollectionManifest) -> None:
        if manifest.name in self.aliases.all():
            raise CollectionExistsError(
                f"'{manifest.name}' is an alias of collection '{self.resolve_alias(manifest.name)}'",
                collection=manifest.name,
            )
        self.inner.create_collection(manifest)

    def list_collections(self) -> list[str]:
        real = list(self.inner.list_collections())
        live = {a: c for a, c in self.aliases.all().items() if c in real}
        return sorted((set(real) - set(live.values())) | set(live))

    def delete_collection(self, collection: str) -> None:
        """Deleting an alias deletes it and the collection it points to."""
        target = self.aliases.all().get(collection)
        if target is None:
            self.inner.delete_collection(collection)
            return
        self.aliases.remove(collection)
        with contextlib.suppress(CollectionNotFoundError):
            self.inner.delete_collection(target)

    # --- everything else: on the collection the name points to -------------------------------
    @property
    def text_query_languages(self) -> str:
        """The wrapped store's (set it on the backend: ``pagelens.index.stores.base.backend_of``)."""
        return self.inner.text_query_languages

    def claim(self) -> None:
        self.inner.claim()

    def get_manifest(self, collection: str) -> CollectionManifest | None:
        return self.inner.get_manifest(self.resolve_alias(collection))

    def upsert(self, collection: str, points: Sequence[PagePoint]) -> None:
        self.inner.upsert(self.resolve_alias(collection), points)

    def delete_document(self, collection: str, doc_id: str) -> int:
        return self.inner.delete_document(self.resolve_alias(collection), doc_id)

    def set_payload(self, collection: str, doc_id: str, values: dict[str, Any]) -> int:
        return self.inner.set_payload(self.resolve_alias(collection), doc_id, values)

    def count(self, collection: str, page_filter: PageFilter | None = None) -> int:
        return self.inner.count(self.resolve_alias(collection), page_filter)

    def iter_payloads(
        self, collection: str, page_filter: PageFilter | None = None, keys: Sequence[str] | None = None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        return self.inner.iter_payloads(self.resolve_alias(collection), page_filter, keys=keys)

    def search(
        self,
        collection: str,
        query: np.ndarray,
        limit: int,
        mode: SearchMode = "two_stage",
        page_filter: PageFilter | None = None,
        prefetch_limit: int = 100,
    ) -> list[ScoredPage]:
        return self.inner.search(self.resolve_alias(collection), query, limit=limit, mode=mode,
                                 page_filter=page_filter, prefetch_limit=prefetch_limit)

    def has_text_index(self, collection: str) -> bool:
        return self.inner.has_text_index(self.resolve_alias(collection))

    def search_text(
        self, collection: str, text: str, limit: int, page_filter: PageFilter | None = None
    ) -> list[ScoredPage]:
        return self.inner.search_text(self.resolve_alias(collection), text, limit=limit, page_filter=page_filter)

    def text_spec_version(self, collection: str) -> int:
        return self.inner.text_spec_version(self.resolve_alias(collection))

    def text_languages(self, collection: str) -> dict[str, int]:
        return self.inner.text_languages(self.resolve_alias(collection))

    def get_full_vectors(self, collection: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        return self.inner.get_full_vectors(self.resolve_alias(collection), ids)

    def search_status(self, collection: str) -> SearchStatus:
        """``search_status`` of the collection ``collection`` names (an alias or itself)."""
        return self.inner.search_status(self.resolve_alias(collection))

    def repair(self, collection: str, force: bool = False) -> RepairResult:
        """``repair`` of the collection ``collection`` names (an alias or itself)."""
        return self.inner.repair(self.resolve_alias(collection), force=force)

    def optimize(self, collection: str) -> bool:
        return self.inner.optimize(self.resolve_alias(collection))

    # --- the document registry's listings (inner: a RegisteredStore) ---------------------------
    def _registered(self) -> RegisteredStore:
        from pagelens.index.stores.registry import RegisteredStore

        if not isinstance(self.inner, RegisteredStore):
            raise TypeError("document listings need the document registry: wrap the store with "
                            "with_registry(store, data_dir) before with_aliases")
        return self.inner

    def list_documents(self, collection: str, offset: int = 0, limit: int | None = None) -> list[DocumentRecord]:
        return self._registered().list_documents(self.resolve_alias(collection), offset=offset, limit=limit)

    def document_record(self, collection: str, doc_id: str) -> DocumentRecord | None:
        return self._registered().document_record(self.resolve_alias(collection), doc_id)

    def collection_totals(self, collection: str) -> tuple[int, int]:
        return self._registered().collection_totals(self.resolve_alias(collection))

    def listing_version(self, collection: str) -> str:
        return self._registered().listing_version(self.resolve_alias(collection))

    def close(self) -> None:
        self.inner.close()


StoreT = TypeVar("StoreT", bound="VectorStore")


def with_aliases(store: StoreT) -> StoreT | AliasedStore:
    """Wrap a Qdrant Edge or server store, or a ``RegisteredStore`` over one (anything else is returned
    as it is)."""
    from pagelens.index.stores.edge_store import QdrantEdgeStore
    from pagelens.index.stores.registry import RegisteredStore
    from pagelens.index.stores.server_store import QdrantServerStore

    base = store.inner if isinstance(store, RegisteredStore) else store  # the document registry's wrapper
    if isinstance(base, QdrantEdgeStore):
        return AliasedStore(store, EdgeAliases(base.root, claim=base.claim))
    if isinstance(base, QdrantServerStore):
        return AliasedStore(store, ServerAliases(base))
    return store


def model_slug(model_id: str) -> str:
    """``/models/colSmol-256M`` or ``vidore/colSmol-256M`` -> ``colsmol-256m``."""
    name = Path(model_id.rstrip("/")).name or model_id
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:24] or "model"


def versioned_name(
    alias: str, model_id: str, now: datetime | None = None, taken: set[str] | frozenset[str] = frozenset()
) -> str:
    """``<alias>__<model-slug>-<UTC time>``, with ``-2``, ``-3``... appended when that name is in
    ``taken`` (two re-indexes within one second must still build two fresh collections)."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dt%H%M%S")
    base_suffix = f"__{model_slug(model_id)}-{stamp}"
    n = 1
    while True:
        suffix = base_suffix if n == 1 else f"{base_suffix}-{n}"
        name = validate_collection_name(alias[: 64 - len(suffix)] + suffix)
        if name not in taken:
            return name
        n += 1
