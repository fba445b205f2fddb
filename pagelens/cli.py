"""The ``pagelens`` command line: a thin layer over ``pagelens.app.service.PagelensService``.

Progress and errors go to stderr; results (tables or ``--json``) to stdout. Exit codes: 0 success,
1 some documents failed (index), 2 usage or runtime error (message on stderr).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from pagelens.core.errors import PagelensError
from pagelens.core.settings import Settings
from pagelens.core.types import PageFilter

app = typer.Typer(
    help="pagelens: index PDFs, page images and office documents, find pages by late interaction, answer with citations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)  # one error per line, never wrapped

CollectionOpt = typer.Option(..., "--collection", "-c", envvar="PAGELENS_COLLECTION", help="Collection name.")
JsonOpt = typer.Option(False, "--json", help="Print JSON instead of a table.")
MODE_HELP = (
    "visual | text | hybrid (default: PAGELENS_RETRIEVAL_MODE, hybrid). visual = MaxSim on the page images "
    "with PAGELENS_SEARCH_MODE (two_stage) ; text = BM25 on the text layer; hybrid = both fused "
    "(PAGELENS_TUNING__FUSION). two_stage | exact = visual with that strategy."
)


def parse_pairs(pairs: list[str] | None, option: str) -> dict[str, Any]:
    """``["k=v", ...]`` -> dict; values that look like ints/floats/bools are converted."""
    result: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got '{pair}'", param_hint=option)
        result[key.strip()] = _coerce(value.strip())
    return result


def _coerce(value: str) -> Any:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def make_service(settings: Settings | None = None, role: str | None = None):  # noqa: ANN201 - returns PagelensService
    """The service of one command. With the embedded store it takes the data dir's one-process lock
    first (``pagelens/core/datadir.py``): a second process using the data dir exits 2 naming the first one,
    before any model loads."""
    from pagelens.app.service import PagelensService

    service = PagelensService(settings or Settings(), role=role)
    try:
        service.claim_data_dir()
    except PagelensError as exc:
        service.close()
        raise fail(exc) from exc
    return service


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def fail(exc: PagelensError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc.message}", highlight=False)
    return typer.Exit(2)


@app.callback()
def main_callback(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug details to stderr.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not verbose:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
        for noisy in ("transformers", "httpx", "peft"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        # transformers reads HF_HUB_DISABLE_PROGRESS_BARS when it is imported; it is not imported here (1-2 s)
        # so that commands that fail on their inputs fail at once, before any model is loaded
        if "transformers" in sys.modules:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()


def shard_layout_notes(settings: Settings) -> list[str]:
    """What ``--shard`` workers need from this configuration to run on several hosts, said once per run
    (README, 'Shards on many machines')."""
    if not settings.qdrant_url:
        return ["--shard with the embedded store: one host only, and one process at a time on its data dir "
                "(run the shards one after another). For workers in parallel or on several hosts, use a Qdrant "
                "server (PAGELENS_QDRANT_URL) and one page-image folder every host mounts "
                "(PAGELENS_PAGE_IMAGES_DIR)."]
    if settings.page_images_dir is None:
        return [f"page images go to {settings.pages_dir} on this host: with shards on several hosts, set "
                "PAGELENS_PAGE_IMAGES_DIR on every host (workers and servers) to one shared folder, or answers "
                "and page-image URLs fail on the hosts that lack them."]
    return []


# ------------------------------------------------------------------------------------------------
@app.command("index")
def index_cmd(
    paths: list[Path] = typer.Argument(None, help="PDF/PNG/JPEG/TIFF files, office documents (DOCX, XLSX, PPTX, ODT, RTF, HTML, ...; converted with LibreOffice) or directories (recursive)."),
    collection: str = CollectionOpt,
    metadata: list[str] = typer.Option(None, "--metadata", "-m", help="KEY=VALUE stored with every document."),
    password: str = typer.Option(None, "--password", envvar="PAGELENS_PDF_PASSWORD", help="Password for encrypted PDFs."),
    force: bool = typer.Option(False, "--force", help="Re-index documents that are already complete."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    include: list[str] = typer.Option(None, "--include", help="Glob of files to take from directories (repeatable; default: PDFs, images (png jpg jpeg tif tiff) and office documents (docx doc odt rtf xlsx xls ods pptx ppt odp html htm))."),
    exclude: list[str] = typer.Option(None, "--exclude", help="Glob (file name or path under the directory) to leave out (repeatable)."),
    manifest: list[Path] = typer.Option(None, "--manifest", help="JSONL or CSV manifest: path plus per-document metadata (repeatable)."),
    shard: str = typer.Option(None, "--shard", envvar="PAGELENS_SHARD", help="I/N: index only this worker's share of the inputs (stable hash of their paths)."),
    workers: int = typer.Option(None, "--workers", min=-1, help="Page-preparation processes (default PAGELENS_INGEST_WORKERS; 0: serial)."),
    errors_jsonl: Path = typer.Option(None, "--errors-jsonl", help="Write failures here as JSONL (default: data_dir/reports/<collection>-<time>.jsonl when any)."),
    reindex: bool = typer.Option(False, "--reindex", help="Build a new collection NAME__<model>-<time> and switch the alias NAME to it when complete."),
    sync: bool = typer.Option(False, "--sync", help="Make the collection mirror the one folder given: index new and changed files, rename moved ones, delete the documents whose files are gone; unchanged files are not read again (README, 'Keeping a collection in sync')."),
    dry_run: bool = typer.Option(False, "--dry-run", help="With --sync: print the plan (adds, updates, renames, deletes, unchanged) and change nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="With --sync: go ahead even when it deletes more than PAGELENS_SYNC_MAX_DELETE_SHARE of the collection."),
    checksum: bool = typer.Option(False, "--checksum", help="With --sync: read every file for its hash, even those whose size and modification time are unchanged."),
) -> None:
    """Index documents into a collection (created on first use); resumable, shardable batch jobs.
    With --sync DIR the collection mirrors DIR."""
    from pagelens.core.progress import IndexProgress
    from pagelens.index.pipeline.indexer import IndexInput, default_error_report_path, write_error_report
    from pagelens.ingest import DEFAULT_INCLUDE
    from pagelens.ingest.manifest import collect_inputs, parse_shard, select_shard

    meta = parse_pairs(metadata, "--metadata")
    if sync or dry_run or checksum or yes:
        sync_folder(paths or [], collection, meta, password=password, force=force, as_json=as_json,
                    include=include, exclude=exclude, manifest=manifest, shard=shard, workers=workers,
                    errors_jsonl=errors_jsonl, reindex=reindex, sync=sync, dry_run=dry_run, yes=yes,
                    checksum=checksum)
        return
    try:
        found = collect_inputs(paths or [], include or DEFAULT_INCLUDE, exclude or [], manifest or [])
        files = select_shard(found, parse_shard(shard))
    except PagelensError as exc:
        raise fail(exc) from exc
    if not found:
        where = ", ".join(map(str, [*(paths or []), *(manifest or [])])) or "(no paths given)"
        err.print("[bold red]error:[/] no input files found under " + where)
        raise typer.Exit(2)
    # Checked before any model or store is loaded: a mistyped path fails at once, not after the load.
    if files and not any(f.path.exists() for f in files):
        for f in files:
            err.print(f"[red]failed:[/] {f.path}: file not found", highlight=False)
        err.print("[bold red]error:[/] none of the inputs exist; nothing was indexed (check the paths)",
                  highlight=False)
        raise typer.Exit(2)
    service = make_service(role="pagelens index")
    if shard:
        for note in shard_layout_notes(service.settings):
            err.print(f"[yellow]note:[/] {note}", highlight=False)
    inputs = [IndexInput(path=f.path, name=f.name, metadata={**meta, **f.metadata}, password=password) for f in files]
    target = collection
    try:
        with IndexProgress(err, total_files=len(inputs), enabled=not as_json or err.is_terminal) as progress:
            if reindex:
                from pagelens.app.reindex import reindex_collection

                report, target = reindex_collection(service, collection, inputs, progress=progress.callback,
                                                    workers=workers)
            else:
                report = service.indexer.index(collection, inputs, force=force, progress=progress.callback,
                                               workers=workers)
    except PagelensError as exc:
        raise fail(exc) from exc
    finally:
        service.close()
    report_path = None
    if errors_jsonl is not None or report.errors:
        report_path = write_error_report(report, errors_jsonl or default_error_report_path(service.settings, collection))
    if as_json:
        data = report.to_dict()
        data.update(inputs_found=len(found), inputs_selected=len(files), shard=shard, collection_built=target,
                    error_report=str(report_path) if report_path else None)
        emit_json(data)
    else:
        for error in report.errors:
            err.print(f"[red]failed:[/] {error.error}", highlight=False)
        rate = f" ({report.pages_indexed / report.seconds:.2f} pages/s)" if report.seconds else ""
        out.print(
            f"collection {collection}{' -> ' + target if target != collection else ''}: "
            f"{report.count('indexed')} indexed, "
            + (f"{report.count('updated')} updated (new name/metadata), " if report.count("updated") else "")
            + f"{report.count('skipped')} skipped "
            f"(already indexed), {report.count('failed') + report.count('partial')} failed; "
            f"{report.pages_indexed} pages in {report.seconds:.1f} s{rate}"
            + (f"; shard {shard}: {len(files)} of {len(found)} inputs" if shard else "")
            + (f"; error report {report_path}" if report_path else ""),
            highlight=False,
        )
        if report.repaired and not report.pages_indexed:
            out.print(f"search structures of {target} were stale, rebuilt: {'; '.join(report.repaired)}",
                      highlight=False)
    if not report.ok:
        raise typer.Exit(1)


def sync_folder(paths: list[Path], collection: str, meta: dict[str, Any], *, password: str | None, force: bool,
                as_json: bool, include: list[str] | None, exclude: list[str] | None, manifest: list[Path] | None,
                shard: str | None, workers: int | None, errors_jsonl: Path | None, reindex: bool, sync: bool,
                dry_run: bool, yes: bool, checksum: bool) -> None:
    """``pagelens index DIR --sync`` (``pagelens.app.sync``): plan, refuse a large delete without --yes,
    carry it out; exit 0 done, 1 some files failed, 2 usage or refused."""
    from pagelens.app.sync import sync_inputs
    from pagelens.core.progress import SyncProgress
    from pagelens.index.pipeline.indexer import default_error_report_path
    from pagelens.ingest import DEFAULT_INCLUDE
    from pagelens.ingest.manifest import parse_shard, select_shard

    problems = []
    if not sync:
        problems.append("--dry-run, --yes and --checksum go with --sync")
    if len(paths) != 1:
        problems.append(f"--sync mirrors exactly one folder (got {len(paths)} paths)")
    if manifest:
        problems.append("--sync mirrors a folder; it does not take --manifest (a manifest's names and paths "
                        "are not a folder's)")
    if reindex:
        problems.append("--sync and --reindex do not go together: build the new collection with --reindex, "
                        "then sync it")
    if force:
        problems.append("--sync and --force do not go together: --sync already re-indexes changed files "
                        "(--checksum reads every file)")
    if problems:
        for problem in problems:
            err.print(f"[bold red]error:[/] {problem}", highlight=False)
        raise typer.Exit(2)
    root = Path(paths[0]).expanduser()
    try:
        shard_spec = parse_shard(shard)
        files = select_shard(sync_inputs(root, include or DEFAULT_INCLUDE, exclude or []), shard_spec)
    except PagelensError as exc:
        raise fail(exc) from exc
    service = make_service(role="pagelens index --sync")
    if shard and not dry_run:
        for note in shard_layout_notes(service.settings):
            err.print(f"[yellow]note:[/] {note}", highlight=False)
    try:
        with SyncProgress(err, enabled=not as_json or err.is_terminal) as progress:
            report = service.sync(collection, root, files, dry_run=dry_run, yes=yes, shard=shard_spec,
                                  metadata=meta, checksum=checksum, password=password,
                                  progress=progress.callback, workers=workers)
    except PagelensError as exc:
        raise fail(exc) from exc
    finally:
        service.close()
    report_path = None
    if report.index is not None and (errors_jsonl is not None or report.index.errors):
        from pagelens.index.pipeline.indexer import write_error_report

        report_path = write_error_report(report.index, errors_jsonl or default_error_report_path(
            service.settings, report.plan.collection))
    if as_json:
        emit_json({**report.to_dict(), "error_report": str(report_path) if report_path else None})
    else:
        if dry_run:
            for action in report.plan.actions:
                if action.kind != "unchanged":
                    out.print(f"  {describe_action(action)}", highlight=False, markup=False)
        for error in report.errors:
            err.print(f"[red]failed:[/] {error['error']}", highlight=False)
        if report.refusal:
            err.print(f"[yellow]note:[/] {report.refusal}", highlight=False)
        for kept in report.kept:
            err.print(f"[yellow]kept:[/] {kept.name}: {kept.note}", highlight=False)
        out.print(report.summary() + (f"; error report {report_path}" if report_path else ""), highlight=False)
    if not report.ok:
        raise typer.Exit(1)


def describe_action(action: Any) -> str:
    """One plan line of ``--dry-run``: 'add 2024/a.pdf', 'rename old.pdf -> new.pdf', 'delete x.pdf (3 pages)'."""
    if action.kind == "rename":
        return f"rename {action.old_name} -> {action.name}"
    if action.kind == "delete":
        return f"delete {action.name} ({action.pages} pages)"
    return f"{action.kind} {action.name}" + (f" ({action.note})" if action.note else "")


# ------------------------------------------------------------------------------------------------
def build_filter(doc: list[str] | None, doc_name: list[str] | None, where: list[str] | None,
                 language: list[str] | None = None) -> PageFilter | None:
    page_filter = PageFilter(doc_ids=doc or None, doc_names=doc_name or None, metadata=parse_pairs(where, "--where"),
                             languages=language or None)
    return None if page_filter.is_empty() else page_filter


LanguageOpt = typer.Option(None, "--language", help="Only pages in this language (ISO 639-1: de, nl, pl...; "
                           "und: undetermined; repeatable). `pagelens docs` lists each document's languages.")


@app.command("search")
def search_cmd(
    question: str = typer.Argument(..., help="The question or keywords."),
    collection: str = CollectionOpt,
    k: int = typer.Option(5, "-k", "--top-k", min=1, max=1000, help="Number of pages."),
    mode: str = typer.Option(None, "--mode", help=MODE_HELP),
    doc: list[str] = typer.Option(None, "--doc", help="Only this document id (repeatable)."),
    doc_name: list[str] = typer.Option(None, "--doc-name", help="Only this document name (repeatable)."),
    where: list[str] = typer.Option(None, "--where", help="Metadata KEY=VALUE filter (repeatable)."),
    language: list[str] = LanguageOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Find the pages that best match a question.

    The score column is what ranked the pages, named in its header: maxsim (visual), bm25 (text), rrf or
    dbsf (hybrid: a fused rank value, not a similarity); MaxSim and BM25 are the page's visual and text
    scores where computed ('-' where not). --json: each result has score, score_kind, visual_score,
    text_score and regions (where on the page it matched: boxes as fractions of the page, source text or
    visual)."""
    service = make_service(role="pagelens search")
    try:
        hits = service.search(collection, question, k=k, mode=mode,
                              page_filter=build_filter(doc, doc_name, where, language))
    except PagelensError as exc:
        raise fail(exc) from exc
    finally:
        service.close()
    if as_json:
        emit_json({"collection": collection, "question": question, "results": [h.to_dict() for h in hits]})
        return
    from pagelens.retrieve.types import SCORE_KINDS

    kind = hits[0].score_kind if hits else None
    table = Table("rank", f"score ({kind})" if kind else "score", "MaxSim", "BM25", "document", "page", "image",
                  caption=f"score = {kind}: {SCORE_KINDS[kind]}" if kind else None, caption_justify="left")
    for hit in hits:
        table.add_row(str(hit.rank), f"{hit.score:.3f}", fmt_score(hit.visual_score), fmt_score(hit.text_score),
                      hit.doc_name, f"{hit.page_no}/{hit.page_count}", hit.image_path or "")
    out.print(table)


def fmt_score(value: float | None) -> str:
    """A score with 3 decimals, or '-' when it was not computed."""
    return "-" if value is None else f"{value:.3f}"


def describe_scores(kind: str, score: float, visual: float | None, text: float | None) -> str:
    """'rrf 0.500, MaxSim 12.345, BM25 3.210': the ranking score named by its kind, then the inputs."""
    parts = [f"{kind} {score:.3f}"]
    if visual is not None and kind != "maxsim":
        parts.append(f"MaxSim {visual:.3f}")
    if text is not None and kind != "bm25":
        parts.append(f"BM25 {text:.3f}")
    return ", ".join(parts)


@app.command("ask")
def ask_cmd(
    question: str = typer.Argument(..., help="The question."),
    collection: str = CollectionOpt,
    k: int = typer.Option(None, "-k", "--top-k", min=1, max=16, help="Pages shown to the answer model (default 3)."),
    mode: str = typer.Option(None, "--mode", help=MODE_HELP),
    doc: list[str] = typer.Option(None, "--doc", help="Only this document id (repeatable)."),
    doc_name: list[str] = typer.Option(None, "--doc-name", help="Only this document name (repeatable)."),
    where: list[str] = typer.Option(None, "--where", help="Metadata KEY=VALUE filter (repeatable)."),
    language: list[str] = LanguageOpt,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: answer, citations, timings."),
    no_stream: bool = typer.Option(False, "--no-stream", help="Print the answer only when it is complete."),
) -> None:
    """Answer a question from the collection's pages, citing document and page."""
    service = make_service(role="pagelens ask")
    page_filter = build_filter(doc, doc_name, where, language)
    try:
        if as_json or no_stream:
            answer = service.ask(collection, question, k=k, mode=mode, page_filter=page_filter)
            if as_json:
                emit_json(answer.to_dict())
                return
            out.print(answer.text, highlight=False)
        else:
            answer = None
            for event in service.ask_stream(collection, question, k=k, mode=mode, page_filter=page_filter):
                if event.kind == "token":
                    sys.stdout.write(event.text)
                    sys.stdout.flush()
                else:
                    answer = event.answer
            sys.stdout.write("\n")
    except PagelensError as exc:
        raise fail(exc) from exc
    finally:
        service.close()
    if answer is not None and answer.citations:
        out.print("\nSources:", style="bold")
        for i, c in enumerate(answer.citations, start=1):
            out.print(f"  [{i}] {c.doc_name}, page {c.page_no} "
                      f"({describe_scores(c.score_kind, c.score, c.visual_score, c.text_score)})", highlight=False)


# ------------------------------------------------------------------------------------------------
@app.command("collections")
def collections_cmd(as_json: bool = JsonOpt) -> None:
    """List collections with their model and size."""
    service = make_service(role="pagelens collections")
    try:
        infos = service.collections()
    except PagelensError as exc:
        raise fail(exc) from exc
    finally:
        service.close()
    if as_json:
        emit_json([i.to_dict() for i in infos])
        return
    table = Table("collection", "documents", "pages", "retriever model", "created")
    for info in infos:
        table.add_row(info.name, str(info.documents), str(info.pages), info.model_id, info.created_at)
    out.print(table)


@app.command("docs")
def docs_cmd(
    collection: str = CollectionOpt,
    as_json: bool = JsonOpt,
    limit: int = typer.Option(None, "--limit", min=1, help="List at most this many documents (sorted by name)."),
    offset: int = typer.Option(0, "--offset", min=0, help="Skip this many documents first."),
) -> None:
    """List the documents of a collection: pages, status, page languages and text sources (pdf/ocr/none)."""
    service = make_service(role="pagelens docs")
    try:
        docs = service.documents(collection, offset=offset, limit=limit)
    except PagelensError as exc:
        raise fail(exc) from exc
    finally:
        service.close()
    if as_json:
        emit_json([d.to_dict() for d in docs])
        return
    table = Table("doc id", "name", "pages", "status", "languages", "text", "indexed at")
    for d in docs:
        langs = " ".join(f"{code}:{n}" for code, n in d.to_dict()["languages"].items())
        sources = " ".join(f"{src}:{n}" for src, n in sorted(d.text_sources.items()))
        table.add_row(d.doc_id, d.doc_name, f"{d.pages_indexed}/{d.page_count}", d.status, langs, sources,
                      d.indexed_at)
    out.print(table)


@app.command("delete")
def delete_cmd(
    collection: str = CollectionOpt,
    doc: str = typer.Option(None, "--doc", help="Document id to delete (see `pagelens docs`)."),
    all_: bool = typer.Option(False, "--all", help="Delete the whole collection."),
    as_json: bool = JsonOpt,
) -> None:
    """Delete a document from a collection (or the whole collection with --all)."""
    if bool(doc) == all_:
        err.print("[bold red]error:[/] give exactly one of --doc ID or --all")
        raise typer.Exit(2)
    service = make_service(role="pagelens delete")
    try:
        if all_:
            service.delete_collection(collection)
            result: dict[str, Any] = {"collection": collection, "deleted": "collection"}
        else:
            pages = service.delete_document(collection, doc)
            result = {"collection": collection, "doc_id": doc, "pages_deleted": pages}
    except PagelensError as exc:
        raise fail(exc) from exc
    finally:
        service.close()
    if as_json:
        emit_json(result)
    elif all_:
        out.print(f"deleted collection {collection}")
    else:
        out.print(f"deleted document {doc} ({result['pages_deleted']} pages) from {collection}")


@app.command("optimize")
def optimize_cmd(
    collection: str = typer.Option(None, "--collection", "-c", help="Collection name (default: every collection)."),
    as_json: bool = JsonOpt,
) -> None:
    """Rebuild the search structures (HNSW graphs; embedded store: rerank cache, token index) and say what was
    rebuilt. Exit 1 when a collection is still not current afterwards (e.g. a Qdrant server still optimizing)."""
    service = make_service()
    try:
        results = service.optimize(collection, force=True)
    except PagelensError as exc:
        raise fail(exc) from exc
    finally:
        service.close()
    if as_json:
        emit_json({"collections": [r.to_dict() for r in results]})
    else:
        if not results:
            out.print("no collections")
        for r in results:
            was = "was current" if r.before.current else "was stale: " + "; ".join(r.before.stale)
            did = "rebuilt " + "; ".join(r.rebuilt) if r.rebuilt else "nothing to rebuild"
            now = "current" if r.after.current else "still stale: " + "; ".join(r.after.stale)
            out.print(f"collection {r.collection}: {was}; {did} ({r.seconds:.1f} s); now {now}", highlight=False)
            check = r.after.self_check
            if check:  # the measured search plan (index/ann/self_check.py)
                from pagelens.index.ann.self_check import SearchPlan

                plan = SearchPlan.from_dict(check)
                geo = plan.geometry
                shape = (f"; mean token cosine {geo['mean_token_cosine']:.2f}, {geo['pca_dims_90']} PCA dimensions "
                         f"for 90% of the variance, {geo['near_duplicate_share']:.0%} near-duplicate patches") \
                    if geo else ""
                out.print(f"  search: {plan.summary()}{shape}", highlight=False)
    if any(not r.after.current for r in results):
        raise typer.Exit(1)


# ------------------------------------------------------------------------------------------------
def _eval_progress(mode: str, done: int, total: int) -> None:
    """``pagelens eval``'s progress line: every 50 queries of a mode, and its last."""
    if done == total or done % 50 == 0:
        err.print(f"  {mode}: {done}/{total} queries", highlight=False)


@app.command("eval")
def eval_cmd(
    dataset: Path = typer.Argument(..., help="JSONL / Parquet (ViDoRe) file, or a folder with queries.jsonl and documents."),
    collection: str = CollectionOpt,
    modes: str = typer.Option("visual,text,hybrid", "--modes", help="Comma-separated: visual,text,hybrid,two_stage,exact."),
    answers: bool = typer.Option(False, "--answers", help="Also answer each query with a reference answer: EM and ANLS."),
    out_dir: Path = typer.Option(None, "--out", "-o", help="Report folder (default: ./eval-<dataset>-<collection>)."),
    docs: Path = typer.Option(None, "--docs", help="Folder of the dataset's documents (default: next to the dataset)."),
    ks: str = typer.Option("1,3,5,10", "--ks", help="Comma-separated k of recall@k (nDCG is @5)."),
    no_index: bool = typer.Option(False, "--no-index", help="Do not index the documents (the collection is ready)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary JSON instead of the table."),
    retrievers: list[str] = typer.Option(None, "--retriever", help="Compare retriever models (hub id or folder; repeat: --retriever A --retriever B): each indexes the documents into its own collection NAME__<model>; comparison.md/.json."),
) -> None:
    """Evaluate retrieval (nDCG@5, recall@k, MRR, latency) per mode on a dataset; report.md/.json + plot."""
    from pagelens.app.evaluation import load_dataset, run_eval, write_report

    mode_list = [m.strip() for m in modes.split(",") if m.strip()]
    try:
        k_list = sorted({int(k) for k in ks.split(",") if k.strip()})
    except ValueError as exc:
        raise typer.BadParameter(f"expected integers, got '{ks}'", param_hint="--ks") from exc
    if not mode_list or not k_list or min(k_list) < 1:
        raise typer.BadParameter("give at least one mode and k >= 1")
    if retrievers:
        _compare_cmd(dataset, collection, retrievers, mode_list, k_list, answers, out_dir, docs, no_index, as_json)
        return
    service = make_service(role="pagelens eval")
    try:
        data = load_dataset(dataset, docs_dir=docs)
        err.print(f"{data.name}: {len(data.queries)} queries, {len(data.documents)} documents; modes "
                  f"{', '.join(mode_list)}", highlight=False)

        result = run_eval(service, data, collection, modes=mode_list, ks=k_list, answers=answers,
                          index=not no_index, progress=_eval_progress)
    except PagelensError as exc:
        raise fail(exc) from exc
    finally:
        service.close()
    target = out_dir or Path(f"eval-{data.name}-{collection}")
    paths = write_report(result, target)
    if as_json:
        emit_json({"outputs": {k: str(v) for k, v in paths.items()},
                   **{k: v for k, v in result.to_dict().items() if k != "modes"},
                   "modes": [m.to_dict(with_queries=False) for m in result.modes]})
        return
    out.print(paths["markdown"].read_text(encoding="utf-8"), highlight=False, markup=False)
    err.print(f"wrote {paths['markdown']}, {paths['json']}, {paths['plot']}", highlight=False)


def _compare_cmd(dataset: Path, collection: str, retrievers: list[str], modes: list[str], ks: list[int],
                 answers: bool, out_dir: Path | None, docs: Path | None, no_index: bool, as_json: bool) -> None:
    """``pagelens eval --retriever A --retriever B``: one evaluation per retriever, then the comparison."""
    from pagelens.app.evaluation import compare_retrievers, load_dataset, write_comparison

    base = Settings()
    models = [Settings(retriever_model=r).retriever_model for r in retrievers]  # local folders: absolute paths

    def open_service(model: str):  # noqa: ANN202 - PagelensService
        revision = base.retriever_revision if model == base.retriever_model else None
        return make_service(base.model_copy(update={"retriever_model": model, "retriever_revision": revision}),
                            role="pagelens eval")

    try:
        data = load_dataset(dataset, docs_dir=docs)
        err.print(f"{data.name}: {len(data.queries)} queries, {len(data.documents)} documents; modes "
                  f"{', '.join(modes)}; {len(models)} retrievers", highlight=False)

        comparison = compare_retrievers(open_service, data, collection, models, modes=modes, ks=ks,
                                        answers=answers, index=not no_index, progress=_eval_progress)
    except PagelensError as exc:
        raise fail(exc) from exc
    paths = write_comparison(comparison, out_dir or Path(f"eval-{data.name}-{collection}-compare"))
    if as_json:
        emit_json({"outputs": {k: str(v) for k, v in paths.items()}, "dataset": comparison.dataset,
                   "runs": [{"retriever": r.retriever, "collection": r.collection, "family": r.family,
                             "index_seconds": round(r.result.index_seconds, 3),
                             "modes": [m.to_dict(with_queries=False) for m in r.result.modes]}
                            for r in comparison.runs]})
        return
    out.print(paths["markdown"].read_text(encoding="utf-8"), highlight=False, markup=False)
    err.print(f"wrote {paths['markdown']}, {paths['json']} and one report folder per retriever", highlight=False)


# ------------------------------------------------------------------------------------------------
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings, host: str, insecure: bool, what: str) -> None:
    """Refuse a non-loopback address when no API keys are configured, unless ``--insecure``."""
    try:
        from pagelens.app.access import parse_api_keys

        has_keys = bool(parse_api_keys(settings.api_keys.get_secret_value() if settings.api_keys else None))
    except ValueError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from exc
    if has_keys or is_loopback(host):
        return
    if not insecure:
        err.print(
            f"[bold red]error:[/] refusing to serve {what} on {host} without API keys; set PAGELENS_API_KEYS "
            "(see pagelens/app/access.py) or pass --insecure to expose it unauthenticated",
            highlight=False,
        )
        raise typer.Exit(2)
    err.print(f"[bold yellow]warning:[/] serving {what} on {host} with no API keys (--insecure)", highlight=False)


@contextlib.contextmanager
def hold_data_dir(settings: Settings, role: str, host: str, port: int) -> Iterator[None]:
    """Hold the data dir's one-process lock (``pagelens/core/datadir.py``) while serving; exit 2 naming the
    holder when another process has it. Taken with either store: the job worker owns jobs.sqlite3 and
    the uploads (with the embedded store, every other process is refused too)."""
    from pagelens.core.datadir import DataDirLock

    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    lock = DataDirLock(settings.data_dir, role, purpose="jobs" if bool(settings.qdrant_url) else "store", url=url)
    try:
        lock.acquire()
    except PagelensError as exc:
        raise fail(exc) from exc
    try:
        yield
    finally:
        lock.release()


@app.command("serve")
def serve_cmd(
    host: str = typer.Option("127.0.0.1", "--host", envvar="PAGELENS_HOST", help="Address to bind."),
    port: int = typer.Option(8000, "--port", envvar="PAGELENS_PORT", min=1, max=65535, help="TCP port."),
    insecure: bool = typer.Option(False, "--insecure", help="Allow a non-loopback address without API keys."),
) -> None:
    """Run the HTTP API (OpenAPI at /docs). Without PAGELENS_API_KEYS it binds to loopback only."""
    settings = Settings()
    check_bind(settings, host, insecure, what="the API")
    import uvicorn

    from pagelens.server import create_app

    with hold_data_dir(settings, "pagelens serve", host, port):
        uvicorn.run(create_app(settings, bind=host), host=host, port=port, log_level="info")


@app.command("ui")
def ui_cmd(
    host: str = typer.Option("127.0.0.1", "--host", envvar="PAGELENS_HOST", help="Address to bind."),
    port: int = typer.Option(7860, "--port", envvar="PAGELENS_UI_PORT", min=1, max=65535, help="TCP port."),
    insecure: bool = typer.Option(False, "--insecure", help="Allow a non-loopback address without API keys."),
) -> None:
    """Run the web UI alone (at /ui, with the index worker). `pagelens serve` also serves it at /ui."""
    settings = Settings()
    check_bind(settings, host, insecure, what="the UI")
    import uvicorn

    from pagelens.ui.app import create_ui_app

    with hold_data_dir(settings, "pagelens ui", host, port):
        err.print(f"pagelens UI on http://{host}:{port}/ui/", highlight=False)
        uvicorn.run(create_ui_app(settings, bind=host), host=host, port=port, log_level="info")


@app.command("mcp")
def mcp_cmd() -> None:
    """Serve MCP over stdin/stdout for an agent (Claude Desktop, IDE assistants): tools list_collections,
    list_documents, search_pages, ask, get_page, and with a writing key delete_document, index_files.
    With PAGELENS_API_KEYS set it acts with the key in PAGELENS_MCP_KEY. `pagelens serve` serves the
    same tools over HTTP at /mcp."""
    import anyio

    from pagelens.mcp.keys import McpKeyError, stdio_principal

    settings = Settings()
    try:
        principal = stdio_principal(settings)  # before the heavy imports: a bad key fails at once
    except (McpKeyError, ValueError) as exc:  # ValueError: a malformed PAGELENS_API_KEYS
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from exc
    from pagelens.mcp.server import serve_stdio

    service = make_service(settings)
    try:
        anyio.run(serve_stdio, service, principal)
    finally:
        service.close()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
