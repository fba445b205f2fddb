"""Sign-in for the web UI when ``PAGELENS_API_KEYS`` is set: the same keys and scopes as the REST API.

Every request under the UI mount needs a credential, resolved by ``UIAuth.principal``:

- ``Authorization: Bearer KEY`` (scripts, ``gradio_client``), checked by ``pagelens.app.access.ApiKeys`` like the API;
- or the browser session cookie ``pagelens_ui`` set by ``POST <ui>/sign-in``: an opaque random id (32 bytes,
  URL-safe) that names a server-side session holding the principal (never the key); the server keeps only
  its SHA-256. The cookie is ``HttpOnly``, ``SameSite=Strict``, ``Path=<ui>``, ``Secure`` when the request
  came over https, and lasts ``PAGELENS_UI_SESSION_HOURS``. Sessions live in the server's memory: a restart
  signs everyone out.

Wiring (``pagelens.ui.app.mount_ui``): the sign-in routes (``GET``/``POST <ui>/sign-in``, ``POST <ui>/sign-out``) are
routes of the parent app, registered before the Gradio mount, so they are the only paths under the mount
that answer without a credential. The Gradio app gets

- ``auth_dependency=UIAuth.gradio_user``: Gradio's own hook; it names the principal (``key#N``), which Gradio
  puts in ``gr.Request.username`` for every event handler (``UIAuth.principal_of``), so the handlers check
  read/write per collection with the key that made the request;
- ``app_kwargs={"dependencies": [Depends(UIAuth.require)], ...}``: the same check as a FastAPI dependency of
  every route of the Gradio app. Gradio's hook alone protects only the routes that declare its
  ``login_check`` (page, config, info, upload, file=, queue/join, queue/data...): in gradio 6.31, 41 of the
  80 method/path pairs of a minimal Blocks answer without it (``/gradio_api/heartbeat/*`` held open,
  ``/startup-events`` runs, ``/cancel``, ``/reset``, ``/stream/*`` parse their body, ``/user``, ``/token``,
  ``/app_id``, ``/theme.css``, ``/manifest.json``, ``/assets/*``, ``/login``...; tests/test_ui_auth.py walks every
  route of the mounted app). ``require`` also refuses a key that may write nowhere (``r`` keys) on the
  endpoint that stores files (``/gradio_api/upload``), and everyone on ``/gradio_api/process_recording``
  (screen recordings, unused here, written to Gradio's shared temp folder): 403.

A browser without a credential gets 401 with the sign-in page as the body (for a GET that accepts HTML),
anything else 401 with the API's JSON error body.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import logging
import secrets
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from pagelens.app.access import OPEN, ApiKeys, Principal
from pagelens.app.uploads import error_body
from pagelens.core.errors import PagelensError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from pagelens.core.settings import Settings

log = logging.getLogger(__name__)

COOKIE = "pagelens_ui"
MAX_SESSIONS = 10_000  # oldest dropped past this (a session is ~200 bytes)
MAX_FORM_BYTES = 8 * 1024  # the sign-in form: one key
FAILED_SIGN_IN_DELAY_S = 0.5  # slows down guessing a little
# Gradio endpoints that write files to the server: refused (403) to keys that may write no collection.
WRITE_ENDPOINTS = ("/gradio_api/upload",)
# Gradio endpoints this UI does not use that write files outside its cache: refused (403) to every key.
UNUSED_ENDPOINTS = ("/gradio_api/process_recording",)
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="pagelens"'}


class UIAuthError(Exception):
    """A refused request under the UI mount (401 or 403); rendered by ``UIAuth.error_response``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class UISessions:
    """Signed-in browsers: SHA-256 of the cookie value -> (principal, expiry as ``time.time()``)."""

    def __init__(self, ttl_s: float, max_sessions: int = MAX_SESSIONS) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._items: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _digest(sid: str) -> str:
        return hashlib.sha256(sid.encode("utf-8", "surrogateescape")).hexdigest()

    def create(self, principal: Principal) -> str:
        """A new session for ``principal``; returns the cookie value (the server keeps only its hash)."""
        sid = secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            self._purge(now)
            while len(self._items) >= self.max_sessions:
                self._items.popitem(last=False)
            self._items[self._digest(sid)] = (principal, now + self.ttl_s)
        return sid

    def get(self, sid: str | None) -> Principal | None:
        if not sid or len(sid) > 128:
            return None
        key = self._digest(sid)
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item[1] <= time.time():
                del self._items[key]
                return None
            return item[0]

    def drop(self, sid: str | None) -> None:
        if sid:
            with self._lock:
                self._items.pop(self._digest(sid), None)

    def __len__(self) -> int:
        return len(self._items)

    def _purge(self, now: float) -> None:
        for key in [k for k, (_, exp) in self._items.items() if exp <= now]:
            del self._items[key]


class UIAuth:
    """Credential -> principal for everything under the UI mount at ``ui_path`` (see the module docstring).

    With no keys configured (``keys.enabled`` false) nothing is installed and every caller is ``OPEN``."""

    def __init__(self, keys: ApiKeys, settings: Settings, ui_path: str) -> None:
        self.keys = keys
        self.ui_path = "/" + ui_path.strip("/")
        self.sessions = UISessions(ttl_s=settings.ui_session_hours * 3600)

    @property
    def enabled(self) -> bool:
        return self.keys.enabled

    # -- resolving ----------------------------------------------------------------------------------

    def principal(self, conn: HTTPConnection) -> Principal | None:
        """The caller of this request: a valid Bearer key, else a live session cookie; None when neither
        (an Authorization header with a wrong key is None even when a cookie is valid)."""
        if not self.enabled:
            return OPEN
        header = conn.headers.get("authorization")
        if header:
            try:
                return self.keys.authenticate(header)
            except PagelensError:
                return None
        return self.sessions.get(conn.cookies.get(COOKIE))

    async def require(self, conn: HTTPConnection) -> None:
        """FastAPI dependency of every route of the mounted Gradio app: 401 without a valid credential,
        403 on the file-writing endpoints for a key that may write no collection."""
        if not self.enabled:
            return
        who = self.principal(conn)
        if who is None:
            raise UIAuthError(401, "unauthorized", "sign in first: this server needs an API key (the same keys "
                              f"as the REST API) at {self._root(conn)}/sign-in, or send "
                              "'Authorization: Bearer <key>'")
        path = conn.url.path.rstrip("/")
        if path.endswith(WRITE_ENDPOINTS) and who.role not in ("admin", "rw"):
            raise UIAuthError(403, "forbidden", "this API key is read-only: it may not upload files")
        if path.endswith(UNUSED_ENDPOINTS):
            raise UIAuthError(403, "forbidden", "this endpoint is not used by the pagelens UI")

    def gradio_user(self, request: Request) -> str | None:
        """Gradio's ``auth_dependency``: the principal's name (``key#N``), which Gradio hands to the event
        handlers as ``gr.Request.username``; None (Gradio answers 401) without a valid credential."""
        who = self.principal(request)
        return None if who is None else who.name

    def principal_of(self, request: Any) -> Principal | None:
        """The principal of a UI event (a ``gr.Request``): from the name Gradio took from ``gradio_user``
        when the event was sent. ``OPEN`` when no keys are configured."""
        if not self.enabled:
            return OPEN
        return self.keys.by_name(getattr(request, "username", None))

    # -- responses ----------------------------------------------------------------------------------

    def _root(self, conn: HTTPConnection) -> str:
        """The UI's URL path as the client sees it (parent ``root_path`` included, no trailing slash)."""
        root = conn.scope.get("root_path", "") or ""
        if root.rstrip("/").endswith(self.ui_path):  # inside the mounted app
            return root.rstrip("/")
        return root.rstrip("/") + self.ui_path

    def error_response(self, request: Request, exc: Exception) -> Response:
        """401/403 under the mount: the sign-in page for a browser GET of a page, else the JSON error."""
        assert isinstance(exc, UIAuthError)  # noqa: S101 - registered for this class only
        headers = CHALLENGE if exc.status == 401 else None
        accept = request.headers.get("accept", "")
        if exc.status == 401 and request.method in ("GET", "HEAD") and "text/html" in accept:
            return HTMLResponse(sign_in_page(self._root(request)), status_code=401, headers=headers)
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status, headers=headers)

    # -- the sign-in routes (on the parent app) -----------------------------------------------------

    def install(self, app: FastAPI) -> None:
        """Add ``GET``/``POST <ui>/sign-in`` and ``POST <ui>/sign-out`` to ``app``; call before mounting the
        UI so they take precedence over the mount. Nothing is added when no keys are configured."""
        if not self.enabled:
            return
        app.add_api_route(self.ui_path + "/sign-in", self.sign_in_form, methods=["GET", "HEAD"],
                          include_in_schema=False)
        app.add_api_route(self.ui_path + "/sign-in", self.sign_in, methods=["POST"], include_in_schema=False)
        app.add_api_route(self.ui_path + "/sign-out", self.sign_out, methods=["POST"], include_in_schema=False)

    async def sign_in_form(self, request: Request) -> Response:
        root = self._root(request)
        if self.sessions.get(request.cookies.get(COOKIE)) is not None:
            return RedirectResponse(root + "/", status_code=303)
        return HTMLResponse(sign_in_page(root))

    async def sign_in(self, request: Request) -> Response:
        """Check the form's ``key``; on success a new session and its cookie, then 303 to the UI."""
        root = self._root(request)
        if not _same_origin(request):
            return HTMLResponse(sign_in_page(root, "Sign-in refused: the form was sent from another site."),
                                status_code=403)
        body = await _read_limited(request, MAX_FORM_BYTES)
        if body is None:
            return HTMLResponse(sign_in_page(root, "The sign-in form is too large."), status_code=413)
        key = (parse_qs(body.decode("utf-8", "replace")).get("key") or [""])[0].strip()
        who: Principal | None = None
        if key:
            try:
                who = self.keys.authenticate(f"Bearer {key}")
            except PagelensError:
                who = None
        if who is None:
            await asyncio.sleep(FAILED_SIGN_IN_DELAY_S)
            log.info("ui: failed sign-in from %s", request.client.host if request.client else "?")
            return HTMLResponse(sign_in_page(root, "That key is not valid." if key else "Enter your API key."),
                                status_code=401, headers=CHALLENGE)
        old = request.cookies.get(COOKIE)
        self.sessions.drop(old)
        sid = self.sessions.create(who)
        log.info("ui: %s signed in", who.name)
        response = RedirectResponse(root + "/", status_code=303)
        response.set_cookie(COOKIE, sid, max_age=int(self.sessions.ttl_s), path=root, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    async def sign_out(self, request: Request) -> Response:
        """End this browser's session (the cookie is cleared too); 303 to the sign-in page."""
        root = self._root(request)
        if not _same_origin(request):
            return JSONResponse(error_body("forbidden", "sign-out refused: sent from another site"), status_code=403)
        self.sessions.drop(request.cookies.get(COOKIE))
        response = RedirectResponse(root + "/sign-in", status_code=303)
        response.delete_cookie(COOKIE, path=root, httponly=True, samesite="strict",
                               secure=request.url.scheme == "https")
        return response


def _same_origin(request: Request) -> bool:
    """False when the browser says the form came from another origin (login CSRF); True without Origin.
    ``X-Forwarded-Host`` counts too (a proxy that rewrites Host): a cross-site form cannot set it."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    netloc = urlsplit(origin).netloc.lower()
    hosts = {(request.headers.get(h) or "").split(",")[0].strip().lower() for h in ("host", "x-forwarded-host")}
    return bool(netloc) and netloc in hosts


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The request body, or None past ``limit`` bytes (stops reading there)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            return None
    return bytes(data)


SIGN_IN_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0; background: #f8fafc; color: #0f172a; }
main { max-width: 28rem; margin: 12vh auto 2rem; padding: 1.75rem; background: #fff; border: 1px solid #e2e8f0;
       border-radius: 12px; box-shadow: 0 1px 3px rgba(0,0,0,.06); }
h1 { margin: 0 0 .25rem; font-size: 1.5rem; } p { line-height: 1.45; } .note { font-size: .9rem; opacity: .8; }
label { display: block; font-weight: 600; margin: 1rem 0 .35rem; }
input[type=password] { width: 100%; box-sizing: border-box; padding: .6rem .7rem; font-size: 1rem;
       border: 1px solid #cbd5e1; border-radius: 8px; }
button { margin-top: .9rem; padding: .6rem 1.2rem; font-size: 1rem; font-weight: 600; color: #fff;
         background: #2563eb; border: 0; border-radius: 8px; cursor: pointer; }
.err { color: #b91c1c; font-weight: 600; margin: .75rem 0 0; }
code { font-size: .85rem; background: #f1f5f9; padding: 0 .25rem; border-radius: 4px; }
@media (prefers-color-scheme: dark) { body { background: #0f172a; color: #e2e8f0; }
  main { background: #1e293b; border-color: #334155; } input[type=password] { background: #0f172a; color: #e2e8f0;
  border-color: #475569; } code { background: #334155; } .err { color: #fca5a5; } }
"""


def sign_in_page(root: str, message: str = "") -> str:
    """The self-contained sign-in page (no script, no external asset): a form posting ``key`` to
    ``<root>/sign-in``."""
    err = f'<p class="err" id="pl-gate-msg" role="alert">{html.escape(message)}</p>' if message else (
        '<p class="err" id="pl-gate-msg" role="alert"></p>')
    action = html.escape(root + "/sign-in", quote=True)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>pagelens: sign in</title><style>{SIGN_IN_CSS}</style></head>
<body><main id="pl-gate">
<h1>pagelens</h1>
<p>This server needs an <b>API key</b>: the same keys as the REST API (<code>PAGELENS_API_KEYS</code>).
Ask the operator for one.</p>
<form method="post" action="{action}" autocomplete="off">
<label for="pl-key">API key</label>
<input type="password" id="pl-key" name="key" placeholder="your key" required autofocus
 autocomplete="current-password">
<button type="submit" id="pl-sign-in">Sign in</button>
</form>{err}
<p class="note">The key is checked once; your browser then keeps a session cookie for this site
(HTTP-only, never the key itself) until you sign out or it expires. Scripts can send
<code>Authorization: Bearer &lt;key&gt;</code> instead.</p>
</main></body></html>
"""
