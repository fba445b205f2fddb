"""/v1/collections: create (bound to the configured retriever model), list, info, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from pagelens.api.deps import Caller, CollectionName, State
from pagelens.api.schemas import ERRORS, CollectionCreate, CollectionOut

from pagelens.core.errors import ApiError

router = APIRouter(prefix="/v1/collections", tags=["collections"], responses=ERRORS)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CollectionOut)
def create_collection(body: CollectionCreate, state: State, caller: Caller) -> dict[str, Any]:
    """Create an empty collection; its retriever model is the one configured now, for good."""
    caller.require_write(body.name)
    return state.service.create_collection(body.name).to_dict()


@router.get("", response_model=list[CollectionOut])
def list_collections(state: State, caller: Caller) -> list[dict[str, Any]]:
    """The collections this key may read, with their sizes and models."""
    readable = caller.readable()
    names = [n for n in state.service.store.list_collections() if readable is None or n in readable]
    return [state.service.collection_info(n).to_dict() for n in names]


@router.get("/{collection}", response_model=CollectionOut)
def get_collection(collection: CollectionName, state: State, caller: Caller) -> dict[str, Any]:
    caller.require_read(collection)
    return state.service.collection_info(collection).to_dict()


@router.delete("/{collection}")
def delete_collection(collection: CollectionName, state: State, caller: Caller) -> dict[str, Any]:
    """Delete a collection and its points. Refused (409) while one of its jobs is queued or running."""
    caller.require_write(collection)
    active = state.jobs.active_for(collection)
    if active:
        raise ApiError(409, "collection_busy", f"collection '{collection}' has {len(active)} unfinished "
                       "job(s); cancel them first", jobs=[j.id for j in active])
    state.service.delete_collection(collection)
    return {"collection": collection, "deleted": True}
