"""The FastAPI application: only wiring (routers, error handlers, lifespan of the job worker).

``create_app(settings)`` builds the ``Pagelens`` service (or takes one), the job table under
``settings.data_dir/jobs.sqlite3`` and the index worker; the worker starts with the app (resuming
interrupted jobs) and stops with it. At start a background thread also rebuilds the search structures
of collections an interrupted run left stale (``pagelens.repair``); requests are served meanwhile.
OpenAPI at ``/docs`` and ``/openapi.json``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

import pagelens
from api.auth import ApiKeys
from api.deps import AppState
from api.errors import install_error_handlers
from api.routes import collections, documents, health, jobs, search
from pagelens.jobs import JobStore, JobWorker
from pagelens.repair import StartupRepair
from pagelens.service import Pagelens
from pagelens.settings import Settings

log = logging.getLogger(__name__)


def worker_lifespan(
    worker: JobWorker, service: Pagelens, owns_service: bool
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """App lifespan: start the index worker and the repair of stale search structures
    (``app.state.startup_repair``); on shutdown stop both, and close the service if we built it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker.start()
        repair = StartupRepair(service)
        app.state.startup_repair = repair
        repair.start()
        try:
            yield
        finally:
            await run_in_threadpool(repair.stop)
            await run_in_threadpool(worker.stop)
            if owns_service:
                await run_in_threadpool(service.close)

    return lifespan


def create_app(settings: Settings, service: Pagelens | None = None, *, web_ui: bool = True) -> FastAPI:
    """The REST API (``/v1``) and, with ``web_ui``, the Gradio UI at ``/ui`` on the same service."""
    owns_service = service is None
    service = service or Pagelens(settings)
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
    for module in (health, collections, documents, jobs, search):
        app.include_router(module.router)
    if web_ui:
        from ui.app import mount_ui  # the web UI at /ui, on the same service, jobs and keys

        mount_ui(app, settings, service, job_store, worker=worker, keys=keys)
    return app
