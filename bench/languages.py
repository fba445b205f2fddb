"""Languages, CJK and scans (issue 15): text / visual / hybrid retrieval per language and on scans,
query-analysis alternatives, the English-only baseline, OCR cost and the hybrid fusion sweep.

``python bench/languages.py --retriever DIR [--work DIR] [--out bench/languages.md]``

1. Builds the three known-item sets of ``tests/make_known_items.py`` (``build_sets``): ``languages``
   (inflected-form queries per language; with ``--manpages``, the default, also over Debian's translated
   man pages in nl pl es it pt: ``bench/manpages.py``), ``cjk`` and ``scans``.
2. Indexes each set twice: ``now`` (per-language analysis, OCR auto) and ``before`` (the English-only
   text index and no OCR: what pagelens did before), and measures nDCG@5, recall@1/5 per mode and per
   language / query kind (``pagelens eval`` metrics, ``pagelens.app.evaluation``).
3. Text-mode query analysis alternatives (``TextAnalyzer.query_languages``): all, collection,
   detected, english.
4. OCR cost per page at 150 and 300 dpi (the scan pages), ingest time of a mixed folder with OCR auto vs
   off, and the text-layer pages' time with OCR auto vs off.
5. Hybrid fusion sweep: RRF k x text weight, and DBSF, per query kind.

With a random (tiny) retriever the visual column is a floor, not a measurement of colSmol: it says what
hybrid does when the visual ranking carries no signal.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def service_for(data_dir: Path, retriever: Path, **overrides: Any) -> Any:
    from pagelens.app.service import PagelensService
    from pagelens.core.settings import Settings

    values: dict[str, Any] = dict(data_dir=data_dir, retriever_model=str(retriever), answer_model=str(retriever),
                                  page_longest_edge=512, device="cpu", ingest_workers=0, dtype="float32")
    values.update(overrides)
    return PagelensService(Settings(_env_file=None, **values))


def make_english_only(service: Any, collection: str) -> None:
    """Create ``collection`` with the version-1 (English-only) text index, as before languages."""
    from pagelens.index.stores.base import backend_of
    from pagelens.index.stores.bm25 import text_index_spec
    from pagelens.index.stores.edge_store import MANIFEST_FILE, TEXT_INDEX_KEY

    service.indexer.ensure_collection(collection)
    store: Any = backend_of(service.store)  # the Edge store's files and caches
    path = store._dir(collection) / MANIFEST_FILE
    data = json.loads(path.read_text())
    data[TEXT_INDEX_KEY] = text_index_spec()
    path.write_text(json.dumps(data))
    store._text_index.pop(collection, None)


def evaluate(service: Any, collection: str, dataset: Any, modes: list[str]) -> dict[str, Any]:
    from pagelens.app.evaluation import evaluate_mode

    out = {}
    for mode in modes:
        out[mode] = evaluate_mode(service, collection, dataset.queries, mode, ks=(1, 5, 10))
    return out


def group_metrics(result: Any, queries: list[Any], key_of: dict[str, str]) -> dict[str, dict[str, float]]:
    groups: dict[str, list[dict[str, float]]] = defaultdict(list)
    for q in result.queries:
        groups[key_of[q.qid]].append(q.metrics)
        groups["all"].append(q.metrics)
    return {g: {"n": len(ms), **{m: statistics.mean(x[m] for x in ms) for m in ("ndcg@5", "recall@1", "recall@5")}}
            for g, ms in groups.items()}


def main() -> None:  # noqa: C901 - a linear script
    ap = argparse.ArgumentParser()
    ap.add_argument("--retriever", type=Path, default=Path(os.environ.get("PAGELENS_TINY_MODELS", "/work/tiny-models"))
                    / "retriever")
    ap.add_argument("--work", type=Path, default=Path("/tmp/pagelens-bench-languages"))
    ap.add_argument("--pdfs", type=Path, default=REPO.parent / "shared" / "pdfs" / "real")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "languages.json")
    ap.add_argument("--skip-fusion", action="store_true")
    ap.add_argument("--skip-ocr-cost", action="store_true", help="keep the OCR cost figures of an earlier run")
    ap.add_argument("--ingest-only", action="store_true", help="only the mixed-folder ingest timing (step 4)")
    ap.add_argument("--manpages", action=argparse.BooleanOptionalAction, default=True,
                    help="add Debian's translated man pages (nl pl es it pt; bench/manpages.py, fetched with "
                    "apt-get download) to the languages set")
    args = ap.parse_args()
    if args.ingest_only:
        mixed_ingest(args)
        return

    from make_known_items import build_sets
    from pagelens.index.stores.base import backend_of
    from pagelens.ingest import open_document
    from pagelens.retrieve.hybrid import FusionConfig

    from pagelens.app.evaluation import load_dataset

    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} CPU cores, no GPU",
                              "retriever": "tiny random ColIdefics3 (tests/make_tiny_models.py)"}
    extra = []
    if args.manpages:
        from bench.manpages import debian_manpage_pdfs

        extra = debian_manpage_pdfs(args.work / "manpages")
        report["manpages"] = [p.name for p in extra]
    report["sets"] = build_sets(args.work / "sets", args.pdfs, extra=extra)
    print("sets", report["sets"], flush=True)
    results: dict[str, Any] = {}
    if args.out.exists():  # resume: the sets already measured are kept, and the cost figures of earlier runs
        earlier = json.loads(args.out.read_text())
        results = earlier.get("results", {})
        report.update({k: earlier[k] for k in ("ocr_cost_s_per_page", "text_layer_page_ms", "mixed_ingest")
                       if k in earlier})
    for variant in ("now", "before"):
        service = service_for(args.work / f"data-{variant}", args.retriever, ocr="auto" if variant == "now" else "off")
        for name in ("languages", "cjk", "scans"):
            if f"{name}/{variant}" in results:
                continue
            data = load_dataset(args.work / "sets" / name)
            coll = f"{'languages' if name == 'cjk' else name}-{variant}"  # cjk: the same corpus as languages
            if variant == "before" and name != "cjk":
                make_english_only(service, coll)
            if name == "cjk" and variant == "now":  # its own collection, OCR off (no CJK scan is queried)
                service.close()
                service = service_for(args.work / "data-cjk", args.retriever, ocr="off")
                coll = "cjk-now"
            from pagelens.index.pipeline.indexer import IndexInput

            t0 = time.perf_counter()
            rep = service.index(coll, [IndexInput(path=p) for p in data.documents])
            index_s = time.perf_counter() - t0
            rows = [json.loads(line) for line in (args.work / "sets" / name / "queries.jsonl").read_text().splitlines()]
            key_of = {r["qid"]: r.get("lang") or r["kind"] for r in rows}
            modes = evaluate(service, coll, data, ["text", "visual", "hybrid"])
            results[f"{name}/{variant}"] = {
                "measured": time.strftime("%Y-%m-%d"), "index_s": round(index_s, 1), "pages": rep.pages_indexed,
                "modes": {m: group_metrics(r, data.queries, key_of) for m, r in modes.items()},
            }
            if name == "languages":  # per language and source: Debian man pages, synthetic invoices, shared PDFs
                source_of = {r["qid"]: f"{r['lang']} {_source(r['relevant'][0]['doc'])}" for r in rows}
                results[f"{name}/{variant}"]["by_source"] = {
                    m: group_metrics(r, data.queries, source_of) for m, r in modes.items() if m == "text"}
            print(name, variant, json.dumps(results[f"{name}/{variant}"]["modes"]["text"]["all"]), flush=True)
            if variant == "now" and name in ("languages", "cjk"):
                policies = {}
                inner: Any = backend_of(service.store)  # aliases -> document registry -> the Edge store
                for policy in ("all", "collection", "detected", "english"):
                    inner.text_query_languages = policy
                    r = evaluate(service, coll, data, ["text"])["text"]
                    policies[policy] = group_metrics(r, data.queries, key_of)
                inner.text_query_languages = "all"
                results[f"{name}/{variant}"]["query_policies"] = policies
            if name == "cjk" and variant == "now":
                service.close()
                service = service_for(args.work / f"data-{variant}", args.retriever, ocr="auto")
            if variant == "now" and not args.skip_fusion and name != "cjk":
                sweep = {}
                retriever = service.retriever
                for method, k, w in [("rrf", 2, 0.5), ("rrf", 60, 0.5), ("rrf", 2, 0.7), ("rrf", 2, 0.3),
                                     ("dbsf", 0, 0.5)]:
                    cfg = FusionConfig(method=method, rrf_k=float(k or 2), text_weight=w)  # type: ignore[arg-type]
                    from pagelens.app.evaluation import evaluate_mode

                    original = type(service).retriever
                    try:
                        type(service).retriever = property(lambda self, c=cfg: _retriever_with(self, c))  # type: ignore[method-assign]
                        r = evaluate_mode(service, coll, data.queries, "hybrid", ks=(1, 5, 10))
                    finally:
                        type(service).retriever = original  # type: ignore[method-assign]
                    sweep[f"{method} k={k} w={w}" if method == "rrf" else f"dbsf w={w}"] = group_metrics(
                        r, data.queries, key_of)["all"]
                results[f"{name}/{variant}"]["fusion"] = sweep
                del retriever
            report["results"] = results
            args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False))  # as it goes
        service.close()
    report["results"] = results
    if args.skip_ocr_cost:  # the cost figures of the earlier run stay (read at the start)
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
        return

    # OCR cost per page (the scan pages) at 150 and 300 dpi, and what OCR costs text-layer pages
    from make_known_items import SCAN_SOURCES, scan_copy
    from pagelens.ingest.ocr import ocr_image
    from pagelens.ingest.pdf import _pymupdf

    pdfs = {p.name: p for p in [*args.pdfs.glob("*.pdf"), *(args.work / "sets" / "synthetic").glob("*.pdf")]}
    from pagelens.core.settings import Settings

    settings = Settings(_env_file=None, data_dir=args.work / "ocr")
    cost: dict[str, list[float]] = {"150": [], "300": []}
    for name, no in SCAN_SOURCES[::2]:  # 6 pages: en, de, fr, nl, pl, de (synthetic)
        if name not in pdfs:
            continue
        for dpi in (150, 300):
            image = scan_copy(pdfs[name], no, 7, dpi=dpi)
            res = ocr_image(image, settings, dpi)
            cost[str(dpi)].append(res.seconds)
    report["ocr_cost_s_per_page"] = {dpi: {"mean": round(statistics.mean(v), 2), "median": round(statistics.median(v), 2),
                                           "max": round(max(v), 2), "pages": len(v)} for dpi, v in cost.items() if v}
    _pymupdf()
    text_pages: dict[str, float] = {}
    for mode in ("off", "auto"):
        s = Settings(_env_file=None, data_dir=args.work / "ocr", ocr=mode, page_longest_edge=1024)
        t0 = time.perf_counter()
        n = 0
        for name in ("inv_aws_invoice_en.pdf", "paper_naacl06_shinyama.pdf", "rpt_federal_register_2020-17221.pdf"):
            for _ in open_document(pdfs[name], s).pages():
                n += 1
        text_pages[mode] = round((time.perf_counter() - t0) / n * 1000, 1)
    report["text_layer_page_ms"] = text_pages
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(json.dumps(report["ocr_cost_s_per_page"]), text_pages)


def _source(doc: str) -> str:
    """Where a known item's document comes from (its file name says)."""
    return "man pages" if doc.startswith("man_") else "synthetic" if doc.startswith("syn_") else "real PDFs"


def mixed_ingest(args: Any) -> None:
    """Ingest time of a mixed folder (6 text PDFs, the 12 scanned copies) with OCR off vs auto, serial,
    tiny retriever at 512 px; written into the report's ``mixed_ingest``."""
    from pagelens.index.pipeline.indexer import IndexInput

    sets = args.work / "sets"
    text_docs = [sets / "synthetic" / n for n in ("syn_rechnung_moebelhaus_de.pdf", "syn_factuur_drukkerij_nl.pdf",
                                                  "syn_faktura_hurtownia_pl.pdf")]
    text_docs += [args.pdfs / n for n in ("inv_aws_invoice_en.pdf", "inv_free_fiber_bill_fr.pdf",
                                          "paper_naacl06_shinyama.pdf")]
    scans = sorted((sets / "scans" / "documents").iterdir())
    out: dict[str, Any] = {"text_documents": len(text_docs), "scan_documents": len(scans)}
    for mode in ("off", "auto"):
        service = service_for(args.work / f"mixed-{mode}-{time.time_ns()}", args.retriever, ocr=mode)
        service.indexer.ensure_collection("mixed")
        t0 = time.perf_counter()
        text_report = service.index("mixed", [IndexInput(path=p) for p in text_docs])
        t1 = time.perf_counter()
        scan_report = service.index("mixed", [IndexInput(path=p) for p in scans])
        t2 = time.perf_counter()
        out[mode] = {"text_pages": text_report.pages_indexed, "text_s": round(t1 - t0, 1),
                     "scan_pages": scan_report.pages_indexed, "scan_s": round(t2 - t1, 1)}
        service.close()
        print(mode, out[mode], flush=True)
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    report["mixed_ingest"] = out
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False))


def _retriever_with(service: Any, config: Any) -> Any:
    from pagelens.retrieve.retriever import Retriever

    return Retriever(service.embedder, service.store, prefetch_limit=service.settings.tuning.prefetch_limit, fusion=config)


if __name__ == "__main__":
    main()
