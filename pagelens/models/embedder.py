"""Page and query embedders: the ``PageEmbedder`` protocol and its colpali-engine implementation.

``ColSmolEmbedder`` (alias ``ColEmbedder``) wraps the colpali-engine model and processor of the checkpoint's
family (``pagelens.models.families``: ColIdefics3, ColModernVBert, ColPali, ColQwen2/2.5/3/3.5, ColGemma3),
chosen at load from the checkpoint's own ``config.json``. The default, ColSmolVLM, is ``ColIdefics3`` (an
``Idefics3Model`` + ``Linear(hidden, 128)``, L2-normalised per token) and ``ColIdefics3Processor``; the
other families differ only in the processor call and in how image tokens map to a patch grid for the
row/column pooling (``families.py`` docstring). The model is a hub id or a local directory
(``Settings.retriever_model`` / ``retriever_revision``); a peft LoRA adapter directory (such as
``vidore/colSmol-256M``) is loaded onto its base model and merged. Nothing loads at construction:
``load()`` (idempotent, thread-safe) or the first ``embed_*`` call does.

Idefics3 token layout of one page (``ColIdefics3Processor.process_images``): the prompt, then the image
as ``rows x cols`` local 512-px tiles in row-major order followed by one global tile (a page that fits in a
single tile has only the global tile). Every tile contributes ``image_seq_len`` = 64 ``<image>`` tokens,
an 8 x 8 patch grid in row-major order (SigLIP patch 16 on 512 px = 32 x 32, pixel shuffle 4 -> 8 x 8).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from pagelens.core.errors import CollectionMismatchError, ModelUnavailableError, PagelensError
from pagelens.core.hub import Unavailable, resolve_model_dir, unavailable_error
from pagelens.core.settings import DEFAULT_RETRIEVER_MODEL
from pagelens.core.types import CollectionManifest, PageEmbedding
from pagelens.models.families import (
    SCORE_SCALE,
    RetrieverFamily,
    detect_family_in,
    page_grid,
    pool_grid,
)

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from pagelens.core.settings import Settings

logger = logging.getLogger(__name__)

COLSMOL_DIM = 128
# Files a ColIdefics3 model (or adapter) repo needs; training checkpoints and other formats are skipped.
_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


@runtime_checkable
class PageEmbedder(Protocol):
    """Late-interaction embedder of page images and text queries (one implementation per model family).

    Implementations load lazily; ``load()`` must be idempotent and safe to call from several threads.
    """

    model_id: str
    model_revision: str | None

    @property
    def dim(self) -> int:
        """Width of every vector (128 for ColSmolVLM)."""
        ...

    def load(self) -> None:
        """Load weights and processor now (otherwise the first embed call does). Raises
        ``ModelUnavailableError`` when they cannot be had."""
        ...

    def embed_pages(self, images: Sequence[Image.Image]) -> list[PageEmbedding]:
        """One ``PageEmbedding`` per image, in order (``full`` [n_tokens, dim], ``rows`` [n_rows, dim],
        ``cols`` [n_cols, dim], all float32 numpy on the CPU)."""
        ...

    def embed_queries(self, texts: Sequence[str]) -> list[np.ndarray]:
        """One [n_q, dim] float32 array per text (non-padding tokens, L2-normalised per token)."""
        ...


# --------------------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------------------


def pool_rows_cols(
    image_vecs: torch.Tensor, grid: tuple[int, int] | None, tokens_per_tile: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean-pool the image tokens of one page by patch row and by patch column.

    image_vecs: [n_tiles * tokens_per_tile, dim] (any dtype/device), tiles in processor order (local tiles
      row-major, then the global tile; a single-tile page has only the global tile).
    grid: (tile_rows, tile_cols) of the local tiles, or None when unknown.
    Returns (rows, cols) on the same device and dtype:
      - grid (R, C) with R * C > 1: the local tiles assembled into an (R*s) x (C*s) patch grid
        (s = sqrt(tokens_per_tile) = 8): rows [R*s, dim], cols [C*s, dim]; the global tile is left out;
      - a single-tile page: its s x s grid -> rows [s, dim], cols [s, dim];
      - grid None (fallback): one mean vector per tile for both, rows = cols = [n_tiles, dim].
    """
    n, dim = image_vecs.shape
    side = math.isqrt(tokens_per_tile)
    n_tiles = n // tokens_per_tile if tokens_per_tile else 0
    if n_tiles == 0 or n % tokens_per_tile:
        mean = image_vecs.mean(dim=0, keepdim=True) if n else image_vecs.new_zeros((1, dim))
        return mean, mean.clone()
    if side * side == tokens_per_tile:
        if n_tiles == 1:
            patch = image_vecs.reshape(side, side, dim)
            return patch.mean(dim=1), patch.mean(dim=0)
        if grid is not None and grid[0] * grid[1] + 1 == n_tiles:
            r, c = grid
            local = image_vecs[: r * c * tokens_per_tile].reshape(r, c, side, side, dim)
            patch = local.permute(0, 2, 1, 3, 4).reshape(r * side, c * side, dim)  # [R*s, C*s, dim]
            return patch.mean(dim=1), patch.mean(dim=0)
    per_tile = image_vecs.reshape(n_tiles, tokens_per_tile, dim).mean(dim=1)
    return per_tile, per_tile.clone()


# --------------------------------------------------------------------------------------------------
# ColSmolVLM
# --------------------------------------------------------------------------------------------------


def compile_vision_encoder(model: Any) -> list[str]:
    """``torch.compile`` (inductor, in place: ``nn.Module.compile``) the vision encoder's transformer
    layers (``vision_model.encoder``: ~90% of a page's FLOPs, [n_tiles, 1024 patches, hidden] per tile)
    of an Idefics3-based model, also under a PEFT wrapper; returns the compiled modules' names. The
    patch embedding (data-dependent positions), connector and text model stay eager."""
    names: list[str] = []
    for name, module in model.named_modules():
        if name == "vision_model.encoder" or name.endswith(".vision_model.encoder"):
            module.compile()
            names.append(name)
    if not names:
        raise PagelensError(
            "PAGELENS_TUNING__TORCH_COMPILE: the retriever has no vision_model.encoder to compile "
            f"({type(model).__name__}); unset it for this model"
        )
    return names


class ColSmolEmbedder:
    """``PageEmbedder`` over the colpali-engine model and processor of the checkpoint's family
    (``pagelens.models.families``; ColSmolVLM: ``ColIdefics3`` and ``ColIdefics3Processor``).

    Settings used: ``retriever_model`` (hub id or local dir), ``retriever_revision``, ``device``, ``dtype``,
    ``attn_implementation``, ``embed_batch_size``, ``page_longest_edge`` (pages are resized so their
    longest edge is this many px, then cut into 512-px tiles).

    Thread-safety: searches (``embed_queries``) and page preprocessing in this process (``embed_pages``:
    serial ingest, ``preprocess_device=model``) run on several threads at once, and a fast tokenizer
    used by two threads at once can raise "Already borrowed". Query processing is serialised by a lock
    (tokenizing a query takes ~1 ms); page preprocessing has its own copy of the processor (its own
    tokenizer, made on first use) under its own lock, so a search never waits for a page batch.
    The forward passes run concurrently (inference only reads the weights).
    """

    env_var = "PAGELENS_RETRIEVER_MODEL"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model_id: str = settings.retriever_model
        self.model_revision: str | None = settings.retriever_revision
        self.batch_size = settings.resolved_embed_batch_size("cpu")  # re-resolved for the device at load
        self._lock = threading.Lock()
        self._query_lock = threading.Lock()  # guards _processor's calls (queries)
        self._page_lock = threading.Lock()  # guards _page_processor's calls (page preprocessing)
        self._model: Any = None
        self._processor: Any = None
        self._page_processor: Any = None  # a copy of _processor with its own tokenizer, made on first use
        self._device: torch.device | None = None
        self._dtype: torch.dtype | None = None
        self._dim = COLSMOL_DIM
        self._backend = "pil"  # image processor backend and preprocessing place, resolved at load
        self._preprocess_on_device = False
        self._family: RetrieverFamily | None = None  # from the checkpoint's config.json, at load
        self._warned_grid = False

    # -- loading ------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def family(self) -> RetrieverFamily:
        """The checkpoint's retriever family (``pagelens.models.families``; loads)."""
        self.load()
        assert self._family is not None
        return self._family

    def manifest_fields(self) -> dict[str, str]:
        """What a collection records about this retriever besides model id and dim (loads): family,
        processor class, page-token count, score scale and pooling (``CollectionManifest``)."""
        family = self.family
        pooling = "rows+cols mean" if family.tiled else f"rows+cols mean ({family.layout})"
        tokens = family.page_tokens
        if family.tiled:
            tokens += f"; page_longest_edge={int(self.settings.page_longest_edge)}"
        return {"family": family.name, "processor": type(self._processor).__name__, "page_tokens": tokens,
                "score_scale": SCORE_SCALE, "pooling": pooling}

    @property
    def device(self) -> torch.device | None:
        """Where the model runs once loaded (None before)."""
        return self._device

    @property
    def preprocesses_on_device(self) -> bool:
        """Whether ``embed_pages`` makes pixel values on the model's device (``preprocess_device``,
        resolved at load; loads)."""
        self.load()
        return self._preprocess_on_device

    @property
    def processor(self) -> Any:
        """The ``ColIdefics3Processor`` (loads on first access)."""
        self.load()
        return self._processor

    def patch_layout(self, width: int, height: int) -> Any:
        """The ``pagelens.models.patch_layout.PatchLayout`` of a ``width`` x ``height`` px page as this
        retriever embeds it (cached per size: ``layout_for_size``). Loads."""
        from pagelens.models.patch_layout import layout_for_size

        self.load()
        return layout_for_size(self.page_processor, width, height)

    def query_token_mask(self, text: str, n_tokens: int) -> np.ndarray | None:
        """Bool [n_tokens] over ``embed_queries([text])[0]``: the question's own tokens (colpali's
        augmentation suffix and special tokens left out); None when it cannot be aligned. Loads."""
        from pagelens.models.patch_layout import query_token_mask

        self.load()
        with self._query_lock:  # the tokenizer is not safe to share across threads
            return query_token_mask(self._processor, text, n_tokens)

    def load(self) -> None:
        """Load processor and model (idempotent, thread-safe). Raises ``ModelUnavailableError``."""
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            t0 = time.perf_counter()
            self._load_locked()
            logger.info(
                "loaded retriever %s on %s (%s) in %.1f s",
                self.model_id,
                self._device,
                self._dtype,
                time.perf_counter() - t0,
            )

    def _load_locked(self) -> None:
        from pagelens.core.devices import get_device, resolve_attn_implementation, resolve_dtype

        device = get_device(self.settings.device)
        dtype = resolve_dtype(self.settings.dtype, device)
        try:
            model_dir = resolve_model_dir(self.model_id, self.model_revision)
            adapter_cfg = model_dir / "adapter_config.json"
            base_dir: Path | None = None
            if adapter_cfg.is_file():
                cfg = json.loads(adapter_cfg.read_text())
                base = cfg.get("base_model_name_or_path")
                if not base:
                    raise Unavailable(
                        f"{adapter_cfg} names no base_model_name_or_path", f"the adapter dir {model_dir}"
                    )
                try:
                    base_dir = resolve_model_dir(str(base), cfg.get("revision"), base_dir=model_dir)
                except Unavailable as err:
                    raise Unavailable(
                        f"base model '{base}' of the adapter: {err.reason}", err.looked
                    ) from err
            weights_dir = base_dir or model_dir
            if not (weights_dir / "config.json").is_file():
                raise Unavailable(f"{weights_dir} has no config.json", f"the directory {weights_dir}")
            self._family = detect_family_in(weights_dir)
            self._backend = self.settings.resolved_image_processor_backend(device.type)
            # the on-device processor call is the Idefics3 one; other families preprocess with process_images
            self._preprocess_on_device = (self.settings.resolved_preprocess_device(device.type) == "model"
                                          and self._family.tiled)
            if self.settings.tuning.preprocess_device == "model" and not self._family.tiled:
                logger.warning("PAGELENS_TUNING__PREPROCESS_DEVICE=model applies to tiled retrievers (ColIdefics3, "
                               "ColModernVBert); %s pages are preprocessed on the CPU (ingest workers); unset it "
                               "to silence this", self._family.name)
            processor = self._load_processor(model_dir, base_dir)
            model = self._load_model(weights_dir, device, dtype, resolve_attn_implementation)
            if base_dir is not None:
                model = self._apply_adapter(model, model_dir)
        except Unavailable as err:
            raise unavailable_error(
                "retriever", self.model_id, self.model_revision, err, self.env_var, DEFAULT_RETRIEVER_MODEL
            ) from err
        except ModelUnavailableError:  # UnsupportedModelError (an unknown family) included
            raise
        except Exception as exc:  # corrupt / incompatible files: still one actionable error
            failure = Unavailable(f"loading failed: {type(exc).__name__}: {exc}", f"{self.model_id}")
            raise unavailable_error(
                "retriever", self.model_id, self.model_revision, failure, self.env_var, DEFAULT_RETRIEVER_MODEL
            ) from exc

        model.to(device)
        model.eval()
        if self.settings.tuning.torch_compile:
            compiled = compile_vision_encoder(model)
            logger.info("torch.compile (inductor) on %s; each new input shape compiles on first use", compiled)
        self._processor = processor
        self._device = device
        self._dtype = dtype
        self.batch_size = self.settings.resolved_embed_batch_size(device.type)
        self._dim = int(getattr(model, "dim", COLSMOL_DIM))
        self._model = model  # last: marks the embedder loaded

    def _load_processor(self, model_dir: Path, base_dir: Path | None) -> Any:
        assert self._family is not None
        _, processor_class = self._family.classes()
        source = model_dir
        if base_dir is not None and not any((model_dir / f).is_file() for f in _PROCESSOR_FILES):
            source = base_dir
        if not any((source / f).is_file() for f in _PROCESSOR_FILES):
            raise Unavailable(
                f"no processor files ({' / '.join(_PROCESSOR_FILES)}) in {source}", f"the directory {source}"
            )
        if not self._family.tiled:
            return self._load_other_processor(processor_class, source)
        processor = processor_class.from_pretrained(str(source), backend=self._backend)
        # Pages are resized so their longest edge is page_longest_edge, then tiled (512 px per tile).
        processor.image_processor.size = {"longest_edge": int(self.settings.page_longest_edge)}
        return processor

    def _load_other_processor(self, processor_class: Any, source: Path) -> Any:
        """The processor of a non-tiled family, with the checkpoint's own resizing (its ``max_pixels`` /
        fixed input size: ``page_longest_edge`` does not apply, said once when it was set)."""
        assert self._family is not None
        if "page_longest_edge" in self.settings.model_fields_set:
            logger.warning(
                "PAGELENS_PAGE_LONGEST_EDGE applies to tiled retrievers (ColIdefics3, ColModernVBert); %s pages "
                "are resized by the checkpoint's processor (%s; the Qwen families' budget is max_pixels in its "
                "processor config)", self._family.name, self._family.page_tokens)
        try:
            return processor_class.from_pretrained(str(source), backend=self._backend)
        except ImportError as exc:  # e.g. no pil backend for a video processor: the processor's default
            logger.info("%s: backend %s unavailable (%s); using the processor's default", source, self._backend, exc)
            return processor_class.from_pretrained(str(source))

    def _load_model(
        self, weights_dir: Path, device: torch.device, dtype: torch.dtype, resolve_attn: Any
    ) -> Any:
        assert self._family is not None
        model_class, _ = self._family.classes()
        attn = resolve_attn(self.settings.tuning.attn_implementation, device, model_class)
        try:
            model, info = model_class.from_pretrained(
                str(weights_dir), dtype=dtype, attn_implementation=attn, output_loading_info=True
            )
        except (ValueError, ImportError) as exc:
            if attn == "eager" or ("attn" not in str(exc).lower() and "attention" not in str(exc).lower()):
                raise
            logger.warning("attention %s refused (%s); falling back to eager", attn, exc)
            model, info = model_class.from_pretrained(
                str(weights_dir), dtype=dtype, attn_implementation="eager", output_loading_info=True
            )
        missing = list(info.get("missing_keys") or [])
        if missing:
            # Randomly initialised weights give silently useless embeddings: say so loudly.
            logger.warning(
                "%s: %d weights missing from the checkpoint and randomly initialised (e.g. %s); is this a "
                "%s retriever checkpoint (not its base model)?",
                weights_dir,
                len(missing),
                ", ".join(sorted(missing)[:5]),
                self._family.name,
            )
        return model

    @staticmethod
    def _apply_adapter(model: Any, adapter_dir: Path) -> Any:
        """Load the peft LoRA adapter in ``adapter_dir`` onto ``model`` and merge it (plain model back)."""
        from peft import PeftModel

        peft_model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
        merged = peft_model.merge_and_unload()
        logger.info("merged LoRA adapter %s", adapter_dir)
        return merged

    # -- embedding ----------------------------------------------------------------------------
    def _to_device(self, batch: Any) -> dict[str, torch.Tensor]:
        """Move a processor batch to the model device; floating tensors (pixel_values) to the model dtype."""
        out: dict[str, torch.Tensor] = {}
        for key, value in batch.items():
            if value.is_floating_point():
                value = value.to(self._device, dtype=self._dtype)
            else:
                value = value.to(self._device)
            out[key] = value
        return out

    def _tile_grid(self, ids: torch.Tensor, image: Image.Image, n_tiles: int) -> tuple[int, int] | None:
        """(tile_rows, tile_cols) of one page, from its ``<row_i_col_j>`` tokens, else from the image size;
        None when neither agrees with ``n_tiles`` (= rows * cols + 1)."""
        proc = self._processor
        row_col_ids = getattr(proc, "row_col_ids", None)
        if row_col_ids:
            lookup = {tid: (k // 6 + 1, k % 6 + 1) for k, tid in enumerate(row_col_ids)}
            seen = [lookup[t] for t in ids.tolist() if t in lookup]
            if seen:
                grid = (max(r for r, _ in seen), max(c for _, c in seen))
                if grid[0] * grid[1] + 1 == n_tiles:
                    return grid
        try:
            _, rows, cols = proc.image_processor.get_number_of_image_patches(image.height, image.width)
            if rows * cols + 1 == n_tiles:
                return int(rows), int(cols)
        except Exception:  # pragma: no cover - processor API drift
            logger.debug("get_number_of_image_patches failed", exc_info=True)
        logger.warning("could not derive the tile grid of a page (%d tiles); pooling per tile", n_tiles)
        return None

    def embed_pages(self, images: Sequence[Image.Image]) -> list[PageEmbedding]:
        """Embed page images, ``embed_batch_size`` per forward pass.

        Returns per image a ``PageEmbedding``: ``full`` [n_tokens, 128] float32 (all non-padding tokens:
        prompt + image tokens, L2-normalised), ``rows`` [8 * tile_rows, 128] and ``cols``
        [8 * tile_cols, 128] float32 (means of the image-patch vectors per patch row / column of the
        local-tile grid; a single-tile page gives 8 and 8; see ``pool_rows_cols`` for the fallback).
        E.g. a 791 x 1024 page at page_longest_edge=1024 -> 2 x 2 tiles + global -> 16 rows, 16 cols.
        """
        import torch

        self.load()
        proc = self._processor
        image_token_id = self._image_token_id()
        tokens_per_tile = int(getattr(proc, "image_seq_len", 64))
        results: list[PageEmbedding] = []
        for start in range(0, len(images), self.batch_size):
            chunk = [im.convert("RGB") for im in images[start : start + self.batch_size]]
            # input_ids / attention_mask [B, L] int64; pixel_values [B, T, 3, 512, 512] float32 (T tiles, padded)
            batch = self._preprocess(chunk)
            ids_cpu = batch["input_ids"].cpu()
            mask_cpu = batch["attention_mask"].bool().cpu()
            with torch.inference_mode():
                emb = self._model(**self._to_device(batch))  # [B, L, 128] model dtype, on device
                emb = emb.float().cpu()
            for i, image in enumerate(chunk):
                results.append(self._page_embedding(emb, ids_cpu, mask_cpu, i, image, batch, image_token_id,
                                                    tokens_per_tile))
        return results

    def _image_token_id(self) -> int:
        """The id of the image placeholder token the family's model config names."""
        config = self._model.config
        for key in ("image_token_id", "image_token_index"):
            value = getattr(config, key, None)
            if value is not None:
                return int(value)
        return int(self._processor.image_token_id)

    def _page_embedding(
        self, emb: torch.Tensor, ids_cpu: torch.Tensor, mask_cpu: torch.Tensor, i: int, image: Any,
        batch: Any, image_token_id: int, tokens_per_tile: int,
    ) -> PageEmbedding:
        """Page ``i`` of a forward: emb [B, L, dim] float32 CPU, ids/mask [B, L]; ``image`` gives the
        page's width/height (tiled families' grid fallback); ``batch`` the processor output
        (``image_grid_thw`` for the Qwen families)."""
        full = emb[i][mask_cpu[i]]  # [n_tokens, dim]
        img_vecs = emb[i][(ids_cpu[i] == image_token_id) & mask_cpu[i]]  # [n_image_tokens, dim]
        family = self._family
        assert family is not None
        if family.tiled:
            n_tiles = img_vecs.shape[0] // tokens_per_tile  # [n_tiles * 64, dim]
            grid = self._tile_grid(ids_cpu[i], image, n_tiles) if n_tiles > 1 else (1, 1)
            rows, cols = pool_rows_cols(img_vecs, grid, tokens_per_tile)
        else:
            thw = batch.get("image_grid_thw") if hasattr(batch, "get") else None
            merge = int(getattr(self._processor.image_processor, "merge_size", 2) or 2)
            token_grid = page_grid(family, int(img_vecs.shape[0]), thw[i] if thw is not None else None, merge)
            if token_grid is None and not self._warned_grid:
                self._warned_grid = True
                logger.warning("%s: no patch grid for a page's %d image tokens; its rows/cols vectors are the "
                               "mean of all its image tokens (two-stage search ranks it less well)",
                               family.name, int(img_vecs.shape[0]))
            rows, cols = pool_grid(img_vecs, token_grid)
        return PageEmbedding(
            full=full.numpy().astype(np.float32, copy=False),
            rows=rows.numpy().astype(np.float32, copy=False),
            cols=cols.numpy().astype(np.float32, copy=False),
        )

    def _preprocess(self, images: list[Image.Image]) -> Any:
        """``process_images`` of RGB ``images``; with ``preprocess_device=model`` the torchvision
        processor resizes and normalises on the model's device (pixel_values are made there). One call
        at a time, on the page processor (class docstring)."""
        with self._page_lock:
            proc = self._page_proc()
            if not self._preprocess_on_device:
                return proc.process_images(images)
            return proc(text=[proc.visual_prompt_prefix] * len(images), images=images, padding="longest",
                        return_tensors="pt", device=self._device)

    def _page_proc(self) -> Any:
        """The page processor (made on first use). Call under ``_page_lock``."""
        if self._page_processor is None:
            self._page_processor = _with_own_tokenizer(self._processor)
        return self._page_processor

    @property
    def page_processor(self) -> Any:
        """What ingest preprocesses pages with (``process_images``): the page processor under its lock,
        safe to call while searches run (the serial ingest path calls it in this process). Pickled
        (to the ingest worker processes) it becomes the plain processor. Loads."""
        self.load()
        return _LockedPageProcessor(self)

    def embed_queries(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Embed queries with ``processor.process_queries`` (colpali's query suffix of
        ``<end_of_utterance>`` tokens appended). Returns per text [n_q, 128] float32: the non-padding tokens,
        suffix included (what colpali's MaxSim scorer uses)."""
        import torch

        self.load()
        out: list[np.ndarray] = []
        texts = list(texts)
        for start in range(0, len(texts), max(self.batch_size, 16)):
            with self._query_lock:  # the tokenizer is not safe to share across threads
                batch = self._processor.process_queries(texts=texts[start : start + max(self.batch_size, 16)])
            mask = batch["attention_mask"].bool()  # [B, L]
            with torch.inference_mode():
                emb = self._model(**self._to_device(batch)).float().cpu()  # [B, L, 128]
            out.extend(emb[i][mask[i]].numpy().astype(np.float32, copy=False) for i in range(emb.shape[0]))
        return out

    # -- split preprocessing / forward (index/pipeline/workers.py runs the first in worker processes) ---------
    def embed_preprocessed(self, batch: Any, sizes: Sequence[tuple[int, int]]) -> list[PageEmbedding]:
        """Embed one batch already made by ``processor.process_images(images)`` (in any process).

        batch: the processor output (input_ids / attention_mask [B, L], pixel_values [B, T, 3, 512, 512]...);
        sizes: (width, height) px of each of the B images. Gives the same embeddings as ``embed_pages`` on
        those images when they form one ``embed_batch_size`` chunk.
        """
        import torch

        self.load()
        image_token_id = self._image_token_id()
        tokens_per_tile = int(getattr(self._processor, "image_seq_len", 64))
        ids_cpu = batch["input_ids"]
        mask_cpu = batch["attention_mask"].bool()
        with torch.inference_mode():
            emb = self._model(**self._to_device(batch)).float().cpu()  # [B, L, 128]
        return [
            self._page_embedding(emb, ids_cpu, mask_cpu, i, _Size(width, height), batch, image_token_id,
                                 tokens_per_tile)
            for i, (width, height) in enumerate(sizes)
        ]


def _with_own_tokenizer(processor: Any) -> Any:
    """A shallow copy of ``processor`` with a deep copy of its tokenizer (the image processor keeps no
    state between calls and stays shared): a processor that can run while the original runs on
    another thread."""
    import copy

    clone = copy.copy(processor)
    clone.tokenizer = copy.deepcopy(processor.tokenizer)
    return clone


def _same(obj: Any) -> Any:
    return obj


class _LockedPageProcessor:
    """``ColSmolEmbedder.page_processor``: ``process_images`` on the embedder's page processor under its
    lock; other attributes are the processor's. Pickles as the plain processor (for worker processes,
    which have a processor of their own)."""

    def __init__(self, embedder: ColSmolEmbedder) -> None:
        self._embedder = embedder

    def process_images(self, images: Any) -> Any:
        embedder = self._embedder
        with embedder._page_lock:
            return embedder._page_proc().process_images(images)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._embedder._processor, name)

    def __reduce__(self) -> tuple[Any, tuple[Any]]:
        return _same, (self._embedder._processor,)


class _Size:
    """Width/height stand-in for a PIL image (``_tile_grid`` reads only these)."""

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height


def _described(model_id: str, revision: str | None, family: str, dim: int | None) -> str:
    what = [x for x in (family, f"dim {dim}" if dim else "") if x]
    return f"'{model_id}{'@' + revision if revision else ''}'" + (f" ({', '.join(what)})" if what else "")


def check_manifest(manifest: CollectionManifest, embedder: PageEmbedder) -> None:
    """Refuse to add to or search a collection built with another retriever: another model id or
    revision, or (the same id: the embedder is loaded to tell) another family or vector width. Raises
    ``CollectionMismatchError`` naming both retrievers, the setting that selects the collection's one and
    the re-index command that rebuilds the collection with the configured one."""
    same_id = (manifest.model_id, manifest.model_revision) == (embedder.model_id, embedder.model_revision)
    family = ""
    dim: int | None = None
    load = getattr(embedder, "load", None)
    if same_id and manifest.family and callable(load) and hasattr(embedder, "manifest_fields"):
        load()  # the same id, but is it still the same model? (a local folder may have been replaced)
    if getattr(embedder, "loaded", False):
        dim = int(embedder.dim)
        fields = getattr(embedder, "manifest_fields", None)
        family = str(fields().get("family", "")) if callable(fields) else ""
    same_family = not (manifest.family and family) or manifest.family == family
    same_dim = dim is None or dim == manifest.dim
    if same_id and same_family and same_dim:
        return
    built = _described(manifest.model_id, manifest.model_revision, manifest.family, manifest.dim)
    configured = _described(embedder.model_id, embedder.model_revision, family, dim)
    raise CollectionMismatchError(
        f"collection '{manifest.name}' was built with retriever model {built}, but the configured retriever "
        f"is {configured}: its page vectors and this retriever's query vectors do not compare. Set "
        f"PAGELENS_RETRIEVER_MODEL={manifest.model_id}"
        f"{' PAGELENS_RETRIEVER_REVISION=' + manifest.model_revision if manifest.model_revision else ''} to "
        f"use it, or rebuild it with the configured retriever: pagelens index PATHS -c {manifest.name} "
        "--reindex (or index into a new collection)",
        collection=manifest.name,
        collection_model=manifest.model_id,
        configured_model=embedder.model_id,
        collection_family=manifest.family,
        configured_family=family,
    )


ColEmbedder = ColSmolEmbedder
"""The same class under a family-neutral name (it loads every family in ``pagelens.models.families``)."""
