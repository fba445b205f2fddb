"""The pagelens MCP server on the official ``mcp`` SDK: over stdio (``pagelens mcp``) and as the
streamable-HTTP endpoint ``/mcp`` of ``pagelens serve`` (``mount_mcp``).

Keys and scopes are the REST API's (``pagelens.app.access``):

- HTTP: every request to ``/mcp`` carries ``Authorization: Bearer KEY``. With ``PAGELENS_API_KEYS`` set, a
  request without a valid key is answered 401 before any MCP message is read (no key, no tools); each tool
  call is then checked against that key's role and collections. Without keys the endpoint is open, like
  the REST API, and answers only requests for a loopback ``Host`` (DNS-rebinding protection;
  ``PAGELENS_MCP_ALLOWED_HOSTS`` adds names).
- stdio: the process acts with one key, ``PAGELENS_MCP_KEY``; with keys configured and no valid key it
  does not start (``pagelens.mcp.keys.stdio_principal`` raises ``McpKeyError``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
from mcp.server.lowlevel.server import Server
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import CallToolRequestParams, CallToolResult, ListToolsResult, PaginatedRequestParams
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

import pagelens
from pagelens.app.access import ApiKeys, Principal
from pagelens.app.service import PagelensService
from pagelens.app.state import AppState
from pagelens.core.errors import ApiError
from pagelens.mcp.tools import PagelensTools

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "pagelens searches collections of documents (PDFs, scans, page images) page by page. Start with "
    "list_collections; search_pages returns the best pages with their images for you to read; ask answers "
    "with pagelens' own small model and cites pages; get_page reads one page (image and text)."
)
LOOPBACK_HOSTS = ["127.0.0.1", "127.0.0.1:*", "localhost", "localhost:*", "[::1]", "[::1]:*"]

PrincipalOf = Callable[[Any], Principal]
"""Maps a request context (``mcp.server.context.ServerRequestContext``) to the caller."""


def build_server(tools: PagelensTools, principal_of: PrincipalOf) -> Server[Any]:
    """The MCP server (low-level SDK ``Server``): ``tools/list`` answers the tools the caller may use,
    ``tools/call`` runs one in a worker thread."""

    async def list_tools(ctx: Any, params: PaginatedRequestParams | None) -> ListToolsResult:
        return ListToolsResult(tools=tools.list_tools(principal_of(ctx)))

    async def call_tool(ctx: Any, params: CallToolRequestParams) -> CallToolResult:
        principal = principal_of(ctx)
        return await anyio.to_thread.run_sync(tools.call, principal, params.name, params.arguments)

    return Server(
        "pagelens", version=pagelens.__version__, title="pagelens",
        description="Search documents page by page and read the pages (images and text).",
        instructions=INSTRUCTIONS, on_list_tools=list_tools, on_call_tool=call_tool,
    )


# -- stdio ------------------------------------------------------------------------------------------
async def serve_stdio(service: PagelensService, principal: Principal) -> None:
    """Serve MCP over this process's stdin/stdout until the client closes it."""
    tools = PagelensTools(service, local_files=True)
    server = build_server(tools, lambda ctx: principal)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


# -- streamable HTTP --------------------------------------------------------------------------------
def _http_principal(keys: ApiKeys) -> PrincipalOf:
    def principal_of(ctx: Any) -> Principal:
        request = getattr(ctx, "request", None)
        headers = getattr(request, "headers", None)
        if headers is None:  # not an HTTP message: refuse (fail closed)
            raise PermissionError("no HTTP request behind this MCP message")
        return keys.authenticate(headers.get("authorization"))

    return principal_of


class McpEndpoint:
    """The ASGI app at ``/mcp``: a missing or wrong key is answered 401 (``WWW-Authenticate`` as on the
    REST API, a JSON-RPC error body naming what is wrong) before the SDK's session manager sees it."""

    def __init__(self, state: AppState) -> None:
        self.keys = state.keys
        tools = PagelensTools(state.service, state=state, local_files=False)
        self.server = build_server(tools, _http_principal(state.keys))
        settings = state.settings
        security = None
        if not self.keys.enabled:
            # the app-wide check (pagelens.app.request_guard) comes first; names it accepts are accepted here too
            extra = [*settings.mcp_allowed_hosts, *(h for h in settings.allowed_hosts if h != "*")]
            security = TransportSecuritySettings(
                enable_dns_rebinding_protection=True,
                allowed_hosts=[*LOOPBACK_HOSTS, *extra],
                allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*",
                                 *(f"http://{h}" for h in extra), *(f"https://{h}" for h in extra)],
            )
        self._security = security
        self.sessions = self.new_sessions()

    def new_sessions(self) -> StreamableHTTPSessionManager:
        """A fresh session manager (the SDK runs each one once: one per start of the app's lifespan).
        Stateless: no session state between requests, each one authenticated on its own."""
        return StreamableHTTPSessionManager(self.server, stateless=True, json_response=True,
                                            security_settings=self._security)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.keys.enabled:
            try:
                self.keys.authenticate(Request(scope).headers.get("authorization"))
            except ApiError as exc:
                await _refusal(exc)(scope, receive, send)
                return
        await self.sessions.handle_request(scope, receive, send)


AUTH_ERROR = -32001  # JSON-RPC "server error" range: the request carried no valid API key


def _refusal(exc: ApiError) -> JSONResponse:
    """A refused request: HTTP 401 with ``WWW-Authenticate``, the body a JSON-RPC error whose message the
    MCP clients show (the SDK's client surfaces it instead of a bare status)."""
    body = {"jsonrpc": "2.0", "id": None,
            "error": {"code": AUTH_ERROR, "message": exc.message,
                      "data": {"http_status": exc.http_status, "reason": exc.code}}}
    return JSONResponse(body, status_code=exc.http_status, headers=getattr(exc, "headers", None))


def mount_mcp(app: Any, state: AppState) -> McpEndpoint:
    """Serve MCP at ``/mcp`` on ``app`` (FastAPI/Starlette) with ``state``'s service and keys; the SDK's
    session manager runs inside the app's lifespan, around the existing one."""
    endpoint = McpEndpoint(state)
    app.add_route("/mcp", endpoint, methods=["GET", "POST", "DELETE"], include_in_schema=False)
    inner: Callable[[Any], AbstractAsyncContextManager[Any]] = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        endpoint.sessions = endpoint.new_sessions()  # a restarted app (tests, reloads) gets a new one
        async with inner(a) as value, endpoint.sessions.run():
            yield value

    app.router.lifespan_context = lifespan
    return endpoint
