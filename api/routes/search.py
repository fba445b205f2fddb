"""/v1/collections/{c}/search and /ask (JSON or Server-Sent Events)."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pagelens.api.deps import Caller, CollectionName, State
from pagelens.api.schemas import ERRORS, AnswerOut, AskRequest, SearchRequest, SearchResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from pagelens.app.uploads import error_body
from pagelens.app.visibility import (
    ask_stream_visible,
    ask_visible,
    highlight_url,
    page_image_url,
    search_visible,
)
from pagelens.core.errors import PagelensError

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/collections/{collection}", tags=["search"], responses=ERRORS)


@router.post("/search", response_model=SearchResponse)
def search(collection: CollectionName, body: SearchRequest, state: State, caller: Caller) -> dict[str, Any]:
    """Top-k pages for a question, each with its image URL. Each result's `score` is what ranked it and
    `score_kind` names it: `maxsim` (visual), `bm25` (text), `rrf` / `dbsf` (hybrid, the default: a fused
    rank value, not a similarity); `visual_score` (MaxSim) and `text_score` (BM25) where computed."""
    caller.require_read(collection)
    k = body.k or state.settings.top_k
    t0 = time.perf_counter()
    hits = search_visible(state, collection, body.question, k, body.mode,
                          body.filter.to_page_filter() if body.filter else None)
    seconds = time.perf_counter() - t0
    results = []
    for hit in hits:
        data = hit.to_dict(with_text=body.with_text)
        data.pop("image_path", None)
        data.pop("point_id", None)
        data["image_url"] = page_image_url(collection, hit.doc_id, hit.page_no)
        data["highlight_url"] = highlight_url(collection, hit.doc_id, hit.page_no, hit.regions)
        results.append(data)
    return {"collection": collection, "question": body.question, "results": results,
            "timings": {"search_s": round(seconds, 4)}}


def answer_dict(collection: str, answer: Any) -> dict[str, Any]:
    """``Answer.to_dict()`` with an ``image_url`` on every citation and no server paths."""
    data = answer.to_dict()
    for citation in data.get("citations") or []:
        if isinstance(citation, dict) and citation.get("doc_id") and citation.get("page_no"):
            citation.pop("image_path", None)
            citation["image_url"] = page_image_url(collection, citation["doc_id"], int(citation["page_no"]))
            citation["highlight_url"] = highlight_url(collection, citation["doc_id"], int(citation["page_no"]),
                                                      citation.get("regions"))
    return data


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.post(
    "/ask",
    responses={200: {"model": AnswerOut,
                     "description": "The answer as JSON, or with `stream: true` Server-Sent Events: "
                     "`event: token` / `data: {\"text\"}` per token, then `event: done` with the answer "
                     "(`event: error` with an error body if it fails mid-way).",
                     "content": {"application/json": {}, "text/event-stream": {}}}},
)
async def ask(collection: CollectionName, body: AskRequest, state: State, caller: Caller) -> Any:
    """Answer a question over the best pages, citing document and page (with the scores of the search:
    `score`, `score_kind`, `visual_score`, `text_score`), with timings. Pages whose visual MaxSim is under
    PAGELENS_RELEVANCE_THRESHOLD (and BM25 under PAGELENS_RELEVANCE_THRESHOLD_TEXT) are not shown."""
    caller.require_read(collection)
    page_filter = body.filter.to_page_filter() if body.filter else None
    if not body.stream:
        answer = await run_in_threadpool(ask_visible, state, collection, body.question, body.k, body.mode,
                                         page_filter)
        return answer_dict(collection, answer)

    events: Iterator[Any] = ask_stream_visible(state, collection, body.question, body.k, body.mode, page_filter)

    def first_event() -> Any:  # retrieval happens here: its errors are ordinary error responses
        return next(events, None)

    first = await run_in_threadpool(first_event)

    async def stream() -> AsyncIterator[str]:
        try:
            if first is not None:
                yield _format(collection, first)
            async for event in iterate_in_threadpool(events):
                yield _format(collection, event)
        except PagelensError as exc:
            yield _sse("error", error_body(exc.code, exc.message, exc.detail))
        except Exception:
            log.exception("answer stream failed")
            yield _sse("error", error_body("internal_error", "internal server error; see the server log"))
        finally:  # the client may have left: stop generation now, in a worker thread, not at GC time
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(_close_quietly, events)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _close_quietly(events: Iterator[Any]) -> None:
    # ValueError: still running in another thread (client gone mid-token); GC closes it later
    with contextlib.suppress(ValueError):
        events.close()  # type: ignore[attr-defined]


def _format(collection: str, event: Any) -> str:
    if event.kind == "token":
        return _sse("token", {"text": event.text})
    return _sse("done", answer_dict(collection, event.answer))
