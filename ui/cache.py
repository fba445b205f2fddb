"""The web UI's files: one private cache folder per server, and the limits of Gradio's upload endpoint.

Gradio keeps uploads and the files it serves (``/gradio_api/file=``) in its cache, by default the shared
``$TMPDIR/gradio`` with the umask's permissions, never cleaned. Here each mounted UI gets its own folder
(``private_cache_dir``): a ``0700`` directory made by ``mkdtemp`` inside ``GRADIO_TEMP_DIR`` (when that is
unset, a ``0700`` ``pagelens-gradio-*`` temp folder is made and set as it for this process, removed at
exit). ``pagelens.ui.app.mount_ui`` points the Gradio app's uploads and every component's cache there, copies the
shown page images there too, cleans it with Gradio's ``delete_cache`` (``PAGELENS_UI_CACHE_MAX_AGE_S``) and
removes it when the server shuts down.

``UploadLimits`` (ASGI middleware of the Gradio app) holds ``POST .../gradio_api/upload`` to the API's
upload limits: at most ``max_upload_bytes`` (+ form overhead) per request and ``max_files_per_request``
files, counted while the body streams in (Gradio's own parser only caps each file, at
``max_file_size``, and 1000 files); past a limit the parser stops and deletes what it wrote, and the
client gets 413. While the cache already holds more than ``ui_cache_max_bytes`` of uploads, new uploads
get 507.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from starlette.formparsers import MultiPartException

from pagelens.app.uploads import MAX_FORM_OVERHEAD, error_body

log = logging.getLogger(__name__)

PAGES_DIR = "pages"  # page copies for the gallery, inside the cache folder
UPLOAD_PATH = "/gradio_api/upload"


def private_cache_dir() -> Path:
    """A new ``0700`` folder for one UI, inside Gradio's upload folder (see the module docstring)."""
    root = os.environ.get("GRADIO_TEMP_DIR")
    if not root:
        root = tempfile.mkdtemp(prefix="pagelens-gradio-")
        os.environ["GRADIO_TEMP_DIR"] = root
        atexit.register(shutil.rmtree, root, True)
    Path(root).mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="ui-", dir=root)).resolve()
    os.chmod(path, 0o700)
    return path


def remove_cache_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def uploads_bytes(cache: Path) -> int:
    """Bytes of the files in ``cache`` outside the page copies (uploads not yet queued, answer images)."""
    total = 0
    for root, dirs, files in os.walk(cache):
        if Path(root) == cache and PAGES_DIR in dirs:
            dirs.remove(PAGES_DIR)
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


class UploadLimits:
    """ASGI middleware for the Gradio app: the API's per-request limits on ``POST .../gradio_api/upload``."""

    def __init__(self, app: Any, *, max_bytes: int, max_files: int, cache: Path, cache_max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.cache = cache
        self.cache_max_bytes = cache_max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].rstrip("/").endswith(UPLOAD_PATH):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        limit = self.max_bytes + MAX_FORM_OVERHEAD
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _reply(send, 413, "payload_too_large", f"the upload is over {self.max_bytes} bytes "
                         f"(PAGELENS_MAX_UPLOAD_BYTES); split it")
            return
        if uploads_bytes(self.cache) > self.cache_max_bytes:
            log.warning("ui: upload refused, the UI cache holds more than %d bytes", self.cache_max_bytes)
            await _reply(send, 507, "insufficient_storage", "the server holds too many pending uploads; "
                         "try again later (files are kept at most PAGELENS_UI_CACHE_MAX_AGE_S)")
            return
        await self.app(scope, _Counter(receive, headers.get("content-type", ""), limit, self.max_bytes,
                                       self.max_files), send)


FILE_ROUTE = "/gradio_api/file="


class PageAccess:
    """ASGI middleware for the Gradio app: a page copy in the cache (``<cache>/pages/...``, served by
    Gradio's ``/gradio_api/file=`` route) is served only to a principal that may read one of the
    collections it was shown from (``UIContext.page_collections``), never only because its name is
    unguessable; 403 otherwise, and for a copy this UI did not make. ``principal`` resolves the caller of a
    request (``UIAuth.principal``); other files and routes pass through."""

    def __init__(self, app: Any, *, ctx: Any, principal: Any) -> None:
        self.app = app
        self.ctx = ctx
        self.principal = principal

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        at = path.find(FILE_ROUTE)
        if at < 0 or self.ctx.cache_dir is None:
            await self.app(scope, receive, send)
            return
        from urllib.parse import unquote

        from starlette.requests import HTTPConnection

        try:
            target = Path(unquote(path[at + len(FILE_ROUTE):])).resolve()
        except (OSError, ValueError):
            target = None
        pages = self.ctx.image_cache.resolve()
        if target is not None and target.is_relative_to(pages):
            who = self.principal(HTTPConnection(scope))
            owners = self.ctx.page_collections(str(target))
            # no credential at all: the mounted app's own check answers (401, the sign-in page)
            if who is not None and not any(who.can_read(c) for c in owners):
                await _reply(send, 403, "forbidden", "this page belongs to a collection this API key may not read")
                return
        await self.app(scope, receive, send)


class _Counter:
    """The ``receive`` of one upload: counts body bytes and multipart delimiters as they stream in and
    raises Gradio's ``MultiPartException`` past a limit (its parser then deletes its files and answers)."""

    def __init__(self, receive: Any, content_type: str, limit: int, max_bytes: int, max_files: int) -> None:
        self.receive = receive
        self.limit = limit
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.seen = 0
        self.delimiters = 0
        self.tail = b""
        boundary = ""
        for part in content_type.split(";"):
            name, _, value = part.strip().partition("=")
            if name.lower() == "boundary":
                boundary = value.strip().strip('"')
        self.delimiter = ("--" + boundary).encode("latin-1") if boundary else b""

    async def __call__(self) -> dict[str, Any]:
        message = await self.receive()
        if message.get("type") != "http.request":
            return message
        chunk = message.get("body", b"")
        self.seen += len(chunk)
        if self.seen > self.limit:
            # "maximum allowed size" makes Gradio's upload route answer 413
            raise MultiPartException(f"The upload exceeded the maximum allowed size of {self.max_bytes} bytes "
                                     "(PAGELENS_MAX_UPLOAD_BYTES); split it.")
        if self.delimiter:
            data = self.tail + chunk
            self.delimiters += data.count(self.delimiter)
            self.tail = data[-(len(self.delimiter) - 1):] if len(self.delimiter) > 1 else b""
            # n files take n opening delimiters; the closing one comes last
            if self.delimiters > self.max_files + 1:
                raise MultiPartException(f"Too many files: the maximum allowed size of one upload is "
                                         f"{self.max_files} files (PAGELENS_MAX_FILES_PER_REQUEST); split it.")
        return message


async def _reply(send: Any, status: int, code: str, message: str) -> None:
    body = json.dumps(error_body(code, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
