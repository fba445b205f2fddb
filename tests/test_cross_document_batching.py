"""One forward over the prepared pages of several documents (``PAGELENS_TUNING__BATCH_ACROSS_DOCUMENTS``):
merging processor batches, the batcher's flush and ordering rules, and the indexer writing the same
points as per-document forwards; plus the auto batch size.

Real tiny ColIdefics3 (``make_tiny_models``) through ``ColSmolEmbedder``; small generated PDFs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pagelens.index.pipeline.indexer import IndexInput
from pagelens.index.pipeline.workers import ChunkBatcher, DocFinished, PageMeta, PreparedChunk, merge_batches
from PIL import Image, ImageDraw
from test_batch import make_pdf, points

from pagelens.core.settings import Settings
from pagelens.models.embedder import ColSmolEmbedder


def page(width: int, height: int, seed: int) -> Image.Image:
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    rng = np.random.default_rng(seed)
    for _ in range(30):
        x, y = int(rng.integers(0, width - 60)), int(rng.integers(0, height - 12))
        draw.rectangle([x, y, x + 60, y + 12], fill="black")
    return image


def chunk(key: int, n_pages: int) -> PreparedChunk:
    return PreparedChunk(key, [PageMeta(i + 1, "", 10, 10, "") for i in range(n_pages)])


@pytest.fixture(scope="module")
def embedder(tiny_models: dict[str, Path]) -> ColSmolEmbedder:
    emb = ColSmolEmbedder(Settings(_env_file=None, retriever_model=str(tiny_models["retriever"]),  # type: ignore[call-arg]
                                   page_longest_edge=1024, device="cpu", embed_batch_size=4))
    emb.load()
    return emb


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_merged_batches_embed_as_the_separate_ones(embedder: ColSmolEmbedder, padding_side: str) -> None:
    """Documents with different token and tile counts (a 2 x 2-tile page, two 2 x 1 strips, a 1 x 2
    strip) merged into one batch: each page's embedding equals its own batch's."""
    proc = embedder.processor
    docs = [[page(791, 1024, 1)], [page(1024, 300, 2), page(1024, 280, 3)], [page(300, 1024, 4)]]
    batches = [dict(proc.process_images(images).items()) for images in docs]
    assert len({b["input_ids"].shape[1] for b in batches}) > 1 and len({b["pixel_values"].shape[1] for b in batches}) > 1
    tokenizer = proc.tokenizer
    merged = merge_batches(batches, int(tokenizer.pad_token_id), padding_side)
    assert merged["input_ids"].shape == (4, max(b["input_ids"].shape[1] for b in batches))
    assert merged["pixel_values"].shape[:2] == (4, max(b["pixel_values"].shape[1] for b in batches))
    lengths = [int(m.sum()) for b in batches for m in b["attention_mask"]]
    assert [int(m.sum()) for m in merged["attention_mask"]] == lengths  # no token lost or added
    sizes = [im.size for images in docs for im in images]
    together = embedder.embed_preprocessed(merged, sizes)
    apart = [e for b, images in zip(batches, docs, strict=True)
             for e in embedder.embed_preprocessed(b, [im.size for im in images])]
    assert len(together) == len(apart) == 4
    for a, b in zip(apart, together, strict=True):
        assert a.full.shape == b.full.shape and a.rows.shape == b.rows.shape
        np.testing.assert_allclose(b.full, a.full, atol=1e-4)
        np.testing.assert_allclose(b.rows, a.rows, atol=1e-4)


def test_merge_refuses_what_is_not_a_tensor() -> None:
    from pagelens.core.errors import PagelensError

    with pytest.raises(PagelensError, match="'extra' is not a tensor"):
        merge_batches([{"input_ids": torch.zeros(1, 2), "extra": [1]}, {"input_ids": torch.zeros(1, 3), "extra": [2]}],
                      0, "right")


def test_batcher_fills_forwards_and_holds_finished_documents_behind_their_chunks() -> None:
    b = ChunkBatcher(max_pages=4)
    assert b.add_finished(DocFinished(9)) == [([], [DocFinished(9)])]  # nothing waiting: at once
    assert b.add_chunk(chunk(1, 1)) == []
    assert b.add_finished(DocFinished(1)) == []  # held: doc 1's page is not embedded yet
    assert b.add_chunk(chunk(2, 2)) == []
    groups = b.add_chunk(chunk(3, 1))  # 4 pages: a full forward
    assert [[c.key for c in cs] for cs, _ in groups] == [[1, 2, 3]]
    assert [f.key for f in groups[0][1]] == [1]
    assert b.chunks == [] and b.finished == []
    assert b.add_chunk(chunk(4, 3)) == []
    groups = b.add_chunk(chunk(5, 2))  # 3 + 2 > 4: the waiting one goes first, alone
    assert [[c.key for c in cs] for cs, _ in groups] == [[4]]
    assert [c.key for c in b.flush()[0]] == [5]
    one = ChunkBatcher(max_pages=1)  # off: every chunk is its own forward, finished docs at once
    assert [[c.key for c in cs] for cs, _ in one.add_chunk(chunk(7, 3))] == [[7]]
    assert one.add_finished(DocFinished(7)) == [([], [DocFinished(7)])]
@pytest.mark.extended


def test_indexer_batches_short_documents_into_full_forwards(settings_factory: Any, tmp_path: Path) -> None:
    """Eight 1-page and 2-page PDFs, 2 workers, batch 4: across documents the pages go in forwards of
    up to 4 pages, and the points equal those of one document per forward (off)."""
    from pagelens.app.service import PagelensService

    root = tmp_path / "docs"
    pdfs = [make_pdf(root / f"inv{i}.pdf", 1 + i % 2, f"invoice {i}") for i in range(8)]
    inputs = [IndexInput(path=p) for p in pdfs]
    base = {"page_longest_edge": 512, "embed_batch_size": 4, "pipeline_queue_chunks": 8}
    off = PagelensService(settings_factory(batch_across_documents="off", **base))
    on = PagelensService(settings_factory(batch_across_documents="on", data_dir=tmp_path / "d2", **base))
    embedder = on.indexer.embedder
    forward = embedder.embed_preprocessed
    sizes: list[int] = []

    def slow_forward(batch: Any, page_sizes: Any) -> Any:  # the real forward, made slower than the workers
        time.sleep(0.4)  # (the tiny model is faster than rasterizing; a real GPU forward keeps pages waiting)
        sizes.append(len(page_sizes))
        return forward(batch, page_sizes)

    embedder.embed_preprocessed = slow_forward  # type: ignore[method-assign]
    try:
        r_off = off.indexer.index("c", inputs, workers=2)
        r_on = on.indexer.index("c", inputs, workers=2)
        assert r_off.ok and r_on.ok and r_off.pages_indexed == r_on.pages_indexed == 12
        assert r_on.pipeline["batch_across_documents"] and not r_off.pipeline["batch_across_documents"]
        assert r_off.pipeline["forwards"] == 8 and r_off.pipeline["forward_pages_max"] == 2
        assert sum(sizes) == 12 and len(sizes) == r_on.pipeline["forwards"] < 8  # pages of several documents
        assert max(sizes) == r_on.pipeline["forward_pages_max"] and 2 < max(sizes) <= 4
        assert [d.status for d in r_on.documents] == [d.status for d in r_off.documents]
        p_off, p_on = points(off, "c"), points(on, "c")
        assert set(p_off) == set(p_on)
        for pid, payload in p_off.items():
            assert (payload["doc_id"], payload["page_no"]) == (p_on[pid]["doc_id"], p_on[pid]["page_no"])
        v_off = off.store.get_full_vectors("c", list(p_off))
        v_on = on.store.get_full_vectors("c", list(p_off))
        for pid in p_off:
            np.testing.assert_allclose(v_on[pid], v_off[pid], atol=1e-4)
    finally:
        off.close()
        on.close()


def test_auto_batch_size_and_batching_follow_the_device(settings_factory: Any) -> None:
    settings = settings_factory()
    assert settings.tuning.embed_batch_size == 0
    assert settings.resolved_embed_batch_size("cuda") == 16 and settings.resolved_embed_batch_size("cpu") == 4
    assert settings_factory(embed_batch_size=7).resolved_embed_batch_size("cuda") == 7
    from pagelens.app.service import PagelensService

    service = PagelensService(settings)
    try:
        assert service.indexer.embed_batch_size() == 4  # the CPU here
        assert not service.indexer.batches_across_documents()  # auto: only on CUDA
    finally:
        service.close()
