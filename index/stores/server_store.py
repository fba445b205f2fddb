"""``VectorStore`` on a Qdrant server through qdrant-client (also ``QdrantClient(":memory:")`` in tests).

Schema per collection (names in ``pagelens.core.types``), all multivectors, MaxSim comparator, Dot
distance: ``FULL_VECTOR`` [n_tokens, dim] without HNSW (m=0); ``ROWS_VECTOR`` / ``COLS_VECTOR``
[n_rows|n_cols, dim] with the collection's HNSW. Keyword payload indexes on doc_id, doc_name,
sha256, language, text_source (server only; local mode has none). ``TEXT_VECTOR``: sparse BM25 of
``payload["text"]`` analysed in the page's ``payload["language"]`` (``pagelens.index.stores.text_analysis``, the same
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
import dataclasses
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from pagelens.index.ann.self_check import Probe, SearchPlan, run_check
from pagelens.index.stores.filters import (
    COLLECTION_NAME_RE,
    INDEXED_KEYWORD_FIELDS,
    sort_hits,
    to_server_filter,
    validate_collection_name,
    validate_matrix,
)
from pagelens.index.stores.retry import call_with_retries, is_connection_error
from pagelens.index.stores.search_status import (
    SERVER_ERROR,
    SERVER_OPTIMIZING,
    SERVER_PENDING,
    RepairResult,
    SearchStatus,
    StaleWarnings,
)
from pagelens.index.stores.text_analysis import (
    TextAnalyzer,
    current_spec,
    detect_language,
    legacy_spec_version,
)

from pagelens.core.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    InvalidRequestError,
    StoreUnavailableError,
    TextIndexMissingError,
)
from pagelens.core.types import (
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

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

    from pagelens.core.settings import Settings

logger = logging.getLogger(__name__)

MANIFEST_KEY = "pagelens_manifest"
PLAN_KEY = "pagelens_search_plan"  # collection metadata: the self-check's plan (index/ann/self_check.py), trials dropped
TEXT_SPEC_KEY = "pagelens_text_index"  # collection metadata: the text analysis spec (pagelens.index.stores.text_analysis)
LANGUAGES_TTL_S = 60.0  # s: how long a collection's language facet is reused
SCROLL_PAGE = 256
STATUS_CHECK_S = 30.0  # a two-stage search looks at the collection's optimizer status at most this often
T = TypeVar("T")


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
    """pagelens collections on a Qdrant server (see the module docstring).

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
        retry_base_s: float = 0.5,
        text_query_languages: str = "all",
        recall_target: float = 0.95,
    ) -> None:
        self.client = client
        self.recall_target = float(recall_target)  # the self-check's recall@5 target
        self._plans: dict[str, SearchPlan] = {}  # collection -> its measured plan (also in its metadata)
        self.prefix = prefix
        self.batch_size = max(1, int(batch_size))
        self.shard_number = shard_number
        self.replication_factor = replication_factor
        self.on_disk = on_disk
        self.url = url or "the configured Qdrant server"
        self.quantization = quantization  # "none" | "scalar" (int8) | "binary": full multivectors
        self.full_datatype = full_datatype  # "float32" | "float16": storage of the full multivectors
        self.max_request_bytes = max(1024, int(max_request_bytes))  # approx. JSON size of one upsert
        self.retries = max(0, int(retries))  # transient errors, backoff (index/stores/retry.py)
        self.retry_base_s = float(retry_base_s)  # first backoff delay (s), doubling
        self.text_query_languages = text_query_languages  # text_analysis.TextAnalyzer.query_languages
        self._manifests: dict[str, CollectionManifest] = {}
        self._text_index: dict[str, int] = {}  # collection -> text spec version (0: no text index)
        self._languages: dict[str, tuple[float, dict[str, int]]] = {}
        # Local mode (":memory:" / path) is not thread-safe; the HTTP/gRPC clients are.
        from qdrant_client.local.qdrant_local import QdrantLocal

        self._is_local = isinstance(getattr(client, "_client", None), QdrantLocal)
        self._lock: Any = threading.RLock() if self._is_local else contextlib.nullcontext()
        self.stale_warnings = StaleWarnings(logger)
        self._status_checked: dict[str, float] = {}  # collection -> monotonic time of the last search-time check

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
            timeout=max(1, math.ceil(settings.tuning.qdrant_timeout_s)),
            check_compatibility=False,
        )
        return cls(
            client,
            batch_size=settings.tuning.upsert_batch_points,
            shard_number=settings.qdrant_shard_number,
            replication_factor=settings.qdrant_replication_factor,
            on_disk=settings.qdrant_on_disk,
            quantization=settings.qdrant_quantization,
            full_datatype=settings.full_vector_datatype,
            max_request_bytes=settings.tuning.upsert_max_bytes,
            retries=settings.tuning.qdrant_retries,
            url=settings.qdrant_url,
            text_query_languages=settings.tuning.text_query_languages,
            recall_target=settings.tuning.search_recall_target,
        )

    # --- internals -----------------------------------------------------------------------

    def _qname(self, name: str) -> str:
        return self.prefix + validate_collection_name(name)

    def _call(self, fn: Callable[[], T], collection: str | None = None) -> T:
        """Run a client call under the (local-mode) lock, mapping errors to pagelens errors."""
        from qdrant_client.http.exceptions import UnexpectedResponse

        try:
            with self._lock:
                if self.retries:  # local mode raises nothing transient, so only injected faults retry there
                    return call_with_retries(fn, self.retries, base_s=self.retry_base_s)
                return fn()
        except Exception as exc:
            if is_connection_error(exc):
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

    def claim(self) -> None:
        """Nothing to take: the Qdrant server owns the collection files (``VectorStore.claim``)."""

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
        sparse = {TEXT_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)}

        def create() -> None:
            """One try. Retried after a transient error, and the reply of a try that did create the
            collection may be the one that was lost: "already exists" with exactly this configuration
            (the manifest carries this request's creation time) is then success."""
            try:
                self.client.create_collection(
                    qname,
                    vectors_config=vectors,
                    sparse_vectors_config=sparse,
                    shard_number=self.shard_number,
                    replication_factor=self.replication_factor,
                    metadata={MANIFEST_KEY: manifest.to_dict(), TEXT_SPEC_KEY: current_spec()},
                )
            except Exception as exc:
                try:
                    exists = self.client.collection_exists(qname)
                except Exception:
                    raise exc from None  # the server is still away: retried (or reported) as it came
                if not exists:
                    raise
                different = self._config_differences(qname, manifest)
                if different:
                    raise CollectionExistsError(
                        f"collection '{name}' already exists on the Qdrant server at {self.url} with a "
                        f"different configuration ({'; '.join(different)}): another client created it while "
                        f"this one did. Use another name, or delete it (pagelens delete --collection {name} "
                        "--all) and try again.",
                        collection=name,
                    ) from exc
                logger.info("collection %s: created by an earlier try whose reply was lost (%s: %s)", qname,
                            type(exc).__name__, exc)

        self._call(create)
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

    def _config_differences(self, qname: str, manifest: CollectionManifest) -> list[str]:
        """How the existing collection ``qname`` differs from what ``create_collection(manifest)`` makes
        (empty: the same). Raw client calls, for use inside a ``_call``."""
        import json

        info = self.client.get_collection(qname)
        found: list[str] = []
        stored = (info.config.metadata or {}).get(MANIFEST_KEY)
        wanted = json.loads(json.dumps(manifest.to_dict()))
        if stored != wanted:
            keys = sorted(k for k in set(wanted) | set(stored or {}) if (stored or {}).get(k) != wanted.get(k))
            found.append("manifest " + (", ".join(f"{k}={(stored or {}).get(k)!r} (wanted {wanted.get(k)!r})"
                                                   for k in keys) if stored else "missing"))
        params = info.config.params
        dense = params.vectors if isinstance(params.vectors, dict) else {}
        for vname in (FULL_VECTOR, ROWS_VECTOR, COLS_VECTOR):
            vec = dense.get(vname)
            if vec is None:
                found.append(f"no vector {vname}")
            elif vec.size != manifest.dim:
                found.append(f"vector {vname} of size {vec.size} (wanted {manifest.dim})")
        if TEXT_VECTOR not in (params.sparse_vectors or {}):
            found.append(f"no sparse vector {TEXT_VECTOR}")
        return found

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
        self._plans.pop(collection, None)
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

    def set_payload(self, collection: str, doc_id: str, values: dict[str, Any]) -> int:
        """Counts, then sets by filter, ``wait=True``."""
        from qdrant_client import models

        self._require(collection)
        qname = self._qname(collection)
        flt = to_server_filter(PageFilter(doc_ids=[doc_id]))
        n = self._call(lambda: self.client.count(qname, count_filter=flt, exact=True).count, collection)
        if n:
            self._call(
                lambda: self.client.set_payload(qname, payload=dict(values),
                                                points=models.FilterSelector(filter=flt), wait=True),
                collection,
            )
        return int(n)

    def count(self, collection: str, page_filter: PageFilter | None = None) -> int:
        qname = self._qname(collection)
        flt = to_server_filter(page_filter)
        return int(self._call(lambda: self.client.count(qname, count_filter=flt, exact=True).count, collection))

    def iter_payloads(
        self, collection: str, page_filter: PageFilter | None = None, keys: Sequence[str] | None = None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Scrolls ``SCROLL_PAGE`` points per request; ``keys``: payload selector (only these keys are
        read). Raises ``CollectionNotFoundError`` at the call."""
        flt = to_server_filter(page_filter)
        if not self._exists(collection):
            raise CollectionNotFoundError(collection)
        return self._scroll(collection, flt, True if keys is None else [str(k) for k in keys])

    def _scroll(self, collection: str, flt: Any, with_payload: Any = True) -> Iterator[tuple[str, dict[str, Any]]]:
        qname = self._qname(collection)
        offset: Any = None
        while True:
            records, offset = self._call(
                lambda o=offset: self.client.scroll(  # type: ignore[misc]
                    qname, scroll_filter=flt, limit=SCROLL_PAGE, offset=o, with_payload=with_payload,
                    with_vectors=False
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
        plan = self._plan(collection) if mode == "two_stage" else None
        if mode == "exact" or (plan is not None and plan.first_stage == "exact"):
            # local mode is always exact and warns about search_params
            kwargs: dict[str, Any] = {} if self._is_local else {"search_params": models.SearchParams(exact=True)}
        else:
            self._check_status_now_and_then(collection)
            k = max(plan.candidates if plan is not None and plan.recall is not None else prefetch_limit, limit)
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

    # --- search structures (pagelens.index.stores.search_status) ----------------------------------------------

    def search_status(self, collection: str) -> SearchStatus:
        """Whether Qdrant's optimizer is done with ``collection`` (status green, optimizer ok): the
        HNSW graphs of the pooled vectors are built. Yellow: it is building them; grey: optimizations
        are pending but not running (e.g. after a Qdrant restart) until an update or ``repair``
        triggers them; red: the optimizer failed. Local mode (tests) has no HNSW: always current.
        One ``get_collection`` request. Raises ``CollectionNotFoundError``."""
        from qdrant_client import models

        self._require(collection)
        qname = self._qname(collection)
        info = self._call(lambda: self.client.get_collection(qname), collection)
        reasons: list[tuple[str, str]] = []
        optimizer_error = getattr(info.optimizer_status, "error", None)
        if info.status == models.CollectionStatus.RED or optimizer_error:
            reasons.append((SERVER_ERROR, f"Qdrant's optimizer failed on {qname}: {optimizer_error or 'status red'} "
                            "(see the Qdrant server log)"))
        elif info.status == models.CollectionStatus.GREY:
            reasons.append((SERVER_PENDING, "optimizations are pending but not running (Qdrant status grey, e.g. "
                            "after a Qdrant restart): the HNSW graphs of the pooled vectors are incomplete"))
        elif info.status == models.CollectionStatus.YELLOW:
            reasons.append((SERVER_OPTIMIZING, "Qdrant is building the HNSW graphs of the pooled vectors "
                            "(status yellow)"))
        status = SearchStatus.of(collection, reasons, int(info.points_count or 0))
        return dataclasses.replace(status, self_check=self._plan(collection).to_dict())

    def repair(self, collection: str, force: bool = False) -> RepairResult:
        """Trigger Qdrant's optimizers (an empty optimizer config update) when the collection is grey
        or ``force``; Qdrant builds the HNSW graphs in the background (the status turns yellow, then
        green). Nothing to do in local mode, or while Qdrant is optimizing already."""
        started = time.perf_counter()
        before = self.search_status(collection)
        rebuilt: list[str] = []
        wanted = (force or SERVER_PENDING in before.codes) and SERVER_OPTIMIZING not in before.codes
        if wanted and self.optimize(collection):
            rebuilt.append("triggered Qdrant's optimizers (they build the HNSW graphs in the background)")
        if before.current and before.points and self._plan(collection).outdated(before.points):
            try:  # measured once Qdrant's graphs are built (green): the recall of what searches will use
                plan = self.self_check(collection)
                rebuilt.append(f"self-check: {plan.summary()}")
            except Exception as exc:  # searches keep their plan; the next repair measures again
                logger.warning("self-check of %s failed (%s): its searches keep %s", collection, exc,
                               self._plan(collection).summary())
        after = self.search_status(collection) if rebuilt else before
        self.stale_warnings.seen(after)
        return RepairResult(collection, before, after, rebuilt, time.perf_counter() - started)

    def optimize(self, collection: str) -> bool:
        """Ask Qdrant to run its optimizers on ``collection`` (it does so in the background);
        returns whether the request was made (never in local mode, which has no HNSW)."""
        from qdrant_client import models

        self._require(collection)
        if self._is_local:
            return False
        qname = self._qname(collection)
        self._call(lambda: self.client.update_collection(qname, optimizers_config=models.OptimizersConfigDiff()),
                   collection)
        return True

    # --- the self-check (pagelens.index.ann.self_check) ------------------------------------------

    def _plan(self, collection: str) -> SearchPlan:
        """The measured plan (cached; read from the collection's metadata), or the default: the pooled
        HNSW prefetch at the request's ``prefetch_limit``, reranked exactly by Qdrant."""
        plan = self._plans.get(collection)
        if plan is None:
            qname = self._qname(collection)
            info = self._call(lambda: self.client.get_collection(qname), collection)
            data = (info.config.metadata or {}).get(PLAN_KEY)
            plan = SearchPlan.from_dict(data) if isinstance(data, dict) else SearchPlan(
                first_stage="hnsw", target=self.recall_target)
            self._plans[collection] = plan
        return plan

    def self_check(self, collection: str) -> SearchPlan:
        """Measure the pooled HNSW prefetch at growing widths against exact MaxSim on probe queries made
        from the collection's pages (``pagelens.index.ann.self_check``; Qdrant reranks every prefetched
        page exactly, so the width alone decides the recall) and keep the cheapest plan reaching
        ``recall_target``, else exact. Saved in the collection's metadata."""
        from qdrant_client import models

        self._require(collection)
        qname = self._qname(collection)
        pages = self.count(collection)

        def sample_tokens(n: int, rng: np.random.Generator) -> list[np.ndarray]:
            ids = [pid for pid, _ in self._scroll(collection, None, with_payload=False)]
            chosen = [ids[i] for i in rng.choice(len(ids), size=min(n, len(ids)), replace=False)]
            vectors = self.get_full_vectors(collection, chosen)
            return [vectors[i] for i in chosen if i in vectors]

        def exact(query: np.ndarray, limit: int, ids: Sequence[str] | None = None) -> list[tuple[str, float]]:
            flt = models.Filter(must=[models.HasIdCondition(has_id=list(ids))]) if ids is not None else None
            params: dict[str, Any] = {} if self._is_local else {"search_params": models.SearchParams(exact=True)}
            response = self._call(lambda: self.client.query_points(
                qname, query=query.tolist(), using=FULL_VECTOR, query_filter=flt, limit=limit, with_payload=False,
                **params), collection)
            return [(str(h.id), float(h.score)) for h in response.points]

        def exact_scores(query: np.ndarray, ids: Sequence[str]) -> dict[str, float]:
            return dict(exact(query, len(ids), ids)) if ids else {}

        def hnsw(query: np.ndarray, width: int) -> list[str]:
            q = query.tolist()
            response = self._call(lambda: self.client.query_points(
                qname, prefetch=[models.Prefetch(query=q, using=ROWS_VECTOR, limit=width),
                                 models.Prefetch(query=q, using=COLS_VECTOR, limit=width)],
                query=models.FusionQuery(fusion=models.Fusion.RRF), limit=2 * width, with_payload=False), collection)
            return [str(h.id) for h in response.points]

        def rerank(query: np.ndarray, ids: Sequence[str]) -> np.ndarray:
            scores = exact_scores(query, ids)  # Qdrant's rerank of prefetched pages is exact
            return np.asarray([scores.get(i, float("-inf")) for i in ids], dtype=np.float32)

        rows = pages * 1139  # token vectors, estimated at a 2048-px page's count (the manifest does not count them)
        probe = Probe(sample_tokens=sample_tokens, exact_top=lambda q, k: exact(q, k), exact_scores=exact_scores,
                      scan=lambda q, m: [i for i, _ in exact(q, m)], rerank=rerank, stages={"hnsw": hnsw},
                      pages=pages, rows=rows)
        plan = run_check(probe, self.recall_target)
        if plan.first_stage == "scan":  # the server has no int8 scan: its stand-in is exact MaxSim itself
            plan.first_stage, plan.candidates = "exact", 0
        self._plans[collection] = plan
        stored = {k: v for k, v in plan.to_dict().items() if k != "trials"}
        with contextlib.suppress(Exception):  # an old server without metadata keeps the plan in memory only
            self._call(lambda: self.client.update_collection(qname, metadata={PLAN_KEY: stored}), collection)
        logger.info("self-check of %s in %.1f s: %s; geometry %s", collection, plan.seconds, plan.summary(),
                    plan.geometry)
        return plan

    def _check_status_now_and_then(self, collection: str) -> None:
        """At most every ``STATUS_CHECK_S`` per collection (a request each): warn once when stale."""
        if self._is_local:
            return
        now = time.monotonic()
        if now - self._status_checked.get(collection, -STATUS_CHECK_S) < STATUS_CHECK_S:
            return
        self._status_checked[collection] = now
        try:
            self.stale_warnings.seen(self.search_status(collection))
        except Exception as exc:  # the search itself reports an outage
            logger.debug("optimizer status of %s unavailable: %s", collection, exc)

    def close(self) -> None:
        """Close the client. Safe to call twice."""
        with contextlib.suppress(Exception):
            self.client.close()
