"""Request and response bodies of the API (pydantic), documented in the OpenAPI schema."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.deps import COLLECTION_PATTERN
from index.types import PageFilter

Scalar = str | int | float | bool | None


class ErrorInfo(BaseModel):
    code: str
    message: str
    detail: dict[str, Any] | list[Any] | None = None


class ErrorBody(BaseModel):
    error: ErrorInfo


class CollectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=COLLECTION_PATTERN, max_length=64, description="Collection name.")


class Filter(BaseModel):
    """All given conditions must hold; lists mean any-of."""

    model_config = ConfigDict(extra="forbid")
    doc_ids: list[str] | None = Field(default=None, max_length=1000)
    doc_names: list[str] | None = Field(default=None, max_length=1000)
    metadata: dict[str, Scalar] = Field(default_factory=dict, max_length=64)

    def to_page_filter(self) -> PageFilter | None:
        page_filter = PageFilter(doc_ids=self.doc_ids or None, doc_names=self.doc_names or None,
                                 metadata=dict(self.metadata))
        return None if page_filter.is_empty() else page_filter


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=4000)
    k: int | None = Field(default=None, ge=1, le=100, description="Pages to return (default: top_k).")
    mode: Literal["visual", "text", "hybrid", "two_stage", "exact"] | None = Field(
        default=None,
        description="visual (MaxSim on page images), text (BM25 on the text layer) or hybrid (both fused); "
        "two_stage / exact = visual with that strategy. Default: the server's PAGELENS_RETRIEVAL_MODE.",
    )
    filter: Filter | None = None
    with_text: bool = Field(default=False, description="Include each page's text layer.")


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=4000)
    k: int | None = Field(default=None, ge=1, le=16, description="Pages shown to the answer model.")
    mode: Literal["visual", "text", "hybrid", "two_stage", "exact"] | None = Field(
        default=None,
        description="visual (MaxSim on page images), text (BM25 on the text layer) or hybrid (both fused); "
        "two_stage / exact = visual with that strategy. Default: the server's PAGELENS_RETRIEVAL_MODE.",
    )
    filter: Filter | None = None
    stream: bool = Field(default=False, description="Answer as Server-Sent Events (token..., done).")


class SearchResult(BaseModel):
    rank: int
    doc_id: str
    doc_name: str
    page_no: int
    page_count: int
    score: float
    metadata: dict[str, Any] = Field(default_factory=dict)
    image_url: str
    text: str | None = None
    visual_score: float | None = Field(default=None, description="MaxSim input of a visual/hybrid hit.")
    text_score: float | None = Field(default=None, description="BM25 input of a text/hybrid hit.")


class SearchResponse(BaseModel):
    collection: str
    question: str
    results: list[SearchResult]
    timings: dict[str, float]


class SearchStructuresOut(BaseModel):
    """Whether the structures fast searches rely on are current (HNSW graphs; on the embedded store
    also the rerank cache and token index). While stale, searches stay correct but take a slower,
    lower-recall fallback; the server repairs stale collections at start and after each job, or run
    ``pagelens optimize --collection NAME``."""

    current: bool
    stale: list[str] = Field(default_factory=list, description="What is stale, one reason each.")


class CollectionOut(BaseModel):
    name: str
    model_id: str
    model_revision: str | None = None
    dim: int
    pages: int
    documents: int
    created_at: str
    search_structures: SearchStructuresOut | None = None


class DocumentOut(BaseModel):
    doc_id: str
    doc_name: str
    sha256: str
    page_count: int
    pages_indexed: int
    status: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    indexed_at: str = ""


class JobDocumentOut(BaseModel):
    index: int
    name: str
    size: int
    sha256: str
    doc_id: str | None = None
    status: str
    page_count: int | None = None
    pages_done: int = 0
    errors: list[dict[str, Any]] = Field(default_factory=list)
    password_given: bool = Field(default=False, description="The upload carried a password (never returned).")


class JobOut(BaseModel):
    id: str
    collection: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    created_at: str
    updated_at: str
    pages_done: int
    pages_total: int
    cancel_requested: bool
    force: bool
    metadata: dict[str, Any]
    error: str | None = None
    documents_total: int
    documents_done: int
    documents_failed: int
    documents: list[JobDocumentOut]


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 413, 415, 422, 503)
}
