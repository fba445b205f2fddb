"""BM25 text search of the Qdrant Edge store (``pagelens.index.stores.edge_store``): the sparse
``TEXT_VECTOR`` analysed as the manifest's text spec says."""

from __future__ import annotations

import json
import time

from pagelens.index.stores.edge_base import (
    LANGUAGES_TTL_S,
    MANIFEST_FILE,
    TEXT_INDEX_KEY,
    EdgeBase,
    _edge,
    logger,
)
from pagelens.index.stores.filters import (
    sort_hits,
    to_edge_filter,
)
from pagelens.index.stores.text_analysis import (
    TextAnalyzer,
    legacy_spec_version,
)

from pagelens.core.errors import (
    InvalidRequestError,
    TextIndexMissingError,
)
from pagelens.core.types import (
    TEXT_VECTOR,
    PageFilter,
    ScoredPage,
)


class EdgeText(EdgeBase):
    """The text index: its spec version, the language facet, ``search_text``."""

    def _text_version(self, name: str) -> int:
        """Version of the text index spec manifest.json records (0: none). Call under the lock, after
        ``_require``."""
        cached = self._text_index.get(name)
        if cached is None:
            try:
                data = json.loads((self._dir(name) / MANIFEST_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = {}
            cached = self._text_index[name] = legacy_spec_version(data.get(TEXT_INDEX_KEY))
        return cached

    def _has_text(self, name: str) -> bool:
        return self._text_version(name) > 0

    def has_text_index(self, collection: str) -> bool:
        with self._lock:
            self._require(collection)
            return self._has_text(collection)

    def text_spec_version(self, collection: str) -> int:
        """0: no text index; 1: English-only (made before languages); 2: per-language analysis."""
        with self._lock:
            self._require(collection)
            return self._text_version(collection)

    def text_languages(self, collection: str) -> dict[str, int]:
        """{language code: pages} of the collection (a facet on ``payload["language"]``; cached for
        ``LANGUAGES_TTL_S`` and dropped on every write through this store)."""
        qe = _edge()
        with self._lock:
            shard, _ = self._require(collection)
            cached = self._languages.get(collection)
            if cached is not None and time.monotonic() - cached[0] < LANGUAGES_TTL_S:
                return dict(cached[1])
            try:
                response = shard.facet(qe.FacetRequest("language", limit=1000, exact=True))
                found = {str(h.value): int(h.count) for h in response.hits}
            except Exception as exc:  # no payload index on old collections: count by scrolling
                logger.debug("facet on language of %s failed (%s): counting by scroll", collection, exc)
                found = {}
                for _, payload in self._scroll(collection, None):
                    code = str(payload.get("language") or "und")
                    found[code] = found.get(code, 0) + 1
            self._languages[collection] = (time.monotonic(), found)
            return dict(found)

    def search_text(
        self, collection: str, text: str, limit: int, page_filter: PageFilter | None = None
    ) -> list[ScoredPage]:
        """BM25 top ``limit`` for ``text`` (see ``VectorStore.search_text``)."""
        qe = _edge()
        if limit < 1:
            raise InvalidRequestError(f"limit must be >= 1, got {limit}")
        flt = to_edge_filter(page_filter)
        with self.readers.reading(), self._lock:  # writers step aside (readers_first)
            self._require(collection)
            version = self._text_version(collection)
            if not version:
                raise TextIndexMissingError(collection)
            analyzer = TextAnalyzer(version, self.text_query_languages)
            languages = self.text_languages(collection) if analyzer.needs_collection_languages() else {}
            indices, values = analyzer.encode_query(text, languages)
            if not indices:  # only stopwords/punctuation: nothing can match
                return []
            shard, _ = self._require(collection)
            hits = shard.query(
                qe.QueryRequest(
                    limit=limit,
                    query=qe.Query.Nearest(qe.SparseVector(indices, values), using=TEXT_VECTOR),
                    filter=flt,
                    with_payload=True,
                )
            )
        return sort_hits([ScoredPage(id=str(h.id), score=float(h.score), payload=dict(h.payload or {})) for h in hits])
