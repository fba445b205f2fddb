"""The error hierarchy. Each error carries a message a user can act on.

Entry points map them once: the CLI prints ``error: <message>`` and exits non-zero; the API answers
``{"error": {"code", "message", "detail"}}`` with ``http_status``.
"""

from __future__ import annotations

from typing import Any


class PagelensError(Exception):
    """Base class. ``code`` is a stable machine-readable name; ``http_status`` its HTTP mapping."""

    code = "pagelens_error"
    http_status = 500

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        return self.message


class IngestError(PagelensError):
    """A document (or one page of it) could not be read. Names the file and, when known, the page."""

    code = "ingest_error"
    http_status = 422

    def __init__(self, path: str, reason: str, page: int | None = None, **detail: Any) -> None:
        where = f"{path}" if page is None else f"{path} page {page}"
        super().__init__(f"{where}: {reason}", path=path, page=page, **detail)
        self.path = path
        self.page = page
        self.reason = reason


class EncryptedDocumentError(IngestError):
    code = "encrypted_document"


class DocumentTooLargeError(IngestError):
    code = "document_too_large"
    http_status = 413


class UnsupportedFileError(IngestError):
    code = "unsupported_file"
    http_status = 415


class ModelUnavailableError(PagelensError):
    """Weights or processor files could not be loaded."""

    code = "model_unavailable"
    http_status = 503


class UnsupportedModelError(ModelUnavailableError):
    """The checkpoint's config names no retriever family pagelens supports (``pagelens.models.families``)."""

    code = "unsupported_model"


class StoreUnavailableError(PagelensError):
    """The vector store cannot be reached (server down, embedded store locked)."""

    code = "store_unavailable"
    http_status = 503


class CollectionNotFoundError(PagelensError):
    code = "collection_not_found"
    http_status = 404

    def __init__(self, name: str) -> None:
        super().__init__(
            f"collection '{name}' does not exist; create it by indexing into it "
            f"(pagelens index PATH --collection {name}) or list them with `pagelens collections`",
            collection=name,
        )


class CollectionExistsError(PagelensError):
    code = "collection_exists"
    http_status = 409


class CollectionMismatchError(PagelensError):
    """The collection was built with another embedding model (or dim/pooling) than the one in use."""

    code = "collection_mismatch"
    http_status = 409


class EmptyCollectionError(PagelensError):
    code = "empty_collection"
    http_status = 409


class DocumentNotFoundError(PagelensError):
    code = "document_not_found"
    http_status = 404


class OriginalNotKeptError(PagelensError):
    """A document has no kept original file (indexed before originals were kept, or with
    ``PAGELENS_KEEP_ORIGINALS`` off); the message says to index the file again."""

    code = "original_not_kept"
    http_status = 404


class InvalidRequestError(PagelensError):
    code = "invalid_request"
    http_status = 400


class TextIndexMissingError(PagelensError):
    """Text or hybrid search on a collection created before the BM25 text index existed."""

    code = "text_index_missing"
    http_status = 409

    def __init__(self, name: str) -> None:
        super().__init__(
            f"collection '{name}' has no text (BM25) index: it was created before text/hybrid search "
            f"existed. Search it with --mode visual, or re-index it: pagelens index PATH --collection "
            f"{name} --reindex (or delete it and index again)",
            collection=name,
        )


class ApiError(PagelensError):
    """An error with its own status and code (auth, limits, unknown job...): raised by the application
    layer (access control, uploads) and the API, mapped to its status by ``pagelens.api.errors``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 **detail: Any) -> None:
        super().__init__(message, **detail)
        self.http_status = status
        self.code = code
        self.headers = headers
