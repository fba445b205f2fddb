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

``AliasedStore`` wraps a ``VectorStore``: every method whose first argument (or ``collection=``) is a
collection name gets the alias resolved first; ``list_collections`` shows an alias in place of the
collection it points to.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pagelens.index.stores.filters import validate_collection_name

from pagelens.core.errors import CollectionExistsError, CollectionNotFoundError

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
    """A ``VectorStore`` with collection names resolved through ``aliases`` (see the module docstring)."""

    def __init__(self, inner: Any, aliases: EdgeAliases | ServerAliases) -> None:
        self.inner = inner
        self.aliases = aliases

    def resolve_alias(self, name: str) -> str:
        return self.aliases.all().get(name, name)

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self.inner, attr)
        if not callable(value) or attr.startswith("_"):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            if args and isinstance(args[0], str):
                args = (self.resolve_alias(args[0]), *args[1:])
            if isinstance(kwargs.get("collection"), str):
                kwargs["collection"] = self.resolve_alias(kwargs["collection"])
            return value(*args, **kwargs)

        call.__name__ = attr
        call.__doc__ = getattr(value, "__doc__", None)
        return call

    def create_collection(self, manifest: Any) -> None:
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

    def search_status(self, collection: str) -> Any:
        """``search_status`` of the collection ``collection`` names (an alias or itself)."""
        return self.inner.search_status(self.resolve_alias(collection))

    def repair(self, collection: str, force: bool = False) -> Any:
        """``repair`` of the collection ``collection`` names (an alias or itself)."""
        return self.inner.repair(self.resolve_alias(collection), force=force)

    def close(self) -> None:
        self.inner.close()


def with_aliases(store: Any) -> Any:
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
