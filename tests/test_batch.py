"""Batch indexing: inputs (globs, manifests, shards), resume, the pipeline, error reports, aliases,
and the server path's creation parameters, batching and retries (against ``QdrantClient(":memory:")``).

Small generated PDFs at 512 px keep this file fast; the crash test on the real PDFs is in
``test_batch_crash.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import psutil
import pytest
from pagelens.index.pipeline.indexer import IndexInput
from pagelens.ingest.manifest import collect_inputs, parse_shard, read_manifest, select_shard, shard_of
from typer.testing import CliRunner

from pagelens.core.errors import InvalidRequestError

pytestmark = pytest.mark.slow


def make_pdf(path: Path, pages: int, label: str) -> Path:
    import pymupdf

    doc = pymupdf.open()
    for i in range(pages):
        page = doc.new_page(width=300, height=400)
        page.insert_text((30, 60), f"{label} page {i + 1}", fontsize=14)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc.save(path)
    doc.close()
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """docs/: 6 PDFs in two folders (1-3 pages each, 12 pages), a .txt and a draft to exclude."""
    root = tmp_path / "docs"
    for i in range(6):
        make_pdf(root / ("a" if i % 2 else "b") / f"doc{i}.pdf", 1 + i % 3, f"doc{i}")
    (root / "notes.txt").write_text("not a document")
    make_pdf(root / "b" / "draft_x.pdf", 1, "draft")
    return root


@pytest.fixture
def svc(settings_factory: Any):
    from pagelens.app.service import PagelensService

    made = []

    def build(**overrides: Any) -> PagelensService:
        values = {"page_longest_edge": 512, "embed_batch_size": 2, "ingest_workers": 0}
        values.update(overrides)
        service = PagelensService(settings_factory(**values))
        made.append(service)
        return service

    yield build
    for service in made:
        service.close()


def points(service: Any, collection: str) -> dict[str, dict[str, Any]]:
    return dict(service.store.iter_payloads(collection))


# -- inputs -----------------------------------------------------------------------------------------
def test_globs_and_shards_partition_the_inputs(corpus: Path) -> None:
    items = collect_inputs([corpus], exclude=["draft_*"])
    assert sorted(i.key for i in items) == sorted(f"{'a' if i % 2 else 'b'}/doc{i}.pdf" for i in range(6))
    only_a = collect_inputs([corpus], include=["a/*.pdf"])
    assert {i.key for i in only_a} == {"a/doc1.pdf", "a/doc3.pdf", "a/doc5.pdf"}
    for n in (2, 3, 5):
        shards = [select_shard(items, (i, n)) for i in range(n)]
        keys = [k.key for shard in shards for k in shard]
        assert sorted(keys) == sorted(i.key for i in items) and len(keys) == len(set(keys))
    # stable across processes and mount points: a hash of the relative path only
    assert shard_of("a/doc1.pdf", 2) == shard_of("a/doc1.pdf", 2)
    assert parse_shard("1/4") == (1, 4) and parse_shard(None) is None
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(InvalidRequestError):
            parse_shard(bad)


def test_manifests_jsonl_and_csv(tmp_path: Path, corpus: Path) -> None:
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text(
        json.dumps({"path": (corpus / "a/doc1.pdf").relative_to(tmp_path).as_posix(), "name": "One", "metadata": {"dept": "hr"}, "year": 2021})
        + "\n\n"
        + json.dumps({"path": "docs/b/doc0.pdf", "dept": "ops"})
        + "\n"
    )
    items = read_manifest(jsonl)
    assert [(i.name, i.metadata) for i in items] == [("One", {"dept": "hr", "year": 2021}), (None, {"dept": "ops"})]
    assert items[1].path == tmp_path / "docs/b/doc0.pdf" and items[1].key == "docs/b/doc0.pdf"
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("path,name,dept,pages,urgent\ndocs/a/doc3.pdf,Three,legal,2,true\ndocs/b/doc2.pdf,,ops,,\n")
    rows = read_manifest(csv_path)
    assert rows[0].metadata == {"dept": "legal", "pages": 2, "urgent": True} and rows[0].name == "Three"
    assert rows[1].metadata == {"dept": "ops"} and rows[1].name is None
    (tmp_path / "bad.jsonl").write_text('{"name": "no path"}\n')
    with pytest.raises(InvalidRequestError, match="bad.jsonl:1"):
        read_manifest(tmp_path / "bad.jsonl")
    (tmp_path / "badkey.csv").write_text("path,bad key\nx.pdf,1\n")
    with pytest.raises(InvalidRequestError, match="invalid metadata key"):
        read_manifest(tmp_path / "badkey.csv")


# -- CLI: shards, manifest metadata as a search filter, error report ---------------------------------
@pytest.fixture
def cli(settings_factory: Any, monkeypatch: pytest.MonkeyPatch):
    from pagelens.cli import app

    settings = settings_factory(page_longest_edge=512, embed_batch_size=2)
    for key in [k for k in os.environ if k.startswith("PAGELENS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PAGELENS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("PAGELENS_RETRIEVER_MODEL", settings.retriever_model)
    monkeypatch.setenv("PAGELENS_PAGE_LONGEST_EDGE", "512")
    monkeypatch.setenv("PAGELENS_TUNING__EMBED_BATCH_SIZE", "2")
    monkeypatch.setenv("PAGELENS_DEVICE", "cpu")
    monkeypatch.setenv("PAGELENS_INGEST_WORKERS", "0")
    monkeypatch.chdir(settings.data_dir.parent)  # no stray .env
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> dict[str, Any]:
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, (result.exit_code, result.output, result.exception)
        return json.loads(result.stdout) if "--json" in args else {}

    return run, settings
@pytest.mark.extended


def test_cli_shards_index_the_full_set_disjointly(cli: Any, corpus: Path) -> None:
    run, settings = cli
    s0 = run("index", str(corpus), "-c", "sh", "--shard", "0/2", "--exclude", "draft_*", "--json")
    s1 = run("index", str(corpus), "-c", "sh", "--shard", "1/2", "--exclude", "draft_*", "--json")
    assert s0["inputs_found"] == s1["inputs_found"] == 6
    assert s0["inputs_selected"] + s1["inputs_selected"] == 6 and min(s0["inputs_selected"], s1["inputs_selected"]) > 0
    names0 = {d["doc_name"] for d in s0["documents"]}
    names1 = {d["doc_name"] for d in s1["documents"]}
    assert not names0 & names1 and names0 | names1 == {f"doc{i}.pdf" for i in range(6)}
    assert s0["documents_skipped"] == s1["documents_skipped"] == 0
    assert s0["pages_indexed"] + s1["pages_indexed"] == 12  # 1+2+3+1+2+3
    docs = run("docs", "-c", "sh", "--json")
    assert sum(d["pages_indexed"] for d in docs) == 12 and all(d["status"] == "complete" for d in docs)


def test_cli_manifest_metadata_is_a_search_filter(cli: Any, corpus: Path, tmp_path: Path) -> None:
    run, settings = cli
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,dept,year\ndocs/a/doc1.pdf,hr,2021\ndocs/b/doc2.pdf,ops,2022\ndocs/a/doc3.pdf,hr,2023\n")
    rep = run("index", "--manifest", str(manifest), "-c", "man", "-m", "source=archive", "--json")
    assert rep["documents_indexed"] == 3 and rep["errors"] == []
    hits = run("search", "page", "-c", "man", "-k", "10", "--where", "dept=hr", "--json")["results"]
    assert hits and {h["doc_name"] for h in hits} == {"doc1.pdf", "doc3.pdf"}
    hits = run("search", "page", "-c", "man", "-k", "10", "--where", "year=2022", "--where", "source=archive",
               "--json")["results"]
    assert {h["doc_name"] for h in hits} == {"doc2.pdf"}
    docs = {d["doc_name"]: d for d in run("docs", "-c", "man", "--json")}
    assert docs["doc1.pdf"]["metadata"] == {"source": "archive", "dept": "hr", "year": 2021}


def test_cli_error_report_jsonl(cli: Any, corpus: Path, tmp_path: Path) -> None:
    run, settings = cli
    (corpus / "a" / "broken.pdf").write_bytes(b"%PDF-1.4\nnot really a pdf\n")
    report = tmp_path / "errors.jsonl"
    rep = run("index", str(corpus / "a"), "-c", "err", "--errors-jsonl", str(report), "--json", code=1)
    assert rep["documents_indexed"] == 3 and rep["documents_failed"] == 1
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["file"].endswith("broken.pdf")
    assert set(lines[0]) == {"file", "page", "code", "error"} and lines[0]["error"]
    # without --errors-jsonl: a timestamped report under data_dir/reports
    rep = run("index", str(corpus / "a"), "-c", "err", "--json", code=1)
    assert rep["documents_skipped"] == 3 and rep["error_report"]
    assert Path(rep["error_report"]).parent == settings.data_dir / "reports"


# -- resume, pipeline -------------------------------------------------------------------------------
class Stop(Exception):
    pass


def stop_after(n: int, seen: list[dict[str, Any]]):
    def callback(event: str, info: dict[str, Any]) -> None:
        seen.append({"event": event, **info})
        if event == "page_done" and sum(1 for e in seen if e["event"] == "page_done") >= n:
            raise Stop()

    return callback


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.extended)])
def test_interrupted_run_resumes_without_duplicates_and_workers_are_cleaned_up(
    svc: Any, corpus: Path, workers: int
) -> None:
    service = svc()
    inputs = [IndexInput(path=p) for p in sorted(corpus.rglob("doc*.pdf"))]
    seen: list[dict[str, Any]] = []
    with pytest.raises(Stop):
        service.indexer.index("r", inputs, progress=stop_after(5, seen), workers=workers)
    written = service.store.count("r")
    assert 5 <= written < 12
    if workers:
        pids = [p.pid for p in psutil.Process().children(recursive=True) if "multiprocessing" in " ".join(p.cmdline())
                and "resource_tracker" not in " ".join(p.cmdline())]
        assert pids == [], "worker processes left behind after the interruption"
    report = service.indexer.index("r", inputs, workers=workers)
    assert report.ok, report.errors
    assert service.store.count("r") == 12
    by_doc: dict[str, set[int]] = {}
    for payload in points(service, "r").values():
        by_doc.setdefault(payload["doc_name"], set()).add(payload["page_no"])
    assert by_doc == {f"doc{i}.pdf": set(range(1, 2 + i % 3)) for i in range(6)}
    # redone pages are only the missing ones; complete documents are skipped
    assert report.pages_indexed == 12 - written
    again = service.indexer.index("r", inputs, workers=workers)
    assert again.count("skipped") == 6 and again.pages_indexed == 0
@pytest.mark.extended


def test_serial_and_pipelined_write_identical_points(svc: Any, corpus: Path, tmp_path: Path) -> None:
    import numpy as np

    inputs = [IndexInput(path=p, metadata={"k": "v"}) for p in sorted(corpus.rglob("doc*.pdf"))]
    serial, piped = svc(), svc(data_dir=tmp_path / "data2")
    r0 = serial.indexer.index("s", inputs, workers=0)
    r1 = piped.indexer.index("s", inputs, workers=2)
    assert r0.pipeline["mode"] == "serial" and r1.pipeline["mode"] == "pipelined"
    p0, p1 = points(serial, "s"), points(piped, "s")
    assert set(p0) == set(p1) and len(p0) == 12
    v0 = serial.store.get_full_vectors("s", list(p0))
    v1 = piped.store.get_full_vectors("s", list(p0))
    for pid, payload in p0.items():
        # image_path is relative to each service's own page-image root: the same in both payloads
        assert {k: v for k, v in payload.items() if k != "indexed_at"} == {
            k: v for k, v in p1[pid].items() if k != "indexed_at"
        }
        assert (serial.images.root / payload["image_path"]).read_bytes() == (
            piped.images.root / payload["image_path"]).read_bytes()
        np.testing.assert_array_equal(v0[pid], v1[pid])


def test_a_job_ends_with_the_index_build_shown_as_progress(svc: Any, corpus: Path) -> None:
    """The optimize that ends a job (HNSW graphs; the token index of a large collection: minutes)
    is reported: ``optimize_start`` then ``optimize_done`` with its seconds, drawn by the CLI bars."""
    import io

    from rich.console import Console

    from pagelens.core.progress import IndexProgress

    service = svc()
    events: list[tuple[str, dict[str, Any]]] = []
    console = Console(file=io.StringIO(), force_terminal=False, width=140)
    inputs = [IndexInput(path=p) for p in sorted(corpus.rglob("doc*.pdf"))[:2]]
    with IndexProgress(console, len(inputs)) as bars:
        def callback(event: str, info: dict[str, Any]) -> None:
            events.append((event, info))
            bars.callback(event, info)

        report = service.indexer.index("opt", inputs, progress=callback, workers=0)
    assert report.ok and report.pages_indexed > 0
    assert [e for e, _ in events[-2:]] == ["optimize_start", "optimize_done"]
    assert events[-1][1]["collection"] == "opt" and events[-1][1]["seconds"] >= 0
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "updating the search structures" in out
    # nothing new, nothing to optimize
    events.clear()
    again = service.indexer.index("opt", inputs, progress=lambda e, i: events.append((e, i)), workers=0)
    assert again.pages_indexed == 0 and "optimize_start" not in [e for e, _ in events]
@pytest.mark.extended


def test_preprocessing_on_the_model_device_writes_the_same_points(svc: Any, corpus: Path, tmp_path: Path) -> None:
    """PAGELENS_TUNING__PREPROCESS_DEVICE=model: workers only rasterize, the embedder preprocesses (with the
    torchvision processor, on the model's device: the CPU here); the points equal those of the
    torchvision processor run in the workers."""
    import numpy as np

    inputs = [IndexInput(path=p) for p in sorted(corpus.rglob("doc*.pdf"))]
    in_workers = svc(image_processor_backend="torchvision")
    on_device = svc(image_processor_backend="torchvision", preprocess_device="model", data_dir=tmp_path / "d2")
    assert on_device.indexer.preprocessor() is None and in_workers.indexer.preprocessor() is not None
    r0 = in_workers.indexer.index("p", inputs, workers=2)
    r1 = on_device.indexer.index("p", inputs, workers=2)
    assert r0.ok and r1.ok and r1.pipeline["mode"] == "pipelined" and r0.pages_indexed == r1.pages_indexed == 12
    p0 = points(in_workers, "p")
    v0 = in_workers.store.get_full_vectors("p", list(p0))
    v1 = on_device.store.get_full_vectors("p", list(p0))
    assert set(v0) == set(v1) == set(p0)
    for pid in p0:
        np.testing.assert_allclose(v0[pid], v1[pid], atol=1e-5)


def test_preprocess_device_model_needs_the_torchvision_processor(settings_factory: Any) -> None:
    with pytest.raises(ValueError, match="PAGELENS_TUNING__IMAGE_PROCESSOR_BACKEND=torchvision"):
        settings_factory(preprocess_device="model", image_processor_backend="pil")
    # auto picks the processor that can: torchvision
    assert settings_factory(preprocess_device="model").resolved_image_processor_backend("cpu") == "torchvision"


def test_auto_preprocessing_is_torchvision_on_the_gpu_and_pil_on_the_cpu(settings_factory: Any) -> None:
    """The defaults (auto): on CUDA the torchvision processor on the device (workers only rasterize);
    elsewhere the PIL processor in the workers; explicit values win."""
    auto = settings_factory()
    assert (auto.tuning.image_processor_backend, auto.tuning.preprocess_device) == ("auto", "auto")
    assert auto.resolved_image_processor_backend("cuda") == "torchvision"
    assert auto.resolved_preprocess_device("cuda") == "model"
    assert auto.resolved_image_processor_backend("cpu") == "pil"
    assert auto.resolved_preprocess_device("cpu") == "cpu"
    pil_on_gpu = settings_factory(image_processor_backend="pil")
    assert pil_on_gpu.resolved_preprocess_device("cuda") == "cpu"  # the PIL processor cannot run there
    assert settings_factory(preprocess_device="cpu").resolved_image_processor_backend("cuda") == "torchvision"
    assert settings_factory(image_processor_backend="torchvision").resolved_preprocess_device("cpu") == "cpu"
    from pagelens.app.service import PagelensService

    service = PagelensService(auto)  # on this CPU: the workers preprocess with PIL, as before
    try:
        assert service.indexer.preprocessor() is not None
        assert not service.embedder.preprocesses_on_device  # type: ignore[attr-defined]
        assert service.embedder._backend == "pil"  # type: ignore[attr-defined]
    finally:
        service.close()
@pytest.mark.extended


def test_pipeline_memory_stays_bounded(svc: Any, tmp_path: Path) -> None:
    """200 documents through the pipeline: the queues stay within their bounds and the main process's
    memory stops growing after the first documents."""
    many = [make_pdf(tmp_path / "many" / f"d{i:03d}.pdf", 1, f"copy {i}") for i in range(200)]
    service = svc(embed_batch_size=4, pipeline_queue_chunks=4)
    proc = psutil.Process()
    rss: list[int] = []

    def callback(event: str, info: dict[str, Any]) -> None:
        if event == "document_done":
            rss.append(proc.memory_info().rss)

    report = service.indexer.index("m", [IndexInput(path=p) for p in many], progress=callback, workers=2)
    assert report.ok and report.pages_indexed == 200 and service.store.count("m") == 200
    stats = report.pipeline
    assert stats["peak_open_documents"] <= stats["max_open_documents"] == 4
    assert stats["peak_queued_chunks"] <= stats["queue_chunks"] == 4
    warm = max(rss[:40])
    assert max(rss[40:]) - warm < 150 * 2**20, f"main RSS grew {(max(rss[40:]) - warm) / 2**20:.0f} MiB"


# -- aliases ----------------------------------------------------------------------------------------
def test_reindex_switches_the_alias_when_complete(svc: Any, corpus: Path) -> None:
    from pagelens.app.reindex import reindex_collection

    service = svc()
    inputs = [IndexInput(path=p) for p in sorted(corpus.rglob("doc*.pdf"))]
    service.indexer.index("lib", inputs[:2])
    assert service.store.count("lib") == 3
    seen: list[str] = []
    during: list[int] = []

    def callback(event: str, info: dict[str, Any]) -> None:
        seen.append(event)
        if event == "page_done":  # searches during the rebuild still see the old, complete index
            during.append(service.store.count("lib"))

    report, target = reindex_collection(service, "lib", inputs, progress=callback)
    assert set(during) == {3}
    assert target.startswith("lib__") and report.pages_indexed == 12
    assert service.store.resolve_alias("lib") == target
    assert service.store.count("lib") == 12
    assert service.store.list_collections() == ["lib"]  # the alias stands for its collection
    hits = service.search("lib", "doc3 page 2", k=3)
    assert len(hits) == 3
    assert {p["collection"] for p in points(service, "lib").values()} == {target}
    # indexing through the alias writes into the target with the target's ids: no duplicates
    again = service.indexer.index("lib", inputs)
    assert again.count("skipped") == 6 and service.store.count(target) == 12
    report2, target2 = reindex_collection(service, "lib", inputs[:1])
    assert service.store.count("lib") == 2 and target2 != target  # a/doc1.pdf: 2 pages
    assert sorted(service.store.list_collections()) == sorted(["lib", target])  # the old version is kept


def test_server_aliases_and_creation_params_in_memory() -> None:
    import numpy as np
    from pagelens.index.stores.aliases import ServerAliases, with_aliases
    from pagelens.index.stores.server_store import QdrantServerStore
    from qdrant_client import QdrantClient

    from pagelens.core.types import CollectionManifest, PageEmbedding, PagePoint, page_point_id

    client = QdrantClient(":memory:")
    calls: list[dict[str, Any]] = []
    real_create = client.create_collection

    def spy_create(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real_create(*args, **kwargs)

    client.create_collection = spy_create  # type: ignore[method-assign]
    inner = QdrantServerStore(client, prefix="p_", shard_number=6, replication_factor=2, on_disk=True,
                              quantization="scalar", batch_size=100, max_request_bytes=30_000)
    store = with_aliases(inner)
    assert isinstance(store.aliases, ServerAliases)
    for name in ("v1", "v2"):
        store.create_collection(CollectionManifest(name=name, model_id="m", model_revision=None, dim=8))
    kw = calls[0]
    assert kw["shard_number"] == 6 and kw["replication_factor"] == 2
    full = kw["vectors_config"]["colsmol"]
    assert full.on_disk is True and full.quantization_config.scalar.type.value == "int8"

    rng = np.random.default_rng(0)
    upserts: list[int] = []
    real_upsert = client.upsert

    def spy_upsert(name: str, points: list[Any], **kwargs: Any) -> Any:
        upserts.append(len(points))
        return real_upsert(name, points=points, **kwargs)

    client.upsert = spy_upsert  # type: ignore[method-assign]
    pts = [
        PagePoint(id=page_point_id("v2", "s" * 64, i), payload={"doc_id": "d", "page_no": i, "text": ""},
                  embedding=PageEmbedding(full=rng.normal(size=(100, 8)).astype("float32"),
                                          rows=np.ones((2, 8), "float32"), cols=np.ones((2, 8), "float32")))
        for i in range(1, 11)
    ]
    store.upsert("v2", pts)  # ~8.5 kB of JSON per point, 30 kB per request -> 3 points per request
    assert sum(upserts) == 10 and max(upserts) <= 3 and len(upserts) >= 4
    store.aliases.set("live", "v1")
    store.aliases.set("live", "v2")  # switch: delete + create in one request
    assert client.get_aliases().aliases[0].alias_name == "p_live"
    assert store.count("live") == 10 and store.list_collections() == ["live", "v1"]


def test_retries_with_backoff_on_transient_errors() -> None:
    from pagelens.index.stores.retry import backoff_delays, call_with_retries
    from qdrant_client.http.exceptions import UnexpectedResponse

    sleeps: list[float] = []
    attempts = {"n": 0}

    def flaky() -> str:
        attempts["n"] += 1
        if attempts["n"] < 3:
            raise UnexpectedResponse(503, "Service Unavailable", b"", None)  # type: ignore[arg-type]
        return "ok"

    assert call_with_retries(flaky, retries=5, sleep=sleeps.append) == "ok"
    assert attempts["n"] == 3 and len(sleeps) == 2
    attempts["n"] = -10
    with pytest.raises(UnexpectedResponse):
        call_with_retries(flaky, retries=2, sleep=sleeps.append)

    def bad_request() -> None:
        attempts["n"] += 1
        raise UnexpectedResponse(400, "Bad Request", b"", None)  # type: ignore[arg-type]

    attempts["n"] = 0
    with pytest.raises(UnexpectedResponse):
        call_with_retries(bad_request, retries=5, sleep=sleeps.append)
    assert attempts["n"] == 1  # not transient: no retry
    delays = backoff_delays(6, base_s=0.5, cap_s=4)
    assert all(0 <= d <= min(4, 0.5 * 2**i) for i, d in enumerate(delays))

    def down() -> None:
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError):
        call_with_retries(down, retries=1, sleep=sleeps.append)
