"""Version 1 of the text index (English-only BM25), kept for collections made before languages.

New collections use ``pagelens.index.stores.text_analysis`` (version 2: each page analysed in its language); a collection
whose recorded spec is this one keeps being indexed and searched with it (``TextAnalyzer(1)``, whose
English analysis gives exactly these vectors, tested), until it is rebuilt with ``pagelens index
--reindex``. What follows describes version 1.

BM25 sparse vectors of a page's text layer, shared by every store backend.

One encoder for both backends, so the Qdrant Edge and the Qdrant server collections hold the same
vectors: ``qdrant_edge.Bm25`` (tokenizer, English stopwords and Snowball stemmer, term hashing, the
document-side BM25 term-frequency weights). The IDF half of BM25 is applied by Qdrant at query time:
the sparse vector ``TEXT_VECTOR`` is created with the IDF modifier on both backends (Edge
``EdgeSparseVectorParams(modifier=Modifier.Idf)``, server ``SparseVectorParams(modifier=IDF)``).

Document weights: ``tf * (k + 1) / (tf + k * (1 - b + b * len / avg_len))`` with ``BM25_PARAMS``.
Query weights: 1.0 per distinct token. Score = sum over shared tokens of ``idf(token) * doc weight``.
Empty text (scanned pages, images) gives an empty vector: such pages are found by the visual
retriever only.

Changing ``BM25_PARAMS`` changes the indexed vectors: collections must then be re-indexed (the
parameters are recorded in the collection, see ``text_index_spec``).
"""

from __future__ import annotations

import threading
from typing import Any

# qdrant_edge.Bm25Config defaults, spelled out so they are recorded with each collection.
BM25_PARAMS: dict[str, Any] = {"k": 1.2, "b": 0.75, "avg_len": 256.0, "language": "english"}

_lock = threading.Lock()
_model: Any = None


def _bm25() -> Any:
    global _model
    with _lock:
        if _model is None:
            import qdrant_edge as qe

            _model = qe.Bm25(
                qe.Bm25Config(
                    k=BM25_PARAMS["k"],
                    b=BM25_PARAMS["b"],
                    avg_len=BM25_PARAMS["avg_len"],
                    language=BM25_PARAMS["language"],
                )
            )
        return _model


def text_index_spec() -> dict[str, Any]:
    """What a collection's text index was built with (stored next to the manifest)."""
    return {"encoder": "qdrant_edge.Bm25", "modifier": "idf", **BM25_PARAMS}


def _pairs(vec: Any) -> tuple[list[int], list[float]]:
    indices = [int(i) for i in vec.indices]
    values = [float(v) for v in vec.values]
    return indices, values


def encode_document(text: str | None) -> tuple[list[int], list[float]]:
    """(indices, values) of the page text's BM25 document vector; ([], []) for empty text."""
    if not text or not text.strip():
        return [], []
    model = _bm25()
    with _lock:  # the Rust object is cheap; serialise to be safe across API worker threads
        return _pairs(model.embed_document(text))


def encode_query(text: str) -> tuple[list[int], list[float]]:
    """(indices, values) of the query's BM25 vector (1.0 per distinct token); may be empty when
    the query has only stopwords or punctuation."""
    if not text or not text.strip():
        return [], []
    model = _bm25()
    with _lock:
        return _pairs(model.embed_query(text))
