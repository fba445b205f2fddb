"""The whole server of ``pagelens serve``: the REST API at ``/v1``, the web UI at ``/ui`` and the MCP
endpoint at ``/mcp`` on one app, one service, one job table, one index worker and one key table.

This module sits above the entry points (``pagelens.api``, ``pagelens.ui`` and ``pagelens.mcp`` never import
each other).
"""

from __future__ import annotations

from fastapi import FastAPI

from pagelens.api.main import create_api
from pagelens.app.request_guard import guard
from pagelens.app.service import PagelensService
from pagelens.core.settings import Settings
from pagelens.mcp.server import mount_mcp


def create_app(settings: Settings, service: PagelensService | None = None, *, web_ui: bool = True,
               bind: str | None = None) -> FastAPI:
    """The REST API, the MCP endpoint at ``/mcp`` and, with ``web_ui``, the Gradio UI at ``/ui``, sharing
    one service, job table and key table; all of it behind the Origin and Host checks
    (``pagelens.app.request_guard``) for a server bound to ``bind`` (None: loopback names only)."""
    app = create_api(settings, service)
    mount_mcp(app, app.state.pagelens)
    if web_ui:
        from pagelens.ui.app import mount_ui  # gradio is imported only when the UI is served

        state = app.state.pagelens
        mount_ui(app, settings, state.service, state.jobs, worker=state.worker, keys=state.keys)
    guard(app, bind=bind, allowed_hosts=[*settings.allowed_hosts, *settings.mcp_allowed_hosts],
          trusted_origins=settings.cors_origins)
    return app
