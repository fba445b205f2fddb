"""``Pagelens``: pagelens as a Python library (``from pagelens import Pagelens``).

A few lines index a folder and ask it questions::

    from pagelens import Pagelens

    with Pagelens("./pagelens-data") as lens:          # or Pagelens(qdrant_url="http://qdrant:6333")
        lens.index(["invoices/"], collection="invoices", metadata={"year": "2026"})
        for hit in lens.search("total amount due", collection="invoices", k=3):
            print(hit.doc_name, hit.page_no, hit.score)
        print(lens.ask("What is the total amount due?", collection="invoices").text)

It is the same service the CLI, the REST API and the web UI use (``PagelensService``): the same
collections on disk or on the Qdrant server, the same models, loaded lazily on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pagelens.app.service import CollectionInfo, DocumentInfo, PagelensService
from pagelens.core.errors import InvalidRequestError
from pagelens.core.settings import Settings
from pagelens.core.types import PageFilter, QueryMode

if TYPE_CHECKING:
    from pagelens.answer import Answer, AnswerEvent
    from pagelens.app.sync import SyncReport
    from pagelens.index.pipeline.indexer import IndexReport
    from pagelens.retrieve.types import SearchHit

Progress = Callable[[str, dict[str, Any]], None]
"""Called as ``progress(event, details)`` while indexing: ``plan`` (documents_total), ``document_start``,
``page_done`` (doc_name, page_no, page_count), ``document_done``, ``document_failed`` (error), ..."""


class Pagelens:
    """Index documents, search their pages and answer questions over them.

    ``data_dir``: where the embedded Qdrant store, page images and jobs live (default
    ``PAGELENS_DATA_DIR``, else ``~/.local/share/pagelens``; page images can go elsewhere with
    ``page_images_dir=``). ``qdrant_url``: use a Qdrant server instead of the embedded store. Any other keyword is a setting (``retriever_model=``, ``device=``, ``top_k=``, ... as
    in ``Settings``; environment variables ``PAGELENS_*`` fill the rest). Or pass a ready ``settings``.
    Nothing heavy happens here: the store opens and the models load on first use. Close it (or use it
    as a context manager) to release the store.
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        qdrant_url: str | None = None,
        settings: Settings | None = None,
        **overrides: Any,
    ) -> None:
        if settings is not None and (data_dir is not None or qdrant_url is not None or overrides):
            raise InvalidRequestError("pass either settings= or data_dir/qdrant_url/setting keywords, not both")
        if settings is None:
            values: dict[str, Any] = dict(overrides)
            if data_dir is not None:
                values["data_dir"] = Path(data_dir)
            if qdrant_url is not None:
                values["qdrant_url"] = qdrant_url
            settings = Settings(**values)
        self.service = PagelensService(settings)

    @property
    def settings(self) -> Settings:
        """The settings in force (read-only by convention)."""
        return self.service.settings

    # -- indexing -----------------------------------------------------------------------------
    def index(
        self,
        paths: str | Path | Iterable[str | Path],
        *,
        collection: str,
        metadata: Mapping[str, Any] | None = None,
        force: bool = False,
        password: str | None = None,
        progress: Progress | None = None,
    ) -> IndexReport:
        """Index files and folders (recursive; PDF, PNG, JPEG, TIFF and the other formats pagelens reads)
        into ``collection``, created on first use. Complete documents already there are skipped unless
        ``force`` (the same bytes under a new file name or with new ``metadata`` are not embedded again:
        their pages take the new name/metadata, status ``updated``); ``metadata`` is stored with every document (filter on it in ``search``). A bad file
        never stops the others: the returned ``IndexReport`` lists each document's status
        (``report.documents``) and errors (``report.errors``, each naming the file and what to do)."""
        from pagelens.index.pipeline.indexer import IndexInput
        from pagelens.ingest import DEFAULT_INCLUDE, discover_inputs

        given = [paths] if isinstance(paths, (str, Path)) else list(paths)
        if not given:
            raise InvalidRequestError("index() needs at least one file or folder")
        files = discover_inputs([Path(p) for p in given], DEFAULT_INCLUDE)
        inputs = [IndexInput(path=f, metadata=dict(metadata or {}), password=password) for f in files]
        return self.service.index(collection, inputs, force=force, progress=progress)

    def sync(
        self,
        folder: str | Path,
        *,
        collection: str,
        dry_run: bool = False,
        yes: bool = False,
        metadata: Mapping[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> SyncReport:
        """Make ``collection`` mirror ``folder`` (``pagelens index DIR --sync``): new and changed files
        indexed, moved ones renamed without re-embedding, documents whose files are gone deleted;
        unchanged files are not read again. ``dry_run``: the plan only (``report.plan.counts()``). Raises
        ``pagelens.app.sync.SyncRefusedError`` when it would delete more than ``sync_max_delete_share`` of
        the documents, unless ``yes``."""
        from pagelens.app.sync import sync_inputs
        from pagelens.ingest import DEFAULT_INCLUDE

        root = Path(folder).expanduser()
        files = sync_inputs(root, DEFAULT_INCLUDE, [])
        return self.service.sync(collection, root, files, dry_run=dry_run, yes=yes,
                                 metadata=dict(metadata or {}), progress=progress)

    # -- reading ------------------------------------------------------------------------------
    def search(
        self,
        question: str,
        *,
        collection: str,
        k: int | None = None,
        mode: QueryMode | None = None,
        where: Mapping[str, Any] | None = None,
        doc_ids: list[str] | None = None,
    ) -> list[SearchHit]:
        """The ``k`` best pages for ``question`` (default ``top_k``), best first. ``mode``: "visual"
        (MaxSim over page images), "text" (BM25 over the pages' text), "hybrid" (both fused); default the
        ``retrieval_mode`` setting. ``where``: metadata equality filter ({"year": "2026"}; a list value
        means any of). Each ``SearchHit`` carries ``doc_name``, ``page_no``, ``score`` (what ranked it,
        named by ``score_kind``: "maxsim", "bm25", or "rrf"/"dbsf" in hybrid mode, a fused rank value),
        ``visual_score`` (MaxSim) / ``text_score`` (BM25) where computed (hybrid: both),
        ``image_path`` (the page PNG) and ``regions``: where on the page it matched, best first (dicts
        ``{"x0", "y0", "x1", "y1", "source", "score"}`` in fractions of the page, origin top-left;
        ``source`` "text" (words matching the question, in ``"text"``) or "visual" (patches that won
        MaxSim); ``pagelens.retrieve.regions``)."""
        return self.service.search(collection, question, k=k, mode=mode,
                                   page_filter=_filter(where, doc_ids))

    def ask(
        self,
        question: str,
        *,
        collection: str,
        k: int | None = None,
        mode: QueryMode | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> Answer:
        """Answer ``question`` from the best ``k`` pages (default ``answer_top_k``). The ``Answer`` has
        ``text``, ``citations`` (document, page, score and ``regions`` (as in ``search``) of exactly the
        pages the model saw) and ``timings``; ``no_relevant_pages`` is True when no page was relevant enough to answer from."""
        return self.service.ask(collection, question, k=k, mode=mode, page_filter=_filter(where, None))

    def ask_stream(
        self,
        question: str,
        *,
        collection: str,
        k: int | None = None,
        mode: QueryMode | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> Iterator[AnswerEvent]:
        """Like ``ask``, streamed: ``AnswerEvent(kind="token", text=...)`` pieces as they are generated,
        then one ``kind="done"`` event whose ``answer`` is the complete ``Answer``."""
        return self.service.ask_stream(collection, question, k=k, mode=mode, page_filter=_filter(where, None))

    def collections(self) -> list[CollectionInfo]:
        """Every collection with its model, page and document counts."""
        return self.service.collections()

    def documents(self, collection: str, offset: int = 0, limit: int | None = None) -> list[DocumentInfo]:
        """The documents of ``collection`` (id, name, sha256, pages indexed of page count, metadata), sorted
        by name; ``offset``/``limit`` select one page of that order (default: all of them)."""
        return self.service.documents(collection, offset=offset, limit=limit)

    # -- deleting -----------------------------------------------------------------------------
    def delete(self, collection: str, doc_id: str | None = None) -> int:
        """Delete one document (``doc_id``, from ``documents()``) and return its pages deleted, or with no
        ``doc_id`` the whole collection (returns the pages it had)."""
        if doc_id is not None:
            return self.service.delete_document(collection, doc_id)
        pages = self.service.collection_info(collection).pages
        self.service.delete_collection(collection)
        return pages

    # -- lifetime -----------------------------------------------------------------------------
    def close(self) -> None:
        """Release the store (the embedded store's lock, the server connection)."""
        self.service.close()

    def __enter__(self) -> Pagelens:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _filter(where: Mapping[str, Any] | None, doc_ids: list[str] | None) -> PageFilter | None:
    if not where and not doc_ids:
        return None
    return PageFilter(doc_ids=doc_ids, metadata=dict(where or {}))
