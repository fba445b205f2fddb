"""Re-index a collection into a fresh versioned collection and switch its alias atomically
(``pagelens index --reindex``): the use case over the indexer and the store's aliases."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pagelens.core.errors import InvalidRequestError
from pagelens.index.stores.aliases import AliasedStore, EdgeAliases, ServerAliases, versioned_name
from pagelens.index.stores.filters import validate_collection_name

if TYPE_CHECKING:
    from pagelens.app.service import PagelensService
    from pagelens.index.pipeline.indexer import IndexInput, IndexReport, ProgressCallback

log = logging.getLogger(__name__)


def reindex_collection(
    service: PagelensService,
    alias: str,
    inputs: list[IndexInput],
    progress: ProgressCallback | None = None,
    workers: int | None = None,
) -> tuple[IndexReport, str]:
    """Index ``inputs`` into a fresh ``<alias>__<model>-<time>`` and switch ``alias`` to it.

    If ``alias`` is a plain collection (the first re-index), it is replaced: on Qdrant Edge the alias
    shadows it atomically and it is then deleted; on a server it is deleted just before the alias is
    created (a moment when ``alias`` does not exist). Returns (report, new collection name)."""
    validate_collection_name(alias)
    store = service.store
    if not isinstance(store, AliasedStore):
        raise InvalidRequestError("this vector store has no alias support; --reindex needs Qdrant Edge or server")
    target = versioned_name(alias, service.embedder.model_id, taken=set(store.inner.list_collections()))
    report = service.indexer.index(target, inputs, force=False, progress=progress, workers=workers)
    previous = store.aliases.all().get(alias)
    plain = previous is None and alias in store.inner.list_collections()
    if plain and isinstance(store.aliases, ServerAliases):
        store.inner.delete_collection(alias)
    store.aliases.set(alias, target)
    if plain and isinstance(store.aliases, EdgeAliases):
        store.inner.delete_collection(alias)
    log.info("alias %s -> %s (was %s)", alias, target, previous or ("a plain collection" if plain else "unset"))
    return report, target
