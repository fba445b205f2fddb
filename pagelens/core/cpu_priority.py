"""Background work below searches in the CPU scheduler: a thread's own nice value.

On Linux the nice value belongs to each thread (setpriority(2), NPTL), and threads and processes a thread
starts later inherit it: torch's OpenMP team of a thread that embeds pages, the pipeline's writer thread,
the sandboxed parser processes. So lowering the server's job worker and repair threads once, at their
start, puts every page they embed, render and write behind the searches whenever both want a core, while
an idle machine still gives indexing all of it (nice only weighs contended cores). Measured in
``bench/search_during_embedding.py`` (bench/README.md).
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

_warned = False


def lower_thread_priority(by: int) -> int | None:
    """Add ``by`` (>= 0) to the calling thread's nice value, capped at 19: the thread, and whatever it
    starts from now on, yields contended cores to the process' other threads. It cannot be undone without
    privileges, so call it only in a thread of its own. Returns the thread's new nice value; None when
    ``by`` is 0 or the platform has no per-thread priority (said once, with what to do)."""
    global _warned
    if by <= 0:
        return None
    try:
        tid = threading.get_native_id()
        now = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, now + int(by)))
        return os.getpriority(os.PRIO_PROCESS, tid)
    except (AttributeError, OSError) as exc:
        if not _warned:
            _warned = True
            log.warning("indexing runs at the searches' CPU priority here (%s): searches slow down while a job "
                        "embeds pages; give indexing its own machine or cores (taskset) if that matters", exc)
        return None
