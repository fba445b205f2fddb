"""Loading the answer model and its processor from a hub id or a local folder: any transformers
image-text-to-text model (``AutoModelForImageTextToText`` + ``AutoProcessor``) whose processor has a chat
template. SmolVLM-Instruct (``Idefics3ForConditionalGeneration``, model_type ``idefics3``) is the tested
default and keeps its own resizing (``size={"longest_edge"}``, 512-px tiles); other families (Qwen2.5-VL,
...) keep their processor's own resizing, the answerer shrinks pages to ``answer_longest_edge`` first.
Generation lives in ``pagelens.answer``; this module only finds and loads the files, so the answer stage
and the benches share one loading path."""

from __future__ import annotations

import json
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


def answer_model_type(model_dir: Path) -> str:
    """``model_type`` of the checkpoint's ``config.json`` ("idefics3" for SmolVLM; "" when unreadable)."""
    try:
        return str(json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8")).get("model_type") or "")
    except (OSError, ValueError):
        return ""


def answer_model_class(model_dir: Path) -> Any:
    """The transformers class ``AutoModelForImageTextToText`` loads ``model_dir`` with. Raises
    ``Unavailable`` when the checkpoint is not an image-text-to-text model."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(str(model_dir))
    try:
        return AutoModelForImageTextToText._model_mapping[type(config)]
    except KeyError:
        raise Unavailable(
            f"{model_dir}: model_type '{config.model_type}' is not an image-text-to-text model; the answer model "
            "must load with transformers AutoModelForImageTextToText and have a chat template (SmolVLM-Instruct, "
            "Qwen2.5-VL-Instruct, ...)", f"the directory {model_dir}") from None


def load_answer_processor(model_dir: Path, longest_edge: int, backend: str) -> Any:
    """The model's processor. SmolVLM (``Idefics3Processor``): pages are resized so their longest edge is
    ``longest_edge`` px, then cut into the model's tiles (512 px for SmolVLM-256M/500M); other families keep
    their processor's resizing. ``backend``: "pil" or "torchvision" (a processor that cannot use it, e.g.
    for its video part, gets its default). Raises ``Unavailable`` when the checkpoint is not an
    image-text-to-text model or its processor has no chat template."""
    from transformers import AutoProcessor

    answer_model_class(model_dir)  # not an image-text-to-text model: say that first, not what its processor lacks
    if answer_model_type(model_dir) == "idefics3":
        processor = AutoProcessor.from_pretrained(str(model_dir), size={"longest_edge": int(longest_edge)},
                                                  backend=backend)
    else:
        try:
            processor = AutoProcessor.from_pretrained(str(model_dir), backend=backend)
        except ImportError as exc:
            logger.info("%s: backend %s unavailable (%s); using the processor's default", model_dir, backend, exc)
            processor = AutoProcessor.from_pretrained(str(model_dir))
    if not getattr(processor, "chat_template", None):
        raise Unavailable(
            f"{model_dir}: the processor has no chat template (chat_template.jinja / chat_template.json); use "
            "an instruction-tuned checkpoint of the model", f"the directory {model_dir}")
    return processor


def load_answer_weights(model_dir: Path, device: torch.device, dtype: torch.dtype, attn_setting: str) -> Any:
    """The model (``AutoModelForImageTextToText``'s class for it: ``Idefics3ForConditionalGeneration`` for
    SmolVLM) in ``dtype`` with the attention implementation resolved from ``attn_setting`` for ``device``;
    an implementation the model refuses falls back to eager (warned)."""
    from pagelens.core.devices import resolve_attn_implementation

    model_class = answer_model_class(model_dir)
    attn = resolve_attn_implementation(attn_setting, device, model_class)
    try:
        return model_class.from_pretrained(str(model_dir), dtype=dtype, attn_implementation=attn)
    except (ValueError, ImportError) as exc:
        if attn == "eager" or ("attn" not in str(exc).lower() and "attention" not in str(exc).lower()):
            raise
        logger.warning("attention %s refused (%s); falling back to eager", attn, exc)
        return model_class.from_pretrained(str(model_dir), dtype=dtype, attn_implementation="eager")
