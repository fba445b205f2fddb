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
    from pagelens.models.embedder import ColSmolEmbedder

    cpu = ColSmolEmbedder(settings_factory(device="cpu"))
    gpu = ColSmolEmbedder(settings_factory(device="auto", embed_batch_size=3, image_processor_backend="pil"))
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
    from pagelens.answer import SmolVLMAnswerer
    from pagelens.retrieve.types import SearchHit

    path = tmp_path / "p.png"
    page(7).save(path)
    hit = SearchHit(rank=1, doc_id="d", doc_name="d.pdf", page_no=1, page_count=1, score=1.0, image_path=str(path))
    answerer = SmolVLMAnswerer(settings_factory(device="auto", max_new_tokens=8))
    blocking = answerer.answer("What is on the page?", [hit])
    streamed = "".join(e.text for e in answerer.stream("What is on the page?", [hit]) if e.kind == "token")
    assert blocking.text == streamed and blocking.citations[0].page_no == 1


def test_cuda_preprocessing_on_the_device_matches_the_cpu_torchvision_processor(settings_factory) -> None:
    """PAGELENS_TUNING__PREPROCESS_DEVICE=model: pixel_values are made on the GPU, and the embeddings match
    those of the same torchvision processor run on the CPU."""
    from pagelens.models.embedder import ColSmolEmbedder

    on_cpu = ColSmolEmbedder(settings_factory(device="auto", image_processor_backend="torchvision",
                                              preprocess_device="cpu"))
    on_gpu = ColSmolEmbedder(settings_factory(device="auto", image_processor_backend="torchvision",
                                              preprocess_device="model"))
    images = [page(i) for i in range(2)]
    on_gpu.load()
    batch = on_gpu._preprocess(images)
    assert batch["pixel_values"].device.type == "cuda"
    for a, b in zip(on_cpu.embed_pages(images), on_gpu.embed_pages(images), strict=True):
        assert a.full.shape == b.full.shape
        assert float(np.median((a.full * b.full).sum(axis=1))) > 0.99


def _hits(tmp_path, n: int) -> list:
    from pagelens.retrieve.types import SearchHit

    hits = []
    for i in range(n):
        path = tmp_path / f"p{i}.png"
        page(11 + i).save(path)
        hits.append(SearchHit(rank=i + 1, doc_id=f"d{i}", doc_name=f"d{i}.pdf", page_no=1, page_count=1,
                              score=1.0, image_path=str(path)))
    return hits


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cuda_graph_decoder_gives_the_eager_tokens(settings_factory, tmp_path, dtype: str) -> None:
    """answer_decoder=graph on CUDA: the decode step is a captured CUDA graph, it passes its checks at
    4 cache positions, and its tokens equal the same static-cache loop run eagerly (and, in float32,
    generate()'s). Once this passes on a real GPU, answer/answerer.py GRAPH_DECODER_GPU_VALIDATED may
    make it the ``auto`` choice on CUDA (test_cuda_auto_decoder_is_generate_until_validated)."""
    from pagelens.answer import SmolVLMAnswerer
    from pagelens.answer.fast_decode import StaticGreedyDecoder

    hits = _hits(tmp_path, 2)
    graph = SmolVLMAnswerer(settings_factory(device="auto", dtype=dtype, max_new_tokens=48, answer_decoder="graph"))
    graph.load()
    decoder = graph.decoder
    assert decoder is not None and decoder.cuda_graphs
    eager = StaticGreedyDecoder(graph._model, cuda_graphs=False)
    for k in (1, 2):
        inputs = graph._prepare("What is on the page?", hits, k).inputs
        with torch.inference_mode():
            ours = decoder.generate(inputs, max_new_tokens=48, eos_token_ids=graph._eos_token_ids())
            again = decoder.generate(inputs, max_new_tokens=48, eos_token_ids=graph._eos_token_ids())
            reference = eager.generate(inputs, max_new_tokens=48, eos_token_ids=graph._eos_token_ids())
        assert torch.equal(ours, reference) and torch.equal(again, reference)
    stats = decoder.stats
    assert stats.graph_failures == 0 and stats.captures >= 1 and stats.graph_tokens > 0 and stats.eager_tokens == 0
    assert stats.graph_checks >= 3 * stats.captures  # each graph checked at 3-4 positions before use
    if dtype == "float32":
        plain = SmolVLMAnswerer(settings_factory(device="auto", dtype=dtype, max_new_tokens=48,
                                                 answer_decoder="generate"))
        for k in (1, 2):
            assert graph.answer("What is on the page?", hits, k=k).text == \
                plain.answer("What is on the page?", hits, k=k).text


def test_cuda_auto_decoder_is_generate_until_validated(settings_factory) -> None:
    """auto keeps generate() on CUDA until the graph decoder is marked validated on a GPU."""
    from pagelens.answer import SmolVLMAnswerer, answerer

    auto = SmolVLMAnswerer(settings_factory(device="auto", max_new_tokens=8))
    auto.load()
    assert (auto.decoder is None) == (not answerer.GRAPH_DECODER_GPU_VALIDATED)


def test_cuda_answer_preprocessing_on_the_device(settings_factory, tmp_path) -> None:
    from pagelens.answer import SmolVLMAnswerer

    hits = _hits(tmp_path, 2)
    cpu = SmolVLMAnswerer(settings_factory(device="auto", image_processor_backend="torchvision",
                                           preprocess_device="cpu", max_new_tokens=16))
    gpu = SmolVLMAnswerer(settings_factory(device="auto", image_processor_backend="torchvision",
                                           preprocess_device="model", max_new_tokens=16))
    gpu.load()
    assert gpu._prepare("Q?", hits, 2).inputs["pixel_values"].device.type == "cuda"
    a, b = cpu.answer("What is on the page?", hits, k=2), gpu.answer("What is on the page?", hits, k=2)
    assert (a.prompt_tokens, a.image_tokens) == (b.prompt_tokens, b.image_tokens) and b.generated_tokens >= 1


def test_cuda_graph_capture_while_other_threads_use_the_gpu(settings_factory, tmp_path) -> None:
    """Graphs are captured thread-locally: searches (query encoding) and a second answer running on
    other threads during a capture neither fail nor break the capture."""
    import threading

    from pagelens.answer import SmolVLMAnswerer

    from pagelens.models.embedder import ColSmolEmbedder

    hits = _hits(tmp_path, 2)
    answerer = SmolVLMAnswerer(settings_factory(device="auto", max_new_tokens=32, answer_decoder="graph"))
    embedder = ColSmolEmbedder(settings_factory(device="auto"))
    answerer.load()
    embedder.load()
    errors: list[BaseException] = []
    texts: dict[int, str] = {}
    stop = threading.Event()

    def search_loop() -> None:
        try:
            while not stop.is_set():
                embedder.embed_queries(["total amount due"])
        except BaseException as exc:
            errors.append(exc)

    def answer(k: int) -> None:
        try:
            texts[k] = answerer.answer("What is on the page?", hits, k=k).text
        except BaseException as exc:
            errors.append(exc)

    searcher = threading.Thread(target=search_loop)
    searcher.start()
    workers = [threading.Thread(target=answer, args=(k,)) for k in (1, 2)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    searcher.join()
    assert not errors
    assert answerer.decoder is not None and answerer.decoder.stats.graph_failures == 0
    assert texts == {k: answerer.answer("What is on the page?", hits, k=k).text for k in (1, 2)}


def test_cuda_auto_defaults_preprocess_on_the_device(settings_factory) -> None:
    """The defaults on CUDA: torchvision processor, pixel values made on the GPU, workers only
    rasterize; embeddings stay close to the PIL processor's on the CPU."""
    from pagelens.app.service import PagelensService
    from pagelens.models.embedder import ColSmolEmbedder

    auto = ColSmolEmbedder(settings_factory(device="auto"))
    auto.load()
    assert auto._backend == "torchvision" and auto.preprocesses_on_device
    assert auto._preprocess([page(1)])["pixel_values"].device.type == "cuda"
    cpu = ColSmolEmbedder(settings_factory(device="cpu"))
    for a, b in zip(cpu.embed_pages([page(1), page(2)]), auto.embed_pages([page(1), page(2)]), strict=True):
        assert a.full.shape == b.full.shape and float(np.median((a.full * b.full).sum(axis=1))) > 0.97
    service = PagelensService(settings_factory(device="auto"))
    try:
        assert service.indexer.preprocessor() is None and service.indexer.embed_batch_size() == 16
        assert service.indexer.batches_across_documents()
    finally:
        service.close()
