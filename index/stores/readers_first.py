"""Searches before writes, within one process: a writer steps aside while searches run.

Qdrant Edge and the conversion of vectors to Python lists hold the GIL for the whole of each call (about
19 ms per 1139-token page here: the lists, Edge's ``Point``, its write), and a search hands the GIL back
and forth many times (every torch kernel call releases and retakes it), so a search that runs beside a
busy writer waits for one writer call at every hand-off: 7-9x its idle time in
``bench/search_during_ingest.py``. ``ReadersFirst`` makes the writer wait, before each page, until no
search is running, at most ``max_wait_s`` (so an endless stream of searches slows indexing but never
stops it), and a search then waits for at most the one page write in flight.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

DEFAULT_MAX_WAIT_S = 0.25  # the longest a writer waits for searches to finish, per page


class ReadersFirst:
    """Counts the searches in flight; a writer's ``turn().wait()`` waits until there are none (bounded).
    Thread-safe."""

    def __init__(self, max_wait_s: float = DEFAULT_MAX_WAIT_S) -> None:
        self.max_wait_s = max(0.0, float(max_wait_s))
        self._cond = threading.Condition()
        self._readers = 0
        self.waited_s = 0.0  # writers' total wait (seconds), for benches and tests
        self.turns = 0  # writer waits made (``WriterTurn.wait`` calls)
        self.forced = 0  # write steps that went on at the bound with searches still running

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Around one search."""
        with self._cond:
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @property
    def readers(self) -> int:
        """Searches in flight now."""
        return self._readers

    def turn(self, max_wait_s: float | None = None) -> WriterTurn:
        """A budget of ``max_wait_s`` (default: the gate's) shared by the pages of one write
        (``WriterTurn.wait`` before each)."""
        return WriterTurn(self, max_wait_s)


class WriterTurn:
    """One write's wait budget: ``wait`` before each page of the write; together they wait at most the
    gate's ``max_wait_s``, after which the write goes on while searches run."""

    def __init__(self, gate: ReadersFirst, max_wait_s: float | None = None) -> None:
        self.gate = gate
        self.deadline = time.perf_counter() + (gate.max_wait_s if max_wait_s is None else max(0.0, max_wait_s))
        self.counted = False

    def wait(self) -> None:
        gate = self.gate
        started = time.perf_counter()
        with gate._cond:
            while gate._readers:
                left = self.deadline - time.perf_counter()
                if left <= 0:
                    if not self.counted:
                        gate.forced += 1
                        self.counted = True
                    break
                gate._cond.wait(left)
            gate.turns += 1
            gate.waited_s += time.perf_counter() - started
