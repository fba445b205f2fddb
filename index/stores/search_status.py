"""Whether a collection's fast-search structures are current, and their repair.

The fast two-stage search leans on structures built after the points are written: on Qdrant Edge the
int8 rerank cache and, for large collections, its token index, and, only where Qdrant's pooled prefetch
picks the candidates (no torch, or the cache out of step), the HNSW graphs of the pooled vectors
(``optimize``: Edge has no background optimizer, and its optimizer holds the GIL) (``pagelens.index.ann.fast_rerank``, ``pagelens.index.ann.token_index``); on a
Qdrant server the HNSW graphs its background optimizer builds. An interruption (SIGKILL during the
closing optimize, or between a Qdrant upsert and the rerank-cache append) can leave them missing or
out of step with the points. Searches stay correct then (they fall back to Qdrant's prefetch), but
are slower and, on large collections, of lower recall. So:

* ``VectorStore.search_status(collection)`` says, cheaply, whether they are current, and what is
  stale (``SearchStatus``);
* ``VectorStore.repair(collection, force=False)`` rebuilds what is stale (``force``: run the whole
  optimize anyway) and says what it rebuilt (``RepairResult``);
* a two-stage search of a stale collection logs one WARNING per collection and staleness
  (``StaleWarnings``), naming what is stale and the command that repairs it.

``pagelens index`` (every run), the API job worker (after each job), server start (a background
thread) and ``pagelens optimize`` repair stale collections.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

# codes of SearchStatus.codes (one per stale structure)
OPTIMIZE_PENDING = "optimize_pending"  # Edge: points written since the last complete optimize
RERANK_CACHE = "rerank_cache"  # Edge: the int8 cache does not hold exactly the live point ids
TOKEN_INDEX = "token_index"  # Edge: token index missing, behind the cache, or due for retraining
DEDUP_INDEX = "dedup_index"  # Edge: the dedup index is due (to build, or behind the cache)
SKETCH_INDEX = "sketch_index"  # Edge: the sketch index is due (to build, or behind the cache)
SELF_CHECK = "self_check"  # Edge: the search plan was never measured, or the collection moved since
SERVER_OPTIMIZING = "server_optimizing"  # server: status yellow (HNSW being built)
SERVER_PENDING = "server_optimize_pending"  # server: status grey (optimizations pending, not running)
SERVER_ERROR = "server_optimizer_error"  # server: status red / optimizer error


def repair_command(collection: str) -> str:
    """The command that repairs ``collection`` (named in warnings and the API)."""
    return f"pagelens optimize --collection {collection}"


@dataclass(frozen=True)
class SearchStatus:
    """Whether ``collection``'s search structures are current.

    ``stale``: one human-readable reason per stale structure (empty when current); ``codes``: the
    matching machine codes (``OPTIMIZE_PENDING``, ``RERANK_CACHE``...); ``points``: the number of
    points (pages) when it was checked."""

    collection: str
    current: bool
    stale: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()
    points: int = 0
    # the measured search plan (index/ann/self_check.py SearchPlan): a report, not part of the status' identity
    self_check: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    # Edge: pages were written since Edge's segment optimizer last ran. Not a staleness while the int8
    # cache picks the candidates (searches do not read what it builds); ``pagelens optimize`` runs it
    segments_pending: bool = field(default=False, compare=False, hash=False)

    @classmethod
    def of(cls, collection: str, reasons: Iterable[tuple[str, str]], points: int = 0,
           segments_pending: bool = False) -> SearchStatus:
        """From (code, reason) pairs: current when there are none."""
        pairs = list(reasons)
        return cls(collection=collection, current=not pairs, stale=tuple(r for _, r in pairs),
                   codes=tuple(c for c, _ in pairs), points=points, segments_pending=segments_pending)

    def to_dict(self) -> dict[str, Any]:
        """``{"current": bool, "stale": [reason, ...], "self_check": {...}, "segments_pending": bool}``
        (the API's ``search_structures``; ``self_check`` only where the store measures its recall)."""
        data: dict[str, Any] = {"current": self.current, "stale": list(self.stale)}
        if self.self_check is not None:
            data["self_check"] = self.self_check
        if self.segments_pending:
            data["segments_pending"] = True
        return data


@dataclass
class RepairResult:
    """What ``VectorStore.repair`` did to ``collection``: ``rebuilt`` lists what it rebuilt (human
    readable; empty when nothing needed it), ``before`` / ``after`` the statuses around it,
    ``seconds`` its wall time."""

    collection: str
    before: SearchStatus
    after: SearchStatus
    rebuilt: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ran(self) -> bool:
        """Whether a repair ran (the collection was stale, or ``force``)."""
        return bool(self.rebuilt) or not self.before.current or self.before != self.after

    def to_dict(self) -> dict[str, Any]:
        return {"collection": self.collection, "rebuilt": list(self.rebuilt),
                "before": self.before.to_dict(), "after": self.after.to_dict(),
                "seconds": round(self.seconds, 3)}


class IdDigest:
    """A set of point ids (UUID strings) with an order-independent digest: (count, XOR of the ids'
    128-bit values). Equal sets have equal digests; different sets of UUIDs (random-looking 128-bit
    values: uuid5/uuid4) almost surely do not. Kept up to date by ``add`` / ``discard``, so two id
    sets are compared in O(1)."""

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._ids: set[int] = set()
        self._xor = 0
        self.add(ids)

    def add(self, ids: Iterable[str]) -> None:
        for pid in ids:
            value = uuid.UUID(str(pid)).int
            if value not in self._ids:
                self._ids.add(value)
                self._xor ^= value

    def discard(self, ids: Iterable[str]) -> None:
        for pid in ids:
            value = uuid.UUID(str(pid)).int
            if value in self._ids:
                self._ids.remove(value)
                self._xor ^= value

    def digest(self) -> tuple[int, int]:
        return len(self._ids), self._xor

    def ints(self) -> set[int]:
        return self._ids

    def __len__(self) -> int:
        return len(self._ids)


def stale_consequence(codes: Sequence[str], int8_first_stage: bool) -> str:
    """What a search of a collection stale for ``codes`` does meanwhile, for the warning. With the int8
    first stage (the Edge store's fast rerank) only a rerank cache out of step changes which pages are
    considered (Qdrant's pooled prefetch then picks them); the other kinds leave every page scored by
    the int8 scan. Without it (the server, or no fast rerank) the pooled prefetch picks them anyway."""
    if int8_first_stage and RERANK_CACHE not in codes:
        return "Searches still consider every page (the int8 scan) and stay right; they may be slower"
    return "Searches stay correct but use the slower fallback (lower recall on large collections)"


class StaleWarnings:
    """Logs one WARNING per collection and staleness: again only when a new kind of staleness appears
    (a code not warned about yet), and again after the collection was seen current. Thread-safe."""

    def __init__(self, log: logging.Logger | None = None, int8_first_stage: bool = False) -> None:
        self._log = log or logger
        self.int8_first_stage = int8_first_stage  # the consequence the warning states (stale_consequence)
        self._warned: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()

    def seen(self, status: SearchStatus) -> bool:
        """Record ``status``; returns whether a warning was logged now."""
        with self._lock:
            if status.current:
                self._warned.pop(status.collection, None)
                return False
            codes = frozenset(status.codes)
            if codes <= self._warned.get(status.collection, frozenset()):
                return False
            self._warned[status.collection] = self._warned.get(status.collection, frozenset()) | codes
        self._log.warning(
            "search structures of collection '%s' are stale: %s. %s until repaired: run `%s` (a running "
            "`pagelens serve` repairs it at its next start and after its next indexing job)",
            status.collection, "; ".join(status.stale), stale_consequence(status.codes, self.int8_first_stage),
            repair_command(status.collection),
        )
        return True

    def forget(self, collection: str) -> None:
        with self._lock:
            self._warned.pop(collection, None)
