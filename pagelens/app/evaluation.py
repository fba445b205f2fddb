"""``pagelens eval``: ViDoRe-style retrieval evaluation (and optional answer accuracy) per mode.

Dataset (``load_dataset``), one of:

* a JSONL file, one query per line::

      {"qid": "q1", "query": "...", "relevant": [{"doc": "report.pdf", "page": 3}], "answer": "42"}

  (``"doc"`` + ``"page"`` at the top level instead of ``relevant`` is accepted too; ``answer`` may be
  a string or a list of accepted strings; ``page`` is 1-based). Its documents are the PDFs/images in
  ``docs_dir`` when given, else in a ``documents/`` folder next to the file, else next to the file.
* a folder holding ``queries.jsonl`` (or exactly one ``*.jsonl`` / ``*.parquet``) and its documents
  (``documents/`` or the folder itself);
* a Parquet file in the ViDoRe layout (``query``, ``image`` {bytes}, ``image_filename``, optional
  ``answer``; rows with an empty query are corpus pages only). Each image becomes one single-page
  document, written once under ``<cache>/`` as ``<image_filename>.png``; needs ``pip install pyarrow``.

Documents are matched to hits by file name (with or without extension, case-insensitive) and page.

Run (``run_eval``): index the documents into the collection (idempotent: complete documents are
skipped), then for each mode run every query with ``k = max(ks)`` and compute nDCG@5, recall@k,
MRR and search latency percentiles; with ``answers``, also ``ask`` in that mode and score
normalised exact match and ANLS against the reference answers. ``write_report`` writes
``report.md``, ``report.json`` and ``recall_at_k.png``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pagelens.core.errors import InvalidRequestError, PagelensError
from pagelens.retrieve import metrics

if TYPE_CHECKING:
    from pagelens.app.service import PagelensService

log = logging.getLogger(__name__)

DEFAULT_KS = (1, 3, 5, 10)
DOC_SUFFIXES = (".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


def doc_key(name: str) -> str:
    """Match key of a document name: base name, lower case, document extension removed."""
    base = Path(str(name)).name.lower()
    for suffix in DOC_SUFFIXES:
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


@dataclass
class EvalQuery:
    qid: str
    query: str
    relevant: list[tuple[str, int]]  # (document name, 1-based page)
    answers: list[str] = field(default_factory=list)
    kind: str = ""

    def relevant_keys(self) -> set[tuple[str, int]]:
        return {(doc_key(d), int(p)) for d, p in self.relevant}


@dataclass
class EvalDataset:
    name: str
    queries: list[EvalQuery]
    documents: list[Path]


# --- loading -------------------------------------------------------------------------------------


def _parse_row(row: dict[str, Any], line_no: int) -> EvalQuery:
    query = str(row.get("query") or "").strip()
    if not query:
        raise InvalidRequestError(f"dataset line {line_no}: missing 'query'")
    rel = row.get("relevant")
    if rel is None and row.get("doc") is not None:
        rel = [{"doc": row["doc"], "page": row.get("page", 1)}]
    if not rel:
        raise InvalidRequestError(f"dataset line {line_no}: give 'relevant': [{{'doc', 'page'}}] or 'doc' + 'page'")
    relevant = [(str(r["doc"]), int(r.get("page", 1))) for r in rel]
    answer = row.get("answer", row.get("answers"))
    answers = [] if answer in (None, "") else ([str(a) for a in answer] if isinstance(answer, list) else [str(answer)])
    return EvalQuery(str(row.get("qid") or f"q{line_no}"), query, relevant, answers, str(row.get("kind") or ""))


def load_jsonl(path: Path) -> list[EvalQuery]:
    queries = []
    with Path(path).open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise InvalidRequestError(f"{path} line {line_no}: not JSON ({exc})") from exc
                queries.append(_parse_row(row, line_no))
    return queries


def _documents_in(folder: Path) -> list[Path]:
    from pagelens.ingest import discover_inputs

    return [p for p in discover_inputs([folder]) if p.suffix.lower() in DOC_SUFFIXES]


def load_parquet(path: Path, cache_dir: Path) -> tuple[list[EvalQuery], list[Path]]:
    """ViDoRe layout: one image page per row; see the module docstring."""
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise InvalidRequestError("reading Parquet datasets needs pyarrow: pip install pyarrow") from exc
    table = pq.read_table(path)
    cols = set(table.column_names)
    if not {"query", "image"} <= cols:
        raise InvalidRequestError(f"{path}: expected ViDoRe columns 'query' and 'image', got {sorted(cols)}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    queries: list[EvalQuery] = []
    docs: dict[str, Path] = {}
    for i, row in enumerate(table.to_pylist()):
        name = Path(str(row.get("image_filename") or f"page_{i:06d}")).name
        stem = doc_key(name)
        if stem not in docs:
            target = cache_dir / f"{stem}.png"
            if not target.exists():
                image = row["image"]
                data = image.get("bytes") if isinstance(image, dict) else image
                if not isinstance(data, (bytes, bytearray)):
                    raise InvalidRequestError(f"{path}: row {i} ({name}) has no image bytes in column 'image'")
                _write_png(bytes(data), target)
            docs[stem] = target
        query = str(row.get("query") or "").strip()
        if query:
            answer = row.get("answer")
            answers = [] if answer in (None, "") else ([str(a) for a in answer] if isinstance(answer, list) else [str(answer)])
            queries.append(EvalQuery(f"q{i}", query, [(stem, 1)], answers))
    return queries, sorted(docs.values())


def _write_png(data: bytes, target: Path) -> None:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.convert("RGB").save(target, format="PNG")


def load_dataset(path: Path, docs_dir: Path | None = None, cache_dir: Path | None = None) -> EvalDataset:
    path = Path(path).expanduser()
    if not path.exists():
        raise InvalidRequestError(f"dataset {path} does not exist")
    if path.is_dir():
        candidates = [path / "queries.jsonl"] if (path / "queries.jsonl").is_file() else sorted(
            [*path.glob("*.jsonl"), *path.glob("*.parquet")]
        )
        if len(candidates) != 1:
            raise InvalidRequestError(
                f"dataset folder {path}: expected queries.jsonl or exactly one *.jsonl / *.parquet, "
                f"found {[c.name for c in candidates]}"
            )
        file = candidates[0]
        root = path
    else:
        file, root = path, path.parent
    if file.suffix == ".parquet":
        queries, documents = load_parquet(file, cache_dir or (root / f".{file.stem}-pages"))
    else:
        queries = load_jsonl(file)
        folder = docs_dir or (root / "documents" if (root / "documents").is_dir() else root)
        documents = _documents_in(Path(folder))
    if not queries:
        raise InvalidRequestError(f"dataset {path} has no queries")
    known = {doc_key(d.name) for d in documents}
    missing = sorted({doc_key(d) for q in queries for d, _ in q.relevant} - known)
    if missing:
        log.warning("%d relevant documents are not among the dataset's documents: %s", len(missing), missing[:5])
    return EvalDataset(name=file.stem, queries=queries, documents=documents)


# --- running ------------------------------------------------------------------------------------


@dataclass
class QueryResult:
    qid: str
    ranked: list[tuple[str, int]]
    latency_s: float
    metrics: dict[str, float]
    answer: str | None = None
    answer_metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class ModeResult:
    mode: str
    summary: dict[str, float] = field(default_factory=dict)
    recall_curve: list[float] = field(default_factory=list)  # recall@1..max_k
    queries: list[QueryResult] = field(default_factory=list)
    error: str | None = None
    mode_used: str = ""

    def to_dict(self, with_queries: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "mode": self.mode,
            "mode_used": self.mode_used,
            "error": self.error,
            "summary": self.summary,
            "recall_curve": self.recall_curve,
        }
        if with_queries:
            data["queries"] = [
                {
                    "qid": q.qid,
                    "ranked": [[d, p] for d, p in q.ranked],
                    "latency_ms": round(q.latency_s * 1000, 3),
                    **{k: round(v, 6) for k, v in q.metrics.items()},
                    **({"answer": q.answer, **q.answer_metrics} if q.answer is not None else {}),
                }
                for q in self.queries
            ]
        return data


@dataclass
class EvalResult:
    dataset: str
    collection: str
    n_queries: int
    n_documents: int
    ks: tuple[int, ...]
    modes: list[ModeResult]
    config: dict[str, Any] = field(default_factory=dict)
    index_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "collection": self.collection,
            "n_queries": self.n_queries,
            "n_documents": self.n_documents,
            "ks": list(self.ks),
            "index_seconds": round(self.index_seconds, 3),
            "config": self.config,
            "modes": [m.to_dict() for m in self.modes],
        }


def score_ranking(ranked: Sequence[tuple[str, int]], relevant: set[tuple[str, int]], ks: Sequence[int]) -> dict[str, float]:
    out = {"ndcg@5": metrics.ndcg_at_k(ranked, relevant, 5), "mrr": metrics.reciprocal_rank(ranked, relevant)}
    for k in ks:
        out[f"recall@{k}"] = metrics.recall_at_k(ranked, relevant, k)
    return out


def evaluate_mode(
    service: PagelensService,
    collection: str,
    queries: Sequence[EvalQuery],
    mode: str,
    ks: Sequence[int] = DEFAULT_KS,
    answers: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> ModeResult:
    """Every query in one mode; a mode the collection cannot run (no text index) gives ``error``."""
    max_k = max(ks)
    result = ModeResult(mode)
    retriever = service.retriever
    for i, q in enumerate(queries, start=1):
        t0 = time.perf_counter()
        try:
            hits = retriever.search(
                collection, q.query, k=max_k, mode=mode, strategy=service.settings.search_mode
            )
        except PagelensError as exc:
            if i == 1:  # a mode-wide problem (e.g. no text index): report it, go on with other modes
                result.error = exc.message
                return result
            raise
        latency = time.perf_counter() - t0
        result.mode_used = retriever.last_timings.mode
        ranked = [(doc_key(h.doc_name), h.page_no) for h in hits]
        qr = QueryResult(q.qid, ranked, latency, score_ranking(ranked, q.relevant_keys(), ks))
        if answers and q.answers:
            answer = service.ask(collection, q.query, mode=mode)  # type: ignore[arg-type]
            qr.answer = answer.text
            qr.answer_metrics = {
                "exact_match": metrics.exact_match(answer.text, q.answers),
                "anls": metrics.anls(answer.text, q.answers),
            }
        result.queries.append(qr)
        if progress:
            progress(mode, i, len(queries))
    qs = result.queries
    latencies = [q.latency_s * 1000 for q in qs]
    summary: dict[str, float] = {"queries": float(len(qs))}
    for name in ["ndcg@5", *[f"recall@{k}" for k in ks], "mrr"]:
        summary[name] = metrics.mean(q.metrics[name] for q in qs)
    for p in (50, 95, 99):
        summary[f"latency_p{p}_ms"] = metrics.percentile(latencies, p)
    answered = [q for q in qs if q.answer is not None]
    if answered:
        summary["answers"] = float(len(answered))
        summary["exact_match"] = metrics.mean(q.answer_metrics["exact_match"] for q in answered)
        summary["anls"] = metrics.mean(q.answer_metrics["anls"] for q in answered)
    result.summary = summary
    result.recall_curve = [
        metrics.mean(metrics.recall_at_k(q.ranked, queries[j].relevant_keys(), k) for j, q in enumerate(qs))
        for k in range(1, max_k + 1)
    ]
    return result


def run_eval(
    service: PagelensService,
    dataset: EvalDataset,
    collection: str,
    modes: Sequence[str] = ("visual", "text", "hybrid"),
    ks: Sequence[int] = DEFAULT_KS,
    answers: bool = False,
    index: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> EvalResult:
    from pagelens.index.pipeline.indexer import IndexInput
    from pagelens.retrieve.hybrid import resolve_mode

    for mode in modes:
        resolve_mode(mode)  # unknown modes fail before any work
    ks = tuple(sorted(set(ks) | {5}))
    index_s = 0.0
    if index:
        t0 = time.perf_counter()
        report = service.index(collection, [IndexInput(path=p) for p in dataset.documents])
        index_s = time.perf_counter() - t0
        for error in report.errors:
            log.warning("indexing failed: %s", error.error)
    results = [evaluate_mode(service, collection, dataset.queries, m, ks, answers, progress) for m in modes]
    s = service.settings
    config = {
        "retriever_model": s.retriever_model,
        "visual_strategy": s.search_mode,
        "fusion": s.tuning.fusion,
        "rrf_k": s.tuning.rrf_k,
        "hybrid_text_weight": s.tuning.hybrid_text_weight,
        "hybrid_candidates": s.tuning.hybrid_candidates,
        "page_longest_edge": s.page_longest_edge,
        "answers": answers,
    }
    return EvalResult(dataset.name, collection, len(dataset.queries), len(dataset.documents), ks, results,
                      config, index_s)


# --- reporting ----------------------------------------------------------------------------------


def render_markdown(result: EvalResult) -> str:
    ks = result.ks
    lines = [
        f"# pagelens evaluation: {result.dataset}",
        "",
        f"Collection `{result.collection}`: {result.n_documents} documents, {result.n_queries} queries. "
        f"Retriever `{result.config.get('retriever_model')}`, visual strategy "
        f"`{result.config.get('visual_strategy')}`, hybrid fusion `{result.config.get('fusion')}` "
        f"(rrf_k {result.config.get('rrf_k')}, text weight {result.config.get('hybrid_text_weight')}).",
        "",
    ]
    header = ["mode", "nDCG@5", *[f"R@{k}" for k in ks], "MRR", "p50 ms", "p95 ms", "p99 ms"]
    answers = any("anls" in m.summary for m in result.modes)
    if answers:
        header += ["EM", "ANLS"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in result.modes:
        if m.error:
            lines.append(f"| {m.mode} | " + " | ".join(["n/a"] * (len(header) - 1)) + " |")
            continue
        s = m.summary
        label = m.mode if m.mode_used in ("", m.mode) or m.mode in ("two_stage", "exact") else f"{m.mode} (ran {m.mode_used})"
        row = [label, f"{s['ndcg@5']:.3f}", *[f"{s[f'recall@{k}']:.3f}" for k in ks], f"{s['mrr']:.3f}",
               f"{s['latency_p50_ms']:.1f}", f"{s['latency_p95_ms']:.1f}", f"{s['latency_p99_ms']:.1f}"]
        if answers:
            row += [f"{s['exact_match']:.3f}" if "exact_match" in s else "", f"{s['anls']:.3f}" if "anls" in s else ""]
        lines.append("| " + " | ".join(row) + " |")
    errors = [m for m in result.modes if m.error]
    if errors:
        lines += ["", "Modes not run:"] + [f"- `{m.mode}`: {m.error}" for m in errors]
    lines += [
        "",
        "nDCG@5 / recall@k / MRR: mean over queries (binary relevance, trec_eval definitions). "
        "Latency: one search (query encoding + store), milliseconds. "
        + ("EM: normalised exact match; ANLS: DocVQA metric (threshold 0.5). " if answers else "")
        + "Plot: `recall_at_k.png`; per-query rankings: `report.json`.",
        "",
    ]
    return "\n".join(lines)


def plot_recall(result: EvalResult, target: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise InvalidRequestError("the recall plot needs matplotlib: pip install matplotlib") from exc
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    for m in result.modes:
        if m.recall_curve:
            ks = list(range(1, len(m.recall_curve) + 1))
            ax.plot(ks, m.recall_curve, marker="o", label=f"{m.mode} (nDCG@5 {m.summary.get('ndcg@5', 0):.2f})")
    ax.set_xlabel("k (pages returned)")
    ax.set_ylabel("recall@k")
    ax.set_ylim(0, 1.02)
    ax.set_xticks(range(1, max((len(m.recall_curve) for m in result.modes), default=1) + 1))
    ax.grid(True, alpha=0.3)
    ax.set_title(f"{result.dataset}: {result.n_queries} queries, {result.n_documents} documents")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(target)
    plt.close(fig)


def write_report(result: EvalResult, out_dir: Path) -> dict[str, Path]:
    """Writes report.md, report.json, recall_at_k.png under ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / "report.md", "json": out_dir / "report.json", "plot": out_dir / "recall_at_k.png"}
    paths["markdown"].write_text(render_markdown(result), encoding="utf-8")
    paths["json"].write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
    plot_recall(result, paths["plot"])
    return paths


# --- comparing retrievers (``pagelens eval --retriever A --retriever B``) -------------------------------


@dataclass
class RetrieverRun:
    """One retriever's evaluation: its model id, the collection it was measured on, its family."""

    retriever: str
    collection: str
    family: str
    result: EvalResult

    def to_dict(self) -> dict[str, Any]:
        return {"retriever": self.retriever, "collection": self.collection, "family": self.family,
                "result": self.result.to_dict()}


@dataclass
class Comparison:
    """Several retrievers on the same dataset, queries and modes (one collection per retriever)."""

    dataset: str
    ks: tuple[int, ...]
    runs: list[RetrieverRun]

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "ks": list(self.ks), "runs": [r.to_dict() for r in self.runs]}


def comparison_collections(service: PagelensService, collection: str, retrievers: Sequence[str]) -> list[str]:
    """The collection each retriever is measured on: ``collection`` itself for the retriever it was built
    with (an existing collection is reused as it is), else ``<collection>__<model-slug>`` (``-2``... when two
    retrievers share a slug). A collection holds one retriever's vectors, so each needs its own."""
    from pagelens.index.stores.aliases import model_slug
    from pagelens.index.stores.filters import validate_collection_name

    manifest = service.store.get_manifest(collection)
    names: list[str] = []
    for retriever in retrievers:
        if manifest is not None and manifest.model_id == retriever and collection not in names:
            names.append(collection)
            continue
        suffix, n = f"__{model_slug(retriever)}", 1
        name = collection[: 64 - len(suffix)] + suffix
        while name in names:
            n += 1
            name = collection[: 64 - len(suffix) - 3] + f"{suffix}-{n}"
        names.append(validate_collection_name(name))
    return names


def compare_retrievers(
    open_service: Callable[[str], PagelensService],
    dataset: EvalDataset,
    collection: str,
    retrievers: Sequence[str],
    modes: Sequence[str] = ("visual", "text", "hybrid"),
    ks: Sequence[int] = DEFAULT_KS,
    answers: bool = False,
    index: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> Comparison:
    """``run_eval`` once per retriever, each on its own collection (``comparison_collections``), one
    retriever loaded at a time. ``retrievers``: model ids as ``Settings.retriever_model`` records them (a
    local folder: its absolute path); ``open_service(retriever)``: a service configured with that retriever
    (closed here after its run). Raises ``InvalidRequestError`` for fewer than one or repeated retrievers."""
    if not retrievers:
        raise InvalidRequestError("give at least one --retriever")
    if len(set(retrievers)) != len(retrievers):
        raise InvalidRequestError(f"--retriever given twice: {sorted(r for r in set(retrievers) if retrievers.count(r) > 1)}")
    runs: list[RetrieverRun] = []
    targets: list[str] | None = None
    for i, retriever in enumerate(retrievers):
        service = open_service(retriever)
        try:
            model_id = service.settings.retriever_model
            if targets is None:
                targets = comparison_collections(service, collection, retrievers)
            log.info("retriever %d/%d: %s on collection %s", i + 1, len(retrievers), model_id, targets[i])
            result = run_eval(service, dataset, targets[i], modes, ks, answers, index, progress)
            manifest = service.store.get_manifest(targets[i])
            family = manifest.family if manifest is not None else ""
        finally:
            service.close()
        runs.append(RetrieverRun(model_id, targets[i], family, result))
    return Comparison(dataset.name, runs[0].result.ks, runs)


def render_comparison(comparison: Comparison) -> str:
    """Markdown: one row per retriever and mode (nDCG@5, recall@k, MRR, p50 latency, indexing time),
    then the best retriever per mode by nDCG@5."""
    ks = comparison.ks
    header = ["retriever", "family", "mode", "nDCG@5", *[f"R@{k}" for k in ks], "MRR", "p50 ms", "index s"]
    first = comparison.runs[0].result
    lines = [
        f"# pagelens retriever comparison: {comparison.dataset}",
        "",
        f"{first.n_documents} documents, {first.n_queries} queries; each retriever indexed the same documents "
        "into its own collection and ran the same queries.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    best: dict[str, tuple[float, str]] = {}
    for run in comparison.runs:
        for m in run.result.modes:
            name = Path(run.retriever).name or run.retriever
            if m.error:
                lines.append(f"| {name} | {run.family} | {m.mode} | " + " | ".join(["n/a"] * (len(header) - 3)) + " |")
                continue
            s = m.summary
            lines.append("| " + " | ".join([
                name, run.family or "?", m.mode, f"{s['ndcg@5']:.3f}", *[f"{s[f'recall@{k}']:.3f}" for k in ks],
                f"{s['mrr']:.3f}", f"{s['latency_p50_ms']:.1f}", f"{run.result.index_seconds:.1f}"]) + " |")
            if m.mode not in best or s["ndcg@5"] > best[m.mode][0]:
                best[m.mode] = (s["ndcg@5"], name)
    lines += ["", "Best nDCG@5 per mode: " + "; ".join(f"{mode}: {who} ({score:.3f})" for mode, (score, who)
                                                        in best.items()) + ".",
              "", "Collections: " + ", ".join(f"`{r.collection}` ({Path(r.retriever).name or r.retriever})"
                                             for r in comparison.runs)
              + ". Text mode (BM25) does not depend on the retriever. Per-retriever reports: the subfolders.", ""]
    return "\n".join(lines)


def write_comparison(comparison: Comparison, out_dir: Path) -> dict[str, Path]:
    """Writes comparison.md, comparison.json and, per retriever, ``<n>-<model-slug>/report.*`` under
    ``out_dir``; returns the comparison files' paths."""
    from pagelens.index.stores.aliases import model_slug

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for n, run in enumerate(comparison.runs, start=1):
        write_report(run.result, out_dir / f"{n}-{model_slug(run.retriever)}")
    paths = {"markdown": out_dir / "comparison.md", "json": out_dir / "comparison.json"}
    paths["markdown"].write_text(render_comparison(comparison), encoding="utf-8")
    paths["json"].write_text(json.dumps(comparison.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
    return paths
