"""Retries with exponential backoff for transient Qdrant server errors.

Transient: the server is unreachable or timed out (connection errors, gRPC UNAVAILABLE /
DEADLINE_EXCEEDED), or answered 429, 500, 502, 503 or 504 (overloaded, restarting, a shard moving in a
cluster). Everything else (bad request, 401/403, 404) fails at once.

A transient error may come after the server applied the request (the reply was lost), so every
retried call of the server store must end in the same state when sent twice:

* upserts carry deterministic point ids; deletes by filter and of a collection are no-ops the second time;
* ``create_collection`` (index/stores/server_store.py): a try that fails finds the collection existing with
  exactly this request's configuration (the manifest carries its creation time) and counts as done;
  with another configuration it is a clear ``CollectionExistsError`` naming the difference;
* alias changes (index/stores/aliases.py ``ServerAliases``): each try reads the aliases and sends only what is
  left to do, delete + create in one atomic ``update_collection_aliases``, so a retry after a lost reply
  finds the alias at its target.

Tested with a fault-injecting client (tests/reliability/test_faults.py ``LostReplies``).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


def is_connection_error(exc: BaseException) -> bool:
    """A failure to reach the Qdrant server (connection refused/reset, timeout, gRPC unavailable)."""
    from qdrant_client.http.exceptions import ResponseHandlingException

    if isinstance(exc, (ResponseHandlingException, ConnectionError, TimeoutError)):
        return True
    try:
        import httpx

        if isinstance(exc, httpx.TransportError):
            return True
    except ImportError:  # pragma: no cover
        pass
    try:
        import grpc

        if isinstance(exc, grpc.RpcError):
            code = exc.code() if hasattr(exc, "code") else None
            return code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    except ImportError:  # pragma: no cover
        pass
    return False


def is_transient(exc: BaseException) -> bool:
    from qdrant_client.http.exceptions import UnexpectedResponse

    if isinstance(exc, UnexpectedResponse):
        return exc.status_code in TRANSIENT_STATUS
    return is_connection_error(exc)


def backoff_delays(retries: int, base_s: float = 0.5, cap_s: float = 20.0, rng: random.Random | None = None) -> list[float]:
    """Delays before retry 1..retries: "full jitter" exponential backoff, uniform in [0, min(cap, base*2^i)]."""
    rng = rng or random.Random()
    return [rng.uniform(0, min(cap_s, base_s * 2**i)) for i in range(retries)]


def call_with_retries(
    fn: Callable[[], T],
    retries: int,
    transient: Callable[[BaseException], bool] = is_transient,
    sleep: Callable[[float], None] = time.sleep,
    base_s: float = 0.5,
    cap_s: float = 20.0,
) -> T:
    """``fn()``, retried up to ``retries`` times on transient errors; the last error is raised."""
    delays = backoff_delays(retries, base_s, cap_s)
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            if attempt >= retries or not transient(exc):
                raise
            delay = delays[attempt]
            attempt += 1
            log.warning("transient Qdrant error (%s: %s); retry %d/%d in %.1f s", type(exc).__name__, exc,
                        attempt, retries, delay)
            sleep(delay)
