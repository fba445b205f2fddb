"""The Gradio web UI: collections, uploads with live progress, questions with visible sources.

One server, one port: ``mount_ui(app, settings, service, jobs)`` mounts the UI at ``/ui`` on the FastAPI
app of ``pagelens.server.create_app`` and shares its ``PagelensService`` service, job table, worker and API keys, so an
upload from the UI is the same persistent job as one from the REST API (it survives restarts) and an
API key means the same thing in both. ``create_ui_app(settings)`` builds a server with only the UI (and
the index worker) for ``pagelens ui``.

Nothing here re-implements pipeline logic: collections, documents, search and answers go through
``PagelensService``; uploads become ``pagelens.app.jobs`` jobs; access checks use ``pagelens.app.access.Principal``; search hides
half-indexed documents with ``pagelens.app.visibility.search_visible`` like the API does.

Auth (``ui/auth.py``): when ``PAGELENS_API_KEYS`` is set every route under the mount needs a credential
(a Bearer key or the session cookie of ``<ui>/sign-in``), a browser without one gets the sign-in page;
each event handler takes its principal from the credential of the request that sent the event
(``gr.Request`` -> ``UIAuth.principal_of``) and checks it (read vs write per collection), and write
controls are hidden where the key may not write. Files (``ui/cache.py``): uploads and page copies live in a
private ``0700`` folder per server, cleaned by age and removed at shutdown.

The code: ``ui/state.py`` (the shared context and the ``UIShell`` each tab builder gets, access helpers),
``ui/render.py`` (HTML tables, captions, page copies, the similarity overlay, the stylesheet),
``ui/actions.py`` (uploads to jobs, cancel, retry with a password), ``ui/uploads_view.py`` (the uploads
table and its row actions), ``ui/status.py`` (the tables' status words), ``ui/first_run.py`` (create a
collection and upload, while there is none), ``ui/thread.py`` (the Ask tab's conversation: turns, their
answer text and sources, the "still indexing" note), ``ui/conversations.py`` (conversations kept on the
server, per key or browser), ``ui/viewer.py`` (the page viewer: any stored page, its text, its
download name), ``ui/tabs/`` (one builder per tab), ``ui/screen.py`` (the views that span tabs and the
wiring); this module builds the Blocks and mounts them (with the favicon, ``ui/static/favicon.png``).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
from pagelens.ui.actions import ACCEPTED_TYPES, enqueue_files
from pagelens.ui.auth import UIAuth, UIAuthError
from pagelens.ui.cache import PageAccess, UploadLimits, private_cache_dir, remove_cache_dir
from pagelens.ui.first_run import build_first_run
from pagelens.ui.render import (
    CSS,
    caption,
    collections_rows,
    docs_html,
    documents_rows,
    page_copy,
    progress_html,
    similarity_overlay,
    visible_collections,
)
from pagelens.ui.screen import SIGN_OUT_JS, Screen
from pagelens.ui.state import POLL_S, TIMER_S, UI_PATH, UIContext, UIError, UIShell, keys_of
from pagelens.ui.tabs.ask import (
    MODE_ANSWER,
    MODE_SEARCH,
    RETRIEVAL_CHOICES,
    RETRIEVAL_DEFAULT,
    build_ask_tab,
)
from pagelens.ui.tabs.ask_assets import ASK_CSS, VIEWER_JS
from pagelens.ui.tabs.collections import COLL_SELECT_JS, build_collections_tab
from pagelens.ui.tabs.documents import build_documents_tab
from pagelens.ui.uploads_view import ROW_ACTIONS_JS
from starlette.routing import Mount

from pagelens.app.access import ApiKeys
from pagelens.app.jobs import JobStore
from pagelens.core.settings import Settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fastapi import FastAPI

    from pagelens.app.jobs import JobWorker
    from pagelens.app.service import PagelensService

__all__ = [
    "ACCEPTED_TYPES", "CSS", "MODE_ANSWER", "MODE_SEARCH", "RETRIEVAL_CHOICES", "RETRIEVAL_DEFAULT", "SIGN_OUT_JS",
    "UI_PATH", "UIContext", "UIError", "build_ui", "caption", "collections_rows", "create_ui_app", "docs_html",
    "documents_rows", "enqueue_files", "mount_ui", "page_copy", "progress_html", "similarity_overlay",
    "visible_collections",
]

log = logging.getLogger(__name__)

# the UI's icon (package data: pyproject ``[tool.setuptools.package-data]``), served as <ui>/favicon.ico
FAVICON = Path(__file__).resolve().parent / "static" / "favicon.png"


def page_js(*scripts: str) -> str:
    """One page-load script that runs each of ``scripts`` (``() => {...}`` functions) in turn."""
    calls = " ".join(f"({script.strip()})();" for script in scripts)
    return f"() => {{ {calls} }}"


def build_ui(
    service: PagelensService,
    jobs: JobStore,
    settings: Settings,
    worker: JobWorker | None = None,
    keys: ApiKeys | None = None,
    auth: UIAuth | None = None,
    cache_dir: Path | None = None,
) -> gr.Blocks:
    """The UI over ``service`` and the job table ``jobs``. ``keys`` defaults to ``settings.api_keys``;
    ``auth`` (which resolves the principal of each event) to a ``UIAuth`` over them; ``cache_dir`` (the
    private folder for page copies) to a new one (``pagelens.ui.cache.private_cache_dir``) on first use."""
    keys = auth.keys if auth is not None else (keys or keys_of(settings))
    auth = auth or UIAuth(keys, settings, UI_PATH)
    ctx = UIContext(settings=settings, service=service, jobs=jobs, worker=worker, keys=keys, cache_dir=cache_dir)
    auth_on = keys.enabled
    # Gradio deletes the files it tracks (uploads, served outputs) older than this, this often
    max_age = settings.ui_cache_max_age_s

    with gr.Blocks(title="pagelens", fill_width=True, analytics_enabled=False,
                   delete_cache=(max_age, max_age)) as demo:
        session = gr.State({"jobs": [], "rejected": []})
        timer = gr.Timer(TIMER_S, active=False)
        poll = gr.Timer(POLL_S, active=True)

        with gr.Row(elem_classes="pl-header"):
            gr.HTML("<h1>pagelens</h1><p>Ask your documents; see the pages behind every answer.</p>",
                    padding=False)

        with gr.Column(elem_id="pl-main"):
            with gr.Row(elem_classes="pl-bar-row"):
                coll_dd = gr.Dropdown(label="Collection", choices=[], value=None, scale=4, min_width=180,
                                      elem_id="pl-collection", allow_custom_value=False)
                refresh_btn = gr.Button("↻ Refresh", scale=0, min_width=90, size="md", elem_id="pl-refresh",
                                        elem_classes="pl-btn")
                sign_out = gr.Button("Sign out", scale=0, min_width=90, size="md", visible=auth_on,
                                     elem_id="pl-sign-out", elem_classes="pl-btn")
            coll_summary = gr.Markdown("", elem_classes="pl-note", elem_id="pl-coll-summary")
            shell = UIShell(ctx=ctx, auth=auth, session=session, coll_dd=coll_dd, coll_summary=coll_summary,
                            timer=timer, poll=poll)

            first = build_first_run(shell)
            with gr.Column(elem_id="pl-tabs-wrap") as tabs_wrap, gr.Tabs(elem_id="pl-tabs") as tabs:
                ask = build_ask_tab(shell)
                docs = build_documents_tab(shell)
                colls = build_collections_tab(shell)

        Screen(shell=shell, ask=ask, docs=docs, colls=colls, refresh_btn=refresh_btn, sign_out=sign_out,
               first=first, tabs_wrap=tabs_wrap, tabs=tabs).wire(demo)
    # every component caches its files (uploads, gallery pages, the similarity image) in the private folder
    if ctx.cache_dir is not None:
        for block in [demo, *demo.blocks.values()]:
            block.GRADIO_CACHE = str(ctx.cache_dir)
    demo.pagelens_ctx = ctx  # type: ignore[attr-defined]  # for mount_ui's PageAccess
    return demo


# --------------------------------------------------------------------------------------------------
# Mounting and the standalone server
# --------------------------------------------------------------------------------------------------


def mount_ui(
    app: FastAPI,
    settings: Settings,
    service: PagelensService,
    jobs: JobStore | None = None,
    worker: JobWorker | None = None,
    keys: ApiKeys | None = None,
    path: str = UI_PATH,
) -> UIAuth:
    """Mount the UI at ``path`` on ``app``. Job table, worker and keys default to those ``create_app`` keeps
    on ``app.state.pagelens`` (so UI uploads are the API's jobs); keys last to ``settings.api_keys``.

    With keys, the sign-in routes go on ``app`` first and every route of the mounted Gradio app needs a
    credential (``ui/auth.py``). The UI's files live in a private cache folder, removed when ``app`` shuts
    down (``ui/cache.py``). Returns the ``UIAuth`` (its sessions, for tests)."""
    from fastapi import Depends
    from starlette.middleware import Middleware

    state = getattr(app.state, "pagelens", None)
    jobs = jobs or getattr(state, "jobs", None) or JobStore(
        settings.data_dir, retention_days=settings.job_retention_days, retention_max_jobs=settings.job_retention_max_jobs)
    worker = worker or getattr(state, "worker", None)
    keys = keys or getattr(state, "keys", None) or keys_of(settings)
    auth = UIAuth(keys, settings, path)
    cache = private_cache_dir()
    demo = build_ui(service, jobs, settings, worker=worker, auth=auth, cache_dir=cache)
    demo.queue(default_concurrency_limit=4)
    app_kwargs: dict[str, Any] = {
        "openapi_url": None,  # FastAPI's own schema route would take no dependency
        "middleware": [Middleware(UploadLimits, max_bytes=settings.max_upload_bytes,  # type: ignore[arg-type]
                                  max_files=settings.max_files_per_request, cache=cache,
                                  cache_max_bytes=settings.ui_cache_max_bytes),
                       Middleware(PageAccess, ctx=demo.pagelens_ctx, principal=auth.principal)],  # type: ignore[arg-type, attr-defined]
    }
    from pagelens.ui.originals import install_original_route

    install_original_route(app, auth, service)  # before the mount: <ui>/original/... (its own access check)
    if auth.enabled:
        auth.install(app)  # before the mount: the sign-in routes are the only ones without a credential
        app_kwargs["dependencies"] = [Depends(auth.require)]
        app_kwargs["exception_handlers"] = {UIAuthError: auth.error_response}
    gr.mount_gradio_app(
        app,
        demo,
        path=path,
        css=CSS + ASK_CSS,
        js=page_js(VIEWER_JS, ROW_ACTIONS_JS, COLL_SELECT_JS),
        footer_links=[],
        run_history=False,
        max_file_size=min(settings.max_file_bytes, settings.max_upload_bytes),
        ssr_mode=False,
        show_error=False,
        head=f'<link rel="icon" type="image/png" href="{path.rstrip("/")}/favicon.ico">',
        app_kwargs=app_kwargs,
        auth_dependency=auth.gradio_user if auth.enabled else None,
    )
    demo.favicon_path = str(FAVICON)  # type: ignore[assignment]  # served at <path>/favicon.ico (Gradio takes favicon_path only at "/")
    gradio_app = next(r.app for r in app.routes if isinstance(r, Mount) and r.path == path.rstrip("/"))
    gradio_app.uploaded_file_dir = str(cache)  # type: ignore[attr-defined]  # uploads land in the private folder

    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: FastAPI) -> AsyncIterator[Any]:
        try:
            async with inner(app_) as value:
                yield value
        finally:
            remove_cache_dir(cache)

    app.router.lifespan_context = lifespan  # type: ignore[assignment]
    log.info("ui: mounted at %s (%s), files in %s", path, "API keys" if auth.enabled else "open", cache)
    return auth


def create_ui_app(settings: Settings, service: PagelensService | None = None, *, bind: str | None = None) -> FastAPI:
    """A server with only the UI (at ``/ui``, ``/`` redirects there) and the index worker: ``pagelens ui``;
    behind the Origin and Host checks (``pagelens.app.request_guard``) for a server bound to ``bind``."""
    from fastapi import FastAPI
    from fastapi.responses import RedirectResponse

    from pagelens.app.jobs import JobWorker
    from pagelens.app.lifespan import worker_lifespan
    from pagelens.app.service import PagelensService

    owns_service = service is None
    service = service or PagelensService(settings)
    jobs = JobStore(settings.data_dir, retention_days=settings.job_retention_days,
                    retention_max_jobs=settings.job_retention_max_jobs)
    worker = JobWorker(jobs, service, keep_uploads=settings.job_keep_uploads)

    lifespan = worker_lifespan(worker, service, owns_service)

    app = FastAPI(title="pagelens UI", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(UI_PATH + "/")

    mount_ui(app, settings, service, jobs, worker=worker)
    from pagelens.app.request_guard import guard

    guard(app, bind=bind, allowed_hosts=[*settings.allowed_hosts, *settings.mcp_allowed_hosts],
          trusted_origins=settings.cors_origins)
    return app
