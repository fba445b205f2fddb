"""answer/fast_decode.py: the static-cache greedy loop gives generate()'s tokens; the CUDA-graph logic
(capture once per slot, check replays against the eager step at several cache positions before use,
fall back when one differs) runs on the CPU with eager stand-ins for the graph, correct and broken;
the decode step traces as one graph; ``auto`` decodes with generate() on CUDA too (not yet GPU-validated).

All with the tiny random Idefics3ForConditionalGeneration from ``make_tiny_models``, loaded through
the answerer's real loading path.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from pagelens.answer import SmolVLMAnswerer
from pagelens.answer.fast_decode import StaticGreedyDecoder, unsupported_generation_options
from pagelens.retrieve.types import SearchHit
from test_answer import make_hits, render_first_pages

QUESTION = "What is the total amount?"


@pytest.fixture(scope="module")
def page_pngs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return render_first_pages(tmp_path_factory.mktemp("decode-pages"))


@pytest.fixture
def hits(page_pngs: list[Path]) -> list[SearchHit]:
    return make_hits(page_pngs)


@pytest.fixture
def make_answerer(settings_factory: Any) -> Callable[..., SmolVLMAnswerer]:
    def make(**overrides: Any) -> SmolVLMAnswerer:
        overrides.setdefault("max_new_tokens", 32)
        answerer = SmolVLMAnswerer(settings_factory(**overrides))
        answerer.load()
        return answerer

    return make


class EagerReplay:
    """Stands in for ``torch.cuda.CUDAGraph`` on the CPU: ``replay()`` re-runs the step into the
    output tensor, as a replay would."""

    def __init__(self, step: Callable[[], torch.Tensor], out: torch.Tensor) -> None:
        self.step, self.out, self.replays = step, out, 0

    def replay(self) -> None:
        self.out.copy_(self.step())
        self.replays += 1


def eager_graph_factory(step: Callable[[], torch.Tensor]) -> tuple[EagerReplay, torch.Tensor]:
    out = step().clone()
    return EagerReplay(step, out), out


def frozen_graph_factory(step: Callable[[], torch.Tensor]) -> tuple[EagerReplay, torch.Tensor]:
    """A broken capture: replays write a stale token and never advance the cache position."""
    out = step().clone()

    class Frozen(EagerReplay):
        def replay(self) -> None:
            self.replays += 1

    return Frozen(step, out), out


def model_inputs(answerer: SmolVLMAnswerer, hits: list[SearchHit], k: int) -> dict[str, torch.Tensor]:
    return answerer._prepare(QUESTION, hits, k).inputs


def reference_sequences(answerer: SmolVLMAnswerer, inputs: dict[str, torch.Tensor], max_new: int,
                        **kwargs: Any) -> torch.Tensor:
    with torch.inference_mode():
        return answerer._model.generate(
            **inputs, do_sample=False, max_new_tokens=max_new, eos_token_id=answerer._eos_token_ids(),
            pad_token_id=answerer._model.generation_config.pad_token_id, **kwargs,
        )


def decode(decoder: StaticGreedyDecoder, answerer: SmolVLMAnswerer, inputs: dict[str, torch.Tensor],
           max_new: int) -> torch.Tensor:
    with torch.inference_mode():
        return decoder.generate(inputs, max_new_tokens=max_new, eos_token_ids=answerer._eos_token_ids())


def test_greedy_loop_equals_generate_token_for_token(make_answerer: Any, hits: list[SearchHit]) -> None:
    answerer = make_answerer()
    decoder = StaticGreedyDecoder(answerer._model, cuda_graphs=False, min_cache_len=64)
    for k in (1, 3):
        inputs = model_inputs(answerer, hits, k)
        ours = decode(decoder, answerer, inputs, 40)
        assert torch.equal(ours, reference_sequences(answerer, inputs, 40))
        assert torch.equal(ours, reference_sequences(answerer, inputs, 40, cache_implementation="static"))
        assert ours.shape[1] > inputs["input_ids"].shape[1] + 1  # decoded past the first token
    assert decoder.stats.answers == 2 and decoder.stats.graph_tokens == 0 and decoder.stats.eager_tokens > 0
    # one slot per length bucket, back on the free list for the next answer
    assert sum(decoder.cached_slots().values()) == len(decoder.cached_slots()) >= 1


def test_cache_length_buckets(make_answerer: Any) -> None:
    decoder = StaticGreedyDecoder(make_answerer()._model, cuda_graphs=False, min_cache_len=1024)
    assert decoder.cache_length(100, 256) == 1024
    assert decoder.cache_length(1000, 256) == 2048
    assert decoder.cache_length(2048 - 256, 256) == 2048
    assert decoder.cache_length(5000, 256) == 8192


def test_graph_path_captures_once_checks_and_replays(make_answerer: Any, hits: list[SearchHit]) -> None:
    answerer = make_answerer()
    decoder = StaticGreedyDecoder(answerer._model, cuda_graphs=True, min_cache_len=64,
                                  graph_factory=eager_graph_factory)
    inputs = model_inputs(answerer, hits, 2)
    expected = reference_sequences(answerer, inputs, 40)
    first = decode(decoder, answerer, inputs, 40)
    second = decode(decoder, answerer, inputs, 40)  # same bucket: the captured step is reused
    assert torch.equal(first, expected) and torch.equal(second, expected)
    n_prompt = inputs["input_ids"].shape[1]
    n_new = expected.shape[1] - n_prompt
    assert decoder.stats.captures == 1 and decoder.stats.graph_failures == 0
    assert decoder.stats.graph_tokens == 2 * (n_new - 1) and decoder.stats.eager_tokens == 0
    length = decoder.cache_length(n_prompt, 40)
    positions = StaticGreedyDecoder.check_positions(n_prompt, length)
    assert positions == [n_prompt, n_prompt + 1, n_prompt // 2, n_prompt + (length - n_prompt) // 2]
    assert decoder.stats.graph_checks == 4  # once, before the first replay used
    (slot,) = decoder._free[length]
    assert slot.checked_positions == tuple(positions)


def test_graph_that_fails_its_check_falls_back_to_eager(make_answerer: Any, hits: list[SearchHit],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    answerer = make_answerer()
    decoder = StaticGreedyDecoder(answerer._model, cuda_graphs=True, min_cache_len=64,
                                  graph_factory=frozen_graph_factory)
    inputs = model_inputs(answerer, hits, 1)
    with caplog.at_level(logging.WARNING, logger="pagelens.answer.fast_decode"):
        ours = decode(decoder, answerer, inputs, 40)
        again = decode(decoder, answerer, inputs, 40)
    expected = reference_sequences(answerer, inputs, 40)
    assert torch.equal(ours, expected) and torch.equal(again, expected)
    assert decoder.stats.graph_failures == 1 and decoder.stats.graph_tokens == 0  # not retried on that slot
    assert any("CUDA graph decode disabled for the" in r.message and "eager step token" in r.message
               for r in caplog.records)


class CaptureSpy(StaticGreedyDecoder):
    """Remembers the slot and cache position of the last capture (for the broken stand-ins below)."""

    capturing: tuple[Any, int] | None = None

    def _capture(self, slot: Any, position: int) -> None:
        self.capturing = (slot, position)
        super()._capture(slot, position)


def baked_position_factory(decoder: CaptureSpy) -> Callable[[Callable[[], torch.Tensor]], tuple[EagerReplay, torch.Tensor]]:
    """A capture that baked its cache position in: every replay runs the step at the capture position
    (right there, wrong anywhere else: the first-token-only check let such a graph through)."""

    def factory(step: Callable[[], torch.Tensor]) -> tuple[EagerReplay, torch.Tensor]:
        assert decoder.capturing is not None
        slot, captured = decoder.capturing
        out = step().clone()

        class Baked(EagerReplay):
            def replay(self) -> None:
                StaticGreedyDecoder._set_position(slot, captured)
                super().replay()

        return Baked(step, out), out

    return factory


def shorter_prompt_broken_factory(decoder: CaptureSpy) -> Callable[[Callable[[], torch.Tensor]], tuple[EagerReplay, torch.Tensor]]:
    """A graph right at and after its capture position but wrong before it: right for the answer that
    captured it, wrong for a later answer with a shorter prompt in the same cache bucket."""

    def factory(step: Callable[[], torch.Tensor]) -> tuple[EagerReplay, torch.Tensor]:
        assert decoder.capturing is not None
        slot, captured = decoder.capturing
        out = step().clone()

        class Partial(EagerReplay):
            def replay(self) -> None:
                before = StaticGreedyDecoder._position(slot)
                super().replay()
                if before < captured:
                    self.out.add_(1)  # a wrong token

        return Partial(step, out), out

    return factory


@pytest.mark.parametrize("broken", [baked_position_factory, shorter_prompt_broken_factory])
def test_graph_right_only_at_its_capture_position_is_caught(
    make_answerer: Any, hits: list[SearchHit], broken: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Graphs that pass a check at the capture position only: caught by the checks at the next position
    or at a shorter prompt's position, before any of their tokens is used; that answer and a later one
    with a shorter prompt in the same bucket decode eagerly and give generate()'s tokens (the probes
    left the cache as it was)."""
    answerer = make_answerer()
    long_inputs, short_inputs = model_inputs(answerer, hits, 2), model_inputs(answerer, hits, 1)
    n_long, n_short = long_inputs["input_ids"].shape[1], short_inputs["input_ids"].shape[1]
    assert n_short < n_long
    decoder = CaptureSpy(answerer._model, cuda_graphs=True, min_cache_len=512)
    decoder._graph_factory = broken(decoder)
    assert decoder.cache_length(n_long, 40) == decoder.cache_length(n_short, 40)  # one bucket, one graph
    with caplog.at_level(logging.WARNING, logger="pagelens.answer.fast_decode"):
        first = decode(decoder, answerer, long_inputs, 40)
        second = decode(decoder, answerer, short_inputs, 40)
    assert torch.equal(first, reference_sequences(answerer, long_inputs, 40))
    assert torch.equal(second, reference_sequences(answerer, short_inputs, 40))
    assert decoder.stats.captures == 1 and decoder.stats.graph_failures == 1 and decoder.stats.graph_tokens == 0
    failed_at = n_long + 1 if broken is baked_position_factory else n_long // 2
    assert any(f"at cache position {failed_at} (captured at {n_long})" in r.message for r in caplog.records), \
        [r.message for r in caplog.records]


def test_check_positions() -> None:
    assert StaticGreedyDecoder.check_positions(100, 1024) == [100, 101, 50, 562]
    assert StaticGreedyDecoder.check_positions(1, 4) == [1, 2, 0]  # 1 + 3 // 2 = 2 already there
    assert StaticGreedyDecoder.check_positions(0, 2) == [0, 1]


def test_graph_capture_error_falls_back_to_eager(make_answerer: Any, hits: list[SearchHit]) -> None:
    answerer = make_answerer()

    def failing(step: Callable[[], torch.Tensor]) -> Any:
        raise RuntimeError("operation not permitted when stream is capturing")

    decoder = StaticGreedyDecoder(answerer._model, cuda_graphs=True, min_cache_len=64, graph_factory=failing)
    inputs = model_inputs(answerer, hits, 1)
    assert torch.equal(decode(decoder, answerer, inputs, 40), reference_sequences(answerer, inputs, 40))
    assert decoder.stats.graph_failures == 1 and decoder.stats.eager_tokens > 0


def test_decode_step_traces_as_one_graph(make_answerer: Any, hits: list[SearchHit]) -> None:
    """What a CUDA graph needs of the step: no host syncs, no data-dependent Python branches. Dynamo
    with ``fullgraph=True`` raises on either, so the step must trace whole."""
    answerer = make_answerer()
    decoder = StaticGreedyDecoder(answerer._model, cuda_graphs=False, min_cache_len=64)
    inputs = model_inputs(answerer, hits, 1)
    slot = decoder._take_slot(decoder.cache_length(inputs["input_ids"].shape[1], 8))
    torch._dynamo.reset()
    with torch.inference_mode():
        out = answerer._model(**inputs, past_key_values=slot.cache, use_cache=True, logits_to_keep=1)
        slot.token.copy_(out.logits[:, -1, :].argmax(dim=-1).view(1, 1))
        position = decoder._position(slot)
        eager = decoder._step(slot)
        decoder._set_position(slot, position)
        traced = torch.compile(lambda: decoder._step(slot), fullgraph=True, backend="eager")()
    assert torch.equal(traced, eager)
    assert decoder._position(slot) == position + 1  # the traced step advanced the cache on the device


def test_answerer_graph_mode_gives_generates_answers(make_answerer: Any, hits: list[SearchHit]) -> None:
    reference = make_answerer(answer_decoder="generate")
    graph = make_answerer(answer_decoder="graph")
    assert reference.decoder is None and graph.decoder is not None and not graph.decoder.cuda_graphs
    for k in (1, 3):
        a, b = reference.answer(QUESTION, hits, k=k), graph.answer(QUESTION, hits, k=k)
        assert b.text == a.text and b.generated_tokens == a.generated_tokens >= 2
        assert [c.page_no for c in b.citations] == [c.page_no for c in a.citations]
        assert b.timings.prefill_s > 0 and b.timings.decode_s > 0
    events = list(graph.stream(QUESTION, hits, k=2))
    assert "".join(e.text for e in events[:-1]) == events[-1].answer.text == reference.answer(QUESTION, hits, k=2).text


def test_auto_mode_is_generate_on_the_cpu_and_on_cuda(make_answerer: Any, caplog: pytest.LogCaptureFixture) -> None:
    """``auto`` keeps generate() on CUDA too until tests/test_gpu.py has passed on a real GPU, and says
    so once with the setting that opts in; ``graph`` asks for CUDA graphs on CUDA."""
    from pagelens.answer import answerer as answerer_module

    answerer = make_answerer()
    assert answerer.decoder is None  # the CPU
    assert answerer_module.GRAPH_DECODER_GPU_VALIDATED is False
    cuda = torch.device("cuda")  # only the choice: nothing runs on it
    with caplog.at_level(logging.WARNING, logger="pagelens.answer.answerer"):
        assert answerer._make_decoder(answerer._model, cuda) is None
    assert any("PAGELENS_TUNING__ANSWER_DECODER=graph" in r.message and "tests/test_gpu.py" in r.message
               for r in caplog.records)
    graph = SmolVLMAnswerer(answerer.settings.with_overrides(answer_decoder="graph"))
    decoder = graph._make_decoder(answerer._model, cuda)
    assert decoder is not None and decoder.cuda_graphs


def test_closing_the_stream_stops_the_graph_decoder(make_answerer: Any, hits: list[SearchHit]) -> None:
    answerer = make_answerer(answer_decoder="graph", max_new_tokens=400)
    decoder = answerer.decoder
    assert decoder is not None
    events = answerer.stream(QUESTION, hits, k=1)
    assert next(events).kind == "token"
    events.close()
    assert not any(t.name == "pagelens-answer-generate" for t in threading.enumerate())
    assert decoder.stats.eager_tokens < 399


def test_concurrent_answers_take_their_own_cache(make_answerer: Any, hits: list[SearchHit]) -> None:
    answerer = make_answerer(answer_decoder="graph")
    expected = {k: answerer.answer(QUESTION, hits, k=k).text for k in (1, 2)}
    got: dict[int, str] = {}
    barrier = threading.Barrier(2)

    def run(k: int) -> None:
        barrier.wait()
        got[k] = answerer.answer(QUESTION, hits, k=k).text

    threads = [threading.Thread(target=run, args=(k,)) for k in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == expected


def test_generation_options_only_generate_applies_keep_generate(
    make_answerer: Any, tiny_models: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    answerer = make_answerer()
    config = answerer._model.generation_config
    assert unsupported_generation_options(config) == []
    config.repetition_penalty = 1.3
    config.no_repeat_ngram_size = 3
    assert unsupported_generation_options(config) == ["repetition_penalty=1.3", "no_repeat_ngram_size=3"]
    with caplog.at_level(logging.WARNING, logger="pagelens.answer.answerer"):
        graph = SmolVLMAnswerer(answerer.settings.with_overrides(answer_decoder="graph"))
        graph._load_model = lambda *a, **kw: answerer._model  # type: ignore[method-assign]
        graph.load()
    assert graph.decoder is None
    assert any("repetition_penalty=1.3" in r.message and "using generate()" in r.message for r in caplog.records)


def test_idle_slots_are_capped_per_length(make_answerer: Any, hits: list[SearchHit]) -> None:
    """A burst of concurrent answers takes a cache each; afterwards at most ``max_free_per_length``
    idle caches per length stay (the others are freed)."""
    answerer = make_answerer()
    decoder = StaticGreedyDecoder(answerer._model, cuda_graphs=False, min_cache_len=64, max_free_per_length=2)
    inputs = model_inputs(answerer, hits, 1)
    length = decoder.cache_length(inputs["input_ids"].shape[1], 8)
    taken = [decoder._take_slot(length) for _ in range(4)]
    assert len({id(slot.cache) for slot in taken}) == 4
    for slot in taken:
        decoder._give_back(slot)
    assert decoder.cached_slots() == {length: 2}
    reused = decoder._take_slot(length)
    assert any(reused is slot for slot in taken[:2])
