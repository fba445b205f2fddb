"""/healthz (the process answers) and /readyz (store reachable, models present locally).

Both are open (probes carry no key). ``/readyz`` tells the reasons it is not ready (exception text,
data dir paths, the Qdrant URL) only to an admin key (every caller when no keys are configured: the
API is open then); anyone else gets the status alone."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pagelens.api.deps import AppState, State

router = APIRouter(tags=["health"])

MODELS_OK_TTL_S = 300.0
MODELS_FAIL_TTL_S = 15.0
MODEL_LOAD_FAIL_TTL_S = 60.0  # a failed model load keeps /readyz at 503 this long (then retried)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Answered on the event loop itself (no worker-thread hop: fewer GIL hand-offs while indexing runs)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready; `reasons` says why (admin key only)."}})
def readyz(state: State, request: Request) -> JSONResponse:
    """200 when the vector store answers and both models are on local disk (a directory or the Hugging
    Face cache); weights are not loaded here, and the model check is cached. ``reasons`` and ``worker``
    only for an admin key (or with no keys configured); otherwise ``{"status"}`` alone."""
    reasons: list[str] = []
    try:
        state.service.store.list_collections()
    except Exception as exc:  # any failure means not ready; the message is the reason
        reasons.append(f"store: {type(exc).__name__}: {exc}")
    outage = getattr(state.worker, "store_outage", None)  # the job worker waiting for the store
    if outage and not reasons:
        reasons.append(f"store: StoreUnavailableError: {outage} (queued jobs wait and resume)")
    reasons.extend(_model_reasons(state))
    worker_ok = state.worker.alive
    body: dict[str, Any] = {"status": "ok" if not reasons else "unavailable"}
    if _is_admin(state, request):
        body.update(reasons=reasons, worker="running" if worker_ok else "stopped")
    elif reasons:
        body["detail"] = "the reasons are shown to an admin API key (Authorization: Bearer KEY)"
    return JSONResponse(body, status_code=200 if not reasons else 503)


def _is_admin(state: AppState, request: Request) -> bool:
    """Whether the caller may see the reasons: an admin key, or any caller when no keys are set. A
    missing or wrong key is not an error here (probes send none): it only hides the reasons."""
    from pagelens.core.errors import ApiError

    try:
        return state.keys.authenticate(request.headers.get("authorization")).role == "admin"
    except ApiError:
        return False


def _model_reasons(state: AppState) -> list[str]:
    with state.readiness_lock:
        cached = state.readiness.get("models")
        if cached and time.monotonic() < cached[0]:
            return list(cached[1])
        settings = state.settings
        reasons = [r for r in (model_missing(settings.retriever_model, settings.retriever_revision),
                               model_missing(settings.answer_model, settings.answer_revision)) if r]
        failed = state.readiness.get("model_error")  # a load that failed on a request (api/errors.py)
        if failed and time.monotonic() - failed[0] < MODEL_LOAD_FAIL_TTL_S:
            reasons.append(f"model load failed: {failed[1]}")
        ttl = MODELS_OK_TTL_S if not reasons else MODELS_FAIL_TTL_S
        state.readiness["models"] = (time.monotonic() + ttl, reasons)
        return reasons


def model_missing(ref: str, revision: str | None) -> str | None:
    """None when ``ref`` (a directory or a hub id) is present locally, else the reason."""
    path = Path(ref).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
            return None
        return f"model directory {ref} has no config.json or adapter_config.json"
    if path.is_absolute() or ref.startswith("."):
        return f"model directory {ref} does not exist"
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return f"model {ref}: huggingface_hub is not installed"
    for filename in ("adapter_config.json", "config.json"):
        try:
            found = try_to_load_from_cache(ref, filename, revision=revision)
        except Exception:  # an invalid repo id
            found = None
        if isinstance(found, str):
            return None
    return f"model {ref} is not in the local Hugging Face cache (download it first)"
