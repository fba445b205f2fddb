"""bfloat16 on the CPU: what ``dtype=auto`` picks, and that both models run in it through the
product's loaders with results close to float32 (tiny random models)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pagelens.retrieve.types import SearchHit
from PIL import Image

import pagelens.core.devices as devices
from pagelens.core.settings import Settings
from pagelens.models.embedder import ColSmolEmbedder


def test_cpuinfo_flags(tmp_path: Path) -> None:
    amd = tmp_path / "amd"
    amd.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 avx512_vnni\n\nflags : x\n")
    intel = tmp_path / "intel"
    intel.write_text("flags\t: fpu avx512f amx_tile amx_bf16\n")
    old = tmp_path / "old"
    old.write_text("flags\t: fpu sse2 avx2 avx512f\n")
    arm = tmp_path / "arm"
    arm.write_text("Features\t: fp asimd bf16\n")
    assert devices.native_bf16_in_cpuinfo(str(amd)) and devices.native_bf16_in_cpuinfo(str(intel))
    assert not devices.native_bf16_in_cpuinfo(str(old)) and not devices.native_bf16_in_cpuinfo(str(arm))
    assert not devices.native_bf16_in_cpuinfo(str(tmp_path / "missing"))


def test_auto_dtype_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert devices.resolve_dtype("auto", cpu) == torch.bfloat16
    assert devices.resolve_dtype("float32", cpu) == torch.float32  # an explicit choice always wins
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    assert devices.resolve_dtype("auto", cpu) == torch.float32


def pages() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(3):
        a = np.full((700, 540, 3), 255, dtype=np.uint8)
        a[100 + 150 * i : 220 + 150 * i, 60:480] = rng.integers(0, 255, (120, 420, 3), dtype=np.uint8)
        out.append(Image.fromarray(a))
    return out


def test_retriever_in_bfloat16_matches_float32(tiny_models: dict[str, Path]) -> None:
    def embedder(dtype: str) -> ColSmolEmbedder:
        return ColSmolEmbedder(Settings(_env_file=None, retriever_model=str(tiny_models["retriever"]),  # type: ignore[call-arg]
                                        device="cpu", dtype=dtype, page_longest_edge=512, embed_batch_size=2))

    fp32, bf16 = embedder("float32"), embedder("bfloat16")
    bf16.load()
    assert bf16._dtype == torch.bfloat16 and next(bf16._model.parameters()).dtype == torch.bfloat16
    a, b = fp32.embed_pages(pages()), bf16.embed_pages(pages())
    qa = fp32.embed_queries(["total amount due", "invoice date"])
    qb = bf16.embed_queries(["total amount due", "invoice date"])
    for x, y in [*((p.full, r.full) for p, r in zip(a, b, strict=True)), *zip(qa, qb, strict=True)]:
        assert y.dtype == np.float32 and y.shape == x.shape  # handed on as float32, whatever the model ran in
        cos = (x * y).sum(axis=1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
        assert cos.min() > 0.98, cos.min()
    for p, r in zip(a, b, strict=True):
        np.testing.assert_allclose(np.linalg.norm(r.full, axis=1), 1.0, atol=1e-2)
        assert r.rows.shape == p.rows.shape and r.cols.shape == p.cols.shape


def test_answerer_in_bfloat16_streams_a_cited_answer(settings_factory: Any, tmp_path: Path) -> None:
    from pagelens.answer.answerer import SmolVLMAnswerer

    img = tmp_path / "p1.png"
    pages()[0].save(img)
    hit = SearchHit(rank=1, doc_id="d", doc_name="d.pdf", page_no=1, page_count=1, score=3.0, image_path=str(img))
    answerer = SmolVLMAnswerer(settings_factory(dtype="bfloat16", max_new_tokens=6))
    events = list(answerer.stream("What is the total?", [hit], k=1))
    assert next(answerer._model.parameters()).dtype == torch.bfloat16
    done = events[-1]
    assert done.kind == "done" and 1 <= done.answer.generated_tokens <= 6
    assert "".join(e.text for e in events[:-1]) == done.answer.text
    assert answerer.answer("What is the total?", [hit], k=1).text == done.answer.text  # greedy: identical
    assert [(c.doc_name, c.page_no) for c in done.answer.citations] == [("d.pdf", 1)]
