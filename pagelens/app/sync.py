"""Incremental sync: make a collection mirror a folder (``pagelens index DIR --sync``, REST sync).

A synced document is named by its path under the folder (``2024/invoice.pdf``; a top-level file by its
file name, as ``pagelens index`` names it), and it is identified by its content (``doc_id`` = the first
16 hex digits of the file's sha256). ``plan_sync`` compares the folder with the collection and sorts
every file and document into one of:

* ``add``: content the collection does not have, under a name it does not have;
* ``update``: new content under a name the collection has (the file was replaced): the new pages are
  written first, the old document is deleted only once every new page is in (so a search never finds
  neither version), and kept when the new version fails (the report says so);
* ``rename``: content the collection has under another name, whose old path is gone: the pages take the
  new name (payload ``doc_name``), nothing is opened or embedded;
* ``delete``: documents whose content is in no file of the folder: their points, page images and text go;
* ``unchanged``: same content, same name: not opened, not embedded; with the file ledger (below) not even
  read;
* ``duplicate``: a file whose content another file of the folder already holds (one document per
  content, as ``pagelens index`` does).

Knowing a file is unchanged without reading it: ``FileLedger`` (``<data_dir>/sync.sqlite3``) remembers
(size, mtime in ns) -> sha256 of every file a sync hashed; a file whose size and mtime match is not read
again (as rsync decides by default; ``checksum=True``, ``--checksum``, reads every file). The ledger is
only a cache of file hashes: losing it costs one read of every file, never a wrong collection.

Order of the writes, each idempotent, so a sync killed at any point and run again ends in the same
collection: renames and metadata changes (``set_payload``); the adds and updates through the ``Indexer``
(its deterministic point ids make a rerun resume a half-written document); then the deletes (after
checking that the document still has the name the plan saw). A document half-written when the process
died has the file's content and name and fewer points than pages: the next plan sees it as ``resume``
and the indexer writes only its missing pages.

With ``shard=(I, N)`` a worker syncs only the files whose path hashes to its share
(``pagelens.ingest.manifest.shard_of``) and deletes only the documents whose name does: run every shard
to mirror the whole folder. A file moved between shards is renamed by one worker or deleted by one and
added by the other: the same end state, with one re-embedding in the second case.

A sync that would delete more than ``settings.sync_max_delete_share`` of the documents in its scope is
refused (``SyncRefusedError``) unless ``yes``: a folder that looks empty is more often an unmounted
network drive than a purge.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pagelens.core.debug_hooks import pause_point
from pagelens.core.errors import DocumentNotFoundError, InvalidRequestError, PagelensError
from pagelens.index.pipeline.indexer import IndexInput, IndexReport, ProgressCallback
from pagelens.ingest.manifest import InputItem, shard_of

if TYPE_CHECKING:
    from pagelens.app.service import DocumentInfo, PagelensService

log = logging.getLogger(__name__)

LEDGER_FILE = "sync.sqlite3"
HASH_CHUNK = 1 << 20  # bytes read at a time while hashing (1 MiB)
# the statuses of an index result whose document has every page in the collection
COMPLETE = ("indexed", "updated", "skipped")


class SyncRefusedError(PagelensError):
    """The sync would delete more of the collection than ``sync_max_delete_share`` allows."""

    code = "sync_refused"
    http_status = 409


# ------------------------------------------------------------------------------------------------
class FileLedger:
    """(store, collection, folder, path under it) -> (size, mtime_ns, sha256) of the files a sync hashed.

    SQLite in WAL mode, one connection, thread-safe. Derived data: a missing or foreign file only makes
    the next sync read every file once."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS files (store TEXT NOT NULL, collection TEXT NOT NULL, root TEXT NOT NULL, "
            "rel TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL, "
            "PRIMARY KEY (store, collection, root, rel))")

    def get(self, store: str, collection: str, root: str) -> dict[str, tuple[int, int, str]]:
        """Path under ``root`` -> (size, mtime_ns, sha256) as last hashed."""
        with self._lock:
            rows = self._db.execute("SELECT rel, size, mtime_ns, sha256 FROM files WHERE store=? AND collection=? "
                                    "AND root=?", (store, collection, root)).fetchall()
        return {r[0]: (int(r[1]), int(r[2]), str(r[3])) for r in rows}

    def put(self, store: str, collection: str, root: str, rows: Sequence[tuple[str, int, int, str]]) -> None:
        """Record (rel, size, mtime_ns, sha256) rows."""
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                                     [(store, collection, root, *row) for row in rows])
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def prune(self, store: str, collection: str, root: str, keep: set[str],
              in_scope: Callable[[str], bool] = lambda rel: True) -> int:
        """Forget the rows of files no longer in the folder (those ``in_scope`` and not in ``keep``)."""
        gone = [rel for rel in self.get(store, collection, root) if in_scope(rel) and rel not in keep]
        with self._lock:
            self._db.executemany("DELETE FROM files WHERE store=? AND collection=? AND root=? AND rel=?",
                                 [(store, collection, root, rel) for rel in gone])
        return len(gone)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def file_sha256(path: Path) -> str:
    """The sha256 (hex) of a file's bytes, read in 1 MiB chunks: the same digest ``open_document`` takes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------
@dataclass
class SyncFile:
    """A file of the folder: its path under it (the document name), where it is, its size and hash."""

    name: str
    path: Path
    size: int
    mtime_ns: int
    sha256: str
    hashed: bool  # read for its hash in this plan (False: the ledger knew it)


@dataclass
class SyncAction:
    """One line of the plan. ``name``: the document name after the sync (the file's path under the
    folder); ``old_name``: before (renames); ``doc_id``: the document it concerns (a delete, rename,
    unchanged) or the one it replaces (an update); ``pages``: its page count where known."""

    kind: str  # add | update | rename | delete | unchanged | duplicate | resume | failed
    name: str
    path: str | None = None
    doc_id: str | None = None
    old_name: str | None = None
    pages: int | None = None
    replaces: list[str] = field(default_factory=list)  # update: doc ids of the older versions
    # an update without --metadata: the metadata of the version it replaces (not in to_dict)
    inherited_meta: dict[str, Any] = field(default_factory=dict, repr=False)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "", [], {}) and k != "inherited_meta"}


PLAN_KINDS = ("add", "update", "rename", "delete", "unchanged", "duplicate", "resume", "failed")


@dataclass
class SyncPlan:
    """What a sync will do (``plan_sync``); ``execute_sync`` does it."""

    collection: str
    root: Path
    actions: list[SyncAction] = field(default_factory=list)
    documents_in_scope: int = 0  # documents of the collection this sync may delete (all, or the shard's)
    files: int = 0
    files_hashed: list[str] = field(default_factory=list)  # names of the files read for their hash
    metadata_changes: list[str] = field(default_factory=list)  # doc ids whose stored metadata differs
    shard: tuple[int, int] | None = None
    # ledger rows to record once the plan runs: (rel, size, mtime_ns, sha256)
    ledger_rows: list[tuple[str, int, int, str]] = field(default_factory=list, repr=False)

    def of(self, kind: str) -> list[SyncAction]:
        return [a for a in self.actions if a.kind == kind]

    def counts(self) -> dict[str, int]:
        return {kind: len(self.of(kind)) for kind in PLAN_KINDS}

    @property
    def delete_share(self) -> float:
        """Deleted documents / documents in scope (0 when there are none)."""
        deletes = len(self.of("delete"))
        return deletes / self.documents_in_scope if self.documents_in_scope else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "root": str(self.root),
            "shard": f"{self.shard[0]}/{self.shard[1]}" if self.shard else None,
            "files": self.files,
            "files_hashed": len(self.files_hashed),
            "documents_in_scope": self.documents_in_scope,
            "counts": self.counts(),
            "delete_share": round(self.delete_share, 4),
            "metadata_changes": len(self.metadata_changes),
            "actions": [a.to_dict() for a in self.actions],
        }

    def summary(self) -> str:
        """One line: 'N added, N updated, N renamed, N deleted, N unchanged' (and what else happened)."""
        c = self.counts()
        parts = [f"{c['add']} to add", f"{c['update']} to update", f"{c['rename']} to rename",
                 f"{c['delete']} to delete", f"{c['unchanged']} unchanged"]
        for kind, label in (("resume", "to resume (half-indexed)"), ("duplicate", "duplicate content (skipped)"),
                            ("failed", "unreadable (kept)")):
            if c[kind]:
                parts.append(f"{c[kind]} {label}")
        return ", ".join(parts)


@dataclass
class SyncReport:
    """What a sync did: the plan, the index report of its adds/updates, the deletes done."""

    plan: SyncPlan
    index: IndexReport | None = None
    renamed: int = 0
    deleted: list[str] = field(default_factory=list)  # doc ids of the documents whose files are gone
    replaced: list[str] = field(default_factory=list)  # doc ids of older versions removed after their update
    pages_deleted: int = 0
    kept: list[SyncAction] = field(default_factory=list)  # old versions kept because the new one failed
    seconds: float = 0.0
    dry_run: bool = False
    refusal: str | None = None  # a dry run: why the sync itself would be refused (without --yes)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> list[dict[str, Any]]:
        out = [e.to_dict() for e in self.index.errors] if self.index else []
        out += [{"file": a.path, "page": None, "code": "unreadable", "error": a.note} for a in self.plan.of("failed")]
        return out

    def to_dict(self) -> dict[str, Any]:
        counts = self.plan.counts()
        index = self.index.to_dict() if self.index else None
        return {
            "collection": self.plan.collection,
            "root": str(self.plan.root),
            "dry_run": self.dry_run,
            "would_refuse": self.refusal,
            "shard": f"{self.plan.shard[0]}/{self.plan.shard[1]}" if self.plan.shard else None,
            "added": counts["add"],
            "updated": counts["update"],
            "renamed": counts["rename"],
            "deleted": counts["delete"] if self.dry_run else len(self.deleted),
            "replaced_versions_removed": len(self.replaced),
            "unchanged": counts["unchanged"],
            "resumed": counts["resume"],
            "duplicates": counts["duplicate"],
            "unreadable": counts["failed"],
            "metadata_changes": len(self.plan.metadata_changes),
            "files": self.plan.files,
            "files_hashed": list(self.plan.files_hashed),
            "documents_in_scope": self.plan.documents_in_scope,
            "delete_share": round(self.plan.delete_share, 4),
            "documents_opened": [d["path"] for d in index["documents"]] if index else [],
            "pages_indexed": index["pages_indexed"] if index else 0,
            "pages_embedded": index["pages_embedded"] if index else 0,
            "pages_deleted": self.pages_deleted,
            "kept_old_versions": [a.to_dict() for a in self.kept],
            "seconds": round(self.seconds, 3),
            "errors": self.errors,
            "actions": [a.to_dict() for a in self.plan.actions],
            "index": index,
        }

    def summary(self) -> str:
        if self.dry_run:
            return f"collection {self.plan.collection} (dry run, nothing changed): {self.plan.summary()}"
        c = self.plan.counts()
        pages = self.index.pages_indexed if self.index else 0
        failed = len(self.errors)
        line = (f"collection {self.plan.collection} synced with {self.plan.root}: {c['add']} added, "
                f"{c['update']} updated, {c['rename']} renamed, {len(self.deleted)} deleted, {c['unchanged']} "
                f"unchanged")
        if c["resume"]:
            line += f", {c['resume']} resumed"
        if c["duplicate"]:
            line += f", {c['duplicate']} duplicate content (skipped)"
        line += f"; {pages} pages indexed, {self.pages_deleted} pages deleted in {self.seconds:.1f} s"
        if failed:
            line += f"; {failed} failed"
        if self.kept:
            line += f" ({len(self.kept)} previous version(s) kept until the new one indexes)"
        return line


# ------------------------------------------------------------------------------------------------
def _scope(shard: tuple[int, int] | None) -> Callable[[str], bool]:
    if shard is None:
        return lambda name: True
    index, count = shard
    return lambda name: shard_of(name, count) == index


def _store_identity(service: PagelensService) -> str:
    from pagelens.index.stores.registry import store_identity

    identity = getattr(service.store, "identity", None)
    return identity if isinstance(identity, str) else store_identity(service.store)


def resolve_collection(service: PagelensService, collection: str) -> str:
    resolve = getattr(service.store, "resolve_alias", None)
    return str(resolve(collection)) if callable(resolve) else collection


def plan_sync(
    service: PagelensService,
    collection: str,
    root: Path,
    files: Sequence[InputItem],
    *,
    shard: tuple[int, int] | None = None,
    metadata: dict[str, Any] | None = None,
    checksum: bool = False,
    progress: ProgressCallback | None = None,
) -> SyncPlan:
    """Compare the folder ``root`` (its ``files``, already selected for ``shard``; each ``key`` is its
    path under ``root``) with the collection; returns the plan, changes nothing. Reads only the files
    the ledger does not know (all with ``checksum``). Events: ``sync_hash`` (done, total)."""
    notify = progress or (lambda event, info: None)
    root = Path(root)
    real = resolve_collection(service, collection)
    plan = SyncPlan(collection=real, root=root.resolve(), shard=shard, files=len(files))
    in_scope = _scope(shard)
    exists = service.store.get_manifest(real) is not None
    docs: list[DocumentInfo] = service.documents(real) if exists else []
    plan.documents_in_scope = sum(1 for d in docs if in_scope(d.doc_name))
    ledger = FileLedger(service.settings.data_dir / LEDGER_FILE)
    try:
        known = ledger.get(_store_identity(service), real, str(root.resolve()))
    finally:
        ledger.close()

    synced: list[SyncFile] = []
    failed_names: set[str] = set()
    for done, item in enumerate(files, start=1):
        try:
            sync_file = _hash(item, known.get(item.key), checksum)
        except OSError as exc:
            failed_names.add(item.key)
            plan.actions.append(SyncAction("failed", item.key, path=str(item.path),
                                           note=f"{item.path}: cannot read the file ({exc.strerror or exc}); its "
                                           "document, if any, is kept"))
            continue
        finally:
            notify("sync_hash", {"done": done, "total": len(files), "name": item.key})
        if sync_file is None:  # vanished between the listing and the hash: as if it was never listed
            continue
        synced.append(sync_file)
        if sync_file.hashed:
            plan.files_hashed.append(sync_file.name)
            plan.ledger_rows.append((sync_file.name, sync_file.size, sync_file.mtime_ns, sync_file.sha256))

    by_id = {d.doc_id: d for d in docs}
    by_name: dict[str, list[DocumentInfo]] = {}
    for d in docs:
        by_name.setdefault(d.doc_name, []).append(d)
    claimed: dict[str, str] = {}  # doc_id -> the name of the file that holds its content
    meta = dict(metadata or {})

    def wants_meta(doc: DocumentInfo) -> None:
        if meta and dict(doc.metadata) != meta:
            plan.metadata_changes.append(doc.doc_id)

    # first the files whose content is stored under their own name: unchanged (or half-indexed)
    rest: list[SyncFile] = []
    for f in synced:
        doc = by_id.get(f.sha256[:16])
        if doc is not None and doc.doc_name == f.name and doc.doc_id not in claimed:
            claimed[doc.doc_id] = f.name
            complete = doc.pages_indexed >= doc.page_count
            plan.actions.append(SyncAction("unchanged" if complete else "resume", f.name, path=str(f.path),
                                           doc_id=doc.doc_id, pages=doc.page_count))
            if complete:
                wants_meta(doc)
        else:
            rest.append(f)
    fresh: list[SyncFile] = []
    for f in rest:  # then content the collection has under another name: renames (before any update claims)
        doc_id = f.sha256[:16]
        doc = by_id.get(doc_id)
        if doc_id in claimed:
            plan.actions.append(SyncAction("duplicate", f.name, path=str(f.path), doc_id=doc_id,
                                           note=f"same content as {claimed[doc_id]}"))
        elif doc is None:
            fresh.append(f)
        elif not in_scope(doc.doc_name) and _still_there(root, doc.doc_name, f.sha256):
            # another shard's file holds this content under its name: not ours to rename
            plan.actions.append(SyncAction("duplicate", f.name, path=str(f.path), doc_id=doc_id,
                                           note=f"same content as {doc.doc_name} (another shard's file)"))
        else:
            claimed[doc_id] = f.name
            complete = doc.pages_indexed >= doc.page_count
            plan.actions.append(SyncAction("rename" if complete else "resume", f.name, path=str(f.path),
                                           doc_id=doc_id, old_name=doc.doc_name, pages=doc.page_count))
            if complete:
                wants_meta(doc)
    for f in fresh:  # new content: an update when a document has its name, else an add
        doc_id = f.sha256[:16]
        if doc_id in claimed:  # two new files with the same content
            plan.actions.append(SyncAction("duplicate", f.name, path=str(f.path), doc_id=doc_id,
                                           note=f"same content as {claimed[doc_id]}"))
            continue
        claimed[doc_id] = f.name
        older = any(d.doc_id not in claimed for d in by_name.get(f.name, []))
        plan.actions.append(SyncAction("update" if older else "add", f.name, path=str(f.path), doc_id=doc_id))
    # the older versions an update or a resumed document replaces: deleted once the new one is complete
    for action in plan.actions:
        if action.kind in ("update", "resume"):
            older_docs = [d for d in by_name.get(action.name, []) if d.doc_id not in claimed]
            action.replaces = [d.doc_id for d in older_docs]
            action.inherited_meta = next((dict(d.metadata) for d in older_docs if d.metadata), {})
    replaced = {old for a in plan.actions for old in a.replaces}
    for d in sorted(docs, key=lambda d: (d.doc_name, d.doc_id)):
        if d.doc_id in claimed or d.doc_id in replaced or not in_scope(d.doc_name):
            continue
        if d.doc_name in failed_names:  # its file is there but unreadable now: keep it
            continue
        plan.actions.append(SyncAction("delete", d.doc_name, doc_id=d.doc_id, pages=d.pages_indexed))
    return plan


def _hash(item: InputItem, known: tuple[int, int, str] | None, checksum: bool) -> SyncFile | None:
    """The file's ``SyncFile``: from the ledger when its size and mtime match (and not ``checksum``), else
    read. None when it is gone; raises ``OSError`` when it cannot be read. A file that changes while
    being read is hashed again (its ledger row would otherwise pair the old hash with the new mtime)."""
    for _ in range(3):
        try:
            st = item.path.stat()
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{item.path} is not a regular file")
        if known is not None and not checksum and known[0] == st.st_size and known[1] == st.st_mtime_ns:
            return SyncFile(item.key, item.path, st.st_size, st.st_mtime_ns, known[2], hashed=False)
        try:
            sha = file_sha256(item.path)
            after = item.path.stat()
        except FileNotFoundError:
            return None
        if (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns):
            return SyncFile(item.key, item.path, st.st_size, st.st_mtime_ns, sha, hashed=True)
    raise OSError(f"{item.path} kept changing while it was read; run the sync again when it is written")


def _still_there(root: Path, name: str, sha: str) -> bool:
    """Whether ``root/name`` is a file with this content (a shard worker checking another shard's file)."""
    path = root / name
    try:
        return path.is_file() and file_sha256(path) == sha
    except OSError:
        return False


# ------------------------------------------------------------------------------------------------
def check_delete_share(plan: SyncPlan, max_share: float, yes: bool) -> None:
    """Raise ``SyncRefusedError`` when the plan deletes more than ``max_share`` of its scope, unless ``yes``."""
    deletes = len(plan.of("delete"))
    if yes or not deletes or plan.delete_share <= max_share:
        return
    scope = f"shard {plan.shard[0]}/{plan.shard[1]} of " if plan.shard else ""
    raise SyncRefusedError(
        f"refusing to sync: it would delete {deletes} of the {plan.documents_in_scope} documents of {scope}collection "
        f"'{plan.collection}' ({plan.delete_share:.0%}, over PAGELENS_SYNC_MAX_DELETE_SHARE={max_share:g}) because "
        f"their files are not under {plan.root} ({plan.files} files found there). Is it the right folder, and is "
        "it mounted? See the plan with --dry-run; if those deletions are meant, run again with --yes (REST: "
        '"yes": true)',
        collection=plan.collection, deletes=deletes, documents=plan.documents_in_scope, max_share=max_share,
    )


def execute_sync(
    service: PagelensService,
    plan: SyncPlan,
    *,
    metadata: dict[str, Any] | None = None,
    password: str | None = None,
    progress: ProgressCallback | None = None,
    workers: int | None = None,
) -> SyncReport:
    """Carry out ``plan`` (module docstring: renames, then adds/updates, then deletes). Never raises for
    a bad document (its error is in the report; the old version of a replaced file is kept). Events: the
    indexer's, ``sync_rename`` and ``sync_delete`` (done, total)."""
    started = time.perf_counter()
    notify = progress or (lambda event, info: None)
    settings = service.settings
    pause_at = settings.tuning.debug_pause_at
    report = SyncReport(plan=plan)
    collection = plan.collection
    meta = dict(metadata or {})
    identity = _store_identity(service)
    root_key = str(plan.root.resolve())

    ledger = FileLedger(settings.data_dir / LEDGER_FILE)
    try:
        ledger.put(identity, collection, root_key, plan.ledger_rows)
    finally:
        ledger.close()

    notify("sync_plan", {**plan.counts(), "to_index": sum(1 for a in plan.actions
                                                           if a.kind in ("add", "update", "resume"))})
    # 1. renames and metadata changes: payload only
    renames = plan.of("rename")
    payload_updates: dict[str, dict[str, Any]] = {a.doc_id: {"doc_name": a.name} for a in renames if a.doc_id}
    for doc_id in plan.metadata_changes:
        payload_updates.setdefault(doc_id, {})["meta"] = meta
    for done, (doc_id, values) in enumerate(sorted(payload_updates.items()), start=1):
        service.store.set_payload(collection, doc_id, values)  # type: ignore[attr-defined]
        notify("sync_rename", {"done": done, "total": len(payload_updates), "doc_id": doc_id})
    report.renamed = len(renames)
    if payload_updates:
        pause_point(pause_at, "sync_renamed")

    # 2. new content: adds, updates, half-indexed documents
    to_index = [a for a in plan.actions if a.kind in ("add", "update", "resume")]
    if to_index:
        # no --metadata: a replaced file's new version keeps the metadata of the old one
        inputs = [IndexInput(path=Path(a.path or a.name), name=a.name, metadata=meta or dict(a.inherited_meta),
                             password=password) for a in to_index]
        report.index = service.indexer.index(collection, inputs, progress=notify, workers=workers)
        pause_point(pause_at, "sync_indexed")
    results = {d.path: d for d in (report.index.documents if report.index else [])}
    produced = {d.doc_id for d in results.values() if d.doc_id}

    # 3. deletes: documents whose content is gone, and old versions whose replacement is complete
    doomed: list[tuple[str, str, bool]] = [(a.doc_id, a.name, False) for a in plan.of("delete") if a.doc_id]
    for action in plan.actions:
        if not action.replaces:
            continue
        result = results.get(action.path or "")
        if result is not None and result.status in COMPLETE:
            doomed += [(old, action.name, True) for old in action.replaces]
        else:
            report.kept.append(SyncAction(action.kind, action.name, path=action.path, replaces=list(action.replaces),
                                          note="the new version did not index completely; the previous one "
                                          "stays searchable until a sync indexes it"))
    registry_record = getattr(service.store, "document_record", None)
    for done, (doc_id, name, old_version) in enumerate(doomed, start=1):
        record = registry_record(collection, doc_id) if callable(registry_record) else None
        if doc_id in produced:  # the file went back to this content between the plan and now
            pass
        elif record is not None and record.doc_name != name:  # renamed meanwhile (another shard worker)
            log.info("not deleting %s: it is now named %s", doc_id, record.doc_name)
        else:
            try:
                report.pages_deleted += service.delete_document(collection, doc_id)
                (report.replaced if old_version else report.deleted).append(doc_id)
            except DocumentNotFoundError:
                pass  # gone already (a rerun after a kill)
            if done == 1:
                pause_point(pause_at, "sync_deleting")
        notify("sync_delete", {"done": done, "total": len(doomed), "doc_id": doc_id, "doc_name": name})
    if doomed:  # (cheap when current: the Edge store marks deleted pages in its caches as it deletes)
        service.indexer.repair_if_stale(collection, None, notify)

    # 4. the ledger forgets files that are gone
    names = {a.name for a in plan.actions if a.kind not in ("delete",)}
    ledger = FileLedger(settings.data_dir / LEDGER_FILE)
    try:
        ledger.prune(identity, collection, root_key, names, _scope(plan.shard))
    finally:
        ledger.close()
    report.seconds = time.perf_counter() - started
    return report


def sync_inputs(root: Path, include: Sequence[str], exclude: Sequence[str]) -> list[InputItem]:
    """The files of the folder ``root`` that a sync mirrors (``pagelens.ingest.manifest.collect_inputs``:
    recursive, sorted, hidden entries and symlinked folders skipped), each keyed by its path under it.
    Raises ``InvalidRequestError`` when ``root`` is not a folder."""
    from pagelens.ingest.manifest import collect_inputs

    root = Path(root).expanduser()
    if not root.is_dir():
        raise InvalidRequestError(
            f"--sync mirrors one folder: {root} is not a folder"
            + (" (it does not exist: is the drive mounted?)" if not root.exists() else ""), path=str(root))
    return collect_inputs([root], include, exclude, [])


def resolve_sync_root(roots: Sequence[Path], requested: str) -> Path:
    """The folder a REST caller may sync: ``requested`` (relative, e.g. ``invoices/2024``; or absolute) must
    resolve, symlinks followed, inside one of ``roots`` (``Settings.sync_roots``). Raises
    ``InvalidRequestError`` (400) for a path outside them and ``ApiError`` 403 when REST sync is off."""
    from pagelens.core.errors import ApiError

    if not roots:
        raise ApiError(403, "sync_disabled", "REST sync is off on this server: an administrator sets "
                       "PAGELENS_SYNC_ROOTS to the folders it may mirror")
    if "\x00" in requested:
        raise InvalidRequestError("path: contains a NUL byte")
    for base in roots:
        base_real = Path(os.path.realpath(Path(base).expanduser()))
        candidate = Path(requested)
        target = Path(os.path.realpath(candidate if candidate.is_absolute() else base_real / candidate))
        if target == base_real or base_real in target.parents:
            if not target.is_dir():
                raise InvalidRequestError(f"path: '{requested}' is not a folder under the sync roots", path=requested)
            return target
    raise InvalidRequestError(f"path: '{requested}' is outside the folders this server may sync (PAGELENS_SYNC_ROOTS); "
                              "give a folder under one of them", path=requested)
