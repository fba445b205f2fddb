"""``VectorStore`` on a Qdrant server through qdrant-client (also ``QdrantClient(":memory:")`` in tests).

Schema per collection (names in ``index.types``), all multivectors, MaxSim comparator, Dot
distance: ``FULL_VECTOR`` [n_tokens, dim] without HNSW (m=0); ``ROWS_VECTOR`` / ``COLS_VECTOR``
[n_rows|n_cols, dim] with the collection's HNSW. Keyword payload indexes on doc_id, doc_name,
sha256, language, text_source (server only; local mode has none). ``TEXT_VECTOR``: sparse BM25 of
``payload["text"]`` analysed in the page's ``payload["language"]`` (``index.text_analysis``, the same
analysis as the Edge store) with the IDF modifier, derived at upsert; its spec is recorded in the
collection metadata (``pagelens_text_index``; absent on collections made before languages: version 1,
English-only, which they keep). Collections created before the text index existed lack the vector
(``has_text_index`` False, ``search_text`` raises ``TextIndexMissingError``).

The manifest is stored in the collection's own metadata (Qdrant >= 1.16, key ``pagelens_manifest``),
so it is created and deleted with the collection. Collections without it (not made by pagelens)
are not listed. ``prefix`` namespaces pagelens collections on a shared server.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from index.filters import (
    COLLECTION_NAME_RE,
    INDEXED_KEYWORD_FIELDS,
    sort_hits,
    to_server_filter,
    validate_collection_name,
    validate_matrix,
)
from index.text_analysis import TextAnalyzer, current_spec, detect_language, legacy_spec_version
from index.types import (
    COLS_VECTOR,
    FULL_VECTOR,
    ROWS_VECTOR,
    TEXT_VECTOR,
    CollectionManifest,
    PageFilter,
    PagePoint,
    ScoredPage,
    SearchMode,
)
from pagelens.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    InvalidRequestError,
    StoreUnavailableError,
    TextIndexMissingError,
)

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

    from pagelens.settings import Settings

logger = logging.getLogger(__name__)

MANIFEST_KEY = "pagelens_manifest"
TEXT_SPEC_KEY = "pagelens_text_index"  # collection metadata: the text analysis spec (index.text_analysis)
LANGUAGES_TTL_S = 60.0  # s: how long a collection's language facet is reused
SCROLL_PAGE = 256
T = TypeVar("T")


def _is_connection_error(exc: BaseException) -> bool:
    from qdrant_client.http.exceptions import ResponseHandlingException

    if isinstance(exc, (ResponseHandlingException, ConnectionError, TimeoutError)):
        return True
    try:
        import httpx

        if isinstance(exc, httpx.TransportError):
            return True
    except ImportError:  # pragma: no cover
        pass
    try:
        import grpc

        if isinstance(exc, grpc.RpcError):
            code = exc.code() if hasattr(exc, "code") else None
            return code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    except ImportError:  # pragma: no cover
        pass
    return False


def _approx_json_bytes(struct: Any) -> int:
    """Rough JSON size of a ``PointStruct`` (~10 bytes per float, payload as JSON) for request batching."""
    import json

    floats = 0
    for vec in (struct.vector or {}).values():
        if isinstance(vec, list):
            floats += sum(len(row) if isinstance(row, list) else 1 for row in vec)
        else:  # sparse
            floats += 2 * len(getattr(vec, "indices", []) or [])
    return 10 * floats + len(json.dumps(struct.payload or {}, default=str)) + 64


class QdrantServerStore:
    """Pagelens collections on a Qdrant server (see the module docstring).

    ``batch_size``: points per upsert request (each waits for the server, ``wait=True``).
    ``full_datatype``: storage of the full multivectors of new collections, ``float32`` or ``float16``.
    """

    def __init__(
        self,
        client: QdrantClient,
        prefix: str = "",
        *,
        batch_size: int = 16,
        shard_number: int = 1,
        replication_factor: int = 1,
        on_disk: bool = False,
        url: str | None = None,
        quantization: str = "none",
        full_datatype: str = "float32",
        max_request_bytes: int = 32 * 1024 * 1024,
        retries: int = 0,
        text_query_languages: str = "all",
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.batch_size = max(1, int(batch_size))
        self.shard_number = shard_number
        self.replication_factor = replication_factor
        self.on_disk = on_disk
        self.url = url or "the configured Qdrant server"
        self.quantization = quantization  # "none" | "scalar" (int8) | "binary": full multivectors
        self.full_datatype = full_datatype  # "float32" | "float16": storage of the full multivectors
        self.max_request_bytes = max(1024, int(max_request_bytes))  # approx. JSON size of one upsert
        self.retries = max(0, int(retries))  # transient errors, backoff (index/retry.py)
        self.text_query_languages = text_query_languages  # index.text_analysis.TextAnalyzer.query_languages
        self._manifests: dict[str, CollectionManifest] = {}
        self._text_index: dict[str, int] = {}  # collection -> text spec version (0: no text index)
        self._languages: dict[str, tuple[float, dict[str, int]]] = {}
        # Local mode (":memory:" / path) is not thread-safe; the HTTP/gRPC clients are.
        from qdrant_client.local.qdrant_local import QdrantLocal

        self._is_local = isinstance(getattr(client, "_client", None), QdrantLocal)
        self._lock: Any = threading.RLock() if self._is_local else contextlib.nullcontext()

    @classmethod
    def from_settings(cls, settings: Settings) -> QdrantServerStore:
        """Client for ``settings.qdrant_url`` (api key, timeout); no request is made here."""
        from qdrant_client import QdrantClient

        if not settings.qdrant_url:
            raise InvalidRequestError("qdrant_url is not set (PAGELENS_QDRANT_URL)")
        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        client = QdrantClient(
            url=settings.qdrant_url,
            api_key=api_key,
            timeout=max(1, math.ceil(settings.qdrant_timeout_s)),
            check_compatibility=False,
        )
        return cls(
            client,
            batch_size=settings.upsert_batch_points,
            shard_number=settings.qdrant_shard_number,
            replication_factor=settings.qdrant_replication_factor,
            on_disk=settings.qdrant_on_disk,
            quantization=settings.qdrant_quantization,
            full_datatype=settings.full_vector_datatype,
            max_request_bytes=settings.upsert_max_bytes,
            retries=settings.qdrant_retries,
            url=settings.qdrant_url,
            text_query_languages=settings.text_query_languages,
        )

    # --- internals -----------------------------------------------------------------------

    def _qname(self, name: str) -> str:
        return self.prefix + validate_collection_name(name)

    def _call(self, fn: Callable[[], T], collection: str | None = None) -> T:
        """Run a client call under the (local-mode) lock, mapping errors to pagelens errors."""
        from qdrant_client.http.exceptions import UnexpectedResponse

        try:
            with self._lock:
                if self.retries and not self._is_local:
                    from index.retry import call_with_retries

                    return call_with_retries(fn, self.retries)
                return fn()
        except Exception as exc:
            if _is_connection_error(exc):
                raise StoreUnavailableError(
                    f"Qdrant server at {self.url} is unreachable ({type(exc).__name__}: {exc}). Start it "
                    "(docker compose up -d qdrant), check PAGELENS_QDRANT_URL, or unset it to use the "
                    "embedded store.",
                    url=self.url,
                ) from exc
            if isinstance(exc, UnexpectedResponse) and exc.status_code in (401, 403):
                raise StoreUnavailableError(
                    f"Qdrant server at {self.url} refused the request (HTTP {exc.status_code}); "
                    "check PAGELENS_QDRANT_API_KEY.",
                    url=self.url,
                ) from exc
            missing = (isinstance(exc, UnexpectedResponse) and exc.status_code == 404) or (
                isinstance(exc, ValueError) and "not found" in str(exc)
            )
            if collection is not None and missing and not self._exists(collection):
                self._manifests.pop(collection, None)
                raise CollectionNotFoundError(collection) from exc
            raise

    def _exists(self, name: str) -> bool:
        return bool(self._call(lambda: self.client.collection_exists(self._qname(name))))

    def _fetch_manifest(self, name: str) -> CollectionManifest | None:
        qname = self._qname(name)
        if not self._exists(name):
            return None
        info = self._call(lambda: self.client.get_collection(qname), name)
        data = (info.config.metadata or {}).get(MANIFEST_KEY)
        return CollectionManifest.from_dict(data) if data else None

    def _require(self, name: str) -> CollectionManifest:
        manifest = self._manifests.get(name)
        if manifest is None:
            manifest = self._fetch_manifest(name)
            if manifest is None:
                raise CollectionNotFoundError(name)
            self._manifests[name] = manifest
        return manifest

    # --- collections ---------------------------------------------------------------------

    def create_collection(self, manifest: CollectionManifest) -> None:
        from qdrant_client import models

        name = validate_collection_name(manifest.name)
        qname = self._qname(name)
        if manifest.dim < 1:
            raise InvalidRequestError(f"manifest dim must be >= 1, got {manifest.dim}")
        if self._exists(name):
            raise CollectionExistsError(f"collection '{name}' already exists", collection=name)
        maxsim = models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM)
        vectors = {
            FULL_VECTOR: models.VectorParams(
                size=manifest.dim,
                distance=models.Distance.DOT,
                multivector_config=maxsim,
                hnsw_config=models.HnswConfigDiff(m=0),
                on_disk=self.on_disk or None,
                datatype=models.Datatype.FLOAT16 if self.full_datatype == "float16" else None,
                quantization_config=(
                    models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(
                        type=models.ScalarType.INT8, always_ram=True))
                    if self.quantization == "scalar"
                    else models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True))
                    if self.quantization == "binary"
                    else None
                ),
            ),
            ROWS_VECTOR: models.VectorParams(size=manifest.dim, distance=models.Distance.DOT, multivector_config=maxsim),
            COLS_VECTOR: models.VectorParams(size=manifest.dim, distance=models.Distance.DOT, multivector_config=maxsim),
        }
        self._call(
            lambda: self.client.create_collection(
                qname,
                vectors_config=vectors,
                sparse_vectors_config={TEXT_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                shard_number=self.shard_number,
                replication_factor=self.replication_factor,
                metadata={MANIFEST_KEY: manifest.to_dict(), TEXT_SPEC_KEY: current_spec()},
            )
        )
        if not self._is_local:  # local mode has no payload indexes (and warns)
            for field in INDEXED_KEYWORD_FIELDS:
                self._call(
                    lambda f=field: self.client.create_payload_index(  # type: ignore[misc]
                        qname, field_name=f, field_schema=models.PayloadSchemaType.KEYWORD, wait=True
                    ),
                    name,
                )
        self._manifests[name] = manifest
        logger.info("created server collection %s (dim %d)", qname, manifest.dim)

    def get_manifest(self, collection: str) -> CollectionManifest | None:
        validate_collection_name(collection)
        manifest = self._fetch_manifest(collection)
        if manifest is None:
            self._manifests.pop(collection, None)
        else:
            self._manifests[collection] = manifest
        return manifest

    def list_collections(self) -> list[str]:
        """Sorted names (prefix removed) of the prefixed collections that carry a pagelens manifest."""
        response = self._call(lambda: self.client.get_collections())
        names = []
        for desc in response.collections:
            if not desc.name.startswith(self.prefix):
                continue
            name = desc.name[len(self.prefix) :]
            if COLLECTION_NAME_RE.fullmatch(name) and self._fetch_manifest(name) is not None:
                names.append(name)
        return sorted(names)

    def delete_collection(self, collection: str) -> None:
        qname = self._qname(collection)
        if not self._exists(collection):
            raise CollectionNotFoundError(collection)
        self._call(lambda: self.client.delete_collection(qname), collection)
        self._manifests.pop(collection, None)
        self._text_index.pop(collection, None)
        self._languages.pop(collection, None)
        logger.info("deleted server collection %s", qname)

    # --- points --------------------------------------------------------------------------

    def upsert(self, collection: str, points: Sequence[PagePoint]) -> None:
        """Insert or replace points, ``batch_size`` per request, each ``wait=True``."""
        from qdrant_client import models

        manifest = self._require(collection)
        qname = self._qname(collection)
        version = self.text_spec_version(collection)
        analyzer = TextAnalyzer(version) if version else None
        structs = []
        for p in points:
            try:
                uuid.UUID(str(p.id))
            except ValueError:
                raise InvalidRequestError(f"point id {p.id!r} is not a UUID") from None
            vectors = {
                FULL_VECTOR: validate_matrix(p.embedding.full, manifest.dim, f"point {p.id} full").tolist(),
                ROWS_VECTOR: validate_matrix(p.embedding.rows, manifest.dim, f"point {p.id} rows").tolist(),
                COLS_VECTOR: validate_matrix(p.embedding.cols, manifest.dim, f"point {p.id} cols").tolist(),
            }
            payload = dict(p.payload)
            if analyzer is not None:  # empty text (scans without OCR) -> empty sparse vector: visual only
                language = payload.get("language")
                if analyzer.language_aware and not language:  # the indexer always sets it; else detect
                    language = detect_language(payload.get("text"))[0]
                indices, values = analyzer.encode_document(payload.get("text"), language)
                vectors[TEXT_VECTOR] = models.SparseVector(indices=indices, values=values)
            structs.append(models.PointStruct(id=str(p.id), vector=vectors, payload=payload))
        batch: list[Any] = []
        batch_bytes = 0
        for struct in structs:  # at most batch_size points and ~max_request_bytes per request
            size = _approx_json_bytes(struct)
            if batch and (len(batch) >= self.batch_size or batch_bytes + size > self.max_request_bytes):
                self._call(lambda b=batch: self.client.upsert(qname, points=b, wait=True), collection)  # type: ignore[misc]
                batch, batch_bytes = [], 0
            batch.append(struct)
            batch_bytes += size
        if batch:
            self._call(lambda b=batch: self.client.upsert(qname, points=b, wait=True), collection)  # type: ignore[misc]
        self._languages.pop(collection, None)
        logger.debug("upserted %d points into %s", len(structs), qname)

    def delete_document(self, collection: str, doc_id: str) -> int:
        """Counts, then deletes by filter (not atomic against concurrent writers of the same doc)."""
        from qdrant_client import models

        self._require(collection)
        qname = self._qname(collection)
        flt = to_server_filter(PageFilter(doc_ids=[doc_id]))
        n = self._call(lambda: self.client.count(qname, count_filter=flt, exact=True).count, collection)
        if n:
            self._call(
                lambda: self.client.delete(qname, points_selector=models.FilterSelector(filter=flt), wait=True),
                collection,
            )
            self._languages.pop(collection, None)
        return int(n)

    def count(self, collection: str, page_filter: PageFilter | None = None) -> int:
        qname = self._qname(collection)
        flt = to_server_filter(page_filter)
        return int(self._call(lambda: self.client.count(qname, count_filter=flt, exact=True).count, collection))

    def iter_payloads(
        self, collection: str, page_filter: PageFilter | None = None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Scrolls ``SCROLL_PAGE`` points per request. Raises ``CollectionNotFoundError`` at the call."""
        flt = to_server_filter(page_filter)
        if not self._exists(collection):
            raise CollectionNotFoundError(collection)
        return self._scroll(collection, flt)

    def _scroll(self, collection: str, flt: Any) -> Iterator[tuple[str, dict[str, Any]]]:
        qname = self._qname(collection)
        offset: Any = None
        while True:
            records, offset = self._call(
                lambda o=offset: self.client.scroll(  # type: ignore[misc]
                    qname, scroll_filter=flt, limit=SCROLL_PAGE, offset=o, with_payload=True, with_vectors=False
                ),
                collection,
            )
            for rec in records:
                yield str(rec.id), dict(rec.payload or {})
            if offset is None or not records:
                return

    # --- search --------------------------------------------------------------------------

    def search(
        self,
        collection: str,
        query: np.ndarray,
        limit: int,
        mode: SearchMode = "two_stage",
        page_filter: PageFilter | None = None,
        prefetch_limit: int = 100,
    ) -> list[ScoredPage]:
        """MaxSim top ``limit`` for ``query`` [n_q, dim] float32 (see ``VectorStore.search``)."""
        from qdrant_client import models

        if limit < 1:
            raise InvalidRequestError(f"limit must be >= 1, got {limit}")
        if mode not in ("two_stage", "exact"):
            raise InvalidRequestError(f"unknown search mode {mode!r}: use 'two_stage' or 'exact'")
        manifest = self._require(collection)
        qname = self._qname(collection)
        q = validate_matrix(query, manifest.dim, "query").tolist()
        flt = to_server_filter(page_filter)
        if mode == "exact":  # local mode is always exact and warns about search_params
            kwargs: dict[str, Any] = {} if self._is_local else {"search_params": models.SearchParams(exact=True)}
        else:
            k = max(prefetch_limit, limit)
            kwargs = {
                "prefetch": [
                    models.Prefetch(query=q, using=ROWS_VECTOR, limit=k, filter=flt),
                    models.Prefetch(query=q, using=COLS_VECTOR, limit=k, filter=flt),
                ]
            }
        response = self._call(
            lambda: self.client.query_points(
                qname, query=q, using=FULL_VECTOR, query_filter=flt, limit=limit, with_payload=True, **kwargs
            ),
            collection,
        )
        return sort_hits(
            [ScoredPage(id=str(h.id), score=float(h.score), payload=dict(h.payload or {})) for h in response.points]
        )

    def has_text_index(self, collection: str) -> bool:
        """From the collection's sparse vector config (cached)."""
        return self.text_spec_version(collection) > 0

    def text_spec_version(self, collection: str) -> int:
        """0: no text index; 1: English-only (made before languages); 2: per-language analysis. From the
        sparse vector config and the metadata's spec (cached)."""
        cached = self._text_index.get(collection)
        if cached is None:
            qname = self._qname(collection)
            if not self._exists(collection):
                raise CollectionNotFoundError(collection)
            info = self._call(lambda: self.client.get_collection(qname), collection)
            sparse = info.config.params.sparse_vectors or {}
            spec = (info.config.metadata or {}).get(TEXT_SPEC_KEY)
            cached = (legacy_spec_version(spec) or 1) if TEXT_VECTOR in sparse else 0
            self._text_index[collection] = cached
        return cached

    def text_languages(self, collection: str) -> dict[str, int]:
        """{language code: pages} of the collection (a facet on ``payload["language"]``, cached for
        ``LANGUAGES_TTL_S`` and dropped on every write through this store)."""
        import time

        cached = self._languages.get(collection)
        if cached is not None and time.monotonic() - cached[0] < LANGUAGES_TTL_S:
            return dict(cached[1])
        qname = self._qname(collection)
        try:
            response = self._call(lambda: self.client.facet(qname, key="language", limit=1000, exact=True), collection)
            found = {str(h.value): int(h.count) for h in response.hits}
        except CollectionNotFoundError:
            raise
        except Exception as exc:  # no payload index (old collection): count by scrolling
            logger.debug("facet on language of %s failed (%s): counting by scroll", collection, exc)
            found = {}
            for _, payload in self.iter_payloads(collection):
                code = str(payload.get("language") or "und")
                found[code] = found.get(code, 0) + 1
        self._languages[collection] = (time.monotonic(), found)
        return dict(found)

    def search_text(
        self, collection: str, text: str, limit: int, page_filter: PageFilter | None = None
    ) -> list[ScoredPage]:
        """BM25 top ``limit`` for ``text`` (see ``VectorStore.search_text``)."""
        from qdrant_client import models

        if limit < 1:
            raise InvalidRequestError(f"limit must be >= 1, got {limit}")
        flt = to_server_filter(page_filter)
        qname = self._qname(collection)
        version = self.text_spec_version(collection)
        if not version:
            raise TextIndexMissingError(collection)
        analyzer = TextAnalyzer(version, self.text_query_languages)
        languages = self.text_languages(collection) if analyzer.needs_collection_languages() else {}
        indices, values = analyzer.encode_query(text, languages)
        if not indices:  # only stopwords/punctuation: nothing can match
            return []
        response = self._call(
            lambda: self.client.query_points(
                qname,
                query=models.SparseVector(indices=indices, values=values),
                using=TEXT_VECTOR,
                query_filter=flt,
                limit=limit,
                with_payload=True,
            ),
            collection,
        )
        return sort_hits(
            [ScoredPage(id=str(h.id), score=float(h.score), payload=dict(h.payload or {})) for h in response.points]
        )

    def get_full_vectors(self, collection: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """{id: [n_tokens, dim] float32} for the ids that exist."""
        qname = self._qname(collection)
        wanted = []
        for i in ids:
            try:
                wanted.append(str(uuid.UUID(str(i))))
            except ValueError:
                continue
        if not self._exists(collection):
            raise CollectionNotFoundError(collection)
        if not wanted:
            return {}
        records = self._call(
            lambda: self.client.retrieve(qname, ids=wanted, with_payload=False, with_vectors=[FULL_VECTOR]),
            collection,
        )
        out: dict[str, np.ndarray] = {}
        for rec in records:
            vec = rec.vector
            if isinstance(vec, dict) and FULL_VECTOR in vec:
                out[str(rec.id)] = np.asarray(vec[FULL_VECTOR], dtype=np.float32)
        return out

    def close(self) -> None:
        """Close the client. Safe to call twice."""
        with contextlib.suppress(Exception):
            self.client.close()
