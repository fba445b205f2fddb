"""The MCP tools of pagelens, independent of the transport (stdio or streamable HTTP).

``PagelensTools`` holds the tool table (name, description written for an agent, argument model, read or
write) and runs a call for a ``Principal``: the same keys and collection scopes as the REST API
(``pagelens.app.access``). A principal sees the read tools; only ``rw``/``admin`` keys see the write
tools. Every failure a caller can cause is a tool error (``isError``) whose text names the argument,
collection, document or page and what to do; unexpected failures are logged and answered with a generic
tool error (no internals).
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mcp_types import CallToolResult, ContentBlock, ImageContent, TextContent, Tool, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pagelens.app.access import Principal
from pagelens.app.service import PagelensService
from pagelens.app.state import AppState
from pagelens.app.visibility import ask_visible, search_visible
from pagelens.core.errors import ApiError, CollectionNotFoundError, PagelensError
from pagelens.core.settings import Settings
from pagelens.core.types import COLLECTION_PATTERN, PageFilter
from pagelens.mcp.images import encode_page_image

log = logging.getLogger(__name__)

Scalar = str | int | float | bool
MAX_TEXT_CHARS = 4000  # of one page's text layer in a search result (get_page returns it whole)


class ToolCallError(Exception):
    """A failure the caller can act on; its message is the tool error's text."""


# -- arguments --------------------------------------------------------------------------------------
class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


_COLLECTION = Field(
    default=None, pattern=COLLECTION_PATTERN, max_length=64,
    description="Collection name (from list_collections). May be left out when you can read exactly one.",
)
_MODE = Field(
    default=None,
    description="visual: pages ranked by how their images match the query (best for charts, tables, scans, "
    "layout); text: keyword (BM25) ranking of the pages' text; hybrid: both fused. Default: the server's "
    "setting (hybrid unless changed).",
)
_WHERE = Field(
    default=None, max_length=32,
    description='Only documents whose metadata matches every key, e.g. {"year": 2026}; a list means any of.',
)
_DOC_IDS = Field(default=None, min_length=1, max_length=100, description="Only these documents (doc_id values).")


class ListCollectionsArgs(_Args):
    pass


class ListDocumentsArgs(_Args):
    collection: str | None = _COLLECTION
    limit: int = Field(default=100, ge=1, le=1000, description="Documents to list (sorted by name).")
    offset: int = Field(default=0, ge=0, description="Documents to skip first (the next page: offset + limit).")


class SearchPagesArgs(_Args):
    query: str = Field(min_length=1, max_length=4000, description="What to find: a question or keywords.")
    collection: str | None = _COLLECTION
    k: int = Field(default=5, ge=1, le=20, description="How many pages to return, best first.")
    mode: Literal["visual", "text", "hybrid"] | None = _MODE
    doc_ids: list[str] | None = _DOC_IDS
    where: dict[str, Scalar | list[Scalar]] | None = _WHERE
    images: bool = Field(default=True, description="Return each page's image (set false for a quick text-only list).")
    with_text: bool = Field(default=False, description="Also return each page's text layer (first 4000 characters).")
    highlight: bool = Field(default=True, description="Draw on each image where the page matched (its regions: "
                            "matching words in amber, image patches that matched in blue).")


def describe_regions(regions: list[dict[str, Any]], limit: int = 3) -> str:
    """The first ``limit`` regions in words: '"Rechnung" (text) at x 0.09-0.21, y 0.34-0.35; a visual match
    at ...' (page fractions, origin top-left)."""
    parts = []
    for r in regions[:limit]:
        what = f"\"{r.get('text', '')}\" (text)" if r.get("source") == "text" else "a visual match"
        parts.append(f"{what} at x {r['x0']:.2f}-{r['x1']:.2f}, y {r['y0']:.2f}-{r['y1']:.2f}")
    more = len(regions) - limit
    return "; ".join(parts) + (f"; {more} more in regions" if more > 0 else "")


class AskArgs(_Args):
    question: str = Field(min_length=1, max_length=4000, description="The question to answer.")
    collection: str | None = _COLLECTION
    k: int | None = Field(default=None, ge=1, le=16,
                          description="Pages the answer model reads (default: the server's answer_top_k, 3).")
    mode: Literal["visual", "text", "hybrid"] | None = _MODE
    doc_ids: list[str] | None = _DOC_IDS
    where: dict[str, Scalar | list[Scalar]] | None = _WHERE


class GetPageArgs(_Args):
    doc_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$",
                        description="The document (doc_id from search_pages, ask or list_documents).")
    page_no: int = Field(ge=1, description="Page number, 1 = first page.")
    collection: str | None = _COLLECTION
    image: bool = Field(default=True, description="Return the page image (false: text only).")


class DeleteDocumentArgs(_Args):
    doc_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$",
                        description="The document to delete (doc_id from list_documents).")
    collection: str | None = _COLLECTION


class IndexFilesArgs(_Args):
    paths: list[str] = Field(min_length=1, max_length=1000,
                             description="Files or folders on this machine (folders: searched recursively).")
    collection: str = Field(pattern=COLLECTION_PATTERN, max_length=64,
                            description="Collection to index into; created if it does not exist.")
    metadata: dict[str, Scalar] | None = Field(default=None, max_length=64,
                                               description="Stored with every document (filter on it with where).")
    force: bool = Field(default=False, description="Re-index documents that are already complete.")


# -- the tool table ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ToolSpec:
    """One tool: its MCP description, argument model, whether it changes the index, and its handler."""

    name: str
    title: str
    description: str
    args: type[_Args]
    write: bool
    handler: Callable[[Principal, Any], CallToolResult]

    def to_mcp(self) -> Tool:
        schema = self.args.model_json_schema()
        schema.pop("title", None)
        return Tool(
            name=self.name, title=self.title, description=self.description, input_schema=schema,
            annotations=ToolAnnotations(title=self.title, read_only_hint=not self.write,
                                        destructive_hint=self.name == "delete_document",
                                        idempotent_hint=True, open_world_hint=False),
        )


class PagelensTools:
    """The tools over one service. ``state`` (the server's ``AppState``): searches hide documents an
    unfinished job is indexing, as the REST API does. ``local_files``: offer ``index_files`` (paths on this
    machine; only for ``pagelens mcp`` over stdio, never over HTTP)."""

    def __init__(self, service: PagelensService, *, state: AppState | None = None, local_files: bool = False) -> None:
        self.service = service
        self.state = state
        s = self.settings
        specs = [
            ToolSpec(
                "list_collections", "List collections",
                "List the document collections you can search, with their number of documents and pages. "
                "Call it first when you do not know a collection's name: the other tools take `collection` "
                "(which may be left out when there is only one).",
                ListCollectionsArgs, False, self._list_collections),
            ToolSpec(
                "list_documents", "List documents",
                "List the documents of a collection: doc_id, file name, pages, status (complete, incomplete, "
                "indexing) and metadata. Use it to find a doc_id for get_page or delete_document, or to "
                "restrict search_pages/ask to some documents (doc_ids).",
                ListDocumentsArgs, False, self._list_documents),
            ToolSpec(
                "search_pages", "Search pages",
                "Find the pages that best match a query across a collection's documents (PDFs, scans, "
                "images): late-interaction retrieval over the page images, fused with keyword search on "
                "their text by default. Returns up to k pages, best first, each with document name, doc_id, "
                "page number, page count and scores (score ranks them; visual_score/text_score are what it "
                "was fused from) and regions (where on the page it matched: boxes as fractions of the page, "
                "words matching the query and image patches that matched), followed by the page image "
                f"(longest edge at most {s.mcp_image_max_edge} px, the regions drawn on it) so you can read it "
                "yourself, tables, charts and scans included. "
                "Use it to find evidence and read the sources; use get_page to read a neighbouring page.",
                SearchPagesArgs, False, self._search_pages),
            ToolSpec(
                "ask", "Ask",
                "Answer a question from a collection: pagelens retrieves the top pages and its own small "
                "vision-language model (SmolVLM) reads them and answers. Returns the answer and its "
                "citations (document, doc_id, page, score): exactly the pages the model read. Slower than "
                "search_pages (it generates text: seconds on a GPU, up to minutes on a CPU) and a small "
                "model: for anything important check the cited pages with get_page, or read search_pages' "
                "images yourself.",
                AskArgs, False, self._ask),
            ToolSpec(
                "get_page", "Get page",
                "Get one page of a document: its image (longest edge at most "
                f"{s.mcp_image_max_edge} px) and its text layer (empty for a scan without text), with the "
                "document's name and page count. Use it to read a page found by search_pages or cited by "
                "ask, or the page before or after it.",
                GetPageArgs, False, self._get_page),
            ToolSpec(
                "delete_document", "Delete document",
                "Delete a document (all its pages) from a collection; doc_id from list_documents. It cannot "
                "be undone (index the file again to get it back). Needs a key with write access.",
                DeleteDocumentArgs, True, self._delete_document),
        ]
        if local_files:
            specs.append(ToolSpec(
                "index_files", "Index files",
                "Index files or folders on the machine running this pagelens server (PDF, PNG, JPEG, TIFF; "
                "folders searched recursively) into a collection, created if it does not exist. Documents "
                "already indexed are skipped unless force. Returns each document's outcome (indexed, "
                "skipped, failed with the reason). Takes a while: every page is rendered and embedded "
                "(about a second per page on a CPU). Needs a key with write access.",
                IndexFilesArgs, True, self._index_files))
        self.specs: dict[str, ToolSpec] = {spec.name: spec for spec in specs}

    @property
    def settings(self) -> Settings:
        return self.service.settings

    # -- the two MCP requests -----------------------------------------------------------------------
    def list_tools(self, principal: Principal) -> list[Tool]:
        """The tools ``principal`` may call: read tools for every key, write tools for rw/admin keys."""
        return [spec.to_mcp() for spec in self.specs.values() if _may_use(principal, spec)]

    def call(self, principal: Principal, name: str, arguments: dict[str, Any] | None) -> CallToolResult:
        """Run tool ``name`` for ``principal`` (blocking: call it in a worker thread)."""
        spec = self.specs.get(name)
        if spec is None:
            return _error(f"unknown tool '{name}'; the tools are: {', '.join(self._names(principal))}")
        if not _may_use(principal, spec):
            return _error(f"tool '{name}' changes the index and this API key is read-only (role "
                          f"{principal.role}); use a key with role rw or admin for its collections")
        try:
            args = spec.args.model_validate(arguments or {})
        except ValidationError as exc:
            return _error(f"{name}: {_explain(exc, spec.args)}")
        try:
            return spec.handler(principal, args)
        except ToolCallError as exc:
            return _error(str(exc))
        except PagelensError as exc:
            return _error(exc.message)
        except Exception:
            log.exception("MCP tool %s failed", name)
            return _error(f"{name} failed with an internal error; see the pagelens server log")

    def _names(self, principal: Principal) -> list[str]:
        return [n for n, spec in self.specs.items() if _may_use(principal, spec)]

    # -- helpers ------------------------------------------------------------------------------------
    def _readable(self, principal: Principal) -> list[str]:
        readable = principal.readable()
        return [n for n in self.service.store.list_collections() if readable is None or n in readable]

    def _collection(self, principal: Principal, given: str | None, write: bool = False) -> str:
        """``given`` after the key's scope check, or the only collection the key can read."""
        if given is not None:
            (principal.require_write if write else principal.require_read)(given)
            if self.service.store.get_manifest(given) is None:
                raise CollectionNotFoundError(given)
            return given
        names = self._readable(principal)
        if len(names) == 1:
            if write:
                principal.require_write(names[0])
            return names[0]
        if not names:
            raise ToolCallError("there is no collection this key can read yet; index documents first "
                                "(`pagelens index FILES --collection NAME`)")
        raise ToolCallError(f"argument 'collection' is needed: this key can read {len(names)} collections: "
                            f"{', '.join(names)}")

    def _filter(self, doc_ids: list[str] | None, where: dict[str, Any] | None) -> PageFilter | None:
        page_filter = PageFilter(doc_ids=doc_ids or None, metadata=dict(where or {}))
        return None if page_filter.is_empty() else page_filter

    def _inflight(self, collection: str) -> set[str]:
        return self.state.jobs.inflight_doc_ids(collection) if self.state is not None else set()

    def _image(self, path: str | None, where: str, regions: list[dict[str, Any]] | None = None
               ) -> tuple[ImageContent | None, str]:
        """The capped image of a stored page (``regions`` drawn on it), or None and why not."""
        if not path:
            return None, f"no image of {where} is stored on this server"
        root = self.service.images.root.resolve()
        file = Path(path).resolve()
        if not (file.is_relative_to(root) and file.is_file()):
            # a data dir moved or restored elsewhere: the same <sha[:2]>/<sha>/<page>.png under this root
            file = (root / Path(*Path(path).parts[-3:])).resolve()
            if not (file.is_relative_to(root) and file.is_file()):
                return None, f"the image of {where} is not stored on this server"
        image = encode_page_image(file, self.settings.mcp_image_max_edge, self.settings.mcp_image_max_bytes,
                                  regions=regions)
        content = ImageContent(type="image", data=base64.b64encode(image.data).decode("ascii"),
                               mime_type=image.mime_type)
        return content, f"{image.width}x{image.height} px {image.mime_type.split('/')[1].upper()}"

    # -- the tools ----------------------------------------------------------------------------------
    def _list_collections(self, principal: Principal, args: ListCollectionsArgs) -> CallToolResult:
        infos = [self.service.collection_info(n).to_dict() for n in self._readable(principal)]
        if not infos:
            text = "No collections this key can read yet. Index documents first (`pagelens index`)."
        else:
            text = "\n".join(f"- {c['name']}: {c['documents']} documents, {c['pages']} pages" for c in infos)
        return _ok(text, {"collections": infos})

    def _list_documents(self, principal: Principal, args: ListDocumentsArgs) -> CallToolResult:
        collection = self._collection(principal, args.collection)
        inflight = self._inflight(collection)
        docs = []
        for doc in self.service.documents(collection, offset=args.offset, limit=args.limit):
            data = doc.to_dict()
            if doc.doc_id in inflight:
                data["status"] = "indexing"
            docs.append(data)
        total = self.service.document_count(collection)
        shown = f"{args.offset + 1}-{args.offset + len(docs)} of " if docs and len(docs) < total else ""
        lines = [f"{shown}{total} documents in {collection}:"]
        lines += [f"- {d['doc_name']} (doc_id {d['doc_id']}): {d['pages_indexed']}/{d['page_count']} pages, "
                  f"{d['status']}" + (f", metadata {d['metadata']}" if d["metadata"] else "") for d in docs]
        next_offset = args.offset + len(docs) if args.offset + len(docs) < total else None
        if next_offset is not None:
            lines.append(f"More follow: call list_documents with offset {next_offset}.")
        return _ok("\n".join(lines), {"collection": collection, "documents": docs, "total": total,
                                       "next_offset": next_offset})

    def _search_pages(self, principal: Principal, args: SearchPagesArgs) -> CallToolResult:
        collection = self._collection(principal, args.collection)
        page_filter = self._filter(args.doc_ids, args.where)
        t0 = time.perf_counter()
        if self.state is not None:
            hits = search_visible(self.state, collection, args.query, args.k, args.mode, page_filter)
        else:
            hits = self.service.search(collection, args.query, k=args.k, mode=args.mode, page_filter=page_filter)
        seconds = time.perf_counter() - t0
        content: list[ContentBlock] = [TextContent(
            type="text", text=f"{len(hits)} pages for {args.query!r} in collection {collection} "
            f"({seconds:.2f} s), best first" + ("; each page's image follows its line." if args.images and hits
                                                else "." if hits else ": nothing matched."))]
        results = []
        for hit in hits:
            data = hit.to_dict(with_text=False)
            data.pop("image_path", None)
            data.pop("point_id", None)
            scores = ", ".join(f"{label} {value:.3f}" for label, value in
                               (("visual", hit.visual_score), ("text", hit.text_score)) if value is not None)
            line = (f"[{hit.rank}] {hit.doc_name}, page {hit.page_no} of {hit.page_count} (doc_id {hit.doc_id}); "
                    f"score {hit.score:.3f}" + (f" ({scores})" if scores else ""))
            if hit.regions:
                line += "\nwhere: " + describe_regions(hit.regions)
            if args.with_text:
                data["text"] = hit.text[:MAX_TEXT_CHARS]
                line += f"\ntext: {hit.text[:MAX_TEXT_CHARS]}" if hit.text.strip() else "\ntext: (none)"
            image = None
            if args.images:
                image, note = self._image(hit.image_path, f"page {hit.page_no} of {hit.doc_name}",
                                          hit.regions if args.highlight else None)
                data["image"] = note if image is not None else None
                if image is None:
                    line += f"\n({note})"
            content.append(TextContent(type="text", text=line))
            if image is not None:
                content.append(image)
            results.append(data)
        return CallToolResult(content=content, structured_content={
            "collection": collection, "query": args.query, "results": results,
            "timings": {"search_s": round(seconds, 4)}})

    def _ask(self, principal: Principal, args: AskArgs) -> CallToolResult:
        collection = self._collection(principal, args.collection)
        page_filter = self._filter(args.doc_ids, args.where)
        if self.state is not None:
            answer = ask_visible(self.state, collection, args.question, args.k, args.mode, page_filter)
        else:
            answer = self.service.ask(collection, args.question, k=args.k, mode=args.mode, page_filter=page_filter)
        data = answer.to_dict()
        for citation in data["citations"]:
            citation.pop("image_path", None)
        lines = [answer.text.strip() or "(the model produced no text)"]
        if answer.citations:
            lines.append("\nSources (the pages the model read):")
            lines += [f"[{i}] {c.doc_name}, page {c.page_no} (doc_id {c.doc_id}, score {c.score:.3f})"
                      + (f"; where: {describe_regions(c.regions)}" if c.regions else "")
                      for i, c in enumerate(answer.citations, start=1)]
        return _ok("\n".join(lines), {"collection": collection, **data})

    def _get_page(self, principal: Principal, args: GetPageArgs) -> CallToolResult:
        collection = self._collection(principal, args.collection)
        if args.doc_id in self._inflight(collection):
            raise ToolCallError(f"document '{args.doc_id}' is being indexed right now; try again when its "
                                "job is done")
        payload = None
        one_page = PageFilter(doc_ids=[args.doc_id], page_nos=[args.page_no])  # one point, not the document
        for _, item in self.service.store.iter_payloads(collection, one_page):
            payload = item
            break
        if payload is None:
            count = self.service.store.count(collection, PageFilter(doc_ids=[args.doc_id]))
            if not count:
                raise ToolCallError(f"document '{args.doc_id}' is not in collection '{collection}'; find "
                                    "doc_ids with list_documents or search_pages")
            raise ToolCallError(f"document '{args.doc_id}' has no page {args.page_no} in collection "
                                f"'{collection}' ({count} pages indexed; pages start at 1)")
        name, page_count = payload.get("doc_name", ""), int(payload.get("page_count", 0))
        text = payload.get("text") or ""
        data = {"collection": collection, "doc_id": args.doc_id, "doc_name": name, "page_no": args.page_no,
                "page_count": page_count, "metadata": dict(payload.get("meta") or {}), "text": text}
        header = f"{name}, page {args.page_no} of {page_count} (doc_id {args.doc_id}, collection {collection})"
        content: list[ContentBlock] = [
            TextContent(type="text", text=f"{header}\ntext:\n{text}" if text.strip() else
                        f"{header}\ntext: (none: the page has no text layer; read the image)")]
        if args.image:
            image_path = payload.get("image_path")
            if not image_path and payload.get("sha256"):
                image_path = str(self.service.images.path(payload["sha256"], args.page_no))
            image, note = self._image(image_path, f"page {args.page_no} of {name}")
            data["image"] = note if image is not None else None
            if image is None:
                content.append(TextContent(type="text", text=f"({note})"))
            else:
                content.append(image)
        return CallToolResult(content=content, structured_content=data)

    def _delete_document(self, principal: Principal, args: DeleteDocumentArgs) -> CallToolResult:
        collection = self._collection(principal, args.collection, write=True)
        if args.doc_id in self._inflight(collection):
            raise ApiError(409, "document_busy", f"document '{args.doc_id}' is being indexed; cancel its job "
                           "first", collection=collection, doc_id=args.doc_id)
        pages = self.service.delete_document(collection, args.doc_id)
        return _ok(f"deleted document {args.doc_id} ({pages} pages) from collection {collection}",
                   {"collection": collection, "doc_id": args.doc_id, "pages_deleted": pages})

    def _index_files(self, principal: Principal, args: IndexFilesArgs) -> CallToolResult:
        from pagelens.index.pipeline.indexer import IndexInput
        from pagelens.ingest import DEFAULT_INCLUDE, discover_inputs

        principal.require_write(args.collection)
        files = discover_inputs([Path(p) for p in args.paths], DEFAULT_INCLUDE)
        if not files:
            raise ToolCallError(f"no PDF or image files found under {', '.join(args.paths)}")
        inputs = [IndexInput(path=f, metadata=dict(args.metadata or {})) for f in files]
        report = self.service.index(args.collection, inputs, force=args.force)
        data = report.to_dict()
        data["documents"] = [{"file": d.path, "doc_id": d.doc_id, "doc_name": d.doc_name, "status": d.status,
                              "pages_indexed": d.pages_indexed, "page_count": d.page_count} for d in report.documents]
        lines = [f"collection {args.collection}: {report.count('indexed')} indexed, {report.count('skipped')} "
                 f"skipped (already indexed), {report.count('failed') + report.count('partial')} failed; "
                 f"{report.pages_indexed} pages in {report.seconds:.1f} s"]
        lines += [f"- {d['doc_name']}: {d['status']}, {d['pages_indexed']}/{d['page_count']} pages"
                  + (f" (doc_id {d['doc_id']})" if d["doc_id"] else "") for d in data["documents"]]
        lines += [f"failed: {e.error}" for e in report.errors]
        return _ok("\n".join(lines), data)


def _may_use(principal: Principal, spec: ToolSpec) -> bool:
    return not spec.write or principal.role in ("admin", "rw")


def _ok(text: str, structured: dict[str, Any]) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)


def _error(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


def _explain(exc: ValidationError, model: type[_Args]) -> str:
    """One line per problem, naming the argument: "argument 'k': must be at most 20 (got 500)"."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err.get("loc", ())]
        field = loc[0] if loc else "arguments"
        where = ".".join(loc) if loc else "arguments"
        kind = err.get("type", "")
        if kind == "missing":
            problems.append(f"argument '{field}' is required")
        elif kind == "extra_forbidden":
            problems.append(f"unknown argument '{field}'; this tool takes: {', '.join(model.model_fields)}")
        else:
            got = err.get("input")
            shown = repr(got) if len(repr(got)) <= 80 else repr(got)[:77] + "..."
            problems.append(f"argument '{where}': {err.get('msg', 'invalid value')} (got {shown})")
    return "; ".join(dict.fromkeys(problems))
