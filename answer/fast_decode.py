"""Greedy decoding over a static KV cache, the one-token step replayed as a CUDA graph on CUDA.

Why: ``generate()`` spends most of a small model's decode step in Python (logits processors, stopping
criteria, cache bookkeeping, ~30 layers of kernel launches) rather than in the step's kernels (an
outside GPU measurement of this is quoted, with its source, in bench/README.md; not measured in this
repository yet). This decoder keeps only what greedy decoding needs:

1. prefill (eager, any prompt length): the model over the prompt and page images, writing keys and
   values into a ``transformers.StaticCache`` of ``max_cache_len`` slots; the first token is the argmax
   of the last position's logits;
2. decode: one step = the model over one token (``input_ids`` [1, 1]) with that cache -> argmax
   [1]. The step has fixed shapes and keeps its position on the device (the cache's
   ``cumulative_length`` tensor, advanced in place by the step itself), so on CUDA it is captured once
   per cache slot into a ``torch.cuda.CUDAGraph`` and each further token is one ``replay()`` plus the
   host read of the token (needed anyway to stream it and to stop at end of turn).

The captured graph is checked once, before its first token is used, against the eager step at several
positions (``check_positions``): the capture position, the next one, and the positions a shorter and a
longer prompt would decode at (a graph that baked its capture position in, or that only works past it,
fails there); each must give the eager step's token and advance the position by one. The probes only
write cache entries that are restored afterwards or rewritten by the real steps. A graph that fails a
check or the capture is dropped with a warning and that slot decodes eagerly, with the same static
cache. Tokens equal ``generate()``'s under greedy decoding (tested on the tiny model, which also checks
that the step traces as one graph). Not yet run on a GPU: ``Settings.answer_decoder`` ``auto`` keeps
``generate()`` on CUDA until ``tests/test_gpu.py`` has passed on one.

Caches are kept per length bucket (powers of two from ``min_cache_len``) in a free list, so concurrent
answers each take their own slot and a later answer of a similar length reuses the captured graph; at
most ``max_free_per_length`` idle slots are kept per length (a KV cache of 2048 slots is ~47 MB for the
256M model in bf16).
Only valid where the generation config applies no logits processing (no repetition penalty, banned
words, minimum length...): ``unsupported_generation_options`` names what would be skipped, and the
answerer then keeps ``generate()``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

# generation-config fields that make generate() change the greedy choice, with their no-op values
_NO_OP_GENERATION_OPTIONS: dict[str, tuple[Any, ...]] = {
    "repetition_penalty": (None, 1.0),
    "encoder_repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0),
    "encoder_no_repeat_ngram_size": (None, 0),
    "bad_words_ids": (None, []),
    "suppress_tokens": (None, []),
    "begin_suppress_tokens": (None, []),
    "sequence_bias": (None, {}),
    "min_length": (None, 0),
    "min_new_tokens": (None, 0),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "exponential_decay_length_penalty": (None,),
    "renormalize_logits": (None, False),
    "token_healing": (None, False),
}


def unsupported_generation_options(generation_config: Any) -> list[str]:
    """The generation-config fields (``name=value``) that ``generate()`` would apply and this greedy
    loop does not; empty when the loop gives ``generate()``'s tokens."""
    found = []
    for name, no_ops in _NO_OP_GENERATION_OPTIONS.items():
        value = getattr(generation_config, name, None)
        if not any(value == no_op for no_op in no_ops):
            found.append(f"{name}={value!r}")
    return found


class Replay(Protocol):
    """A captured decode step: ``replay()`` re-runs it, writing its output tensor in place."""

    def replay(self) -> None: ...


GraphFactory = Callable[[Callable[[], "torch.Tensor"]], tuple[Replay, "torch.Tensor"]]
"""Captures a step function: returns the replayable graph and the tensor each replay writes."""


def cuda_graph_factory(step: Callable[[], torch.Tensor]) -> tuple[Replay, torch.Tensor]:
    """Capture ``step`` (already warmed up by the caller) into a ``torch.cuda.CUDAGraph``.

    ``thread_local`` capture: other threads (a search encoding its query, another answer) keep using
    the GPU while this one captures; the default, global mode would make their CUDA calls fail."""
    import torch

    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        out = step()
    return graph, out


@dataclass
class _Slot:
    """One static cache and, on CUDA, its captured step. token: [1, 1] int64, the step's input."""

    length: int
    cache: Any
    token: torch.Tensor
    graph: Replay | None = None
    graph_out: torch.Tensor | None = None  # [1] int64, written by each replay
    graph_failed: bool = False
    checked_positions: tuple[int, ...] = ()  # where the graph was checked against the eager step


@dataclass
class DecodeStats:
    """What the decoder did so far (for logs, benchmarks and tests)."""

    answers: int = 0
    graph_tokens: int = 0
    eager_tokens: int = 0
    captures: int = 0
    graph_failures: int = 0
    graph_checks: int = 0  # positions a captured graph was compared with the eager step at


class StaticGreedyDecoder:
    """Greedy decoding of an ``Idefics3ForConditionalGeneration`` (any causal LM whose cache layers are
    ``StaticLayer``) over static caches, CUDA-graph replay of the decode step when ``cuda_graphs``.

    ``graph_factory`` captures a step (default ``cuda_graph_factory``); tests pass an eager stand-in to
    exercise the capture, check and fallback logic on the CPU.
    """

    def __init__(
        self,
        model: Any,
        *,
        cuda_graphs: bool,
        min_cache_len: int = 1024,
        max_free_per_length: int = 2,
        graph_factory: GraphFactory | None = None,
    ) -> None:
        self._model = model
        self._device = next(model.parameters()).device
        self.cuda_graphs = cuda_graphs
        self.min_cache_len = int(min_cache_len)
        self.max_free_per_length = int(max_free_per_length)
        self._graph_factory = graph_factory or cuda_graph_factory
        self._free: dict[int, list[_Slot]] = {}
        self._lock = threading.Lock()
        self.stats = DecodeStats()

    # -- cache slots -----------------------------------------------------------------------------

    def cache_length(self, n_prompt: int, max_new_tokens: int) -> int:
        """Slots of the cache for a prompt of ``n_prompt`` tokens and ``max_new_tokens`` more: the next
        power of two from ``min_cache_len`` (few buckets, so captured graphs are reused)."""
        need = n_prompt + max_new_tokens
        length = self.min_cache_len
        while length < need:
            length *= 2
        return length

    def _take_slot(self, length: int) -> _Slot:
        with self._lock:
            free = self._free.get(length)
            if free:
                return free.pop()
        import torch
        from transformers import StaticCache

        cache = StaticCache(config=self._model.config, max_cache_len=length)
        token = torch.zeros((1, 1), dtype=torch.long, device=self._device)
        return _Slot(length=length, cache=cache, token=token)

    def _give_back(self, slot: _Slot) -> None:
        """Keep the slot (and its graph) for the next answer of its length, up to ``max_free_per_length``
        per length; beyond that (a burst of concurrent answers) it is dropped and its memory freed."""
        with self._lock:
            free = self._free.setdefault(slot.length, [])
            if len(free) < self.max_free_per_length:
                free.append(slot)

    def cached_slots(self) -> dict[int, int]:
        """Free slots per cache length (for tests and logs)."""
        with self._lock:
            return {length: len(slots) for length, slots in self._free.items()}

    # -- steps -----------------------------------------------------------------------------------

    def _step(self, slot: _Slot) -> torch.Tensor:
        """One decode step on ``slot.token`` -> the greedy next token [1] (int64, on the device)."""
        out = self._model(input_ids=slot.token, past_key_values=slot.cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :].argmax(dim=-1)

    @staticmethod
    def _set_position(slot: _Slot, position: int) -> None:
        """Point every cache layer's write position at ``position`` (in place: the graph reads it)."""
        for layer in slot.cache.layers:
            layer.cumulative_length.fill_(position)

    @staticmethod
    def _position(slot: _Slot) -> int:
        return int(slot.cache.layers[0].cumulative_length)

    def _graph_capable(self, slot: _Slot) -> bool:
        from transformers.cache_utils import StaticLayer

        return all(type(layer) is StaticLayer for layer in slot.cache.layers)

    def _capture(self, slot: _Slot, position: int) -> None:
        """Warm up (on a side stream on CUDA, as graph capture wants) and capture the step at
        ``position``; the warm-up's writes are rewound (the real step writes the same slot again)."""
        import torch

        on_cuda = self._device.type == "cuda"
        stream = torch.cuda.Stream() if on_cuda else None
        if stream is not None:
            stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            for _ in range(2):
                self._step(slot)
                self._set_position(slot, position)
        if stream is not None:
            torch.cuda.current_stream().wait_stream(stream)
        slot.graph, slot.graph_out = self._graph_factory(lambda: self._step(slot))
        self._set_position(slot, position)  # a capture records, it does not run; stay safe either way
        self._count(captures=1)

    def _count(self, **increments: int) -> None:
        """Add to ``stats`` (under the lock: answers run on several threads)."""
        with self._lock:
            for name, value in increments.items():
                setattr(self.stats, name, getattr(self.stats, name) + value)

    @staticmethod
    def check_positions(capture: int, length: int) -> list[int]:
        """Where a graph captured at cache position ``capture`` (the first decode position of the answer
        that captured it: its prompt length) is checked before use, in a cache of ``length`` slots: the
        capture position, the next one, the position of a prompt half as long and that of a prompt
        halfway to the cache's end (when they differ from the first two)."""
        positions = [capture, capture + 1, capture // 2, capture + (length - capture) // 2]
        out: list[int] = []
        for p in positions:
            if 0 <= p < length and p not in out:
                out.append(p)
        return out

    @staticmethod
    def _cache_entries(slot: _Slot, position: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Copies of every layer's key and value at ``position`` ([1, heads, head_dim] each)."""
        return [(layer.keys[:, :, position].clone(), layer.values[:, :, position].clone())
                for layer in slot.cache.layers]

    @staticmethod
    def _restore_entries(slot: _Slot, position: int, saved: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        for layer, (keys, values) in zip(slot.cache.layers, saved, strict=True):
            layer.keys[:, :, position].copy_(keys)
            layer.values[:, :, position].copy_(values)

    def _check_graph(self, slot: _Slot, capture: int) -> None:
        """Compare one replay with the eager step at each of ``check_positions`` (same input token, same
        cache); raise ``RuntimeError`` at the first difference. The entries the probes write are put
        back (a graph that writes elsewhere can only have baked in ``capture``, the entry the real step
        writes next), and the position is left at ``capture``."""
        import torch

        assert slot.graph is not None and slot.graph_out is not None
        checked: list[int] = []
        try:
            for position in self.check_positions(capture, slot.length):
                saved = self._cache_entries(slot, position)
                self._set_position(slot, position)
                expected = self._step(slot).clone()
                self._set_position(slot, position)
                slot.graph.replay()
                advanced = self._position(slot)
                got = slot.graph_out.clone()
                self._restore_entries(slot, position, saved)
                self._count(graph_checks=1)
                if not torch.equal(got, expected) or advanced != position + 1:
                    raise RuntimeError(
                        f"at cache position {position} (captured at {capture}) the replayed step gave token "
                        f"{int(got[0])} and moved to position {advanced}, the eager step token "
                        f"{int(expected[0])} and position {position + 1}"
                    )
                checked.append(position)
        finally:
            self._set_position(slot, capture)
        slot.checked_positions = tuple(checked)

    def _graph_step(self, slot: _Slot) -> torch.Tensor | None:
        """The next token from the slot's graph (captured and checked on first use), or None when the
        slot has no usable graph."""
        if not self.cuda_graphs or slot.graph_failed:
            return None
        position = self._position(slot)
        try:
            if slot.graph is None:
                if not self._graph_capable(slot):
                    raise RuntimeError("the cache has layers other than StaticLayer")
                self._capture(slot, position)
                self._check_graph(slot, position)
            assert slot.graph is not None and slot.graph_out is not None
            slot.graph.replay()
            return slot.graph_out
        except Exception as exc:  # any capture/check failure: this slot decodes eagerly
            logger.warning(
                "CUDA graph decode disabled for the %d-token cache (decoding eagerly, same tokens): %s: %s",
                slot.length,
                type(exc).__name__,
                exc,
            )
            slot.graph, slot.graph_out, slot.graph_failed = None, None, True
            self._count(graph_failures=1)
            self._set_position(slot, position)
            return None

    # -- decoding --------------------------------------------------------------------------------

    def generate(
        self,
        inputs: Mapping[str, torch.Tensor],
        *,
        max_new_tokens: int,
        eos_token_ids: list[int],
        should_stop: Callable[[], bool] = lambda: False,
        on_tokens: Callable[[torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        """Greedy tokens after the prompt, as ``generate()`` returns them.

        inputs: the processor's tensors on the model's device (``input_ids`` [1, n_prompt],
        ``attention_mask`` [1, n_prompt], ``pixel_values`` [1, n_tiles, 3, T, T], ...).
        on_tokens: called with the prompt ids [1, n_prompt] (CPU) first, then with each new token [1]
        (CPU): the ``TextIteratorStreamer.put`` protocol. Stops after an end-of-turn token (included),
        after ``max_new_tokens``, or once ``should_stop()``.
        Returns the sequence [1, n_prompt + n_new] (int64, CPU).
        """
        import torch

        input_ids = inputs["input_ids"]
        n_prompt = int(input_ids.shape[1])
        if on_tokens is not None:
            on_tokens(input_ids.cpu())
        slot = self._take_slot(self.cache_length(n_prompt, max_new_tokens))
        generated: list[int] = []
        graph_tokens = eager_tokens = 0
        eos = set(eos_token_ids)
        try:
            slot.cache.reset()
            out = self._model(**inputs, past_key_values=slot.cache, use_cache=True, logits_to_keep=1)
            token = out.logits[:, -1, :].argmax(dim=-1)  # [1]
            while True:
                value = int(token[0])
                generated.append(value)
                if on_tokens is not None:
                    on_tokens(torch.tensor([value]))
                if value in eos or len(generated) >= max_new_tokens or should_stop():
                    break
                slot.token.copy_(token.view(1, 1))
                replayed = self._graph_step(slot)
                if replayed is not None:
                    token = replayed
                    graph_tokens += 1
                else:
                    token = self._step(slot)
                    eager_tokens += 1
        finally:
            self._count(answers=1, graph_tokens=graph_tokens, eager_tokens=eager_tokens)
            self._give_back(slot)
        new = torch.tensor([generated], dtype=input_ids.dtype)
        return torch.cat([input_ids.cpu(), new], dim=1)

