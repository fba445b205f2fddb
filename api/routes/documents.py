"""/v1/collections/{c}/documents: upload (-> 202 job), list, delete, page images, original files."""

from __future__ import annotations

import errno
import sqlite3
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import FileResponse, JSONResponse
from pagelens.api.deps import Caller, CollectionName, DocId, State
from pagelens.api.schemas import ERRORS, DocumentOut, JobOut
from pagelens.api.uploads import receive_upload, storage_error
from pagelens.index.stores.originals import MEDIA_TYPES
from pagelens.retrieve.highlight import draw_regions, parse_highlight
from starlette.concurrency import run_in_threadpool

from pagelens.app.jobs import JobFile
from pagelens.core.errors import ApiError, CollectionNotFoundError
from pagelens.core.types import PageFilter

router = APIRouter(prefix="/v1/collections/{collection}/documents", tags=["documents"], responses=ERRORS)

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                                  "description": "PDF, PNG, JPEG or TIFF files (type checked by content)."},
                        "metadata": {"type": "string",
                                     "description": "JSON object of scalar values stored with every document."},
                        "force": {"type": "boolean", "description": "Re-index documents already complete."},
                        "password": {"type": "string", "format": "password",
                                     "description": "Password for the encrypted PDFs of this upload. Kept in "
                                     "server memory only (never stored or returned): after a server restart "
                                     "before they are indexed, those PDFs fail and must be uploaded again."},
                    },
                }
            }
        },
    }
}


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut, openapi_extra=_UPLOAD_BODY)
async def upload_documents(collection: CollectionName, request: Request, state: State,
                           caller: Caller) -> JSONResponse:
    """Upload one or more files; they are written to disk and queued as one index job (202)."""
    caller.require_write(collection)
    if await run_in_threadpool(state.service.store.get_manifest, collection) is None:
        raise CollectionNotFoundError(collection)
    job_id = state.jobs.new_id()
    dest = state.jobs.upload_dir(job_id)
    form = await receive_upload(request, dest, state.settings)
    files = [JobFile(name=f.name, path=f.path, size=f.size, sha256=f.sha256) for f in form.files]
    try:
        job = await run_in_threadpool(state.jobs.create, job_id, collection, files, form.metadata, form.force,
                                      form.password)
    except sqlite3.OperationalError as exc:  # "database or disk is full", "database is locked"
        state.jobs.remove_uploads(job_id)
        if "full" in str(exc):
            raise storage_error(OSError(errno.ENOSPC, "database or disk is full")) from exc
        raise storage_error(OSError(errno.EIO, str(exc))) from exc
    except BaseException:
        state.jobs.remove_uploads(job_id)
        raise
    state.worker.notify()
    return JSONResponse(job.to_dict(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


DOCUMENTS_PAGE_DEFAULT = 100
DOCUMENTS_PAGE_MAX = 1000


@router.get("", response_model=list[DocumentOut])
def list_documents(
    collection: CollectionName, state: State, caller: Caller, request: Request, response: Response,
    limit: Annotated[int, Query(ge=1, le=DOCUMENTS_PAGE_MAX,
                                description="Documents per page (sorted by name, then id).")] = DOCUMENTS_PAGE_DEFAULT,
    offset: Annotated[int, Query(ge=0, description="Documents to skip in that order.")] = 0,
) -> list[dict[str, Any]]:
    """One page of the collection's documents with their page counts, sorted by name; ``status`` is
    complete, incomplete, or indexing (a job is indexing it now: it is not searchable until done).
    ``X-Total-Count`` is the number of documents; while more follow, a ``Link: <...>; rel="next"``
    header gives the next page's URL."""
    caller.require_read(collection)
    inflight = state.jobs.inflight_doc_ids(collection)
    docs = []
    for doc in state.service.documents(collection, offset=offset, limit=limit):
        data = doc.to_dict()
        if doc.doc_id in inflight:
            data["status"] = "indexing"
        docs.append(data)
    total = state.service.document_count(collection)
    response.headers["X-Total-Count"] = str(total)
    if offset + len(docs) < total:
        nxt = request.url.include_query_params(limit=limit, offset=offset + limit)
        response.headers["Link"] = f'<{nxt}>; rel="next"'
    return docs


@router.delete("/{doc_id}")
def delete_document(collection: CollectionName, doc_id: DocId, state: State, caller: Caller) -> dict[str, Any]:
    caller.require_write(collection)
    if doc_id in state.jobs.inflight_doc_ids(collection):
        raise ApiError(409, "document_busy", f"document '{doc_id}' is being indexed; cancel its job first",
                       collection=collection, doc_id=doc_id)
    pages = state.service.delete_document(collection, doc_id)
    return {"collection": collection, "doc_id": doc_id, "pages_deleted": pages}


@router.get(
    "/{doc_id}/pages/{page_no}.png",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}, "description": "The page image (PNG)."}},
    name="page_image",
)
def page_image(
    collection: CollectionName, doc_id: DocId, page_no: int, state: State, caller: Caller,
    highlight: Annotated[str | None, Query(
        max_length=2000, description="Regions to draw on the page (server-side, for clients without a canvas): "
        "'t:x0,y0,x1,y1;v:x0,y0,x1,y1' with t = text region (amber), v = visual region (blue), coordinates "
        "fractions of the page (0..1, origin top-left), at most 32 boxes. Search results and citations "
        "carry this URL ready made as highlight_url.")] = None,
) -> Response:
    """The stored page image as rendered for the retriever (with ``highlight``: the regions drawn on it)."""
    caller.require_read(collection)
    if page_no < 1:
        raise ApiError(404, "page_not_found", f"page {page_no} does not exist; pages start at 1")
    service = state.service
    if service.store.get_manifest(collection) is None:
        raise CollectionNotFoundError(collection)
    payload: dict[str, Any] | None = None
    page = PageFilter(doc_ids=[doc_id], page_nos=[page_no])  # one point by filter, not the whole document
    for _, candidate in service.store.iter_payloads(collection, page, keys=("page_no", "image_path", "sha256")):
        payload = candidate
        break
    if payload is None and not service.store.count(collection, PageFilter(doc_ids=[doc_id])):
        raise ApiError(404, "document_not_found", f"document '{doc_id}' is not in collection '{collection}'",
                       collection=collection, doc_id=doc_id)
    if payload is None:
        raise ApiError(404, "page_not_found", f"document '{doc_id}' has no page {page_no}",
                       collection=collection, doc_id=doc_id, page_no=page_no)
    # relative to this server's page-image root (PAGELENS_PAGE_IMAGES_DIR), or a legacy absolute path
    path = service.images.resolve(payload)
    if path is None or not service.images.allowed(path) or not path.is_file():
        raise ApiError(404, "page_image_missing", f"the image of page {page_no} is not in this server's page-image "
                       "root: index the document again, or set PAGELENS_PAGE_IMAGES_DIR to the folder the "
                       "indexing host wrote its page images to", collection=collection, doc_id=doc_id, page_no=page_no)
    path = path.resolve()
    if highlight is not None:
        regions = parse_highlight(highlight)  # InvalidRequestError -> 400 naming the bad box
        return Response(highlighted_png(path, regions), media_type="image/png",
                        headers={"Cache-Control": "private, max-age=3600"})
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.get(
    "/{doc_id}/original",
    response_class=FileResponse,
    responses={200: {"content": {media: {} for media in MEDIA_TYPES},
                     "description": "The document's original file, as indexed (its media type by content: "
                     "application/pdf, image/png, ...; Content-Disposition: attachment with the document's "
                     "name)."}},
    name="document_original",
)
def document_original(collection: CollectionName, doc_id: DocId, state: State, caller: Caller) -> Response:
    """Download the file a document was indexed from (kept by the server: ``PAGELENS_KEEP_ORIGINALS``).
    404 ``original_not_kept`` for a document indexed before originals were kept or with the setting off:
    index the file again to keep it."""
    caller.require_read(collection)
    original = state.service.original(collection, doc_id)
    return original_response(original)


def original_response(original: Any) -> FileResponse:
    """The download of a kept original (``PagelensService.original``): an attachment named as the
    document (RFC 6266 ``filename*`` for non-ASCII names), never rendered inline by the browser."""
    return FileResponse(original.path, media_type=original.media_type, filename=original.filename,
                        content_disposition_type="attachment",
                        headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff",
                                 "Content-Security-Policy": "sandbox"})


def highlighted_png(path: Any, regions: list[dict[str, Any]]) -> bytes:
    """PNG bytes of the page image at ``path`` with ``regions`` drawn (``pagelens.retrieve.highlight``)."""
    import io

    from PIL import Image

    with Image.open(path) as opened:
        drawn = draw_regions(opened, regions)
    buffer = io.BytesIO()
    drawn.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()
