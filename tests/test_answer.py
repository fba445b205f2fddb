"""answer/: prompt layout, image-token budget, streaming == blocking, citations, relevance gate, load errors.

Runs the real transformers path (Idefics3Processor + Idefics3ForConditionalGeneration.generate) on the
tiny random answerer from ``make_tiny_models``; pages are real PDF pages rendered small with pymupdf.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import REAL_PDFS
from pagelens.answer import (
    INSTRUCTION,
    NO_RELEVANT_PAGES_TEXT,
    Answer,
    Answerer,
    SmolVLMAnswerer,
    build_messages,
    fit_longest_edge,
    image_token_count,
    page_label,
    select_pages,
)
from pagelens.retrieve.types import SearchHit

from pagelens.core.errors import IngestError, ModelUnavailableError

PDFS = ["inv_aws_invoice_en.pdf", "paper_tracemonkey_pldi09.pdf", "slide_kreate_guidance_16x9.pdf"]


@pytest.fixture(scope="module")
def page_pngs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return render_first_pages(tmp_path_factory.mktemp("answer-pages"))


def render_first_pages(out: Path) -> list[Path]:
    """Page 1 of three real PDFs (portrait, portrait, 16:9) as small PNGs (~36 dpi) in ``out``."""
    import pymupdf

    paths = []
    for name in PDFS:
        with pymupdf.open(REAL_PDFS / name) as doc:
            pix = doc[0].get_pixmap(dpi=36)
            path = out / f"{Path(name).stem}-p1.png"
            pix.save(str(path))
            paths.append(path)
    return paths


def make_hits(paths: list[Path]) -> list[SearchHit]:
    return [
        SearchHit(
            rank=i + 1,
            doc_id=f"doc{i}",
            doc_name=PDFS[i],
            page_no=1,
            page_count=1,
            score=20.0 - 3 * i,
            image_path=str(p),
        )
        for i, p in enumerate(paths)
    ]


@pytest.fixture
def hits(page_pngs: list[Path]) -> list[SearchHit]:
    return make_hits(page_pngs)


@pytest.fixture
def make_answerer(settings_factory: Any):
    def make(**overrides: Any) -> SmolVLMAnswerer:
        overrides.setdefault("max_new_tokens", 8)
        return SmolVLMAnswerer(settings_factory(**overrides))

    return make


def spy_generate(answerer: SmolVLMAnswerer) -> list[Any]:
    """Record the ``input_ids`` [1, n] of every ``generate()`` call of a loaded answerer."""
    calls: list[Any] = []
    original = answerer._model.generate

    def generate(**kwargs: Any) -> Any:
        calls.append(kwargs["input_ids"])
        return original(**kwargs)

    answerer._model.generate = generate
    return calls


# ------------------------------------------------------------------------------------------------
# Prompt layout (no model)
# ------------------------------------------------------------------------------------------------


def test_build_messages_one_image_per_page_in_rank_order(hits: list[SearchHit]) -> None:
    messages = build_messages("  What is the total?  ", hits)
    assert len(messages) == 1 and messages[0]["role"] == "user"
    content = messages[0]["content"]
    assert [c["type"] for c in content] == ["text", "image"] * len(hits) + ["text"]
    labels = [c["text"] for c in content[0:-1:2]]
    assert labels == [f"Document: {h.doc_name}, page {h.page_no}:" for h in hits]
    assert labels == [page_label(h.doc_name, h.page_no) for h in hits]
    assert "Question: What is the total?" in content[-1]["text"]
    assert INSTRUCTION in content[-1]["text"]


def test_chat_template_and_processor_layout(tiny_models: dict[str, Path], hits: list[SearchHit]) -> None:
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(tiny_models["answerer"]), size={"longest_edge": 512})
    text = processor.apply_chat_template(build_messages("Who?", hits), add_generation_prompt=True)
    assert text.count("<image>") == len(hits)
    positions = [text.index(page_label(h.doc_name, h.page_no)) for h in hits]
    assert positions == sorted(positions)
    # each label directly precedes its image; the question comes after the last image
    for h in hits:
        assert page_label(h.doc_name, h.page_no) + "<image>" in text
    assert text.index("Question: Who?") > text.rindex("<image>")
    assert text.endswith("Assistant:")

    images = [Image.open(h.image_path).convert("RGB") for h in hits]  # type: ignore[arg-type]
    batch = processor(text=[text], images=[images])
    ids = batch["input_ids"][0]
    tok = processor.tokenizer
    # one global tile per page at 512 px (each page fits one 512-px tile)
    assert ids.count(tok.convert_tokens_to_ids("<global-img>")) == len(hits)
    assert ids.count(processor.image_token_id) == len(hits) * processor.image_seq_len


def test_image_token_count_matches_processor(tiny_models: dict[str, Path]) -> None:
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(tiny_models["answerer"]))
    tile = processor.image_processor.max_image_size["longest_edge"]
    rng = random.Random(0)
    sizes = [(612, 792), (792, 612), (1187, 1536), (1000, 200), (513, 512), (40, 3000), (2048, 2048)]
    sizes += [(rng.randint(20, 2500), rng.randint(20, 2500)) for _ in range(6)]
    for width, height in sizes:
        image = Image.new("RGB", (width, height))
        for edge in (384, 512, 1024, 1536):
            batch = processor(text=["x<image>"], images=[[image]], size={"longest_edge": edge})
            actual = batch["input_ids"][0].count(processor.image_token_id)
            expected = image_token_count(
                width, height, longest_edge=edge, tile_size=tile, image_seq_len=processor.image_seq_len
            )
            assert actual == expected, (width, height, edge)


def test_select_pages_budget_and_rank_order(hits: list[SearchHit]) -> None:
    shuffled = [hits[2], hits[0], hits[1]]
    per_page = lambda image: 64  # noqa: E731
    assert select_pages(shuffled, k=3, max_image_tokens=10_000, tokens_per_image=per_page) == hits
    assert select_pages(shuffled, k=2, max_image_tokens=10_000, tokens_per_image=per_page) == hits[:2]
    assert select_pages(hits, k=3, max_image_tokens=128, tokens_per_image=per_page) == hits[:2]
    assert select_pages(hits, k=3, max_image_tokens=191, tokens_per_image=per_page) == hits[:2]
    # even a single page over the budget is kept (the answerer shows it smaller)
    assert select_pages(hits, k=3, max_image_tokens=10, tokens_per_image=per_page) == hits[:1]
    assert select_pages([], k=3, max_image_tokens=10, tokens_per_image=per_page) == []


def test_fit_longest_edge() -> None:
    # US letter: 1536 px -> 10 tiles (640), 1024 -> 5 tiles (320), 512 -> 1 tile (64)
    assert (
        fit_longest_edge(612, 792, max_tokens=640, longest_edge=1536, tile_size=512, image_seq_len=64) == 1536
    )
    assert (
        fit_longest_edge(612, 792, max_tokens=639, longest_edge=1536, tile_size=512, image_seq_len=64) == 1024
    )
    assert (
        fit_longest_edge(612, 792, max_tokens=100, longest_edge=1536, tile_size=512, image_seq_len=64) == 512
    )
    assert (
        fit_longest_edge(612, 792, max_tokens=1, longest_edge=1536, tile_size=512, image_seq_len=64) == 512
    )  # floor: one tile


# ------------------------------------------------------------------------------------------------
# Generation with the tiny model
# ------------------------------------------------------------------------------------------------


def test_stream_equals_answer_with_exact_citations(make_answerer: Any, hits: list[SearchHit]) -> None:
    answerer = make_answerer()
    assert not answerer.loaded  # nothing loads at construction
    assert isinstance(answerer, Answerer)
    events = list(answerer.stream("What is the total amount?", hits, k=3, retrieve_s=0.25))
    assert [e.kind for e in events[:-1]] == ["token"] * (len(events) - 1)
    done = events[-1]
    assert done.kind == "done" and isinstance(done.answer, Answer)
    streamed = "".join(e.text for e in events[:-1])
    assert streamed == done.answer.text

    blocking = answerer.answer("What is the total amount?", hits, k=3, retrieve_s=0.25)
    assert blocking.text == streamed  # greedy: identical

    for answer in (done.answer, blocking):
        assert [(c.doc_id, c.doc_name, c.page_no, c.score, c.image_path) for c in answer.citations] == [
            (h.doc_id, h.doc_name, h.page_no, h.score, h.image_path) for h in hits
        ]
        assert not answer.no_relevant_pages
        assert answer.model_id == answerer.model_id
        assert 1 <= answer.generated_tokens <= 8
        assert answer.image_tokens == 3 * 64  # one 512-px tile per page
        assert answer.prompt_tokens > answer.image_tokens
        t = answer.timings
        assert t.retrieve_s == 0.25
        assert t.preprocess_s > 0 and t.prefill_s > 0 and t.decode_s > 0
        assert t.total_s >= t.retrieve_s + t.preprocess_s + t.prefill_s + t.decode_s - 1e-6
    data = blocking.to_dict()
    assert data["citations"][0]["doc_id"] == "doc0" and data["timings"]["total_s"] > 0


def test_static_kv_cache_gives_the_same_greedy_tokens(make_answerer: Any, hits: list[SearchHit]) -> None:
    """The static-cache option (compiled decode on CUDA) must not change what is generated: same
    tokens as the default dynamic cache and as a plain ``generate()`` on the same inputs."""
    dynamic = make_answerer(max_new_tokens=24)
    static = make_answerer(max_new_tokens=24, answer_kv_cache="static")
    static.load()
    seen: list[dict[str, Any]] = []
    original = static._model.generate

    def generate(**kwargs: Any) -> Any:
        seen.append(kwargs)
        return original(**kwargs)

    static._model.generate = generate  # type: ignore[method-assign]
    a = dynamic.answer("What is the total amount?", hits, k=2)
    b = static.answer("What is the total amount?", hits, k=2)
    assert seen and seen[0]["cache_implementation"] == "static"
    assert b.text == a.text and b.generated_tokens == a.generated_tokens
    inputs = {k: v for k, v in seen[0].items() if k in ("input_ids", "attention_mask", "pixel_values",
                                                        "pixel_attention_mask")}
    with torch.inference_mode():
        plain = original(**inputs, do_sample=False, max_new_tokens=b.generated_tokens,
                         pad_token_id=seen[0]["pad_token_id"])
    tokens = static.processor.tokenizer.decode(plain[0, inputs["input_ids"].shape[-1]:], skip_special_tokens=True)
    assert tokens.strip() == b.text.strip()


def test_closing_the_stream_stops_generation(make_answerer: Any, hits: list[SearchHit]) -> None:
    answerer = make_answerer(max_new_tokens=400)
    answerer.load()
    outputs: list[Any] = []
    original = answerer._model.generate

    def generate(**kwargs: Any) -> Any:
        out = original(**kwargs)
        outputs.append(out.shape[-1] - kwargs["input_ids"].shape[-1])
        return out

    answerer._model.generate = generate
    events = answerer.stream("Q?", hits, k=1)
    first = next(events)
    assert first.kind == "token"
    events.close()  # joins the generation thread after asking it to stop
    assert not any(t.name == "pagelens-answer-generate" for t in threading.enumerate())
    assert outputs and outputs[0] < 400


def test_budget_limits_pages_and_processor_image_tokens(make_answerer: Any, hits: list[SearchHit]) -> None:
    answerer = make_answerer(max_image_tokens=150)  # 64 per page at 512 px: 2 of 3 fit
    answerer.load()
    calls = spy_generate(answerer)
    answer = answerer.answer("Which page?", hits, k=3)
    assert [c.doc_id for c in answer.citations] == ["doc0", "doc1"]
    assert [c.score for c in answer.citations] == [hits[0].score, hits[1].score]
    (input_ids,) = calls
    image_tokens = int((input_ids == answerer.processor.image_token_id).sum())
    assert image_tokens == answer.image_tokens == 128 <= 150


def test_single_page_over_budget_is_shown_smaller(make_answerer: Any, hits: list[SearchHit]) -> None:
    answerer = make_answerer(answer_longest_edge=1024, max_image_tokens=100)
    # at 1024 px a portrait page is 2 x 2 tiles + global = 320 tokens: over budget
    answer = answerer.answer("Which page?", hits, k=3)
    assert [c.doc_id for c in answer.citations] == ["doc0"]
    assert answer.image_tokens == 64  # shown at 512 px: one tile


def test_relevance_threshold_means_no_generation(make_answerer: Any, hits: list[SearchHit]) -> None:
    answerer = make_answerer(relevance_threshold=100.0)
    events = list(answerer.stream("Anything?", hits))
    answer = events[-1].answer
    assert answer is not None and answer.no_relevant_pages
    assert answer.citations == [] and answer.generated_tokens == 0 and answer.prompt_tokens == 0
    assert answer.text == NO_RELEVANT_PAGES_TEXT == "".join(e.text for e in events[:-1])
    assert not answerer.loaded  # the model was never even loaded
    assert answerer.answer("Anything?", []).no_relevant_pages

    # pages under the threshold are not shown, pages at it are
    answerer = make_answerer(relevance_threshold=hits[1].score)
    answer = answerer.answer("Anything?", hits)
    assert [c.doc_id for c in answer.citations] == ["doc0", "doc1"]


def test_missing_page_image_names_document_and_page(make_answerer: Any, hits: list[SearchHit]) -> None:
    hits[1].image_path = str(Path(hits[1].image_path or "").with_name("gone.png"))
    with pytest.raises(IngestError) as info:
        make_answerer().answer("Q?", hits, k=3)
    assert PDFS[1] in str(info.value) and "page 1" in str(info.value) and "gone.png" in str(info.value)


def test_load_is_idempotent_and_thread_safe(make_answerer: Any) -> None:
    answerer = make_answerer()
    threads = [threading.Thread(target=answerer.load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    model = answerer._model
    answerer.load()
    assert answerer.loaded and answerer._model is model


def test_missing_local_model_dir(settings_factory: Any, tmp_path: Path, hits: list[SearchHit]) -> None:
    missing = tmp_path / "no-such-model"
    answerer = SmolVLMAnswerer(settings_factory(answer_model=str(missing)))
    with pytest.raises(ModelUnavailableError) as info:
        answerer.answer("Q?", hits)
    message = str(info.value)
    assert str(missing) in message and "PAGELENS_ANSWER_MODEL" in message
    assert "huggingface-cli download HuggingFaceTB/SmolVLM-256M-Instruct" in message


def test_hub_id_not_cached_offline(settings_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    answerer = SmolVLMAnswerer(settings_factory(answer_model="pagelens-tests/not-a-model"))
    with pytest.raises(ModelUnavailableError) as info:
        answerer.load()
    message = str(info.value)
    assert "huggingface-cli download pagelens-tests/not-a-model --local-dir DIR" in message
    assert "PAGELENS_ANSWER_MODEL" in message and "offline" in message


def test_torchvision_image_processor_answers_with_the_same_layout(make_answerer: Any, hits: list[SearchHit]) -> None:
    """PAGELENS_TUNING__IMAGE_PROCESSOR_BACKEND=torchvision for the answer model: the torch processor is
    loaded and the prompt has the same image tokens as with the PIL one."""
    from transformers.models.idefics3.image_processing_idefics3 import Idefics3ImageProcessor

    fast = make_answerer(image_processor_backend="torchvision")
    answer = fast.answer("What is the total amount?", hits, k=3)
    assert isinstance(fast.processor.image_processor, Idefics3ImageProcessor)
    reference = make_answerer().answer("What is the total amount?", hits, k=3)
    assert answer.image_tokens == reference.image_tokens == 3 * 64
    assert answer.prompt_tokens == reference.prompt_tokens
    assert 1 <= answer.generated_tokens <= 8


def test_preprocessing_on_the_model_device_gives_the_same_prompt_and_answer(
    make_answerer: Any, hits: list[SearchHit]
) -> None:
    """PAGELENS_TUNING__PREPROCESS_DEVICE=model for answers: the torchvision processor runs on the answer
    model's device (the CPU here; tests/test_gpu.py on CUDA) with the same pixels, tokens and text."""
    cpu = make_answerer(image_processor_backend="torchvision")
    device = make_answerer(image_processor_backend="torchvision", preprocess_device="model")
    a, b = cpu.answer("What is the total amount?", hits, k=2), device.answer("What is the total amount?", hits, k=2)
    assert (b.text, b.prompt_tokens, b.image_tokens) == (a.text, a.prompt_tokens, a.image_tokens)
    pa = cpu._prepare("Q?", hits, 2).inputs
    pb = device._prepare("Q?", hits, 2).inputs
    assert torch.equal(pa["input_ids"], pb["input_ids"])
    torch.testing.assert_close(pa["pixel_values"], pb["pixel_values"])
