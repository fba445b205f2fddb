"""/v1/jobs: index jobs created by uploads: status with progress, list, cancel."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pagelens.api.deps import COLLECTION_PATTERN, Caller, JobId, State
from pagelens.api.schemas import ERRORS, JobOut

from pagelens.app.access import Principal
from pagelens.app.jobs import Job
from pagelens.core.errors import ApiError

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERRORS)


def _visible_job(state: State, caller: Principal, job_id: str) -> Job:
    job = state.jobs.get(job_id)
    if job is None or not caller.can_read(job.collection):  # a scoped key cannot probe other jobs
        raise ApiError(404, "job_not_found", f"job '{job_id}' does not exist", job_id=job_id)
    return job


@router.get("", response_model=list[JobOut])
def list_jobs(
    state: State,
    caller: Caller,
    collection: Annotated[str | None, Query(pattern=COLLECTION_PATTERN, max_length=64)] = None,
    status: Literal["queued", "running", "done", "failed", "cancelled"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Newest first, only jobs of collections this key may read."""
    if collection is not None:
        caller.require_read(collection)
    return [j.to_dict() for j in state.jobs.list_jobs(collection=collection, status=status,
                                                 collections=caller.readable(), limit=limit)]


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: JobId, state: State, caller: Caller) -> dict[str, Any]:
    """Status, pages done / total and per-file results and errors."""
    return _visible_job(state, caller, job_id).to_dict()


@router.post("/{job_id}/cancel", response_model=JobOut, status_code=202)
def cancel_job(job_id: JobId, state: State, caller: Caller) -> dict[str, Any]:
    """Cancel a queued job at once, or a running one at its next page (a document cut short is removed
    again). Cancelling a finished job is a no-op that returns it."""
    job = _visible_job(state, caller, job_id)
    caller.require_write(job.collection)
    updated = state.jobs.request_cancel(job_id)
    assert updated is not None
    return updated.to_dict()
