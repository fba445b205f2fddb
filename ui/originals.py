"""Downloading a document's original file from the web UI: ``GET <ui>/original/{collection}/{doc_id}``.

The Documents table links each document whose original the server keeps (``PAGELENS_KEEP_ORIGINALS``,
``pagelens.index.stores.originals``) to this route. It is checked like everything else under the UI: the
caller is the UI's signed-in browser (session cookie) or a Bearer key (``UIAuth.principal``); without one
401, with a key that may not read the collection 403 (the REST route's rule: ``Principal.require_read``),
then the file as an attachment named as the document (``PagelensService.original``; 404 with the reason and
the fix for a document whose original is not kept). The route goes on the parent app before the UI is
mounted (``install_original_route``), so it is matched before the Gradio app.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pagelens.ui.auth import UIAuth, UIAuthError
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from pagelens.app.uploads import error_body
from pagelens.core.errors import PagelensError
from pagelens.core.types import COLLECTION_PATTERN

if TYPE_CHECKING:
    from fastapi import FastAPI

    from pagelens.app.service import PagelensService

ROUTE = "/original/{collection}/{doc_id}"
_COLLECTION = re.compile(COLLECTION_PATTERN)
_DOC_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # the REST API's DocId


def original_href(collection: str, doc_id: str) -> str:
    """The Documents table's link to a document's original, relative to the UI page (``<ui>/``)."""
    from urllib.parse import quote

    return f"original/{quote(collection, safe='')}/{quote(doc_id, safe='')}"


def install_original_route(app: FastAPI, auth: UIAuth, service: PagelensService) -> None:
    """Add ``GET <ui>/original/{collection}/{doc_id}`` to ``app`` (call before mounting the UI)."""

    def original(request: Request, collection: str, doc_id: str) -> Response:
        who = auth.principal(request)
        if who is None:  # a browser gets the sign-in page (as everywhere under the UI), a script the JSON error
            return auth.error_response(request, UIAuthError(401, "unauthorized", "sign in first: downloads need "
                                                            "the same API key as the UI"))
        if not _COLLECTION.match(collection) or not _DOC_ID.match(doc_id):
            return JSONResponse(error_body("not_found", "no such collection or document"), status_code=404)
        if not who.can_read(collection):
            return JSONResponse(error_body("forbidden", f"this API key has no access to collection "
                                           f"'{collection}'"), status_code=403)
        try:
            found = service.original(collection, doc_id)
        except PagelensError as exc:
            return JSONResponse(error_body(exc.code, exc.message), status_code=exc.http_status)
        return FileResponse(found.path, media_type=found.media_type, filename=found.filename,
                            content_disposition_type="attachment",
                            headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff",
                                     "Content-Security-Policy": "sandbox"})

    app.add_api_route(auth.ui_path + ROUTE, original, methods=["GET", "HEAD"], include_in_schema=False)
