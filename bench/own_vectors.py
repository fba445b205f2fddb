"""Bring your own vectors: the product's default visual search measured on embeddings you provide.

    python bench/retrieval.py --vectors DIR [--data-dir D] [--exact]

Reads, from ``DIR``:

=====================  ==============================================================================
``pages.npy``          [N, T, 128] float16 or float32: page i is row i (T tokens, zero-padded when
                       pages have fewer: give ``lengths.npy``)
``lengths.npy``        optional [N] int: the real token count of page i (``pages[i, :lengths[i]]``);
                       absent: every page has all T tokens (an all-zero token row is then an error)
``queries.npy``        [Q, t, 128] float32 (float16 accepted)
``query_lengths.npy``  optional [Q] int, likewise for the queries
=====================  ==============================================================================

Token vectors should be L2-normalised, as the product's are (ColSmol's projection is normalised);
vectors that are not are normalised here with a warning, and the exact reference uses the same ones.
``scripts/dump_vectors.py`` writes this layout from a collection indexed with real weights.

What it does, with the product's own code and defaults:

1. a fresh store, ``pagelens.index.stores.factory.open_store(Settings(data_dir=D))`` (``--data-dir``:
   an empty or new folder; default a temporary one, removed afterwards; ``PAGELENS_*`` variables are
   honoured, so ``PAGELENS_QDRANT_URL`` measures a Qdrant server instead of the embedded store);
2. one collection with the manifest and the points the indexer writes (``Indexer.make_points``: the
   same payload keys, documents of 10 pages, ``page_point_id`` ids, upserts of
   ``tuning.upsert_batch_points``). The pooled ``rows``/``cols`` vectors are what the product computes
   for a page whose tile grid is unknown (``pagelens.models.embedder.pool_rows_cols`` with no grid):
   one mean vector per 64 consecutive tokens (a ColSmol tile), the last partial block included. For a
   ColSmol page the product knows the grid and pools by patch row and column instead, so the pooled
   first stage here is the general fallback, not necessarily the one a real collection gets;
3. ``repair(force=True)``, what ``pagelens optimize`` runs;
4. every query through ``pagelens.retrieve.hybrid.search_pages`` in ``visual`` mode with
   ``settings.search_mode`` (default ``two_stage``) and ``max(tuning.prefetch_limit, 10)``: the call the
   ``Retriever`` makes, for the top 10. One untimed warm-up search first (query 0).

Writes ``DIR/pagelens.json``::

    {"top10": [[page index, ...], ...],     # per query, best first
     "search_ms": [...],                    # per query, wall time of the search call
     "build_s": ...,                        # create + upserts + optimize
     "bytes_per_page": ...,                 # embedded store: disk blocks of the collection's files / N
                                            # (null: server); by component in "bytes_by_component"
     "self_check": {...},                   # store.search_status(collection), as a dict
     ...}                                   # plus pages, queries, tokens, settings and the optimize result

``--exact`` adds ``"exact_top10"`` (exact MaxSim, ``bench.retrieval.maxsim_scores``) and
``"recall"`` (@5 and @10 against it, ties within 1e-4 counted as hits) and prints the recalls.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("bench.own_vectors")

COLLECTION = "own_vectors"
DIM = 128
TOKENS_PER_TILE = 64  # ColSmol / ColIdefics3 image tokens per tile (the processor's image_seq_len)
PAGES_PER_DOC = 10
TOP = 10


class VectorsError(ValueError):
    """A file of DIR is missing or malformed; the message names it and what to do."""


@dataclass
class Vectors:
    """Pages and queries as lists of [n_tokens, 128] float32 arrays (padding removed)."""

    pages: list[np.ndarray]
    queries: list[np.ndarray]
    normalised: list[str]  # which inputs were not unit vectors (and were normalised here)


def _load(path: Path, name: str, dims: int) -> np.ndarray:
    if not path.is_file():
        raise VectorsError(f"{path} is missing: write {name} as a numpy .npy file")
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    if arr.ndim != dims:
        raise VectorsError(f"{path}: expected {dims} dimensions, got shape {arr.shape}")
    return arr


def _rows(arr: np.ndarray, lengths_path: Path, what: str, source: Path) -> list[np.ndarray]:
    """Split [N, T, D] into N [n_i, D] float32 arrays (``lengths_path``: the real counts, optional)."""
    n, t, d = arr.shape
    if d != DIM:
        raise VectorsError(f"{source}: token vectors must have {DIM} dimensions (ColSmol), got {d}")
    if arr.dtype not in (np.float16, np.float32):
        raise VectorsError(f"{source}: dtype must be float16 or float32, got {arr.dtype}")
    if lengths_path.is_file():
        lengths = np.load(lengths_path, allow_pickle=False)
        if lengths.shape != (n,) or not np.issubdtype(lengths.dtype, np.integer):
            raise VectorsError(f"{lengths_path}: expected [{n}] integers (one per {what}), got {lengths.dtype} "
                               f"{lengths.shape}")
        bad = np.flatnonzero((lengths < 1) | (lengths > t))
        if len(bad):
            raise VectorsError(f"{lengths_path}: {what} {int(bad[0])} has length {int(lengths[bad[0]])}; lengths must "
                               f"be in 1..{t}")
    else:
        lengths = np.full(n, t)
    out = []
    for i in range(n):
        rows = np.asarray(arr[i, : int(lengths[i])], dtype=np.float32)
        if not np.isfinite(rows).all():
            raise VectorsError(f"{source}: {what} {i} has NaN or infinite values")
        zero = int((np.abs(rows).max(axis=1) == 0).sum())
        if zero:
            raise VectorsError(f"{source}: {what} {i} has {zero} all-zero token vectors (padding?): give the real "
                               f"token counts in {lengths_path.name} ([{n}] int)")
        out.append(rows)
    return out


def _normalise(rows: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    """L2-normalised copies and the largest |norm - 1| seen."""
    worst = 0.0
    out = []
    for r in rows:
        norms = np.linalg.norm(r, axis=1, keepdims=True)
        worst = max(worst, float(np.abs(norms - 1.0).max()))
        out.append((r / norms).astype(np.float32))
    return out, worst


def load_vectors(folder: Path) -> Vectors:
    """Read and check DIR (module docstring). Raises ``VectorsError`` naming the file and the fix."""
    folder = Path(folder)
    pages = _rows(_load(folder / "pages.npy", "pages [N, T, 128]", 3), folder / "lengths.npy", "page",
                  folder / "pages.npy")
    queries = _rows(_load(folder / "queries.npy", "queries [Q, t, 128]", 3), folder / "query_lengths.npy", "query",
                    folder / "queries.npy")
    if not pages or not queries:
        raise VectorsError(f"{folder}: pages.npy and queries.npy need at least one row each")
    normalised = []
    for name, rows in (("pages", pages), ("queries", queries)):
        unit, worst = _normalise(rows)
        if worst > 1e-3:
            log.warning("%s.npy: token vectors are not L2-normalised (largest |norm - 1| = %.3g); normalised here, "
                        "as the product's own vectors are", name, worst)
            normalised.append(name)
        rows[:] = unit
    return Vectors(pages=pages, queries=queries, normalised=normalised)


def pooled(full: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of a page whose tile grid is unknown: ``pool_rows_cols(full, None, 64)`` when the token
    count is a multiple of 64 (one mean per tile; a single tile: its 8 x 8 patch rows and columns),
    otherwise one mean per 64 consecutive tokens, the last partial block included."""
    import torch

    from pagelens.models.embedder import pool_rows_cols

    n = len(full)
    if n % TOKENS_PER_TILE == 0:
        rows, cols = pool_rows_cols(torch.from_numpy(full), None, TOKENS_PER_TILE)
        return rows.numpy(), cols.numpy()
    blocks = np.stack([full[s : s + TOKENS_PER_TILE].mean(axis=0) for s in range(0, n, TOKENS_PER_TILE)])
    return blocks.astype(np.float32), blocks.astype(np.float32).copy()


def make_points(pages: list[np.ndarray], collection: str = COLLECTION) -> list[Any]:
    """The points the indexer writes (``Indexer.make_points``) for pages without text or image: documents of
    ``PAGES_PER_DOC`` pages; page i is page ``i % 10 + 1`` of document ``i // 10``."""
    from pagelens.core.types import PageEmbedding, PagePoint, page_point_id

    indexed_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    n_docs = -(-len(pages) // PAGES_PER_DOC)
    points = []
    for i, full in enumerate(pages):
        d = i // PAGES_PER_DOC
        sha = hashlib.sha256(f"own-vectors-document-{d}".encode()).hexdigest()
        page_count = min(PAGES_PER_DOC, len(pages) - d * PAGES_PER_DOC) if d == n_docs - 1 else PAGES_PER_DOC
        rows, cols = pooled(full)
        points.append(PagePoint(
            id=page_point_id(collection, sha, i % PAGES_PER_DOC + 1),
            embedding=PageEmbedding(full=full, rows=rows, cols=cols),
            payload={"doc_id": sha[:16], "doc_name": f"document-{d}", "page_no": i % PAGES_PER_DOC + 1,
                     "page_count": page_count, "sha256": sha, "collection": collection, "meta": {},
                     "text": "", "language": "und", "text_source": "none", "image_path": None,
                     "width": 0, "height": 0, "indexed_at": indexed_at},
        ))
    return points


def _as_dict(value: Any) -> Any:
    return value.to_dict() if hasattr(value, "to_dict") else value


def _self_check(status: Any) -> dict[str, Any]:
    """Everything ``search_status`` reports: its dataclass fields (measured figures included) and its
    ``to_dict`` (the API's ``search_structures``)."""
    out: dict[str, Any] = {}
    if is_dataclass(status) and not isinstance(status, type):
        out.update(json.loads(json.dumps(asdict(status), default=str)))
    if hasattr(status, "to_dict"):
        out.update(status.to_dict())
    return out


def _bytes(root: Path, allocated: bool = True) -> dict[str, int]:
    """Bytes under ``root`` by top-level entry (a component of the collection: segments, caches, indexes).
    ``allocated``: the disk blocks the files hold (``du``; Qdrant preallocates sparse segment files, whose
    apparent size at a few pages is hundreds of MB); else their apparent sizes."""
    out: dict[str, int] = {}
    if not root.is_dir():
        return out
    for entry in sorted(root.iterdir()):
        files = [entry] if entry.is_file() else [f for f in entry.rglob("*") if f.is_file()]
        stats = [f.stat() for f in files if not f.is_symlink()]
        out[entry.name] = sum(st.st_blocks * 512 if allocated else st.st_size for st in stats)
    return out


def run(folder: Path, data_dir: Path | None = None, exact: bool = False) -> dict[str, Any]:
    """Build, optimize and search (module docstring); writes and returns ``DIR/pagelens.json``."""
    from pagelens.index.stores.factory import open_store
    from pagelens.retrieve.hybrid import search_pages

    from pagelens.core.settings import Settings
    from pagelens.core.types import CollectionManifest

    folder = Path(folder)
    vectors = load_vectors(folder)
    temporary = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="pagelens-own-vectors-")) if data_dir is None else Path(data_dir)
    if not temporary and root.exists() and any(root.iterdir()):
        raise VectorsError(f"--data-dir {root} is not empty: give a new or empty folder (the store is built fresh)")
    try:
        settings = Settings(data_dir=root)
        store = open_store(settings, role="bench/retrieval.py --vectors")
        try:
            t0 = time.perf_counter()
            store.create_collection(CollectionManifest(
                name=COLLECTION, model_id=f"own vectors ({folder.name})", model_revision=None, dim=DIM,
                created_at=datetime.now(timezone.utc).isoformat(timespec="seconds")))
            points = make_points(vectors.pages)
            index_of = {p.id: i for i, p in enumerate(points)}
            batch = max(settings.tuning.upsert_batch_points, 16)  # as the indexer's Writer
            for s in range(0, len(points), batch):
                store.upsert(COLLECTION, points[s : s + batch])
            upsert_s = time.perf_counter() - t0
            repair = store.repair(COLLECTION, force=True)  # `pagelens optimize`
            build_s = time.perf_counter() - t0
            del points
            prefetch = max(settings.tuning.prefetch_limit, TOP)

            def search(q: np.ndarray) -> list[int]:
                hits = search_pages(store, COLLECTION, mode="visual", limit=TOP, query_vectors=q,
                                    strategy=settings.search_mode, prefetch_limit=prefetch)
                return [index_of[h.id] for h in hits]

            search(vectors.queries[0])  # warm-up, untimed
            top10: list[list[int]] = []
            search_ms: list[float] = []
            for q in vectors.queries:
                t = time.perf_counter()
                top10.append(search(q))
                search_ms.append((time.perf_counter() - t) * 1000.0)
            status = store.search_status(COLLECTION)
            components = {} if settings.qdrant_url else _bytes(settings.edge_dir / COLLECTION)
            apparent = {} if settings.qdrant_url else _bytes(settings.edge_dir / COLLECTION, allocated=False)
        finally:
            store.close()
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
    n = len(vectors.pages)
    result: dict[str, Any] = {
        "top10": top10,
        "search_ms": [round(ms, 3) for ms in search_ms],
        "build_s": round(build_s, 3),
        "bytes_per_page": (sum(components.values()) / n) if components else None,
        "self_check": _self_check(status),
        "bytes_by_component": components,
        "apparent_bytes_by_component": apparent,
        "upsert_s": round(upsert_s, 3),
        "optimize": _as_dict(repair),
        "pages": n,
        "queries": len(vectors.queries),
        "tokens_per_page": {"min": int(min(len(p) for p in vectors.pages)),
                            "mean": float(np.mean([len(p) for p in vectors.pages])),
                            "max": int(max(len(p) for p in vectors.pages))},
        "normalised_here": vectors.normalised,
        "search": {"mode": "visual", "strategy": settings.search_mode, "prefetch_limit": prefetch,
                   "store": "Qdrant server" if settings.qdrant_url else "Qdrant Edge (embedded)",
                   "full_vector_datatype": settings.full_vector_datatype},
        "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if exact:
        result.update(exact_reference(vectors, top10))
    (folder / "pagelens.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


def padded(rows: list[np.ndarray]) -> np.ndarray:
    """[N, T_max, D] float32 with each row padded by repeats of its first token (a repeat never changes a
    maximum, a zero vector could: MaxSim stays exact)."""
    t = max(len(r) for r in rows)
    out = np.empty((len(rows), t, DIM), dtype=np.float32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
        out[i, len(r) :] = r[0]
    return out


def exact_reference(vectors: Vectors, top10: list[list[int]]) -> dict[str, Any]:
    """``exact_top10`` by exact MaxSim (``bench.retrieval.maxsim_scores``) and recall@5/@10 of ``top10``."""
    from bench.retrieval import maxsim_scores, recall, topk

    pages = padded(vectors.pages)
    t = max(len(q) for q in vectors.queries)
    queries = np.zeros((len(vectors.queries), t, DIM), dtype=np.float32)  # a zero query token adds 0 to MaxSim
    for i, q in enumerate(vectors.queries):
        queries[i, : len(q)] = q
    scores = maxsim_scores(pages, queries)  # [Q, N]
    k = min(TOP, len(vectors.pages))
    exact_top = [topk(scores[i], k) for i in range(len(scores))]
    r5 = float(np.mean([recall(g, e, 5, scores[i]) for i, (g, e) in enumerate(zip(top10, exact_top, strict=True))]))
    r10 = float(np.mean([recall(g, e, 10, scores[i]) for i, (g, e) in enumerate(zip(top10, exact_top, strict=True))]))
    return {"exact_top10": exact_top, "recall": {"at5": r5, "at10": r10}}
