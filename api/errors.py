"""Errors raised by the API layer itself and the one mapping of every error to a JSON body.

Every error answer is ``{"error": {"code": str, "message": str, "detail": object}}`` with the status of
the error (``PagelensError.http_status``); unexpected exceptions become a 500 with no internals.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pagelens.app.uploads import error_body
from pagelens.core.errors import ModelUnavailableError, PagelensError, StoreUnavailableError

log = logging.getLogger(__name__)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
    507: "insufficient_storage",
}

RETRY_AFTER_S = 5  # seconds a client should wait after a 503 for a store or model outage




def error_response(status: int, code: str, message: str, detail: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, detail), status_code=status, headers=headers)


async def _pagelens_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PagelensError)
    status = int(getattr(exc, "http_status", 500))
    headers = getattr(exc, "headers", None)
    if status >= 500:
        log.warning("%s %s -> %s: %s", request.method, request.url.path, status, exc.message)
    if isinstance(exc, (StoreUnavailableError, ModelUnavailableError)):
        headers = {**(headers or {}), "Retry-After": str(RETRY_AFTER_S)}
        _record_outage(request, exc)
    return error_response(status, exc.code, exc.message, _safe_detail(exc.detail), headers=headers)


def _record_outage(request: Request, exc: PagelensError) -> None:
    """Remember a model load failure so /readyz reports it (store outages are probed there directly)."""
    if not isinstance(exc, ModelUnavailableError):
        return
    state = getattr(request.app.state, "pagelens", None)
    if state is not None:
        import time

        with state.readiness_lock:
            state.readiness["model_error"] = (time.monotonic(), exc.message)
            state.readiness.pop("models", None)  # recompute the model check on the next /readyz


def _safe_detail(detail: dict[str, Any]) -> dict[str, Any]:
    try:
        return jsonable_encoder(detail, custom_encoder={Exception: str})
    except Exception:  # pragma: no cover - detail that cannot be encoded is dropped
        return {}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for err in exc.errors():
        errors.append({"loc": list(err.get("loc", ())), "type": err.get("type"), "msg": err.get("msg")})
    if any(e["type"] == "json_invalid" for e in errors):
        return error_response(400, "invalid_json", "the request body is not valid JSON", {"errors": errors})
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"] if p != "body") or "request"
    return error_response(422, "validation_error", f"{where}: {first['msg']}", {"errors": errors})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal server error; see the server log")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(PagelensError, _pagelens_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
