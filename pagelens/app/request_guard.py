"""Origin and Host checks for the whole server (REST ``/v1``, web UI ``/ui`` with Gradio's routes and file
URLs, MCP ``/mcp``, page images): one pure ASGI middleware, ``RequestGuard``, wrapped around every app
``pagelens serve`` and ``pagelens ui`` run.

- **Host** (every request, reads too: DNS rebinding). The ``Host`` header must name an allowed host:
  the loopback names (``127.0.0.1``, ``localhost``, ``::1``, any port), the address the server is bound to
  (with a wildcard bind, ``0.0.0.0`` or ``::``, this machine's host name and addresses) and the names in
  ``PAGELENS_ALLOWED_HOSTS`` (and ``PAGELENS_MCP_ALLOWED_HOSTS``, the earlier list for ``/mcp`` only) (``name`` matches any port, ``name:port`` that port only, ``*`` turns the
  check off: behind a proxy that checks it). Else 400 ``host_not_allowed``.
- **Origin** (state-changing requests: POST, PUT, PATCH, DELETE, and WebSocket handshakes). A browser
  request from another web page carries a foreign ``Origin`` (or ``Sec-Fetch-Site: cross-site`` /
  ``same-site``): 403 ``cross_origin_request``. Same origin means the ``Origin``'s host and port equal the
  request's ``Host``; origins listed in ``PAGELENS_CORS_ORIGINS`` are accepted too. Requests without
  ``Origin`` (curl, the SDKs, server-to-server) are not browser cross-site requests and pass.

CORS stays closed unless ``PAGELENS_CORS_ORIGINS`` is set (``pagelens.api.main``). The parsing functions
are pure (``host_allowed``, ``origin_allowed``) and fuzzed in ``tests/reliability/test_request_guard.py``.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pagelens.app.uploads import error_body

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::", "")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_NAME = re.compile(r"[a-z0-9._-]{1,253}")  # a DNS name (IDNA names arrive punycoded) or IPv4
MAX_HOST_CHARS = 300  # a longer Host header is refused unparsed (RFC 1035 names are at most 253)


@dataclass(frozen=True)
class HostPort:
    """A host name (lower case, IPv6 without brackets) and its port (None: not given)."""

    host: str
    port: int | None


def parse_host(value: str) -> HostPort | None:
    """``name``, ``name:port``, ``[v6]`` or ``[v6]:port`` -> ``HostPort``; None for anything malformed
    (empty, spaces or controls, a port that is not 1..65535, unbalanced brackets, too long)."""
    value = value.strip().lower()
    if not value or len(value) > MAX_HOST_CHARS or any(c.isspace() or ord(c) < 33 or ord(c) > 126 for c in value):
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
        if rest == "":
            return HostPort(host, None)
        if not rest.startswith(":"):
            return None
        port_text = rest[1:]
    elif value.count(":") > 1:  # a bare IPv6 address (as configured or bound, never in a Host header)
        try:
            return HostPort(str(ipaddress.IPv6Address(value)), None)
        except ValueError:
            return None
    else:
        host, colon, port_text = value.partition(":")
        if not _NAME.fullmatch(host):
            return None
        if not colon:
            return HostPort(host, None)
    if not port_text.isdigit() or not port_text.isascii() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
        return None
    return HostPort(host, int(port_text))


@dataclass(frozen=True)
class AllowedHosts:
    """The hosts a request may name: ``names`` with any port, ``exact`` with that port; ``any_host``
    turns the check off."""

    names: frozenset[str]
    exact: frozenset[HostPort]
    any_host: bool = False

    @classmethod
    def build(cls, bind: str | None, extra: Iterable[str]) -> AllowedHosts:
        """Loopback names, the bound address (its machine's names and addresses for a wildcard bind) and
        ``extra`` (``PAGELENS_ALLOWED_HOSTS``; ``*`` allows any)."""
        names = set(LOOPBACK_NAMES)
        exact: set[HostPort] = set()
        any_host = False
        for entry in extra:
            entry = entry.strip()
            if entry == "*":
                any_host = True
                continue
            parsed = parse_host(entry)
            if parsed is None:
                raise ValueError(f"PAGELENS_ALLOWED_HOSTS: {entry!r} is not a host name or host:port")
            (exact.add(parsed) if parsed.port is not None else names.add(parsed.host))
        if bind is not None:
            bound = bind.strip().strip("[]").lower()
            if bound in WILDCARD_BINDS:
                names.update(_this_machine())
            else:
                names.add(bound)
        return cls(frozenset(names), frozenset(exact), any_host)

    def allows(self, host: HostPort) -> bool:
        if self.any_host:
            return True
        return host.host in self.names or host in self.exact or _is_loopback_ip(host.host)


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _this_machine() -> set[str]:
    """This machine's host names and addresses (what clients reach a wildcard-bound server by)."""
    names: set[str] = set()
    for name in {socket.gethostname(), socket.getfqdn()}:
        if not name:
            continue
        names.add(name.lower())
        try:
            for info in socket.getaddrinfo(name, None):
                names.add(str(info[4][0]).split("%")[0].lower())
        except OSError:
            pass
    return names


def host_allowed(header: str | None, allowed: AllowedHosts) -> bool:
    """Whether a ``Host`` header names an allowed host (a missing or malformed one does not)."""
    if allowed.any_host:
        return True
    parsed = parse_host(header) if header is not None else None
    return parsed is not None and allowed.allows(parsed)


def _origin_key(origin: str) -> tuple[str, int] | None:
    """``scheme://host[:port]`` -> (host, port with the scheme's default); None when not such a URL."""
    if len(origin) > MAX_HOST_CHARS + 16:
        return None
    try:
        parts = urlsplit(origin)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/") or parts.query \
                or parts.username is not None or parts.password is not None:
            return None
        return parts.hostname.lower(), parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        return None


def origin_allowed(origin: str, host_header: str | None, scheme: str, trusted: Iterable[str]) -> bool:
    """Whether ``Origin`` is the request's own origin (same host and port as its ``Host``; the scheme is
    not compared, so a TLS-terminating proxy in front does not break it) or one of ``trusted``
    (``PAGELENS_CORS_ORIGINS``). ``null`` and malformed origins are foreign."""
    origin = origin.strip()
    if origin.rstrip("/") in {t.rstrip("/") for t in trusted}:
        return True
    key = _origin_key(origin)
    host = parse_host(host_header) if host_header is not None else None
    if key is None or host is None:
        return False
    request_port = host.port or DEFAULT_PORTS.get(scheme.lower(), 80)
    if key[0] != host.host:
        return False
    # a Host without a port came through the scheme's default port (or a proxy's): any default port
    return key[1] == request_port or (host.port is None and key[1] in (80, 443))


class RequestGuard:
    """ASGI middleware: refuses a foreign ``Host`` (400) on every request and a cross-site ``Origin`` (403)
    on state-changing requests and WebSocket handshakes, with the API's JSON error body."""

    def __init__(self, app: ASGIApp, *, allowed_hosts: AllowedHosts, trusted_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed = allowed_hosts
        self.trusted = tuple(trusted_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        host = headers.get("host")
        if not host_allowed(host, self.allowed):
            await self._refuse(scope, send, 400, "host_not_allowed",
                               f"this server does not answer for the host {host!r}; it answers for loopback names "
                               "and its bound address. A deployment reached by another name lists it in "
                               "PAGELENS_ALLOWED_HOSTS (host or host:port).", {"host": host})
            return
        checked = scope["type"] == "websocket" or scope.get("method", "GET").upper() in STATE_CHANGING
        if checked:
            origin = headers.get("origin")
            fetch_site = (headers.get("sec-fetch-site") or "").strip().lower()
            scheme = str(scope.get("scheme", "http"))
            if origin is not None:
                refused = not origin_allowed(origin, host, scheme, self.trusted)
            else:
                refused = fetch_site in ("cross-site", "same-site")
            if refused:
                await self._refuse(scope, send, 403, "cross_origin_request",
                                   f"refused a {scope.get('method', 'WebSocket')} from another web page (Origin "
                                   f"{origin!r}, Sec-Fetch-Site {fetch_site or None!r}): only this server's own "
                                   "pages, and clients that send no Origin (curl, SDKs), may change data. To allow "
                                   "a web app on another origin, list it in PAGELENS_CORS_ORIGINS.",
                                   {"origin": origin, "sec_fetch_site": fetch_site or None})
                return
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, send: Send, status: int, code: str, message: str,
                      detail: dict[str, Any]) -> None:
        log.warning("%s %s refused (%s): %s", scope.get("method", "WS"), scope.get("path"), status, code)
        body = json.dumps(error_body(code, message, detail)).encode()
        if scope["type"] == "websocket":  # close the handshake with an HTTP answer (ASGI denial response)
            if "websocket.http.response" in scope.get("extensions", {}):
                await send({"type": "websocket.http.response.start", "status": status,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "websocket.http.response.body", "body": body})
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _headers(scope: Scope) -> dict[str, str]:
    """The request headers that matter here (first value of each), latin-1 decoded."""
    out: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers") or ():
        name = raw_name.decode("latin-1").lower()
        if name in ("host", "origin", "sec-fetch-site") and name not in out:
            out[name] = raw_value.decode("latin-1")
    return out


def guard(app: Any, *, bind: str | None, allowed_hosts: Iterable[str], trusted_origins: Iterable[str]) -> None:
    """Wrap ``app`` (a Starlette/FastAPI app, before it starts) in ``RequestGuard``: it covers every route
    and mounted app (``/v1``, ``/ui``, ``/mcp``). ``bind``: the address served on (None: loopback only)."""
    allowed = AllowedHosts.build(bind, allowed_hosts)
    if allowed.any_host:
        log.warning("PAGELENS_ALLOWED_HOSTS contains '*': the Host check (DNS-rebinding protection) is off; "
                    "keep it only behind a proxy that checks the Host itself")
    app.add_middleware(RequestGuard, allowed_hosts=allowed, trusted_origins=list(trusted_origins))
