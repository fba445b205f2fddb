"""The FastAPI application: only wiring (routers, error handlers, lifespan of the job worker).

``create_api(settings)`` builds the ``PagelensService`` service (or takes one), the job table under
``settings.data_dir/jobs.sqlite3`` and the index worker; the worker starts with the app (resuming
interrupted jobs) and stops with it. At start a background thread also rebuilds the search structures
of collections an interrupted run left stale (``pagelens.app.repair``); requests are served meanwhile.
OpenAPI at ``/docs`` and ``/openapi.json``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from pagelens.api.errors import install_error_handlers
from pagelens.api.routes import collections, documents, health, jobs, search, sync

import pagelens
from pagelens.app.access import ApiKeys
from pagelens.app.jobs import JobStore, JobWorker
from pagelens.app.lifespan import worker_lifespan
from pagelens.app.service import PagelensService
from pagelens.app.state import AppState
from pagelens.core.settings import Settings

log = logging.getLogger(__name__)


def create_api(settings: Settings, service: PagelensService | None = None) -> FastAPI:
    """The REST API (``/v1``) on one service; ``pagelens.server.create_app`` adds the web UI."""
    owns_service = service is None
    service = service or PagelensService(settings)
    keys = ApiKeys(settings.api_keys.get_secret_value() if settings.api_keys else None)
    job_store = JobStore(settings.data_dir)
    worker = JobWorker(job_store, service, keep_uploads=settings.job_keep_uploads)
    state = AppState(settings=settings, service=service, jobs=job_store, worker=worker, keys=keys)

    lifespan = worker_lifespan(worker, service, owns_service)

    app = FastAPI(
        title="pagelens",
        version=pagelens.__version__,
        description="Index PDFs and page images, find pages by late interaction, answer with citations.",
        lifespan=lifespan,
    )
    app.state.pagelens = state
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_credentials=False,
                           allow_methods=["GET", "POST", "DELETE"], allow_headers=["Authorization", "Content-Type"])
    for module in (health, collections, documents, jobs, search, sync):
        app.include_router(module.router)
    return app
