"""Question -> top pages: encode the query with the retriever, MaxSim search in the store; or BM25
on the text layer, or both fused (modes: ``pagelens.retrieve.hybrid``)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pagelens.index.stores.base import VectorStore, pin
from pagelens.index.stores.page_images import PageImageStore
from pagelens.index.stores.text_analysis import SPEC_VERSION
from pagelens.ingest.words import PAYLOAD_KEY as WORDS_KEY
from pagelens.ingest.words import decode_words
from pagelens.retrieve.hybrid import FusionConfig, resolve_mode, score_kind, search_pages
from pagelens.retrieve.regions import MAX_REGIONS, merge_regions, question_terms, text_regions, visual_regions
from pagelens.retrieve.types import SearchHit

from pagelens.core.errors import (
    CollectionNotFoundError,
    EmptyCollectionError,
    InvalidRequestError,
    TextIndexMissingError,
)
from pagelens.core.types import PageFilter, SearchMode
from pagelens.models.embedder import PageEmbedder, check_manifest

log = logging.getLogger(__name__)


@dataclass
class SearchTimings:
    encode_s: float
    search_s: float
    mode: str = ""  # the retrieval mode actually used (visual after a fallback)
    regions_s: float = 0.0  # computing the hits' regions (included in nothing else)


class Retriever:
    """Finds the pages of a collection that best answer a question (late interaction, MaxSim)."""

    def __init__(
        self,
        embedder: PageEmbedder,
        store: VectorStore,
        prefetch_limit: int = 250,
        fusion: FusionConfig | None = None,
        images: PageImageStore | None = None,
        max_regions: int = MAX_REGIONS,
    ) -> None:
        """``images``: the page-image store that resolves the payloads' relative image paths to files on
        this host (``SearchHit.image_path``); None: only legacy absolute paths are taken as they are.
        ``max_regions``: regions per hit (``SearchHit.regions``; 0: none computed)."""
        self.embedder = embedder
        self.store = store
        self.images = images
        self.prefetch_limit = prefetch_limit
        self.fusion = fusion or FusionConfig()
        self.max_regions = max_regions
        self.last_timings = SearchTimings(0.0, 0.0)

    def _image_path(self, payload: dict[str, Any]) -> str | None:
        """The page PNG on this host: the payload's path relative to the page-image root, resolved."""
        if self.images is not None:
            path = self.images.resolve(payload)
            return str(path) if path is not None else None
        stored = payload.get("image_path")
        return str(stored) if stored and Path(str(stored)).is_absolute() else None

    def search(
        self,
        collection: str,
        question: str,
        k: int = 5,
        mode: str = "two_stage",
        page_filter: PageFilter | None = None,
        strategy: SearchMode = "two_stage",
        fallback_to_visual: bool = False,
    ) -> list[SearchHit]:
        """Top ``k`` pages, best first.

        ``mode``: ``visual`` | ``text`` | ``hybrid`` (``strategy`` is the visual one), or
        ``two_stage`` / ``exact`` = visual with that strategy (see ``pagelens.retrieve.hybrid``).
        ``two_stage``: candidates by MaxSim on the pooled row/column vectors (HNSW), reranked by
        exact MaxSim on the full multivectors. ``exact``: brute-force MaxSim on every page.
        ``fallback_to_visual``: on a collection without a text index, run ``visual`` (with a
        warning) instead of raising ``TextIndexMissingError``.
        Each hit's ``score`` is named by its ``score_kind`` (maxsim | bm25 | rrf | dbsf); see ``SearchHit``.
        The collection name is resolved once, first (an alias: the collection it points to now;
        ``pagelens.index.stores.base.pin``): every check and search below runs on that collection, so an
        alias switched mid-search (``pagelens index --reindex``) cannot mix two collections.
        Raises CollectionNotFoundError, EmptyCollectionError, CollectionMismatchError,
        TextIndexMissingError.
        """
        question = question.strip()
        if not question:
            raise InvalidRequestError("the question is empty; pass a non-empty question")
        if k < 1:
            raise InvalidRequestError(f"k must be >= 1 (got {k})")
        retrieval, strategy = resolve_mode(mode, strategy=strategy)
        target, store = pin(self.store, collection)  # the one alias resolution of this search
        manifest = store.get_manifest(target)
        if manifest is None:
            raise CollectionNotFoundError(collection)
        if retrieval in ("text", "hybrid") and not store.has_text_index(target):
            if not fallback_to_visual:
                raise TextIndexMissingError(collection)
            log.warning("collection '%s' has no text index (created before hybrid search): searching "
                        "visual only; re-index it to enable %s mode", collection, retrieval)
            retrieval = "visual"
        if retrieval in ("text", "hybrid"):
            _warn_english_only(store, target)
        if retrieval != "text":  # text mode needs no retriever model
            check_manifest(manifest, self.embedder)
        if store.count(target) == 0:
            raise EmptyCollectionError(
                f"collection '{collection}' holds no pages yet; index documents first "
                f"(pagelens index PATH --collection {collection})",
                collection=collection,
            )
        t0 = time.perf_counter()
        query = None if retrieval == "text" else self.embedder.embed_queries([question])[0]  # [n_q, dim] float32
        t1 = time.perf_counter()
        scored = search_pages(
            store, target, mode=retrieval, limit=k, query_vectors=query, question=question,
            strategy=strategy, page_filter=page_filter, prefetch_limit=max(self.prefetch_limit, k),
            fusion=self.fusion,
        )
        t2 = time.perf_counter()
        kind = score_kind(retrieval, self.fusion)
        hits = []
        for rank, point in enumerate(scored, start=1):
            payload = point.payload
            hits.append(
                SearchHit(
                    rank=rank,
                    doc_id=payload.get("doc_id", ""),
                    doc_name=payload.get("doc_name", ""),
                    page_no=int(payload.get("page_no", 0)),
                    page_count=int(payload.get("page_count", 0)),
                    score=float(point.score),
                    image_path=self._image_path(payload),
                    text=payload.get("text", ""),
                    metadata=dict(payload.get("meta") or {}),
                    point_id=point.id,
                    visual_score=point.visual_score,
                    text_score=point.text_score,
                    score_kind=kind,
                    language=payload.get("language"),
                    text_source=payload.get("text_source"),
                )
            )
        self.attach_regions(target, question, query, hits, [p.payload for p in scored], store=store)
        self.last_timings = SearchTimings(encode_s=t1 - t0, search_s=t2 - t1, mode=retrieval,
                                          regions_s=time.perf_counter() - t2)
        return hits

    def attach_regions(self, collection: str, question: str, query: np.ndarray | None, hits: list[SearchHit],
                       payloads: list[dict[str, Any]], store: VectorStore | None = None) -> None:
        """Set ``regions`` on each hit (``pagelens.retrieve.regions``): text regions from the payload's
        word boxes, visual regions (when ``query`` [n_q, dim] is given: visual and hybrid modes) from the
        hits' full vectors through the retriever's patch layout. Pages indexed before word boxes get no
        text regions (said once per collection); a page whose vectors do not fit the layout (indexed
        with another ``page_longest_edge``) gets no visual regions (said once per collection). ``store``:
        the store the search ran on (``pin``'s), default ``self.store``."""
        if self.max_regions <= 0 or not hits:
            return
        store = store if store is not None else self.store
        version = int(store.text_spec_version(collection))
        policy = str(store.text_query_languages)
        languages: dict[str, int] = {}
        if policy == "collection":
            languages = store.text_languages(collection)
        terms = question_terms(question, version or SPEC_VERSION, policy, languages)
        layout_of = getattr(self.embedder, "patch_layout", None)
        vectors: dict[str, np.ndarray] = {}
        mask = None
        if query is not None and layout_of is not None:
            vectors = store.get_full_vectors(collection, [h.point_id for h in hits])
            mask_of = getattr(self.embedder, "query_token_mask", None)
            mask = mask_of(question, int(query.shape[0])) if mask_of is not None else None
        without_boxes = 0
        for hit, payload in zip(hits, payloads, strict=True):
            words = decode_words(payload.get(WORDS_KEY))
            if words is None and str(payload.get("text") or "").strip():
                without_boxes += 1
            text = text_regions(words, terms, payload.get("language"), version or SPEC_VERSION)
            visual: list[dict[str, Any]] = []
            page = vectors.get(hit.point_id)
            width, height = int(payload.get("width") or 0), int(payload.get("height") or 0)
            if page is not None and query is not None and layout_of is not None and width > 0 and height > 0:
                try:
                    visual = visual_regions(query, page, layout_of(width, height), mask)
                except Exception as exc:  # noqa: BLE001 - a layout that does not fit (or a processor without
                    # one) costs the visual regions, never the search
                    _warn_once(_WARNED_LAYOUT, collection, "collection '%s': no visual regions for some pages (%s): "
                               "most likely they were embedded with another page size setting "
                               "(PAGELENS_PAGE_LONGEST_EDGE) than the one configured now; re-index them to get "
                               "visual regions",
                               collection, exc)
            hit.regions = merge_regions(text, visual, self.max_regions)
        if without_boxes:
            _warn_once(_WARNED_NO_BOXES, collection, "collection '%s' has pages indexed before word boxes were "
                       "kept: their hits carry no text regions (visual regions still come). Re-index it "
                       "(`pagelens index --reindex -c %s PATHS`) to get them", collection, collection)


_WARNED_ENGLISH_ONLY: set[str] = set()
_WARNED_NO_BOXES: set[str] = set()
_WARNED_LAYOUT: set[str] = set()


def _warn_once(seen: set[str], collection: str, message: str, *args: Any) -> None:
    """Log ``message`` once per process and collection."""
    if collection not in seen:
        seen.add(collection)
        log.warning(message, *args)


def _warn_english_only(store: VectorStore, collection: str) -> None:
    """Once per process and collection: its text index predates languages (spec version 1)."""
    if collection in _WARNED_ENGLISH_ONLY:
        return
    if store.text_spec_version(collection) == 1:
        _WARNED_ENGLISH_ONLY.add(collection)
        log.warning("collection '%s' has an English-only text index (made before languages): words in other "
                    "languages match only in the exact form printed on the page. Rebuild it with `pagelens index "
                    "--reindex -c %s PATHS` for per-language search", collection, collection)
