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
    languages: list[str] | None = Field(
        default=None, max_length=64, description="Only pages whose detected language is one of these ISO 639-1 "
        "codes (de, nl, pl, ...; und: undetermined). See a document's languages in the document listing.",
    )

    def to_page_filter(self) -> PageFilter | None:
        page_filter = PageFilter(doc_ids=self.doc_ids or None, doc_names=self.doc_names or None,
                                 metadata=dict(self.metadata), languages=self.languages or None)
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
    language: str | None = Field(default=None, description="Detected language of the page text (ISO 639-1).")
    text_source: str | None = Field(default=None, description="Where the page text came from: pdf, ocr or none.")
    visual_score: float | None = Field(default=None, description="MaxSim input of a visual/hybrid hit.")
    text_score: float | None = Field(default=None, description="BM25 input of a text/hybrid hit.")


class SearchResponse(BaseModel):
    collection: str
    question: str
    results: list[SearchResult]
    timings: dict[str, float]


class CollectionOut(BaseModel):
    name: str
    model_id: str
    model_revision: str | None = None
    dim: int
    pages: int
    documents: int
    created_at: str


class DocumentOut(BaseModel):
    doc_id: str
    doc_name: str
    sha256: str
    page_count: int
    pages_indexed: int
    status: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    indexed_at: str = ""
    languages: dict[str, int] = Field(
        default_factory=dict, description="Pages per detected language (ISO 639-1; und: undetermined; unknown: "
        "pages indexed before language detection).")
    text_sources: dict[str, int] = Field(
        default_factory=dict, description="Pages per text source: pdf (text layer), ocr (Tesseract), none.")


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
