"""pagelens: multimodal document retrieval and question answering.

The library in one screen (``from pagelens import Pagelens``; README "Python"):

- ``Pagelens(data_dir=None, *, qdrant_url=None, settings=None, **settings_overrides)``: open the
  embedded store under ``data_dir`` or a Qdrant server; models load on first use; a context manager.
- ``index(paths, *, collection, metadata=None, force=False, password=None, progress=None) -> IndexReport``
- ``search(question, *, collection, k=None, mode=None, where=None, doc_ids=None) -> list[SearchHit]``
- ``ask(question, *, collection, ...) -> Answer`` and ``ask_stream(...) -> Iterator[AnswerEvent]``
- ``collections() -> list[CollectionInfo]``, ``documents(collection) -> list[DocumentInfo]``,
  ``delete(collection, doc_id=None) -> int``, ``close()``.
- ``Settings`` (every ``PAGELENS_*`` setting), ``PagelensError`` (every error pagelens raises on purpose;
  its message names the file, page or field and what to do).

The code is one namespace over the stage packages: ``pagelens.ingest``, ``pagelens.index``,
``pagelens.retrieve``, ``pagelens.answer``, the application layer ``pagelens.app`` and the entry points
``pagelens.api``, ``pagelens.ui`` and ``pagelens.cli``; ``pagelens.core`` holds settings, errors and shared
types. ARCHITECTURE.md maps them. Importing ``pagelens`` loads nothing heavy: the names below are
imported on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Pagelens": "pagelens.app.library",
    "Settings": "pagelens.core.settings",
    "PagelensError": "pagelens.core.errors",
    "SearchHit": "pagelens.retrieve.types",
    "Answer": "pagelens.answer.types",
    "AnswerEvent": "pagelens.answer.types",
    "Citation": "pagelens.answer.types",
    "DocumentInfo": "pagelens.app.service",
    "CollectionInfo": "pagelens.app.service",
    "IndexReport": "pagelens.index.pipeline.indexer",
}

__all__ = [
    "Answer",
    "AnswerEvent",
    "Citation",
    "CollectionInfo",
    "DocumentInfo",
    "IndexReport",
    "Pagelens",
    "PagelensError",
    "SearchHit",
    "Settings",
]

if TYPE_CHECKING:
    from pagelens.answer.types import Answer, AnswerEvent, Citation
    from pagelens.app.library import Pagelens
    from pagelens.app.service import CollectionInfo, DocumentInfo
    from pagelens.core.errors import PagelensError
    from pagelens.core.settings import Settings
    from pagelens.index.pipeline.indexer import IndexReport
    from pagelens.retrieve.types import SearchHit


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pagelens' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
