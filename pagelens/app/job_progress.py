"""How far an index job is and how long it will take: the phase of a job and of each of its documents,
pages per second and the time left, from the timestamps the worker records on each document row
(``started_s``: the document was opened, ``first_page_s`` / ``last_page_s``: its first and latest page was
written, seconds since the epoch). Rows written before these fields existed have none: no rate, no ETA.

Phases: ``queued`` (not started), ``indexing`` (pages being embedded and written), ``finishing`` (every page
is written; the closing build of the search index, the HNSW graphs and the rerank cache, is running),
``None`` once the document or the job is finished (its status says how).
"""

from __future__ import annotations

from typing import Any

PHASES = ("queued", "indexing", "finishing")


def pages_per_second(done: int, first_s: float | None, last_s: float | None) -> float | None:
    """Pages per second between the first and the latest written page (``done`` pages in all); None
    until two pages are written (one page says nothing about the rate) or without timestamps."""
    if first_s is None or last_s is None or done < 2:
        return None
    span = float(last_s) - float(first_s)
    if span <= 0:
        return None
    return (done - 1) / span


def eta_seconds(done: int, total: int | None, rate: float | None) -> float | None:
    """Seconds left for ``total - done`` pages at ``rate`` pages/s; 0 when all pages are done; None when
    the total or the rate is not known yet."""
    if not total:
        return None
    left = max(0, int(total) - int(done))
    if left == 0:
        return 0.0
    if not rate or rate <= 0:
        return None
    return left / rate


def document_phase(doc: dict[str, Any], job_status: str) -> str | None:
    """The phase of one document row of a job (see the module docstring)."""
    status = doc.get("status")
    if status == "queued":
        return "queued" if job_status in ("queued", "running") else None
    if status != "running":
        return None
    phase = doc.get("phase")
    return phase if phase in PHASES else "indexing"


def job_phase(status: str, documents: list[dict[str, Any]]) -> str | None:
    """The phase of a job: ``queued``, ``finishing`` while a document's closing index build runs,
    ``indexing`` otherwise while it runs, None when it is finished."""
    if status == "queued":
        return "queued"
    if status != "running":
        return None
    phases = {document_phase(d, status) for d in documents}
    return "finishing" if "finishing" in phases else "indexing"


def document_timing(doc: dict[str, Any], min_pages: int = 2, min_span_s: float = 0.0) -> tuple[float | None, float | None]:
    """(pages per second, seconds left) of one document row, from its timestamps; no rate (and no time
    left unless every page is done) before ``min_pages`` pages written ``min_span_s`` seconds or more
    apart (first to latest): a first burst of pages says little about the rate."""
    done = int(doc.get("pages_done") or 0)
    first, last = doc.get("first_page_s"), doc.get("last_page_s")
    steady = done >= min_pages and first is not None and last is not None and float(last) - float(first) >= min_span_s
    rate = pages_per_second(done, first, last) if steady else None
    return rate, eta_seconds(done, doc.get("page_count"), rate)


def format_duration(seconds: float | None) -> str:
    """``12 s``, ``3 min 05 s``, ``1 h 02 min``; ``""`` for None."""
    if seconds is None:
        return ""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"
