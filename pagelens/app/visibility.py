"""Search and ask that never show a half-indexed document.

A document an unfinished job is indexing right now may be partly in the store. Its id is known from
the job table (``JobStore.inflight_doc_ids``). When there are such documents, the search excludes
them in the store itself (``PageFilter.exclude_doc_ids``, a ``must_not`` filter on ``doc_id``), so it
reads ``k`` hits, not ``k`` plus every page of those documents. When there are none (the usual case)
the calls go straight to the service.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from pagelens.app.state import AppState
from pagelens.core.types import PageFilter, QueryMode
from pagelens.retrieve.types import SearchHit


def page_image_url(collection: str, doc_id: str, page_no: int) -> str:
    return f"/v1/collections/{collection}/documents/{doc_id}/pages/{page_no}.png"


def highlight_url(collection: str, doc_id: str, page_no: int, regions: Any) -> str | None:
    """``page_image_url`` with ``regions`` drawn by the server (its ``highlight`` option); None for none."""
    from urllib.parse import quote

    from pagelens.retrieve.highlight import highlight_param

    if not regions:
        return None
    return page_image_url(collection, doc_id, page_no) + "?highlight=" + quote(highlight_param(regions), safe=":,;")


def search_visible(
    state: AppState,
    collection: str,
    question: str,
    k: int,
    mode: QueryMode | None,
    page_filter: PageFilter | None,
) -> list[SearchHit]:
    service = state.service
    hidden = state.jobs.inflight_doc_ids(collection)
    if page_filter is not None and page_filter.doc_ids:
        hidden &= set(page_filter.doc_ids)
    if not hidden:
        return service.search(collection, question, k=k, mode=mode, page_filter=page_filter)
    base = page_filter or PageFilter()
    excluded = sorted(hidden | set(base.exclude_doc_ids or ()))
    hits = service.search(collection, question, k=k, mode=mode,
                          page_filter=replace(base, exclude_doc_ids=excluded))
    return [replace(h, rank=i) for i, h in enumerate(hits, start=1)]


def _needs_filtering(state: AppState, collection: str) -> bool:
    return bool(state.jobs.inflight_doc_ids(collection))


def ask_visible(state: AppState, collection: str, question: str, k: int | None, mode: QueryMode | None,
                page_filter: PageFilter | None) -> Any:
    service = state.service
    if not _needs_filtering(state, collection):
        return service.ask(collection, question, k=k, mode=mode, page_filter=page_filter)
    k = k or state.settings.answer_top_k
    t0 = time.perf_counter()
    hits = search_visible(state, collection, question, k, mode, page_filter)
    return service.answerer.answer(question, hits, k=k, retrieve_s=time.perf_counter() - t0)


def ask_stream_visible(state: AppState, collection: str, question: str, k: int | None,
                       mode: QueryMode | None, page_filter: PageFilter | None) -> Iterator[Any]:
    service = state.service
    if not _needs_filtering(state, collection):
        yield from service.ask_stream(collection, question, k=k, mode=mode, page_filter=page_filter)
        return
    k = k or state.settings.answer_top_k
    t0 = time.perf_counter()
    hits = search_visible(state, collection, question, k, mode, page_filter)
    yield from service.answerer.stream(question, hits, k=k, retrieve_s=time.perf_counter() - t0)
