"""/v1/collections/{c}/sync: mirror a server-side folder into a collection (``pagelens.app.sync``).

The folder must lie under one of ``PAGELENS_SYNC_ROOTS`` (REST sync is off without them): a caller names
a folder relative to a root and never reaches a path outside the roots, symlinks included. The key needs
write access to the collection (a dry run too: the plan lists the folder's files). The sync runs in the
request (minutes for a large change); one at a time per collection, and not while upload jobs of the
collection are queued or running (409). Files that are links to files outside the roots are not read
(an error entry each). Answers name files by their path under the folder, never by server paths.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from pagelens.api.deps import Caller, CollectionName, State
from pagelens.api.schemas import ERRORS, SyncOut, SyncRequest
from pagelens.ingest import DEFAULT_INCLUDE

from pagelens.app.sync import resolve_sync_root, sync_inputs
from pagelens.core.errors import ApiError, CollectionNotFoundError

router = APIRouter(prefix="/v1/collections/{collection}", tags=["sync"], responses=ERRORS)

_busy: set[str] = set()
_busy_lock = threading.Lock()


@router.post("/sync", response_model=SyncOut)
def sync_collection(collection: CollectionName, body: SyncRequest, state: State, caller: Caller) -> dict[str, Any]:
    """Make the collection mirror a server-side folder: new and changed files indexed, moved ones renamed,
    documents whose files are gone deleted (refused past PAGELENS_SYNC_MAX_DELETE_SHARE unless
    ``yes``); ``dry_run`` returns the plan only."""
    caller.require_write(collection)
    root = resolve_sync_root(state.settings.sync_roots, body.path)
    service = state.service
    if service.store.get_manifest(collection) is None:
        raise CollectionNotFoundError(collection)
    active = state.jobs.active_for(collection)
    if active and not body.dry_run:
        raise ApiError(409, "collection_busy", f"collection '{collection}' has {len(active)} unfinished upload "
                       "job(s); sync when they are done", jobs=[j.id for j in active])
    with _busy_lock:
        if collection in _busy:
            raise ApiError(409, "sync_running", f"a sync of collection '{collection}' is already running")
        _busy.add(collection)
    try:
        files = sync_inputs(root, body.include or DEFAULT_INCLUDE, body.exclude or [])
        outside = [f for f in files if not _inside(f.path, root)]
        skip = {id(f) for f in outside}
        inside = [f for f in files if id(f) not in skip]
        report = service.sync(collection, root, inside, dry_run=body.dry_run, yes=body.yes, checksum=body.checksum)
    finally:
        with _busy_lock:
            _busy.discard(collection)
    out = public_report(report.to_dict(), body.path, root)
    out["errors"] += [{"file": f.key, "page": None, "code": "outside_sync_root",
                       "error": f"{f.key}: a link to a file outside the sync roots; not indexed (copy the file "
                       "into the folder instead)"} for f in outside]
    return out


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path``, links followed, is inside ``root`` (a file linked from outside is refused: whoever
    can write to a synced share must not make the server read other files)."""
    try:
        real = path.resolve(strict=True)
    except OSError:
        return True  # gone or unreadable: the plan reports it as it is
    return real == root or root in real.parents


def public_report(data: dict[str, Any], requested: str, root: Path) -> dict[str, Any]:
    """The sync report with server paths replaced by paths under the folder."""
    prefix = str(root) + "/"

    def local(text: Any) -> Any:
        return text.replace(prefix, "") if isinstance(text, str) else text

    out = {k: v for k, v in data.items() if k in SyncOut.model_fields}
    out["path"] = requested
    out["files_hashed"] = len(data["files_hashed"])
    out["actions"] = [{k: local(v) for k, v in a.items() if k != "path" and k != "replaces"} for a in data["actions"]]
    out["errors"] = [{k: local(v) for k, v in e.items()} for e in data["errors"]]
    return out
