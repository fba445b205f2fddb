"""Types shared by the embedder, the vector stores and retrieval."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

# Named vectors of every page point.
FULL_VECTOR = "colsmol"  # full multivector, MaxSim, no HNSW (m=0)
ROWS_VECTOR = "colsmol_rows"  # mean-pooled by patch row, HNSW, prefetch
COLS_VECTOR = "colsmol_cols"  # mean-pooled by patch column, HNSW, prefetch
TEXT_VECTOR = "text_bm25"  # sparse BM25 of payload["text"] (IDF modifier), derived by the store at upsert

# A collection name: what the API path, the UI and the stores accept.
COLLECTION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

POINT_NAMESPACE = uuid.UUID("6f1c1d3e-5a49-4c1b-9a57-3c0d2f1b7e10")

SearchMode = Literal["two_stage", "exact"]  # the visual (MaxSim) strategy
# What a search ranks by: the page images (MaxSim), the text layer (BM25), or both fused.
RetrievalMode = Literal["visual", "text", "hybrid"]
# Accepted wherever a mode is given (CLI, API, service): "two_stage"/"exact" = visual with that strategy.
QueryMode = Literal["visual", "text", "hybrid", "two_stage", "exact"]


def page_point_id(collection: str, doc_sha256: str, page_no: int) -> str:
    """Deterministic point id: re-indexing the same page of the same bytes never duplicates."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{collection}\x00{doc_sha256}\x00{page_no}"))


@dataclass
class PageEmbedding:
    """Late-interaction embedding of one page.

    full: [n_tokens, dim] float32, L2-normalised per token, padding removed.
    rows: [n_rows, dim] float32, mean of the image-patch tokens of each patch row of the page grid.
    cols: [n_cols, dim] float32, likewise per patch column.
    """

    full: np.ndarray
    rows: np.ndarray
    cols: np.ndarray


@dataclass(frozen=True)
class CollectionManifest:
    """What a collection was built with. Searching or adding with a different model is refused.

    family, processor, page_tokens, score_scale: the retriever family (``pagelens.models.families``,
    e.g. "ColIdefics3"), its processor class, what one page costs in tokens and what a score means;
    "" in collections created before they were recorded (then only model id and dim are checked).
    """

    name: str
    model_id: str
    model_revision: str | None
    dim: int
    pooling: str = "rows+cols mean"
    vectors: tuple[str, ...] = (FULL_VECTOR, ROWS_VECTOR, COLS_VECTOR)
    created_at: str = ""
    family: str = ""
    processor: str = ""
    page_tokens: str = ""
    score_scale: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model_id": self.model_id,
            "model_revision": self.model_revision,
            "dim": self.dim,
            "pooling": self.pooling,
            "vectors": list(self.vectors),
            "created_at": self.created_at,
            "family": self.family,
            "processor": self.processor,
            "page_tokens": self.page_tokens,
            "score_scale": self.score_scale,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CollectionManifest:
        return cls(
            name=data["name"],
            model_id=data["model_id"],
            model_revision=data.get("model_revision"),
            dim=int(data["dim"]),
            pooling=data.get("pooling", "rows+cols mean"),
            vectors=tuple(data.get("vectors", (FULL_VECTOR, ROWS_VECTOR, COLS_VECTOR))),
            created_at=data.get("created_at", ""),
            family=str(data.get("family") or ""),
            processor=str(data.get("processor") or ""),
            page_tokens=str(data.get("page_tokens") or ""),
            score_scale=str(data.get("score_scale") or ""),
        )

@dataclass
class PagePoint:
    """One point per page: id from ``page_point_id``, the three named vectors, the payload.

    Payload keys: doc_id, doc_name, page_no (1-based), page_count, sha256 (document), collection,
    meta (user metadata dict), text (text layer or OCR text), language (ISO 639-1 code of the text,
    "und" when unknown), text_source ("pdf" | "ocr" | "none"), image_path, indexed_at (ISO 8601 UTC).
    """

    id: str
    embedding: PageEmbedding
    payload: dict[str, Any]


@dataclass
class PageFilter:
    """Restricts a search or listing. All given conditions must hold (AND); lists mean any-of."""

    doc_ids: list[str] | None = None
    doc_names: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    page_nos: list[int] | None = None  # 1-based page numbers (payload ``page_no``)
    exclude_doc_ids: list[str] | None = None  # none of these documents (a ``must_not`` condition)
    # ISO 639-1 codes of the page text's detected language (payload "language"; "und": undetermined)
    languages: list[str] | None = None

    def is_empty(self) -> bool:
        return (not self.doc_ids and not self.doc_names and not self.metadata and not self.page_nos
                and not self.exclude_doc_ids and not self.languages)


@dataclass
class ScoredPage:
    """A search hit: the point id, its MaxSim score (sum over query tokens of max dot product), payload."""

    id: str
    score: float
    payload: dict[str, Any]
