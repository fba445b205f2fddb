"""The document registry: each collection's documents and page counts, so listings cost O(documents).

Listing a collection's documents used to scroll every page payload (page text included) under the
store lock. ``RegisteredStore`` wraps a ``VectorStore`` and keeps, in SQLite beside the jobs
(``<data_dir>/registry.sqlite3``), one row per document (name, sha256, page count, pages indexed,
metadata, last indexed time) and one small row per page point (id -> doc_id, so re-upserting a page
never counts it twice). Every write to the store through the wrapper updates the registry:
``upsert``, ``delete_document``, ``delete_collection``, ``create_collection``.

Exactness under crashes: before a write reaches the store the collection is marked *dirty* (committed);
the registry rows and the cleared mark are committed together after the store write. A listing uses
the registry only when the collection is clean and its page count equals the store's exact point
count (``store.count``: on every listing for the Qdrant server, once per process and collection for
the embedded Edge store, see ``with_registry``); otherwise it is rebuilt from one scroll that reads only
the small payload keys (``REGISTRY_KEYS``, never ``text``). So a crash between the store write and the
registry write, a registry file deleted or from another data dir, and pages written by another
process (shard workers on other hosts writing to one Qdrant server) all end in a rebuild, not in a
wrong list. What the count cannot see: another process changing only a document's name or metadata
on a shared Qdrant server; that shows after the next rebuild (``RegisteredStore.rebuild``).

Rows are keyed by the store's identity (Edge root, server URL + prefix) and the real collection name
(aliases are resolved above this wrapper: ``with_aliases`` wraps it).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np
    from pagelens.index.stores.base import VectorStore
    from pagelens.index.stores.search_status import RepairResult, SearchStatus

    from pagelens.core.types import CollectionManifest, PageFilter, ScoredPage, SearchMode

log = logging.getLogger(__name__)

REGISTRY_FILE = "registry.sqlite3"
# The payload keys a listing needs: never the page text.
REGISTRY_KEYS = ("doc_id", "doc_name", "sha256", "page_count", "meta", "indexed_at", "language", "text_source")
SCHEMA_VERSION = 2  # 2: pages carry language and text_source (an older file is rebuilt from the store)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS stamps (
    store TEXT NOT NULL, collection TEXT NOT NULL, pages INTEGER NOT NULL, dirty INTEGER NOT NULL,
    PRIMARY KEY (store, collection));
CREATE TABLE IF NOT EXISTS documents (
    store TEXT NOT NULL, collection TEXT NOT NULL, doc_id TEXT NOT NULL, doc_name TEXT NOT NULL,
    sha256 TEXT NOT NULL, page_count INTEGER NOT NULL, pages_indexed INTEGER NOT NULL,
    meta TEXT NOT NULL, indexed_at TEXT NOT NULL,
    PRIMARY KEY (store, collection, doc_id));
CREATE TABLE IF NOT EXISTS pages (
    store TEXT NOT NULL, collection TEXT NOT NULL, point_id TEXT NOT NULL, doc_id TEXT NOT NULL,
    language TEXT NOT NULL DEFAULT 'unknown', text_source TEXT NOT NULL DEFAULT 'unknown',
    PRIMARY KEY (store, collection, point_id));
CREATE INDEX IF NOT EXISTS pages_by_doc ON pages (store, collection, doc_id);
CREATE INDEX IF NOT EXISTS documents_by_name ON documents (store, collection, doc_name, doc_id);
"""


@dataclass
class DocumentRecord:
    """One document of a collection as the registry holds it (``pages_indexed``: its points)."""

    doc_id: str
    doc_name: str
    sha256: str
    page_count: int
    pages_indexed: int
    metadata: dict[str, Any] = field(default_factory=dict)
    indexed_at: str = ""
    languages: dict[str, int] = field(default_factory=dict)  # detected page language -> pages
    text_sources: dict[str, int] = field(default_factory=dict)  # pdf | ocr | none (unknown: older pages) -> pages


def store_identity(store: Any) -> str:
    """A string naming where ``store`` keeps its points: Edge root, server URL + prefix, or (in-process
    stores) the object itself, so rows of two stores never mix. Wrappers (``inner``: aliases, this
    registry) name the backend they wrap."""
    while (inner := getattr(store, "inner", None)) is not None:
        store = inner
    root = getattr(store, "root", None)
    if root is not None:
        return f"edge:{Path(root).expanduser().resolve()}"
    if hasattr(store, "prefix") and not getattr(store, "_is_local", True):
        return f"server:{getattr(store, 'url', '')}|{store.prefix}"
    return f"local:{type(store).__name__}:{id(store)}"


class DocumentRegistry:
    """The SQLite tables (module docstring). Thread-safe; one connection, WAL journal."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._connect()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        if int(db.execute("PRAGMA user_version").fetchone()[0]) != SCHEMA_VERSION:  # derived data: start over
            db.executescript("DROP TABLE IF EXISTS stamps; DROP TABLE IF EXISTS documents; DROP TABLE IF EXISTS pages;")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.executescript(_SCHEMA)
        self._db = db
        return db

    @property
    def _conn(self) -> sqlite3.Connection:
        """The connection; reopened on use after ``close`` (like the stores, which reopen lazily)."""
        with self._lock:
            return self._db if self._db is not None else self._connect()

    def _tx(self) -> Any:
        return _Transaction(self._conn, self._lock)

    def stamp(self, store: str, collection: str) -> tuple[int, bool] | None:
        """(pages, dirty) or None when the registry has never seen the collection."""
        with self._lock:
            row = self._conn.execute("SELECT pages, dirty FROM stamps WHERE store=? AND collection=?",
                                     (store, collection)).fetchone()
        return None if row is None else (int(row[0]), bool(row[1]))

    def mark_dirty(self, store: str, collection: str) -> None:
        with self._tx() as c:
            c.execute("INSERT INTO stamps VALUES (?, ?, 0, 1) ON CONFLICT(store, collection) DO UPDATE SET "
                      "dirty=1", (store, collection))

    def reset(self, store: str, collection: str, payloads: Iterable[tuple[str, dict[str, Any]]] = ()) -> int:
        """Replace the collection's rows by these (point id, payload) pairs; clean. Returns pages."""
        pages: list[tuple[str, str, str, str, str, str]] = []
        docs: dict[str, list[Any]] = {}
        for point_id, payload in payloads:  # aggregated here: one executemany per table
            doc_id = str(payload.get("doc_id", ""))
            pages.append((store, collection, str(point_id), doc_id, str(payload.get("language") or "unknown"),
                          str(payload.get("text_source") or "unknown")))
            indexed_at = str(payload.get("indexed_at", "") or "")
            row = docs.get(doc_id)
            if row is None:
                docs[doc_id] = [store, collection, doc_id, str(payload.get("doc_name", "")),
                                str(payload.get("sha256", "")), int(payload.get("page_count", 0) or 0), 1,
                                json.dumps(payload.get("meta") or {}, sort_keys=True, default=str), indexed_at]
            else:
                row[6] += 1
                row[8] = max(row[8], indexed_at)
        with self._tx() as c:
            for table in ("documents", "pages", "stamps"):
                c.execute(f"DELETE FROM {table} WHERE store=? AND collection=?", (store, collection))
            c.executemany("INSERT OR REPLACE INTO pages VALUES (?, ?, ?, ?, ?, ?)", pages)
            c.executemany("INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", list(docs.values()))
            c.execute("INSERT INTO stamps VALUES (?, ?, ?, 0)", (store, collection, len(pages)))
        return len(pages)

    def totals(self, store: str, collection: str) -> tuple[int, int]:
        """(documents, pages) of the collection."""
        with self._lock:
            row = self._conn.execute("SELECT count(*), coalesce(sum(pages_indexed), 0) FROM documents "
                                     "WHERE store=? AND collection=?", (store, collection)).fetchone()
        return int(row[0]), int(row[1])

    def drop(self, store: str, collection: str) -> None:
        with self._tx() as c:
            for table in ("documents", "pages", "stamps"):
                c.execute(f"DELETE FROM {table} WHERE store=? AND collection=?", (store, collection))

    def add_pages(self, store: str, collection: str, payloads: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Record upserted points and clear the dirty mark, in one transaction."""
        with self._tx() as c:
            c.execute("INSERT OR IGNORE INTO stamps VALUES (?, ?, 0, 0)", (store, collection))
            self._add(c, store, collection, payloads)
            c.execute("UPDATE stamps SET dirty=0 WHERE store=? AND collection=?", (store, collection))

    def update_document(self, store: str, collection: str, doc_id: str, values: dict[str, Any]) -> None:
        """A document's name/metadata changed on every page (``set_payload``); clears the dirty mark."""
        with self._tx() as c:
            if "doc_name" in values:
                c.execute("UPDATE documents SET doc_name=? WHERE store=? AND collection=? AND doc_id=?",
                          (str(values["doc_name"]), store, collection, doc_id))
            if "meta" in values:
                c.execute("UPDATE documents SET meta=? WHERE store=? AND collection=? AND doc_id=?",
                          (json.dumps(values["meta"] or {}, sort_keys=True, default=str), store, collection, doc_id))
            c.execute("UPDATE stamps SET dirty=0 WHERE store=? AND collection=?", (store, collection))

    def remove_document(self, store: str, collection: str, doc_id: str) -> None:
        """Forget a deleted document and clear the dirty mark, in one transaction."""
        with self._tx() as c:
            n = c.execute("DELETE FROM pages WHERE store=? AND collection=? AND doc_id=?",
                          (store, collection, doc_id)).rowcount
            c.execute("DELETE FROM documents WHERE store=? AND collection=? AND doc_id=?", (store, collection, doc_id))
            c.execute("UPDATE stamps SET pages=pages-?, dirty=0 WHERE store=? AND collection=?",
                      (n, store, collection))

    def _add(self, c: sqlite3.Connection, store: str, collection: str,
             payloads: Iterable[tuple[str, dict[str, Any]]]) -> int:
        added = 0
        for point_id, payload in payloads:
            doc_id = str(payload.get("doc_id", ""))
            row = c.execute("SELECT doc_id FROM pages WHERE store=? AND collection=? AND point_id=?",
                            (store, collection, point_id)).fetchone()
            indexed_at = str(payload.get("indexed_at", "") or "")
            meta = json.dumps(payload.get("meta") or {}, sort_keys=True, default=str)
            c.execute(
                "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?) ON CONFLICT(store, collection, doc_id) "
                "DO UPDATE SET doc_name=excluded.doc_name, sha256=excluded.sha256, page_count=excluded.page_count, "
                "meta=excluded.meta, indexed_at=max(indexed_at, excluded.indexed_at)",
                (store, collection, doc_id, str(payload.get("doc_name", "")), str(payload.get("sha256", "")),
                 int(payload.get("page_count", 0) or 0), meta, indexed_at),
            )
            language = str(payload.get("language") or "unknown")  # pages indexed before languages/OCR: unknown
            source = str(payload.get("text_source") or "unknown")
            if row is not None and row[0] == doc_id:
                c.execute("UPDATE pages SET language=?, text_source=? WHERE store=? AND collection=? AND point_id=?",
                          (language, source, store, collection, point_id))
                continue
            if row is None:
                c.execute("INSERT INTO pages VALUES (?, ?, ?, ?, ?, ?)",
                          (store, collection, point_id, doc_id, language, source))
                c.execute("UPDATE stamps SET pages=pages+1 WHERE store=? AND collection=?", (store, collection))
                added += 1
            else:  # the point moved to another document: move its count
                c.execute("UPDATE pages SET doc_id=?, language=?, text_source=? WHERE store=? AND collection=? "
                          "AND point_id=?", (doc_id, language, source, store, collection, point_id))
                c.execute("UPDATE documents SET pages_indexed=pages_indexed-1 WHERE store=? AND collection=? "
                          "AND doc_id=?", (store, collection, row[0]))
                c.execute("DELETE FROM documents WHERE store=? AND collection=? AND doc_id=? AND pages_indexed<=0",
                          (store, collection, row[0]))
            c.execute("UPDATE documents SET pages_indexed=pages_indexed+1 WHERE store=? AND collection=? AND doc_id=?",
                      (store, collection, doc_id))
        return added

    def documents(self, store: str, collection: str, offset: int = 0,
                  limit: int | None = None) -> list[DocumentRecord]:
        """The collection's documents, sorted by (name, id); ``offset``/``limit`` select one page of that
        order (SQL ``LIMIT``/``OFFSET`` on the name index: a page of 100 costs the same at 5 or 50,000
        documents, and the language/text-source facets are read for that page's documents only)."""
        window = "" if limit is None else f" LIMIT {int(limit)} OFFSET {max(0, int(offset))}"
        if limit is None and offset:
            window = f" LIMIT -1 OFFSET {int(offset)}"
        with self._lock:
            rows = self._conn.execute(
                "SELECT doc_id, doc_name, sha256, page_count, pages_indexed, meta, indexed_at FROM documents "
                "WHERE store=? AND collection=? ORDER BY doc_name, doc_id" + window, (store, collection)).fetchall()
            facets: dict[str, tuple[dict[str, int], dict[str, int]]] = {}
            if window:  # one page: facets of its documents only (pages_by_doc index)
                ids = [r[0] for r in rows]
                batches = [ids[i:i + 500] for i in range(0, len(ids), 500)]
                queries = [("SELECT doc_id, language, text_source, count(*) FROM pages WHERE store=? AND "
                            f"collection=? AND doc_id IN ({','.join('?' * len(b))}) "
                            "GROUP BY doc_id, language, text_source", (store, collection, *b)) for b in batches]
            else:
                queries = [("SELECT doc_id, language, text_source, count(*) FROM pages WHERE store=? AND "
                            "collection=? GROUP BY doc_id, language, text_source", (store, collection))]
            for sql, args in queries:
                for doc_id, language, source, n in self._conn.execute(sql, args):
                    langs, sources = facets.setdefault(doc_id, ({}, {}))
                    langs[language] = langs.get(language, 0) + n
                    sources[source] = sources.get(source, 0) + n
        return [DocumentRecord(r[0], r[1], r[2], r[3], r[4], {} if r[5] == "{}" else json.loads(r[5]), r[6],
                               *facets.get(r[0], ({}, {})))
                for r in rows]

    def document(self, store: str, collection: str, doc_id: str) -> DocumentRecord | None:
        with self._lock:
            r = self._conn.execute(
                "SELECT doc_id, doc_name, sha256, page_count, pages_indexed, meta, indexed_at FROM documents "
                "WHERE store=? AND collection=? AND doc_id=?", (store, collection, doc_id)).fetchone()
        if r is None:
            return None
        return DocumentRecord(doc_id=r[0], doc_name=r[1], sha256=r[2], page_count=int(r[3]),
                              pages_indexed=int(r[4]), metadata=json.loads(r[5]), indexed_at=r[6])

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version``: changes when another connection (another process over the
        same data dir) commits to the file."""
        with self._lock:
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class _Transaction:
    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock) -> None:
        self.conn = conn
        self.lock = lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        try:
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.lock.release()


class RegisteredStore:
    """A ``CatalogStore`` (``pagelens.index.stores.base``): a ``VectorStore`` whose writes keep a
    ``DocumentRegistry`` exact (module docstring). Reads go to the wrapped store unchanged, one explicit
    method each. No aliases at this layer: every name is a collection (``with_aliases`` wraps it)."""

    def __init__(self, inner: VectorStore, registry: DocumentRegistry,
                 verify: Literal["always", "once"] = "always") -> None:
        self.inner = inner
        self.registry = registry
        self.identity = store_identity(inner)
        self.verify = verify
        self._verified: set[str] = set()  # collections checked against the store since this wrapper was made
        self._write_lock = threading.RLock()  # a listing's check + rebuild never interleaves a write
        # (collection, offset, limit or -1) -> (registry data_version, those documents) as last read; dropped
        # by every write and rebuild through this wrapper, stale when another process committed to the file
        self._cache: dict[tuple[str, int, int], tuple[int, list[DocumentRecord]]] = {}
        # collection -> writes and rebuilds through this wrapper (with data_version: ``listing_version``)
        self._generation: dict[str, int] = {}

    # --- reads and maintenance: the wrapped store's, unchanged ------------------------------
    @property
    def text_query_languages(self) -> str:
        """The wrapped store's (set it on the backend: ``pagelens.index.stores.base.backend_of``)."""
        return self.inner.text_query_languages

    def claim(self) -> None:
        self.inner.claim()

    def get_manifest(self, collection: str) -> CollectionManifest | None:
        return self.inner.get_manifest(collection)

    def list_collections(self) -> list[str]:
        return self.inner.list_collections()

    def count(self, collection: str, page_filter: PageFilter | None = None) -> int:
        return self.inner.count(collection, page_filter)

    def iter_payloads(
        self, collection: str, page_filter: PageFilter | None = None, keys: Sequence[str] | None = None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        return self.inner.iter_payloads(collection, page_filter, keys=keys)

    def search(
        self,
        collection: str,
        query: np.ndarray,
        limit: int,
        mode: SearchMode = "two_stage",
        page_filter: PageFilter | None = None,
        prefetch_limit: int = 100,
    ) -> list[ScoredPage]:
        return self.inner.search(collection, query, limit=limit, mode=mode, page_filter=page_filter,
                                 prefetch_limit=prefetch_limit)

    def has_text_index(self, collection: str) -> bool:
        return self.inner.has_text_index(collection)

    def search_text(
        self, collection: str, text: str, limit: int, page_filter: PageFilter | None = None
    ) -> list[ScoredPage]:
        return self.inner.search_text(collection, text, limit=limit, page_filter=page_filter)

    def text_spec_version(self, collection: str) -> int:
        return self.inner.text_spec_version(collection)

    def text_languages(self, collection: str) -> dict[str, int]:
        return self.inner.text_languages(collection)

    def get_full_vectors(self, collection: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        return self.inner.get_full_vectors(collection, ids)

    def search_status(self, collection: str) -> SearchStatus:
        return self.inner.search_status(collection)

    def repair(self, collection: str, force: bool = False) -> RepairResult:
        return self.inner.repair(collection, force=force)

    def optimize(self, collection: str) -> bool:
        return self.inner.optimize(collection)

    def resolve_alias(self, name: str) -> str:
        """``name``: this layer has no aliases."""
        return name

    def pin(self, collection: str) -> tuple[str, VectorStore]:
        """(``collection``, this store): no aliases at this layer, nothing to read."""
        return collection, self

    # --- writes ------------------------------------------------------------------------
    def create_collection(self, manifest: Any) -> None:
        with self._write_lock:
            self._forget(manifest.name)
            self.inner.create_collection(manifest)
            self.registry.reset(self.identity, manifest.name)

    def delete_collection(self, collection: str) -> None:
        with self._write_lock:
            self._forget(collection)
            self.registry.mark_dirty(self.identity, collection)
            self.inner.delete_collection(collection)
            self.registry.drop(self.identity, collection)

    def upsert(self, collection: str, points: Sequence[Any]) -> None:
        with self._write_lock:
            self._forget(collection)
            self.registry.mark_dirty(self.identity, collection)
            self.inner.upsert(collection, points)
            try:
                self.registry.add_pages(self.identity, collection, [(str(p.id), p.payload) for p in points])
            except sqlite3.Error as exc:  # stays dirty: the next listing rebuilds it
                log.warning("document registry of %s not updated (%s); it is rebuilt at the next listing",
                            collection, exc)

    def set_payload(self, collection: str, doc_id: str, values: dict[str, Any]) -> int:
        """Change payload keys on every page of a document (a re-upload under a new name or metadata)."""
        with self._write_lock:
            self._forget(collection)
            self.registry.mark_dirty(self.identity, collection)
            changed = int(self.inner.set_payload(collection, doc_id, values))
            try:
                self.registry.update_document(self.identity, collection, doc_id, values)
            except sqlite3.Error as exc:  # stays dirty: the next listing rebuilds it
                log.warning("document registry of %s not updated (%s); it is rebuilt at the next listing",
                            collection, exc)
            return changed

    def delete_document(self, collection: str, doc_id: str) -> int:
        with self._write_lock:
            self._forget(collection)
            self.registry.mark_dirty(self.identity, collection)
            deleted = int(self.inner.delete_document(collection, doc_id))
            try:
                self.registry.remove_document(self.identity, collection, doc_id)
            except sqlite3.Error as exc:
                log.warning("document registry of %s not updated (%s); it is rebuilt at the next listing",
                            collection, exc)
            return deleted

    # --- reads -------------------------------------------------------------------------
    def list_documents(self, collection: str, offset: int = 0, limit: int | None = None) -> list[DocumentRecord]:
        """The collection's documents from the registry, sorted by (name, id), checked against the store's
        exact point count (rebuilt when they disagree or a write did not finish); ``offset``/``limit``: one
        page of that order. The records are shared with a cache: read them, do not change them. Raises
        ``CollectionNotFoundError``."""
        with self._write_lock:
            self._ensure(collection)
            version = self.registry.data_version()
            key = (collection, max(0, int(offset)), -1 if limit is None else int(limit))
            cached = self._cache.get(key)
            if cached is None or cached[0] != version:
                if len(self._cache) >= 64:  # a few pages per open listing: bounded
                    self._cache.pop(next(iter(self._cache)))
                cached = self._cache[key] = (version, self.registry.documents(self.identity, collection, key[1], limit))
            return list(cached[1])

    def listing_version(self, collection: str) -> str:
        """A token that changes whenever the collection's listing may have: a write or rebuild through
        this wrapper, or a commit by another process to the registry file. Pollers compare it with the
        last one they saw and redraw only when it differs (costs one SQLite pragma, no rows read)."""
        with self._write_lock:
            return f"{self.registry.data_version()}.{self._generation.get(collection, 0)}"

    def _forget(self, collection: str) -> None:
        """Drop cached listings of ``collection`` and bump its generation (a write or rebuild)."""
        for key in [k for k in self._cache if k[0] == collection]:
            del self._cache[key]
        self._generation[collection] = self._generation.get(collection, 0) + 1

    def document_record(self, collection: str, doc_id: str) -> DocumentRecord | None:
        """One document's registry row (None when the collection has no such document)."""
        with self._write_lock:
            self._ensure(collection)
            return self.registry.document(self.identity, collection, doc_id)

    def collection_totals(self, collection: str) -> tuple[int, int]:
        """(documents, pages) from the registry, checked like ``list_documents``: O(1) rows read."""
        with self._write_lock:
            self._ensure(collection)
            return self.registry.totals(self.identity, collection)

    def rebuild(self, collection: str) -> int:
        """Rebuild the collection's rows from one scroll of the small payload keys; returns pages."""
        with self._write_lock:
            return self._rebuild(collection)

    def _ensure(self, collection: str) -> None:
        stamp = self.registry.stamp(self.identity, collection)
        if self.verify == "once" and collection in self._verified and stamp is not None and not stamp[1]:
            return  # every write since the check went through this wrapper (one process per store)
        points = int(self.inner.count(collection))
        if stamp is not None and not stamp[1] and stamp[0] == points:
            self._verified.add(collection)
            return
        reason = ("no registry" if stamp is None else "unfinished write" if stamp[1]
                  else f"{stamp[0]} pages registered, {points} in the store")
        log.info("rebuilding the document registry of %s (%s)", collection, reason)
        self._rebuild(collection)
        self._verified.add(collection)

    def _rebuild(self, collection: str) -> int:
        self._forget(collection)
        payloads = self.inner.iter_payloads(collection, keys=REGISTRY_KEYS)
        return self.registry.reset(self.identity, collection, payloads)

    def close(self) -> None:
        self.inner.close()
        self.registry.close()


def with_registry(store: VectorStore, data_dir: Path, verify: Literal["always", "once"] | None = None) -> RegisteredStore:
    """Wrap ``store`` with the registry file ``<data_dir>/registry.sqlite3`` (already wrapped: as is).

    ``verify``: when a listing checks the registry against the store's exact point count. ``always``
    (default for the Qdrant server, which other processes and hosts write to): every listing.
    ``once`` (default for the embedded Qdrant Edge store, which one process holds): the first listing
    of each collection in this process; after that every write goes through this wrapper (an exact
    count costs ~30 ms at 100k unoptimized pages on a loaded 2-core machine)."""
    if isinstance(store, RegisteredStore):
        return store
    if verify is None:
        from pagelens.index.stores.edge_store import QdrantEdgeStore

        verify = "once" if isinstance(store, QdrantEdgeStore) else "always"
    return RegisteredStore(store, DocumentRegistry(Path(data_dir) / REGISTRY_FILE), verify=verify)
