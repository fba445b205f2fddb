"""Build tiny random models of the real classes for tests and offline demos.

``python tests/make_tiny_models.py OUTDIR`` writes:
- ``OUTDIR/retriever``: a colpali-engine ``ColIdefics3`` (128-dim projection) + ``ColIdefics3Processor``;
- ``OUTDIR/answerer``: a transformers ``Idefics3ForConditionalGeneration`` + ``Idefics3Processor``.

Both start from the real SmolVLM-256M-Instruct config in ``../shared/models/`` with the towers shrunk
(random weights, fixed seed) but the image geometry kept (512-px tiles, patch 16, pixel shuffle 4, so
64 tokens per tile) and the real tokenizer, processor configs and chat template, so the product's real
loading and preprocessing paths run unchanged. Point ``PAGELENS_RETRIEVER_MODEL`` /
``PAGELENS_ANSWER_MODEL`` at the folders.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import Idefics3Config

SHARED_MODEL = Path(
    os.environ.get(
        "PAGELENS_SHARED_SMOLVLM",
        Path(__file__).resolve().parents[1].parent / "shared" / "models" / "SmolVLM-256M-Instruct",
    )
)

TINY_TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
}
TINY_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}


def tiny_config() -> Idefics3Config:
    """The real SmolVLM-256M-Instruct config with both towers shrunk (image geometry and vocab kept)."""
    from transformers import Idefics3Config

    if not (SHARED_MODEL / "config.json").is_file():
        raise SystemExit(
            f"{SHARED_MODEL}: the SmolVLM-256M-Instruct config and tokenizer files the tiny models are built from "
            "are missing (../shared/models on the development machines); download them with "
            "`huggingface-cli download HuggingFaceTB/SmolVLM-256M-Instruct --local-dir DIR --exclude '*.safetensors'` "
            "and set PAGELENS_SHARED_SMOLVLM=DIR")
    raw = json.loads((SHARED_MODEL / "config.json").read_text())
    raw["text_config"].update(TINY_TEXT)
    raw["vision_config"].update(TINY_VISION)
    return Idefics3Config(**raw)


def build_tiny_models(outdir: Path, seed: int = 0) -> dict[str, Path]:
    """Write the tiny retriever and answerer under ``outdir``; returns their folders."""
    import torch
    from colpali_engine.models import ColIdefics3, ColIdefics3Processor
    from transformers import AutoProcessor, Idefics3ForConditionalGeneration

    outdir = Path(outdir)
    paths = {"retriever": outdir / "retriever", "answerer": outdir / "answerer"}
    config = tiny_config()

    torch.manual_seed(seed)
    retriever = ColIdefics3(config)
    retriever.save_pretrained(paths["retriever"])
    ColIdefics3Processor.from_pretrained(SHARED_MODEL).save_pretrained(paths["retriever"])

    torch.manual_seed(seed + 1)
    answerer = Idefics3ForConditionalGeneration(config)
    answerer.generation_config.pad_token_id = config.get_text_config().pad_token_id
    answerer.save_pretrained(paths["answerer"])
    AutoProcessor.from_pretrained(SHARED_MODEL).save_pretrained(paths["answerer"])
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/make_tiny_models.py OUTDIR")
    for role, path in build_tiny_models(Path(sys.argv[1])).items():
        print(f"{role}: {path}")
