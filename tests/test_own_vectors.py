"""Bring your own vectors (issue 25 item 3): ``python bench/retrieval.py --vectors DIR`` builds a fresh store
with the product's defaults from DIR/pages.npy and searches DIR/queries.npy with the default visual search;
``scripts/dump_vectors.py`` writes that layout from an indexed collection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.own_vectors import VectorsError, load_vectors, make_points, pooled  # noqa: E402

N, T, Q = 60, 40, 12


def write_vectors(folder: Path, ragged: bool = True, seed: int = 0) -> dict[str, np.ndarray]:
    """60 random pages of 25-40 unit tokens (float16, zero-padded, real lengths in lengths.npy) and 12
    queries of 8 noisy tokens of pages 0, 5, 10... (float32): easy data, exact top 10 well separated."""
    rng = np.random.default_rng(seed)
    pages = rng.standard_normal((N, T, 128)).astype(np.float32)
    pages /= np.linalg.norm(pages, axis=-1, keepdims=True)
    lengths = rng.integers(25, T + 1, N) if ragged else np.full(N, T)
    for i in range(N):
        pages[i, lengths[i]:] = 0.0
    queries = []
    for i in range(Q):
        src = pages[5 * i, rng.choice(lengths[5 * i], 8, replace=False)]
        q = src + 0.3 * rng.standard_normal(src.shape).astype(np.float32) / np.sqrt(128)
        queries.append(q / np.linalg.norm(q, axis=-1, keepdims=True))
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "pages.npy", pages.astype(np.float16))
    if ragged:
        np.save(folder / "lengths.npy", lengths)
    np.save(folder / "queries.npy", np.stack(queries).astype(np.float32))
    return {"pages": pages, "lengths": lengths}


def test_bring_your_own_vectors_end_to_end(tmp_path: Path) -> None:
    folder = tmp_path / "vectors"
    write_vectors(folder)
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGELENS_")}  # the product's defaults
    out = subprocess.run([sys.executable, str(REPO / "bench" / "retrieval.py"), "--vectors", str(folder),
                          "--data-dir", str(data), "--exact"], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "recall@5 1.000 recall@10 1.000" in out.stdout
    result = json.loads((folder / "pagelens.json").read_text())
    assert {"top10", "search_ms", "build_s", "bytes_per_page", "self_check", "exact_top10", "recall"} <= set(result)
    top10, exact = result["top10"], result["exact_top10"]
    assert len(top10) == len(exact) == len(result["search_ms"]) == Q
    assert all(len(row) == 10 and len(set(row)) == 10 and all(0 <= i < N for i in row) for row in top10)
    assert top10 == exact  # easy data: the default search returns exact MaxSim's top 10, in order
    assert [row[0] for row in top10] == [5 * i for i in range(Q)]  # each query's source page first
    assert result["recall"] == {"at5": 1.0, "at10": 1.0}
    assert all(ms > 0 for ms in result["search_ms"]) and result["build_s"] > 0
    assert result["bytes_per_page"] > 0 and sum(result["bytes_by_component"].values()) == pytest.approx(
        result["bytes_per_page"] * N)
    check = result["self_check"]
    assert check["current"] is True and check["stale"] == [] and check["points"] == N
    assert result["search"]["strategy"] == "two_stage" and result["search"]["mode"] == "visual"
    assert result["tokens_per_page"]["min"] >= 25 and result["tokens_per_page"]["max"] <= T
    assert (data / "qdrant-edge" / "own_vectors" / "manifest.json").is_file()  # built in --data-dir, kept
    # a second run needs a fresh store
    again = subprocess.run([sys.executable, str(REPO / "bench" / "retrieval.py"), "--vectors", str(folder),
                            "--data-dir", str(data)], capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode != 0 and "is not empty" in again.stderr


def test_inputs_are_checked_with_the_fix_named(tmp_path: Path) -> None:
    folder = tmp_path / "v"
    made = write_vectors(folder)
    vectors = load_vectors(folder)
    assert [len(p) for p in vectors.pages] == list(made["lengths"]) and vectors.normalised == []
    assert all(p.dtype == np.float32 for p in vectors.pages)
    (folder / "lengths.npy").unlink()  # padded rows without their lengths
    with pytest.raises(VectorsError, match=r"all-zero token vectors \(padding\?\).*lengths.npy"):
        load_vectors(folder)
    np.save(folder / "lengths.npy", np.full(N, T + 1))
    with pytest.raises(VectorsError, match="lengths must be in 1..40"):
        load_vectors(folder)
    np.save(folder / "pages.npy", np.ones((2, 3, 64), np.float32))
    with pytest.raises(VectorsError, match="128 dimensions"):
        load_vectors(folder)
    (folder / "lengths.npy").unlink()
    write_vectors(folder, ragged=False)  # no padding: all T tokens are real, no lengths.npy needed
    assert [len(p) for p in load_vectors(folder).pages] == [T] * N
    (folder / "queries.npy").unlink()
    with pytest.raises(VectorsError, match="queries.npy is missing"):
        load_vectors(folder)
    np.save(folder / "queries.npy", 3.0 * np.ones((1, 2, 128), np.float32))
    assert load_vectors(folder).normalised == ["queries"]  # normalised here, with a warning


def test_points_and_pooling_follow_the_indexer() -> None:
    rng = np.random.default_rng(1)
    full = rng.standard_normal((130, 128)).astype(np.float32)
    rows, cols = pooled(full)  # 130 tokens: blocks of 64, 64 and 2
    assert rows.shape == cols.shape == (3, 128)
    np.testing.assert_allclose(rows[2], full[128:].mean(axis=0), rtol=1e-5, atol=1e-6)
    rows, cols = pooled(full[:128])  # two tiles: pool_rows_cols's per-tile means
    np.testing.assert_allclose(rows, full[:128].reshape(2, 64, 128).mean(axis=1), rtol=1e-5, atol=1e-6)
    rows, cols = pooled(full[:64])  # one tile: its 8 x 8 patch rows and columns
    assert rows.shape == cols.shape == (8, 128)
    points = make_points([full[:40]] * 23)
    assert len({p.id for p in points}) == 23
    import inspect
    import re

    from pagelens.index.pipeline.indexer import Indexer

    payload: dict[str, Any] = points[21].payload
    indexer_keys = set(re.findall(r'"(\w+)":', inspect.getsource(Indexer.make_points)))  # the payload the indexer writes
    optional = {"words"}  # word boxes (issue 27): written only for pages with a text layer or OCR
    assert len(indexer_keys) >= 14 and set(payload) == indexer_keys - optional
    assert (payload["page_no"], payload["page_count"], payload["doc_name"]) == (2, 3, "document-2")


@pytest.mark.extended
@pytest.mark.slow
def test_dump_vectors_from_a_collection_then_measure(tmp_path: Path, settings_factory: Any) -> None:
    """Index two PDFs with the tiny retriever, dump them with scripts/dump_vectors.py (a user's
    process: PAGELENS_* settings), check the files against the store and the embedder, and run the bench
    on the dump."""
    from pagelens.index.pipeline.indexer import IndexInput
    from test_batch import make_pdf

    from pagelens.app.service import PagelensService

    settings = settings_factory(page_longest_edge=256, ingest_workers=0)
    pdfs = [make_pdf(tmp_path / "in" / "b.pdf", 2, "bravo"), make_pdf(tmp_path / "in" / "a.pdf", 3, "alpha")]
    service = PagelensService(settings)
    try:
        report = service.index("lib", [IndexInput(path=p) for p in pdfs])
        assert report.ok and report.pages_indexed == 5
        ids = sorted(((str(p["doc_name"]), int(p["page_no"])), pid) for pid, p in service.store.iter_payloads("lib"))
        full = service.store.get_full_vectors("lib", [pid for _, pid in ids])
        questions = ["alpha page 2", "what does bravo say?", "total"]
        want_queries = service.embedder.embed_queries(questions)
    finally:
        service.close()
    (tmp_path / "q.txt").write_text("\n".join(["alpha page 2", "", "what does bravo say?", "total"]) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGELENS_")}
    env.update(PAGELENS_DATA_DIR=str(settings.data_dir), PAGELENS_RETRIEVER_MODEL=str(settings.retriever_model),
               PAGELENS_DEVICE="cpu", PAGELENS_DTYPE="float32")
    out_dir = tmp_path / "dump"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "dump_vectors.py"), "-c", "lib", "-q",
                           str(tmp_path / "q.txt"), "-o", str(out_dir)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wrote 5 pages" in done.stdout and "3 queries" in done.stdout
    pages, lengths = np.load(out_dir / "pages.npy"), np.load(out_dir / "lengths.npy")
    listing = json.loads((out_dir / "pages.json").read_text())["pages"]
    assert pages.dtype == np.float16 and pages.shape == (5, int(lengths.max()), 128)
    assert [(p["doc_name"], p["page_no"]) for p in listing] == [key for key, _ in ids]  # a.pdf 1-3, b.pdf 1-2
    for i, (_, pid) in enumerate(ids):
        assert listing[i]["point_id"] == pid and lengths[i] == len(full[pid])
        np.testing.assert_allclose(pages[i, : lengths[i]].astype(np.float32), full[pid], atol=2e-3)
        assert not pages[i, lengths[i]:].any()
    queries, q_lengths = np.load(out_dir / "queries.npy"), np.load(out_dir / "query_lengths.npy")
    assert queries.dtype == np.float32 and list(q_lengths) == [len(q) for q in want_queries]
    for q, n, want in zip(queries, q_lengths, want_queries, strict=True):
        np.testing.assert_allclose(q[:n], want, atol=1e-5)
    bench = subprocess.run([sys.executable, str(REPO / "bench" / "retrieval.py"), "--vectors", str(out_dir), "--exact"],
                           capture_output=True, text=True, env=env, timeout=600)
    assert bench.returncode == 0, bench.stderr[-3000:]
    result = json.loads((out_dir / "pagelens.json").read_text())
    assert len(result["top10"]) == 3 and all(sorted(row) == [0, 1, 2, 3, 4] for row in result["top10"])
    assert result["self_check"]["points"] == 5 and "recall@5" in bench.stdout


def test_dump_vectors_names_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("dump_vectors", REPO / "scripts" / "dump_vectors.py")
    assert spec and spec.loader
    dump_vectors = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dump_vectors)
    monkeypatch.setenv("PAGELENS_DATA_DIR", str(tmp_path / "data"))
    args = ["-c", "nope", "-o", str(tmp_path / "out")]
    assert dump_vectors.main([*args, "-q", str(tmp_path / "missing.txt")]) == 2
    assert "missing.txt does not exist" in capsys.readouterr().err
    (tmp_path / "q.txt").write_text("\n  \n")
    assert dump_vectors.main([*args, "-q", str(tmp_path / "q.txt")]) == 1
    assert "no non-empty line" in capsys.readouterr().err
    (tmp_path / "q.txt").write_text("a question\n")
    assert dump_vectors.main([*args, "-q", str(tmp_path / "q.txt")]) == 1
    assert "nope" in capsys.readouterr().err and not (tmp_path / "out").exists()
