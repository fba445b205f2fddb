"""Dump a collection's page vectors and your questions' query vectors for ``bench/retrieval.py --vectors``.

    python scripts/dump_vectors.py --collection NAME --queries questions.txt --out DIR [--dtype float16] [--limit N]

Uses the configured pagelens (``Settings()``: ``PAGELENS_DATA_DIR``, ``PAGELENS_QDRANT_URL``,
``PAGELENS_RETRIEVER_MODEL``... as for every command). With the embedded store, stop ``pagelens serve``
first (one process per data dir). Writes to ``DIR``:

* ``pages.npy`` [N, T, 128] (``--dtype``, default float16): the full multivectors the store holds
  (``VectorStore.get_full_vectors``), zero-padded to the longest page; pages ordered by (document name,
  document id, page number); ``--limit``: the first N of that order;
* ``lengths.npy`` [N] int64: real tokens per page;
* ``queries.npy`` [Q, t, 128] float32 and ``query_lengths.npy`` [Q]: one query per non-empty line of the
  questions file, embedded by the configured retriever (which must be the collection's model:
  ``CollectionMismatchError`` otherwise);
* ``pages.json``: page index -> point id, document id and name, page number; ``queries.txt``: the questions.

Then ``python bench/retrieval.py --vectors DIR --exact`` measures the default search on them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

BATCH = 64


def padded_save(path: Path, rows: list[np.ndarray], dtype: str) -> np.ndarray:
    """Save ``rows`` ([n_i, D] each) as [N, max n_i, D] of ``dtype``, zero-padded (written through a
    memory map: one padded copy is never held in RAM). Returns the lengths [N]."""
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(dtype),
                                    shape=(len(rows), int(lengths.max()), rows[0].shape[1]))
    out[:] = 0
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    out.flush()
    del out
    return lengths


def dump(collection: str, questions: list[str], out: Path, dtype: str = "float16", limit: int | None = None,
         settings: object | None = None) -> dict[str, int]:
    """Write the files of the module docstring; returns {"pages": N, "queries": Q, "max_tokens": T}."""
    from pagelens.app.service import PagelensService
    from pagelens.core.errors import CollectionNotFoundError, InvalidRequestError
    from pagelens.core.settings import Settings
    from pagelens.models.embedder import check_manifest

    if not questions:
        raise InvalidRequestError("the questions file has no non-empty line: write one question per line")
    service = PagelensService(settings if isinstance(settings, Settings) else Settings(), role="scripts/dump_vectors.py")
    try:
        target, store = service.store.pin(collection)  # one resolution: an alias switched meanwhile changes nothing
        manifest = store.get_manifest(target)
        if manifest is None:
            raise CollectionNotFoundError(collection)
        check_manifest(manifest, service.embedder)  # the queries must come from the collection's model
        keys = ("doc_id", "doc_name", "page_no")
        pages = sorted(((str(p.get("doc_name", "")), str(p.get("doc_id", "")), int(p.get("page_no", 0)), pid)
                        for pid, p in store.iter_payloads(target, keys=keys)))
        if limit is not None:
            pages = pages[:limit]
        if not pages:
            raise InvalidRequestError(f"collection '{collection}' holds no pages: index documents first")
        rows: list[np.ndarray] = []
        index: list[dict[str, object]] = []
        for s in range(0, len(pages), BATCH):
            chunk = pages[s : s + BATCH]
            found = store.get_full_vectors(target, [pid for *_, pid in chunk])
            for name, doc_id, page_no, pid in chunk:
                if pid not in found:  # deleted while dumping
                    print(f"warning: page {page_no} of {name} was deleted meanwhile: left out", file=sys.stderr)
                    continue
                index.append({"index": len(rows), "point_id": pid, "doc_id": doc_id, "doc_name": name,
                              "page_no": page_no})
                rows.append(np.asarray(found[pid], dtype=np.float32).astype(dtype))
        queries = [np.asarray(q, dtype=np.float32) for s in range(0, len(questions), 32)
                   for q in service.embedder.embed_queries(questions[s : s + 32])]
    finally:
        service.close()
    out.mkdir(parents=True, exist_ok=True)
    lengths = padded_save(out / "pages.npy", rows, dtype)
    np.save(out / "lengths.npy", lengths)
    np.save(out / "query_lengths.npy", padded_save(out / "queries.npy", queries, "float32"))
    (out / "pages.json").write_text(json.dumps({"collection": target, "model_id": manifest.model_id,
                                                "pages": index}, indent=1), encoding="utf-8")
    (out / "queries.txt").write_text("\n".join(questions) + "\n", encoding="utf-8")
    return {"pages": len(rows), "queries": len(queries), "max_tokens": int(lengths.max())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--collection", "-c", required=True, help="collection (or alias) to dump")
    ap.add_argument("--queries", "-q", type=Path, required=True, help="text file: one question per line")
    ap.add_argument("--out", "-o", type=Path, required=True, help="folder to write (created)")
    ap.add_argument("--dtype", choices=["float16", "float32"], default="float16", help="of pages.npy")
    ap.add_argument("--limit", type=int, default=None, help="only the first N pages")
    args = ap.parse_args(argv)
    from pagelens.core.errors import PagelensError

    if not args.queries.is_file():
        print(f"error: {args.queries} does not exist: give a text file with one question per line", file=sys.stderr)
        return 2
    questions = [line.strip() for line in args.queries.read_text(encoding="utf-8").splitlines() if line.strip()]
    try:
        done = dump(args.collection, questions, args.out, dtype=args.dtype, limit=args.limit)
    except PagelensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {done['pages']} pages (up to {done['max_tokens']} tokens) and {done['queries']} queries to "
          f"{args.out}; next: python bench/retrieval.py --vectors {args.out} --exact")
    return 0


if __name__ == "__main__":
    sys.exit(main())
