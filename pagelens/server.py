"""The whole server of ``pagelens serve``: the REST API at ``/v1`` and the web UI at ``/ui`` on one app,
one service, one job table, one index worker and one key table.

This module sits above both entry points (``pagelens.api`` and ``pagelens.ui`` never import each other).
"""

from __future__ import annotations

from fastapi import FastAPI

from pagelens.api.main import create_api
from pagelens.app.service import PagelensService
from pagelens.core.settings import Settings


def create_app(settings: Settings, service: PagelensService | None = None, *, web_ui: bool = True) -> FastAPI:
    """The REST API and, with ``web_ui``, the Gradio UI at ``/ui`` sharing its service, jobs and keys."""
    app = create_api(settings, service)
    if web_ui:
        from pagelens.ui.app import mount_ui  # gradio is imported only when the UI is served

        state = app.state.pagelens
        mount_ui(app, settings, state.service, state.jobs, worker=state.worker, keys=state.keys)
    return app
