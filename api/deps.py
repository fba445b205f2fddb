"""Dependencies shared by the routers, declared once: app state, the service, the caller, names."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pagelens.app.access import Principal
from pagelens.app.state import AppState
from pagelens.core.types import COLLECTION_PATTERN

DOC_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
JOB_ID_PATTERN = r"^[a-f0-9]{32}$"


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
