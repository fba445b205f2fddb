"""GPU path checks (bf16, batching) with the tiny models. Marked ``gpu``: never in the default run;
run with ``.venv/bin/python -m pytest -m gpu`` on a CUDA machine."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def page(seed: int) -> Image.Image:
    image = Image.new("RGB", (791, 1024), "white")
    draw = ImageDraw.Draw(image)
    rng = np.random.default_rng(seed)
    for _ in range(40):
        x, y = rng.integers(0, 700), rng.integers(0, 950)
        draw.rectangle([x, y, x + 60, y + 12], fill="black")
    return image


def test_cuda_bf16_embeddings_match_cpu_and_batching(settings_factory) -> None:
    from index.embedder import ColSmolEmbedder

    cpu = ColSmolEmbedder(settings_factory(device="cpu"))
    gpu = ColSmolEmbedder(settings_factory(device="auto", embed_batch_size=3))
    images = [page(i) for i in range(3)]
    on_cpu = cpu.embed_pages(images)
    on_gpu = gpu.embed_pages(images)
    assert gpu.device is not None and gpu.device.type == "cuda"
    for a, b in zip(on_cpu, on_gpu, strict=True):
        assert a.full.shape == b.full.shape and b.full.dtype == np.float32
        cosine = (a.full * b.full).sum(axis=1)  # per token, both L2-normalised
        assert float(np.median(cosine)) > 0.98
    single = gpu.embed_pages(images[:1])[0]
    np.testing.assert_allclose(single.full, on_gpu[0].full, atol=3e-2)


def test_cuda_answer_streams_same_text_as_blocking(settings_factory, tmp_path) -> None:
    from answer import SmolVLMAnswerer
    from retrieve.types import SearchHit

    path = tmp_path / "p.png"
    page(7).save(path)
    hit = SearchHit(rank=1, doc_id="d", doc_name="d.pdf", page_no=1, page_count=1, score=1.0, image_path=str(path))
    answerer = SmolVLMAnswerer(settings_factory(device="auto", max_new_tokens=8))
    blocking = answerer.answer("What is on the page?", [hit])
    streamed = "".join(e.text for e in answerer.stream("What is on the page?", [hit]) if e.kind == "token")
    assert blocking.text == streamed and blocking.citations[0].page_no == 1


def test_cuda_preprocessing_on_the_device_matches_the_cpu_torchvision_processor(settings_factory) -> None:
    """PAGELENS_PREPROCESS_DEVICE=model: pixel_values are made on the GPU, and the embeddings match
    those of the same torchvision processor run on the CPU."""
    from index.embedder import ColSmolEmbedder

    on_cpu = ColSmolEmbedder(settings_factory(device="auto", image_processor_backend="torchvision"))
    on_gpu = ColSmolEmbedder(settings_factory(device="auto", image_processor_backend="torchvision",
                                              preprocess_device="model"))
    images = [page(i) for i in range(2)]
    on_gpu.load()
    batch = on_gpu._preprocess(images)
    assert batch["pixel_values"].device.type == "cuda"
    for a, b in zip(on_cpu.embed_pages(images), on_gpu.embed_pages(images), strict=True):
        assert a.full.shape == b.full.shape
        assert float(np.median((a.full * b.full).sum(axis=1))) > 0.99
