"""The running application's state, shared by the REST API and the web UI: one service, one job table,
one index worker, one key table. Built once by ``pagelens.server.create_app`` (or the API/UI factories)
and kept on ``app.state.pagelens``."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pagelens.app.access import ApiKeys
from pagelens.app.jobs import JobStore, JobWorker
from pagelens.app.service import PagelensService
from pagelens.core.settings import Settings


@dataclass
class AppState:
    """Everything a request needs, built once and kept on ``app.state.pagelens``."""

    settings: Settings
    service: PagelensService
    jobs: JobStore
    worker: JobWorker
    keys: ApiKeys
    readiness: dict[str, Any] = field(default_factory=dict)  # cached model check
    readiness_lock: threading.Lock = field(default_factory=threading.Lock)
    started_at: float = field(default_factory=time.time)
