"""Request and response bodies of the API (pydantic), documented in the OpenAPI schema."""

from __future__ import annotations

from typing import Any, Literal

from pagelens.retrieve.types import SCORE_KINDS
from pydantic import BaseModel, ConfigDict, Field, model_serializer

from pagelens.core.types import COLLECTION_PATTERN, PageFilter

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


SCORE_DESCRIPTION = (
    "What ranked the page; score_kind names it. maxsim (visual mode): sum over the query tokens of each "
    "token's best dot product with a page token. bm25 (text mode): BM25 of the question against the page's "
    "text layer. rrf / dbsf (hybrid mode): the fused value of the visual and text rankings, a rank value and "
    "not a similarity (rrf: sum of w / (rrf_k + rank), at most 0.67 with the defaults; dbsf: weighted sum of "
    "normalised scores, at most 2). Compare visual_score / text_score across modes, not score."
)
SCORE_KIND_DESCRIPTION = "What score is: " + "; ".join(f"{k}: {v}" for k, v in SCORE_KINDS.items()) + "."
VISUAL_SCORE_DESCRIPTION = (
    "MaxSim of the page (visual and hybrid modes; hybrid computes it for every returned page). "
    "null in text mode (the question is not encoded)."
)
TEXT_SCORE_DESCRIPTION = (
    "BM25 of the page (text and hybrid modes; hybrid computes it for every returned page, 0 when the page "
    "shares no term with the question). null in visual mode."
)
ScoreKindField = Literal["maxsim", "bm25", "rrf", "dbsf"]


class RegionOut(BaseModel):
    """Where on the page the hit matched: a box in fractions of the page's width and height (origin
    top-left, 0..1, so it holds at any render size)."""

    x0: float = Field(ge=0, le=1)
    y0: float = Field(ge=0, le=1)
    x1: float = Field(ge=0, le=1)
    y1: float = Field(ge=0, le=1)
    source: Literal["text", "visual"] = Field(
        description="text: page words matching the question under the text search's analysis (stemming, CJK "
        "bigrams); visual: image patches that won the MaxSim of the question's tokens.")
    score: float = Field(description="text: share of the question's words in the box; visual: share of the "
                         "page's MaxSim won by the box's patches. Regions come best first.")
    text: str | None = Field(default=None, description="The page words matched (text regions only; absent on "
                             "visual regions).")

    @model_serializer(mode="wrap")
    def _drop_absent_text(self, handler: Any) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("text") is None:
            data.pop("text", None)
        return data


REGIONS_DESCRIPTION = ("Where on the page it matched, best first (at most PAGELENS_TUNING__MAX_REGIONS): text "
                       "regions from the words matching the question, visual regions from the patches that won "
                       "MaxSim (visual and hybrid modes). Empty for pages indexed before word boxes were kept "
                       "in text mode.")
HIGHLIGHT_URL_DESCRIPTION = ("image_url with the regions drawn server-side (its highlight option), for clients "
                             "without a canvas; null when there are no regions.")


class SearchResult(BaseModel):
    rank: int
    doc_id: str
    doc_name: str
    page_no: int
    page_count: int
    score: float = Field(description=SCORE_DESCRIPTION)
    score_kind: ScoreKindField = Field(description=SCORE_KIND_DESCRIPTION)
    metadata: dict[str, Any] = Field(default_factory=dict)
    image_url: str
    text: str | None = None
    language: str | None = Field(default=None, description="Detected language of the page text (ISO 639-1).")
    text_source: str | None = Field(default=None, description="Where the page text came from: pdf, ocr or none.")
    visual_score: float | None = Field(default=None, description=VISUAL_SCORE_DESCRIPTION)
    text_score: float | None = Field(default=None, description=TEXT_SCORE_DESCRIPTION)
    regions: list[RegionOut] = Field(default_factory=list, description=REGIONS_DESCRIPTION)
    highlight_url: str | None = Field(default=None, description=HIGHLIGHT_URL_DESCRIPTION)


class CitationOut(BaseModel):
    """One page shown to the answer model, in the order shown."""

    doc_id: str
    doc_name: str
    page_no: int
    score: float = Field(description=SCORE_DESCRIPTION)
    score_kind: ScoreKindField = Field(description=SCORE_KIND_DESCRIPTION)
    visual_score: float | None = Field(default=None, description=VISUAL_SCORE_DESCRIPTION)
    text_score: float | None = Field(default=None, description=TEXT_SCORE_DESCRIPTION)
    image_url: str
    regions: list[RegionOut] = Field(default_factory=list, description=REGIONS_DESCRIPTION)
    highlight_url: str | None = Field(default=None, description=HIGHLIGHT_URL_DESCRIPTION)


class AnswerOut(BaseModel):
    """An answer (JSON, or the data of the final `done` event when streaming)."""

    text: str
    citations: list[CitationOut]
    timings: dict[str, float] = Field(description="Seconds: retrieve_s, preprocess_s, prefill_s, decode_s, total_s.")
    prompt_tokens: int
    image_tokens: int
    generated_tokens: int
    model_id: str
    no_relevant_pages: bool = Field(
        description="No page passed the relevance gate (PAGELENS_RELEVANCE_THRESHOLD on the visual MaxSim, "
        "PAGELENS_RELEVANCE_THRESHOLD_TEXT on BM25; never the fused hybrid score): nothing was generated."
    )


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
    self_check: dict[str, Any] | None = Field(
        None, description="The embedded store's measured search plan: the first stage chosen, its candidates, "
        "the recall@5 against exact MaxSim measured on probe queries, and the collection's geometry.")
    segments_pending: bool = Field(
        False, description="Embedded store: pages were written since Qdrant Edge's segment optimizer last ran. "
        "Searches do not need it while `current`; `pagelens optimize` runs it (it pauses the server meanwhile).")


class CollectionOut(BaseModel):
    name: str
    model_id: str
    model_revision: str | None = None
    dim: int
    pages: int
    documents: int
    created_at: str
    search_structures: SearchStructuresOut | None = None
    retriever_family: str = Field("", description="The retriever family the collection was built with (ColIdefics3, "
                                  "ColQwen2_5...); empty for collections made before it was recorded.")


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
    status: str = Field(description="queued | running | indexed | updated (already indexed: the new name or "
                        "metadata was applied) | skipped (already indexed as it is) | partial | failed | cancelled")
    page_count: int | None = None
    pages_done: int = 0
    errors: list[dict[str, Any]] = Field(default_factory=list)
    password_given: bool = Field(default=False, description="The upload carried a password (never returned).")
    phase: Literal["queued", "indexing", "finishing"] | None = Field(
        default=None, description="While the job runs: queued, indexing (pages being embedded), finishing (every "
        "page written, the closing search-index build runs); null once this file is finished.")
    pages_per_s: float | None = Field(default=None, description="Pages per second so far (from the second page).")
    eta_s: float | None = Field(default=None, description="Seconds left for this file at that rate.")
    retried_by: str | None = Field(default=None, description="The job that retried this file (with a password).")
    retry_of: str | None = Field(default=None, description="'<job id>:<file index>': the failed or cancelled file "
                                 "of an earlier job that this file replaces (a web-UI retry or upload again).")
    cancelled_at_page: int | None = Field(default=None, description="The pages this file had written when it was "
                                          "cancelled (they were removed again: pages_done is 0).")


class JobOut(BaseModel):
    id: str
    collection: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    created_at: str
    updated_at: str
    pages_done: int
    pages_total: int
    phase: Literal["queued", "indexing", "finishing"] | None = Field(
        default=None, description="queued | indexing | finishing (all pages embedded; the closing search-index "
        "build runs) while the job is unfinished; null once it is finished (see status).")
    pages_per_s: float | None = Field(default=None, description="Pages per second of the file being indexed.")
    eta_s: float | None = Field(default=None, description="Seconds left for the file being indexed.")
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


class SyncRequest(BaseModel):
    """Mirror a server-side folder under one of PAGELENS_SYNC_ROOTS into the collection."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1, max_length=1024, description="The folder, relative to a sync root (or an "
                      "absolute path inside one); it must resolve inside a root, symlinks followed.")
    dry_run: bool = Field(default=False, description="Return the plan and change nothing.")
    yes: bool = Field(default=False, description="Go ahead even when the sync deletes more than the server's "
                      "PAGELENS_SYNC_MAX_DELETE_SHARE of the collection's documents.")
    checksum: bool = Field(default=False, description="Read every file for its hash, even those whose size and "
                           "modification time are unchanged.")
    include: list[str] | None = Field(default=None, max_length=64, description="File-name globs to take "
                                      "(default: PDFs, images and office documents).")
    exclude: list[str] | None = Field(default=None, max_length=64, description="Globs to leave out.")


class SyncActionOut(BaseModel):
    kind: Literal["add", "update", "rename", "delete", "unchanged", "duplicate", "resume", "failed"]
    name: str = Field(description="The document name after the sync: the file's path under the folder.")
    doc_id: str | None = None
    old_name: str | None = Field(default=None, description="A rename: the name before.")
    pages: int | None = None
    note: str | None = None


class SyncOut(BaseModel):
    collection: str
    path: str = Field(description="The folder as the request named it.")
    dry_run: bool
    added: int
    updated: int
    renamed: int
    deleted: int
    unchanged: int
    resumed: int
    duplicates: int
    unreadable: int
    files: int
    files_hashed: int = Field(description="Files read for their hash (the others were known unchanged).")
    documents_in_scope: int
    delete_share: float
    pages_indexed: int
    pages_embedded: int
    pages_deleted: int
    seconds: float
    errors: list[dict[str, Any]]
    actions: list[SyncActionOut]
