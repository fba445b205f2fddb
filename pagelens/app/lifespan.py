"""The server's lifespan: the index worker runs while the app (REST API, web UI or both) serves."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from pagelens.app.jobs import JobWorker
from pagelens.app.repair import StartupRepair
from pagelens.app.service import PagelensService


def worker_lifespan(
    worker: JobWorker, service: PagelensService, owns_service: bool
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
