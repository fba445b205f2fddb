"""Loading the answer model (SmolVLM-Instruct, transformers ``Idefics3ForConditionalGeneration``) and its
processor from a hub id or a local folder. Generation lives in ``pagelens.answer``; this module only
finds and loads the files, so the answer stage and the benches share one loading path."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pagelens.core.hub import Unavailable, resolve_model_dir

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

ENV_VAR = "PAGELENS_ANSWER_MODEL"
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")


def resolve_answer_model_dir(model_id: str, revision: str | None) -> Path:
    """The local folder of ``model_id`` (a path, or a hub id already in the cache). Raises
    ``Unavailable`` naming what is missing (no config.json, no processor files, not downloaded)."""
    model_dir = resolve_model_dir(model_id, revision)
    if not (model_dir / "config.json").is_file():
        raise Unavailable(f"{model_dir} has no config.json", f"the directory {model_dir}")
    if not any((model_dir / f).is_file() for f in PROCESSOR_FILES):
        raise Unavailable(
            f"no processor files ({' / '.join(PROCESSOR_FILES)}) in {model_dir}", f"the directory {model_dir}"
        )
    return model_dir


def load_answer_processor(model_dir: Path, longest_edge: int, backend: str) -> Any:
    """The ``Idefics3Processor``: pages are resized so their longest edge is ``longest_edge`` px, then cut
    into the model's tiles (512 px for SmolVLM-256M/500M). ``backend``: "pil" or "torchvision"."""
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(str(model_dir), size={"longest_edge": int(longest_edge)}, backend=backend)


def load_answer_weights(model_dir: Path, device: torch.device, dtype: torch.dtype, attn_setting: str) -> Any:
    """``Idefics3ForConditionalGeneration`` in ``dtype`` with the attention implementation resolved from
    ``attn_setting`` for ``device``; an implementation the model refuses falls back to eager (warned)."""
    from transformers import Idefics3ForConditionalGeneration

    from pagelens.core.devices import resolve_attn_implementation

    attn = resolve_attn_implementation(attn_setting, device, Idefics3ForConditionalGeneration)
    try:
        return Idefics3ForConditionalGeneration.from_pretrained(str(model_dir), dtype=dtype, attn_implementation=attn)
    except (ValueError, ImportError) as exc:
        if attn == "eager" or ("attn" not in str(exc).lower() and "attention" not in str(exc).lower()):
            raise
        logger.warning("attention %s refused (%s); falling back to eager", attn, exc)
        return Idefics3ForConditionalGeneration.from_pretrained(
            str(model_dir), dtype=dtype, attn_implementation="eager"
        )
