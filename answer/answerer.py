"""``SmolVLMAnswerer`` (alias ``VLMAnswerer``): answers over retrieved page images with SmolVLM (transformers
Idefics3), the tested default, or any transformers image-text-to-text model with a chat template
(``AutoModelForImageTextToText`` + ``AutoProcessor``: Qwen2.5-VL, ...; ``pagelens.models.answer_model``).
The prompt (``prompt.build_messages``), the image budget (``max_image_tokens``) and the citations are the
same for every family; only the image-token arithmetic differs: SmolVLM's is computed
(``prompt.image_token_count``), another family's is asked of its processor
(``_get_num_multimodal_tokens``) after the page is shrunk to ``answer_longest_edge`` px (never enlarged).

Flow of one answer: relevance gate (``Settings.relevance_threshold`` on each hit's visual MaxSim,
``relevance_threshold_text`` on its BM25; never the fused hybrid score) -> pick pages (rank order, at most
``k``, within ``max_image_tokens``; ``prompt.select_pages``) -> chat messages (label + image per page,
then the question; ``prompt.build_messages``) -> ``Idefics3Processor`` (pages resized to
``answer_longest_edge`` px, 512-px tiles, 64 ``<image>`` tokens per tile) -> greedy decoding on a
worker thread feeding a ``TextIteratorStreamer`` (``generate()``, or with ``answer_decoder=graph`` the
static-cache loop with a CUDA-graph decode step of ``pagelens.answer.fast_decode``; ``Settings.answer_decoder``) -> ``token``
events -> one ``done`` event with the ``Answer``. ``answer()`` consumes ``stream()``, so both return the same text for the same inputs.

The model is a hub id or a local directory (``Settings.answer_model`` / ``answer_revision``). Nothing is
loaded at import or construction; ``load()`` (idempotent, thread-safe) or the first answer does. Local
directories are used as they are; a hub id is looked up in the HF cache first and downloaded (short
timeouts) only when it is missing there and the hub is not offline.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pagelens.answer.fast_decode import StaticGreedyDecoder, unsupported_generation_options
from pagelens.answer.prompt import (
    build_messages,
    fit_longest_edge,
    image_token_count,
    open_page_image,
    select_pages,
)
from pagelens.answer.types import NO_RELEVANT_PAGES_TEXT, Answer, AnswerEvent, Citation, Timings

from pagelens.core.errors import ModelUnavailableError, PagelensError
from pagelens.core.hub import Unavailable, unavailable_error
from pagelens.core.settings import DEFAULT_ANSWER_MODEL
from pagelens.models.answer_model import (
    ENV_VAR,
    answer_model_type,
    load_answer_processor,
    load_answer_weights,
    resolve_answer_model_dir,
)

if TYPE_CHECKING:
    import torch
    from pagelens.retrieve.types import SearchHit
    from PIL import Image

    from pagelens.core.settings import Settings

logger = logging.getLogger(__name__)

# answer_decoder=auto picks the CUDA-graph decoder on CUDA once this is True: set it when
# tests/test_gpu.py (bash bench/gpu_check.sh) has passed on a real GPU. Until then auto = generate().
GRAPH_DECODER_GPU_VALIDATED = False



# --------------------------------------------------------------------------------------------------
# Generation helpers
# --------------------------------------------------------------------------------------------------


@functools.cache
def _timed_streamer_class() -> type:
    """A ``TextIteratorStreamer`` that also records when the first generated token arrived (built lazily
    so importing this module does not import transformers)."""
    from transformers import TextIteratorStreamer

    class _TimedStreamer(TextIteratorStreamer):  # type: ignore[misc]
        first_token_at: float | None = None

        def put(self, value: Any) -> None:
            if not (self.skip_prompt and self.next_tokens_are_prompt) and self.first_token_at is None:
                self.first_token_at = time.perf_counter()
            super().put(value)

    return _TimedStreamer


@functools.cache
def _stop_on_event_class() -> type:
    """A ``StoppingCriteria`` that ends generation once a ``threading.Event`` is set (consumer left)."""
    import torch
    from transformers import StoppingCriteria

    class _StopOnEvent(StoppingCriteria):  # type: ignore[misc]
        def __init__(self, event: threading.Event) -> None:
            self.event = event

        def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            # -> BoolTensor [batch]
            return torch.full(
                (input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device
            )

    return _StopOnEvent


def _gate_scores(hit: SearchHit) -> tuple[float | None, float | None]:
    """(MaxSim, BM25) of a hit for the relevance gate: its ``visual_score`` / ``text_score``, or its
    ``score`` when ``score_kind`` says it is that score (a hit built with the ranking score only)."""
    visual = hit.visual_score if hit.visual_score is not None else (
        hit.score if hit.score_kind == "maxsim" else None)
    text = hit.text_score if hit.text_score is not None else (hit.score if hit.score_kind == "bm25" else None)
    return visual, text


def _best(scores: Any) -> str:
    """The largest of the non-None scores, formatted, or 'none'."""
    values = [s for s in scores if s is not None]
    return f"{max(values):.4f}" if values else "none"


def _shrunk_size(width: int, height: int, longest_edge: int) -> tuple[int, int]:
    """(width, height) scaled down (aspect kept) so the longest side is at most ``longest_edge``; never up."""
    scale = min(1.0, longest_edge / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _shrink(image: Image.Image, longest_edge: int) -> Image.Image:
    """``image`` resized to ``_shrunk_size`` (the same image when it already fits)."""
    from PIL import Image

    size = _shrunk_size(image.width, image.height, longest_edge)
    return image if size == (image.width, image.height) else image.resize(size, Image.Resampling.BICUBIC)


@dataclass
class _Prepared:
    """Model inputs of one answer. inputs: ``input_ids`` [1, n_prompt], ``attention_mask`` [1, n_prompt],
    ``pixel_values`` [1, n_tiles, 3, T, T] (model dtype), ``pixel_attention_mask`` [1, n_tiles, T, T]."""

    inputs: dict[str, Any]
    citations: list[Citation]
    prompt_tokens: int
    image_tokens: int
    preprocess_s: float


# --------------------------------------------------------------------------------------------------
# The answerer
# --------------------------------------------------------------------------------------------------


class SmolVLMAnswerer:
    """``Answerer`` over a SmolVLM / Idefics3 checkpoint (``Idefics3ForConditionalGeneration``).

    Settings used: ``answer_model``, ``answer_revision``, ``device``, ``dtype``, ``attn_implementation``,
    ``answer_top_k``, ``answer_longest_edge`` (px, longest edge of the page images shown),
    ``max_image_tokens``, ``max_new_tokens``, ``relevance_threshold``, ``relevance_threshold_text``.

    Thread-safety: ``load()`` is guarded by a lock; several ``answer``/``stream`` calls may run at once
    (each generates on its own thread; inference only reads the weights); the processor call is
    serialised, the tokenizer is not safe to share across threads.
    """

    env_var = ENV_VAR

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._model_id = settings.answer_model
        self.model_revision: str | None = settings.answer_revision
        self._lock = threading.Lock()
        # fast tokenizers can raise "Already borrowed" under concurrent calls: one preprocessing at a time
        self._preprocess_lock = threading.Lock()
        self._model: Any = None
        self._processor: Any = None
        self._decoder: StaticGreedyDecoder | None = None
        self._backend = "pil"  # image processor backend and preprocessing place, resolved at load
        self._preprocess_on_device = False
        self._device: torch.device | None = None
        self._dtype: torch.dtype | None = None
        self.load_s: float | None = None
        self._warned_ungated = False
        self._tiled = True  # SmolVLM / Idefics3 (its tile arithmetic and size= resizing); set at load

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def device(self) -> torch.device | None:
        """Where the model runs once loaded (None before)."""
        return self._device

    @property
    def processor(self) -> Any:
        """The ``Idefics3Processor`` (loads the model on first access)."""
        self.load()
        return self._processor

    # -- loading ------------------------------------------------------------------------------
    def load(self) -> None:
        """Load processor and model (idempotent, thread-safe). Raises ``ModelUnavailableError``."""
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            t0 = time.perf_counter()
            self._load_locked()
            self.load_s = time.perf_counter() - t0
            logger.info(
                "loaded answer model %s on %s (%s) in %.1f s",
                self.model_id,
                self._device,
                self._dtype,
                self.load_s,
            )

    def _load_locked(self) -> None:
        from pagelens.core.devices import get_device, resolve_dtype

        device = get_device(self.settings.device)
        dtype = resolve_dtype(self.settings.dtype, device)
        try:
            model_dir = resolve_answer_model_dir(self.model_id, self.model_revision)
            self._tiled = answer_model_type(model_dir) == "idefics3"
            self._backend = self.settings.resolved_image_processor_backend(device.type)
            self._preprocess_on_device = (self.settings.resolved_preprocess_device(device.type) == "model"
                                          and self._tiled)
            if self.settings.tuning.preprocess_device == "model" and not self._tiled:
                logger.warning("PAGELENS_TUNING__PREPROCESS_DEVICE=model applies to SmolVLM answer models; %s "
                               "preprocesses pages on the CPU; unset it to silence this", self.model_id)
            processor = self._load_processor(model_dir)
            model = self._load_model(model_dir, device, dtype)
        except Unavailable as err:
            raise unavailable_error(
                "answer", self.model_id, self.model_revision, err, ENV_VAR, DEFAULT_ANSWER_MODEL
            ) from err
        except ModelUnavailableError:
            raise
        except Exception as exc:  # corrupt or incompatible files: still one actionable error
            failed = Unavailable(f"loading failed: {type(exc).__name__}: {exc}", str(self.model_id))
            raise unavailable_error(
                "answer", self.model_id, self.model_revision, failed, ENV_VAR, DEFAULT_ANSWER_MODEL
            ) from exc
        model.to(device)
        model.eval()
        self._processor = processor
        self._device = device
        self._dtype = dtype
        self._decoder = self._make_decoder(model, device)
        self._model = model  # last: marks the answerer loaded

    def _make_decoder(self, model: Any, device: torch.device) -> StaticGreedyDecoder | None:
        """The static-cache greedy decoder where ``answer_decoder`` asks for it (``graph``) and the
        generation config allows it; None means ``generate()``. ``auto`` is ``generate()`` everywhere
        until the CUDA-graph decoder has passed ``tests/test_gpu.py`` on a real GPU
        (``GRAPH_DECODER_GPU_VALIDATED``); on CUDA that is said once, with the setting to opt in."""
        mode = self.settings.tuning.answer_decoder
        if mode == "auto":
            if device.type == "cuda" and not GRAPH_DECODER_GPU_VALIDATED:
                logger.warning(
                    "answers decode with transformers generate(): the faster CUDA-graph decoder has not passed "
                    "tests/test_gpu.py on a real GPU yet; set PAGELENS_TUNING__ANSWER_DECODER=graph to use it (each "
                    "captured graph is checked against the eager step and dropped on a difference)"
                )
            if device.type != "cuda" or not GRAPH_DECODER_GPU_VALIDATED:
                return None
        elif mode == "generate":
            return None
        if not self._tiled:
            logger.warning("answer_decoder=%s: the static-cache decoder is validated for SmolVLM (Idefics3) only; %s "
                           "answers with generate()", mode, self.model_id)
            return None
        unsupported = unsupported_generation_options(model.generation_config)
        if unsupported:
            logger.warning(
                "answer_decoder=%s: %s's generation config sets %s, which only generate() applies; using generate()",
                mode,
                self.model_id,
                ", ".join(unsupported),
            )
            return None
        return StaticGreedyDecoder(model, cuda_graphs=device.type == "cuda")

    @property
    def decoder(self) -> StaticGreedyDecoder | None:
        """The static-cache decoder in use (None: ``generate()``); valid once loaded."""
        return self._decoder

    def _load_processor(self, model_dir: Path) -> Any:
        return load_answer_processor(model_dir, self.settings.answer_longest_edge, self._backend)

    def _load_model(self, model_dir: Path, device: torch.device, dtype: torch.dtype) -> Any:
        return load_answer_weights(model_dir, device, dtype, self.settings.tuning.attn_implementation)

    # -- image-token arithmetic ------------------------------------------------------------------
    def _geometry(self) -> dict[str, Any]:
        """Tile size T (px), tokens per tile and splitting of the loaded processor."""
        ip = self.processor.image_processor
        max_size = ip.max_image_size
        tile = max_size["longest_edge"] if isinstance(max_size, dict) else max_size.longest_edge
        return {
            "tile_size": int(tile),
            "image_seq_len": int(self._processor.image_seq_len),
            "do_image_splitting": bool(getattr(ip, "do_image_splitting", True)),
        }

    def tokens_per_image(self, image: Image.Image, longest_edge: int | None = None) -> int:
        """``<image>`` tokens one page costs at ``longest_edge`` px (default ``answer_longest_edge``)."""
        edge = int(longest_edge or self.settings.answer_longest_edge)
        self.load()  # the family decides the arithmetic
        if self._tiled:
            return image_token_count(image.width, image.height, longest_edge=edge, **self._geometry())
        width, height = _shrunk_size(image.width, image.height, edge)
        return self._processor_tokens(width, height)

    def _processor_tokens(self, width: int, height: int) -> int:
        """Image tokens the (non-Idefics3) processor emits for a ``width x height`` image: its
        ``_get_num_multimodal_tokens`` (transformers' own count), else one processor call counted."""
        processor = self._processor
        try:
            return int(processor._get_num_multimodal_tokens(image_sizes=[(height, width)]).num_image_tokens[0])
        except (AttributeError, NotImplementedError, TypeError, KeyError, IndexError):
            from PIL import Image

            with self._preprocess_lock:
                token = getattr(processor, "image_token", "<image>")
                batch = processor(text=[token], images=[Image.new("RGB", (width, height))], return_tensors="pt")
            return int((batch["input_ids"] == processor.image_token_id).sum().item())

    def _fit_edge(self, image: Image.Image, edge: int, max_tokens: int) -> int:
        """The longest edge (px) <= ``edge`` at which ``image`` costs at most ``max_tokens`` image tokens
        (SmolVLM: multiples of its tile; other families: 10% steps down to 56 px, the least tried)."""
        if self._tiled:
            return fit_longest_edge(image.width, image.height, max_tokens=max_tokens, longest_edge=edge,
                                    **self._geometry())
        current = edge
        while current > 56 and self.tokens_per_image(image, current) > max_tokens:
            current = max(56, int(current * 0.9))
        return current

    # -- answering ------------------------------------------------------------------------------
    def answer(
        self, question: str, hits: Sequence[SearchHit], k: int | None = None, retrieve_s: float = 0.0
    ) -> Answer:
        """Blocking answer: consumes ``stream()`` and returns its ``done`` answer."""
        final: Answer | None = None
        for event in self.stream(question, hits, k=k, retrieve_s=retrieve_s):
            if event.kind == "done":
                final = event.answer
        if final is None:  # pragma: no cover - stream() always ends with a done event
            raise PagelensError("the answer stream ended without an answer")
        return final

    def stream(
        self, question: str, hits: Sequence[SearchHit], k: int | None = None, retrieve_s: float = 0.0
    ) -> Iterator[AnswerEvent]:
        """Yield ``token`` events as text is generated, then one ``done`` event with the ``Answer``.

        hits: retrieval results in rank order; pages are loaded from ``hit.image_path`` (``IngestError``
        naming the document and page when a considered page image is missing).
        k: most pages shown (default ``answer_top_k``), fewer when ``max_image_tokens`` is reached.
        Closing the iterator early stops generation at the next token.
        """
        t_start = time.perf_counter()
        relevant = self._relevant(hits)
        if not relevant:
            yield from self._no_relevant_pages(retrieve_s, t_start)
            return

        self.load()
        prepared = self._prepare(question, relevant, k)
        yield from self._generate(prepared, retrieve_s, t_start)

    def _relevant(self, hits: Sequence[SearchHit]) -> list[SearchHit]:
        """The hits that pass the relevance gate, rank order kept (all hits when no threshold is set).

        A hit passes when its ``visual_score`` (MaxSim) reaches ``relevance_threshold`` or its
        ``text_score`` (BM25) reaches ``relevance_threshold_text``, for the thresholds that are set. The
        fused hybrid ``score`` (RRF/DBSF) is never compared with a threshold: it is a rank value whose
        scale does not say how well a page matches. A hit that carries none of the gated scores (a
        text-mode hit with only the MaxSim threshold set) cannot be judged and is kept, with a warning
        (once per answerer) naming the setting that would gate it."""
        visual_min = self.settings.relevance_threshold
        text_min = getattr(self.settings, "relevance_threshold_text", None)
        if visual_min is None and text_min is None:
            return list(hits)
        kept: list[SearchHit] = []
        ungated = 0
        for hit in hits:
            judged = False
            passed = False
            visual, text = _gate_scores(hit)
            if visual_min is not None and visual is not None:
                judged = True
                passed = visual >= visual_min
            if not passed and text_min is not None and text is not None:
                judged = True
                passed = text >= text_min
            if passed or not judged:
                kept.append(hit)
            ungated += not judged
        if ungated and not self._warned_ungated:
            self._warned_ungated = True
            logger.warning(
                "%d hit(s) carry no score the relevance gate can judge (%s): they are shown to the answer model "
                "ungated; set PAGELENS_RELEVANCE_THRESHOLD_TEXT (BM25) to gate text-mode hits, or ask in hybrid "
                "or visual mode", ungated,
                "text mode has no visual MaxSim" if visual_min is not None else "no BM25 in visual mode",
            )
        if hits and not kept:
            logger.info(
                "no hit passes the relevance gate (visual MaxSim >= %s, BM25 >= %s; best MaxSim %s, best BM25 %s): "
                "not answering", visual_min, text_min,
                _best(_gate_scores(h)[0] for h in hits), _best(_gate_scores(h)[1] for h in hits),
            )
        return kept

    def _no_relevant_pages(self, retrieve_s: float, t_start: float) -> Iterator[AnswerEvent]:
        text = NO_RELEVANT_PAGES_TEXT
        timings = Timings(retrieve_s=retrieve_s, total_s=retrieve_s + time.perf_counter() - t_start)
        answer = Answer(
            text=text, citations=[], timings=timings, model_id=self.model_id, no_relevant_pages=True
        )
        yield AnswerEvent(kind="token", text=text)
        yield AnswerEvent(kind="done", answer=answer)

    def _prepare(self, question: str, hits: Sequence[SearchHit], k: int | None) -> _Prepared:
        """Pick the pages, load their images and run the processor."""
        t0 = time.perf_counter()
        settings = self.settings
        k = max(1, int(k if k is not None else settings.answer_top_k))
        edge = int(settings.answer_longest_edge)

        opened: dict[int, Image.Image] = {}

        def open_cached(hit: SearchHit) -> Image.Image:
            if id(hit) not in opened:
                opened[id(hit)] = open_page_image(hit)
            return opened[id(hit)]

        try:
            pages = select_pages(
                hits,
                k,
                settings.tuning.max_image_tokens,
                partial(self.tokens_per_image, longest_edge=edge),
                open_image=open_cached,
            )
            images = [open_cached(h).convert("RGB") for h in pages]  # decodes the pixels
        finally:
            for image in opened.values():
                image.close()

        if len(pages) == 1:
            cost = self.tokens_per_image(images[0], edge)
            if cost > settings.tuning.max_image_tokens:
                reduced = self._fit_edge(images[0], edge, settings.tuning.max_image_tokens)
                logger.warning(
                    "page %s p.%d costs %d image tokens at %d px, over max_image_tokens=%d: showing it at %d px",
                    pages[0].doc_name,
                    pages[0].page_no,
                    cost,
                    edge,
                    settings.tuning.max_image_tokens,
                    reduced,
                )
                edge = reduced

        processor = self._processor
        with self._preprocess_lock:
            prompt = processor.apply_chat_template(
                build_messages(question, pages), add_generation_prompt=True
            )
            if self._tiled:
                on_device = {"device": self._device} if self._preprocess_on_device else {}
                batch = processor(
                    text=[prompt], images=[images], return_tensors="pt", size={"longest_edge": edge}, **on_device
                )
            else:  # the family's own resizing, on pages shrunk to the longest edge
                shown = [_shrink(image, edge) for image in images]
                batch = processor(text=[prompt], images=shown, return_tensors="pt")
        inputs: dict[str, Any] = {}
        for key, value in batch.items():
            if not hasattr(value, "to"):
                continue
            inputs[key] = (
                value.to(self._device, dtype=self._dtype)
                if value.is_floating_point()
                else value.to(self._device)
            )
        input_ids = inputs["input_ids"]  # [1, n_prompt]
        citations = [
            Citation(
                doc_id=h.doc_id,
                doc_name=h.doc_name,
                page_no=h.page_no,
                score=h.score,
                image_path=h.image_path,
                score_kind=h.score_kind,
                visual_score=h.visual_score,
                text_score=h.text_score,
                regions=[dict(r) for r in getattr(h, "regions", None) or []],
            )
            for h in pages
        ]
        return _Prepared(
            inputs=inputs,
            citations=citations,
            prompt_tokens=int(input_ids.shape[1]),
            image_tokens=int((input_ids == processor.image_token_id).sum().item()),
            preprocess_s=time.perf_counter() - t0,
        )

    def _eos_token_ids(self) -> list[int]:
        """The model's eos id(s) plus ``<end_of_utterance>`` (where SmolVLM ends an assistant turn)."""
        ids: list[int] = []
        eos = getattr(self._model.generation_config, "eos_token_id", None)
        if isinstance(eos, int):
            ids.append(eos)
        elif eos:
            ids.extend(int(e) for e in eos)
        tokenizer = self._processor.tokenizer
        end_of_utterance = tokenizer.convert_tokens_to_ids("<end_of_utterance>")  # None / unk: not this family's
        if (isinstance(end_of_utterance, int) and end_of_utterance != tokenizer.unk_token_id
                and end_of_utterance not in ids):
            ids.append(end_of_utterance)
        return ids

    def _generate(self, prepared: _Prepared, retrieve_s: float, t_start: float) -> Iterator[AnswerEvent]:
        """Greedy generation on a worker thread; token events from its ``TextIteratorStreamer``."""
        import torch
        from transformers import StoppingCriteriaList

        tokenizer = self._processor.tokenizer
        streamer = _timed_streamer_class()(tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = threading.Event()
        result: dict[str, Any] = {}
        pad_id = self._model.generation_config.pad_token_id
        if pad_id is None:
            pad_id = tokenizer.pad_token_id
        gen_kwargs: dict[str, Any] = dict(
            **prepared.inputs,
            streamer=streamer,
            do_sample=False,
            max_new_tokens=int(self.settings.max_new_tokens),
            eos_token_id=self._eos_token_ids(),
            pad_token_id=pad_id,
            stopping_criteria=StoppingCriteriaList([_stop_on_event_class()(stop)]),
        )
        if self.settings.tuning.answer_kv_cache == "static":  # pre-allocated cache: compiled decode on CUDA
            gen_kwargs["cache_implementation"] = "static"

        decoder = self._decoder

        def run() -> None:
            try:
                with torch.inference_mode():
                    if decoder is None:
                        result["sequences"] = self._model.generate(**gen_kwargs)  # [1, n_prompt + n_new]
                    else:
                        result["sequences"] = decoder.generate(
                            prepared.inputs,
                            max_new_tokens=int(self.settings.max_new_tokens),
                            eos_token_ids=gen_kwargs["eos_token_id"],
                            should_stop=stop.is_set,
                            on_tokens=streamer.put,
                        )
                        streamer.end()
            except BaseException as exc:  # surfaced to the consumer below
                result["error"] = exc
                streamer.end()  # unblock the consumer

        t_gen = time.perf_counter()
        worker = threading.Thread(target=run, name="pagelens-answer-generate", daemon=True)
        worker.start()
        pieces: list[str] = []
        try:
            for piece in streamer:
                if not pieces:
                    piece = piece.lstrip()  # the model opens its turn with a space
                if piece:
                    pieces.append(piece)
                    yield AnswerEvent(kind="token", text=piece)
        finally:
            stop.set()  # no-op when generation already ended; stops it when the consumer left early
            worker.join()
        t_end = time.perf_counter()

        if "error" in result:
            exc = result["error"]
            raise PagelensError(
                f"answer generation with {self.model_id} failed: {type(exc).__name__}: {exc}",
                model=self.model_id,
            ) from exc
        sequences = result["sequences"]
        generated = int(sequences.shape[-1]) - prepared.prompt_tokens
        first_at = streamer.first_token_at or t_end
        timings = Timings(
            retrieve_s=retrieve_s,
            preprocess_s=prepared.preprocess_s,
            prefill_s=first_at - t_gen,
            decode_s=t_end - first_at,
            total_s=retrieve_s + (t_end - t_start),
        )
        answer = Answer(
            text="".join(pieces),
            citations=prepared.citations,
            timings=timings,
            prompt_tokens=prepared.prompt_tokens,
            image_tokens=prepared.image_tokens,
            generated_tokens=max(generated, 0),
            model_id=self.model_id,
        )
        logger.info(
            "answered over %d page(s): %d prompt tokens (%d image), %d generated; prefill %.3f s, decode %.3f s",
            len(answer.citations),
            answer.prompt_tokens,
            answer.image_tokens,
            answer.generated_tokens,
            timings.prefill_s,
            timings.decode_s,
        )
        yield AnswerEvent(kind="done", answer=answer)


VLMAnswerer = SmolVLMAnswerer
"""The same class under a family-neutral name (it loads any image-text-to-text model with a chat template)."""
