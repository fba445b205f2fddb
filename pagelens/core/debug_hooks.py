"""Debug hook for crash tests: stop a process at a named point so a test can kill it exactly there.

``Settings.tuning.debug_pause_at`` (``PAGELENS_TUNING__DEBUG_PAUSE_AT``) names one point; when a process reaches it,
it prints ``pagelens: paused at <point> (PAGELENS_TUNING__DEBUG_PAUSE_AT)`` to stderr and sleeps until it is
killed. Never set it in production: the process hangs there. Points:

* ``optimize``: in ``QdrantEdgeStore`` optimize/repair, after Edge's segment optimizers and flush,
  before the rerank cache is synced, the token index built and the collection marked optimized (a kill
  here is a kill during the closing optimize of ``pagelens index``);
* ``cache_append``: in ``QdrantEdgeStore.upsert``, after Qdrant took the points and before they are
  appended to the rerank cache;
* ``sync_renamed``, ``sync_indexed``, ``sync_deleting``: in ``pagelens.app.sync.execute_sync`` (``pagelens index
  --sync``), after the renames, after the new and changed files are indexed (before any delete), and after
  the first delete.
"""

from __future__ import annotations

import sys
import time

PAUSE_POINTS = ("optimize", "cache_append", "sync_renamed", "sync_indexed", "sync_deleting")


def pause_point(pause_at: str, point: str) -> None:
    """Sleep forever when ``pause_at`` names ``point`` (see the module docstring); else return at once."""
    if not pause_at or pause_at != point:
        return
    sys.stderr.write(f"pagelens: paused at {point} (PAGELENS_TUNING__DEBUG_PAUSE_AT)\n")
    sys.stderr.flush()
    while True:
        time.sleep(3600)
