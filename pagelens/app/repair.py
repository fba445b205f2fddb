"""Self-repair of stale search structures when a server starts (``pagelens.index.stores.search_status``).

``StartupRepair`` runs ``PagelensService.optimize(force=False)`` over every collection in a background
thread, so the server answers requests at once: a collection left stale by an interrupted run
(SIGKILL during the closing optimize of ``pagelens index``, or between a Qdrant upsert and the
rerank-cache append) is rebuilt while searches go on over the slower fallback. On Qdrant Edge, the
HNSW part of a rebuild holds the Python GIL while it runs (Edge's optimizers): requests wait for that
part. A store that is unavailable at start (a Qdrant server down, the embedded store locked by
another process) is retried with a backoff until it answers or the server stops.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from pagelens.app.jobs import indexing_nice
from pagelens.core.cpu_priority import lower_thread_priority
from pagelens.core.errors import StoreUnavailableError

if TYPE_CHECKING:
    from pagelens.app.service import PagelensService
    from pagelens.index.stores.search_status import RepairResult

log = logging.getLogger(__name__)


class StartupRepair:
    """One background thread repairing every stale collection of ``service`` once (see the module
    docstring). ``retry_base_s`` / ``retry_max_s``: backoff while the store is unavailable."""

    def __init__(self, service: PagelensService, retry_base_s: float = 2.0, retry_max_s: float = 60.0) -> None:
        self.service = service
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.results: list[RepairResult] = []
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pagelens-repair", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop between collections (a rebuild under way finishes first, up to ``timeout``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        lower_thread_priority(indexing_nice(self.service))  # searches first while it rebuilds (cpu_priority.py)
        delay = self.retry_base_s
        try:
            while not self._stop.is_set():
                try:
                    self.results = self.service.optimize(force=False, stop=self._stop)
                    break
                except StoreUnavailableError as exc:
                    log.warning("search structures not checked at start, the store is unavailable (retry in "
                                "%.0f s): %s", delay, exc.message)
                    self._stop.wait(delay)
                    delay = min(self.retry_max_s, 2 * delay)
            for result in self.results:
                if result.ran:
                    log.warning("search structures of collection '%s' were stale (%s): rebuilt at start in %.1f s: "
                                "%s", result.collection, "; ".join(result.before.stale) or "-", result.seconds,
                                "; ".join(result.rebuilt) or "nothing")
        except Exception:  # never take the server down
            log.exception("repairing search structures at start failed; run `pagelens optimize`")
        finally:
            self.done.set()
