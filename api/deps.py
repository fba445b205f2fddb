"""Dependencies shared by the routers, declared once: app state, the service, the caller, names."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import ApiKeys, Principal
from pagelens.jobs import JobStore, JobWorker
from pagelens.service import Pagelens
from pagelens.settings import Settings

COLLECTION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
DOC_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
JOB_ID_PATTERN = r"^[a-f0-9]{32}$"


@dataclass
class AppState:
    """Everything a request needs, built once by ``create_app`` and kept on ``app.state.pagelens``."""

    settings: Settings
    service: Pagelens
    jobs: JobStore
    worker: JobWorker
    keys: ApiKeys
    readiness: dict[str, Any] = field(default_factory=dict)  # cached model check
    readiness_lock: threading.Lock = field(default_factory=threading.Lock)
    started_at: float = field(default_factory=time.time)


def get_state(request: Request) -> AppState:
    return request.app.state.pagelens


State = Annotated[AppState, Depends(get_state)]

_bearer = HTTPBearer(auto_error=False, description="An API key from PAGELENS_API_KEYS.")


def get_principal(
    request: Request,
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The authenticated caller (401 on a missing or wrong key; open when no keys are configured)."""
    return state.keys.authenticate(request.headers.get("authorization"))


Caller = Annotated[Principal, Depends(get_principal)]

CollectionName = Annotated[
    str, Path(pattern=COLLECTION_PATTERN, max_length=64, description="Collection name.")
]
DocId = Annotated[str, Path(pattern=DOC_ID_PATTERN, max_length=128, description="Document id.")]
JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="Job id (32 hex characters).")]
