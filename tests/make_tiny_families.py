"""Tiny random models of the other retriever and answer-model families, for tests (issue 29).

``python tests/make_tiny_families.py OUTDIR`` writes:

- ``OUTDIR/colmodernvbert``: colpali-engine ``ColModernVBert`` (ModernBERT text tower + SigLIP vision tower,
  shrunk) with a ``ColModernVBertProcessor`` (an ``Idefics3Processor``: the SmolVLM-256M-Instruct tokenizer
  and image processor in ``../shared/models``, so 512-px tiles and 64 tokens per tile as in ColSmolVLM);
- ``OUTDIR/colqwen2_5``: colpali-engine ``ColQwen2_5`` (Qwen2.5-VL backbone, shrunk) with a
  ``ColQwen2_5_Processor`` over a byte-level BPE tokenizer trained here (no Qwen tokenizer is on disk) and
  a ``Qwen2VLImageProcessor`` capped at ``QWEN_MAX_TOKENS`` merged patches per page;
- ``OUTDIR/colpali``: colpali-engine ``ColPali`` (PaliGemma, shrunk: a fixed 16 x 16 token grid per page) with
  a ``ColPaliProcessor`` over the SmolVLM tokenizer;
- ``OUTDIR/qwen2_5_vl``: a transformers ``Qwen2_5_VLForConditionalGeneration`` answer model with a
  ``Qwen2_5_VLProcessor`` over the same tokenizer and a Qwen-style chat template.

Random weights, fixed seeds: the embeddings and answers mean nothing, but every file is what the product's
loading path (``from_pretrained`` of the folder) reads for a real checkpoint of that family.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from make_tiny_models import SHARED_MODEL, TINY_VISION

QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>", "<|vision_pad|>"]
QWEN_MAX_TOKENS = 64  # merged 28-px patches per page: at most 64 image tokens (an 8 x 8 grid on a square page)
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_CORPUS = [
    "What is the total amount due on the invoice? The revenue grew by twelve percent in 2024.",
    "Describe the image. Which page shows the table of quarterly results and the signature?",
    "Answer the question using only the pages shown. Cite the page you used. Page 1 of report.pdf",
    "the quick brown fox jumps over the lazy dog 0123456789 , . ; : ? ! ( ) - / % $",
]


def train_qwen_tokenizer(outdir: Path) -> Any:
    """A byte-level BPE tokenizer (~600 tokens) with the Qwen2-VL special tokens, saved in ``outdir``
    as a ``Qwen2Tokenizer``; returns the loaded tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=QWEN_SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.save_pretrained(outdir)
    cfg_path = outdir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "Qwen2Tokenizer"
    cfg_path.write_text(json.dumps(cfg, indent=2))
    return AutoTokenizer.from_pretrained(outdir)


def _qwen_image_processor() -> Any:
    from transformers import Qwen2VLImageProcessor

    return Qwen2VLImageProcessor(min_pixels=4 * 28 * 28, max_pixels=QWEN_MAX_TOKENS * 28 * 28)


def _qwen_video_processor() -> Any:
    from transformers import Qwen2VLVideoProcessor

    return Qwen2VLVideoProcessor()


def tiny_qwen2_5_vl_config(tokenizer: Any) -> Any:
    """A Qwen2.5-VL config with 2-layer towers (text hidden 64, vision hidden 32, patch 14, merge 2)."""
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    text = {"vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"]}
    vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
              "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
              "fullatt_block_indexes": [1]}
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                            video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                            vision_end_token_id=ids["<|vision_end|>"])


def build_colqwen2_5(outdir: Path, seed: int = 0) -> Path:
    import torch
    from colpali_engine.models import ColQwen2_5, ColQwen2_5_Processor

    outdir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_qwen_tokenizer(outdir)
    processor = ColQwen2_5_Processor(image_processor=_qwen_image_processor(), tokenizer=tokenizer,
                                     video_processor=_qwen_video_processor())
    torch.manual_seed(seed)
    model = ColQwen2_5(tiny_qwen2_5_vl_config(tokenizer))
    model.save_pretrained(outdir)
    processor.save_pretrained(outdir)
    return outdir


def build_qwen2_5_vl_answerer(outdir: Path, seed: int = 2) -> Path:
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    outdir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_qwen_tokenizer(outdir)
    processor = Qwen2_5_VLProcessor(image_processor=_qwen_image_processor(), tokenizer=tokenizer,
                                    video_processor=_qwen_video_processor(), chat_template=QWEN_CHAT_TEMPLATE)
    config = tiny_qwen2_5_vl_config(tokenizer)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.save_pretrained(outdir)
    processor.save_pretrained(outdir)
    return outdir


def tiny_modernvbert_config() -> Any:
    """A ModernVBert config (ModernBERT 2 layers x 64, SigLIP 2 layers x 32, 512-px tiles, patch 16, pixel
    shuffle 4) over the SmolVLM tokenizer's vocabulary."""
    from transformers import AutoTokenizer, ModernVBertConfig

    tokenizer = AutoTokenizer.from_pretrained(SHARED_MODEL)
    text = {"model_type": "modernbert", "vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "global_attn_every_n_layers": 1,
            "local_attention": 64, "max_position_embeddings": 8192,
            "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id, "cls_token_id": tokenizer.bos_token_id,
            "sep_token_id": tokenizer.eos_token_id}
    vision = {"model_type": "siglip_vision_model", "image_size": 512, "patch_size": 16, **TINY_VISION}
    return ModernVBertConfig(text_config=text, vision_config=vision, pixel_shuffle_factor=4,
                             image_token_id=tokenizer.convert_tokens_to_ids("<image>"))


def build_colmodernvbert(outdir: Path, seed: int = 1) -> Path:
    import torch
    from colpali_engine.models import ColModernVBert, ColModernVBertProcessor

    outdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = ColModernVBert(tiny_modernvbert_config())
    model.save_pretrained(outdir)
    ColModernVBertProcessor.from_pretrained(SHARED_MODEL).save_pretrained(outdir)
    return outdir


def build_colpali(outdir: Path, seed: int = 3) -> Path:
    """colpali-engine ``ColPali`` (PaliGemma: SigLIP 224 px / patch 14 -> a fixed 16 x 16 = 256-token grid,
    Gemma text tower, both shrunk) with a ``ColPaliProcessor`` over the SmolVLM tokenizer (the processor
    adds PaliGemma's special tokens to it)."""
    import torch
    from colpali_engine.models import ColPali, ColPaliProcessor
    from transformers import AutoTokenizer, PaliGemmaConfig, SiglipImageProcessor

    outdir.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(SHARED_MODEL)
    image_processor = SiglipImageProcessor(size={"height": 224, "width": 224}, image_mean=[0.5] * 3,
                                           image_std=[0.5] * 3)
    image_processor.image_seq_length = 256
    processor = ColPaliProcessor(image_processor=image_processor, tokenizer=tokenizer)
    config = PaliGemmaConfig(
        text_config={"model_type": "gemma", "vocab_size": len(processor.tokenizer), "hidden_size": 64,
                     "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "num_key_value_heads": 1, "head_dim": 16, "pad_token_id": tokenizer.pad_token_id},
        vision_config={"model_type": "siglip_vision_model", "image_size": 224, "patch_size": 14, "hidden_size": 32,
                       "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "projection_dim": 64},
        image_token_id=processor.image_token_id, projection_dim=64)
    config.text_config.num_image_tokens = 256
    config.tie_word_embeddings = False  # lm_head saved as its own weight (a tied one is not re-tied on load)
    config.text_config.tie_word_embeddings = False
    torch.manual_seed(seed)
    ColPali(config).save_pretrained(outdir)
    processor.save_pretrained(outdir)
    return outdir


def build_tiny_families(outdir: Path) -> dict[str, Path]:
    outdir = Path(outdir)
    return {
        "colpali": build_colpali(outdir / "colpali"),
        "colmodernvbert": build_colmodernvbert(outdir / "colmodernvbert"),
        "colqwen2_5": build_colqwen2_5(outdir / "colqwen2_5"),
        "qwen2_5_vl": build_qwen2_5_vl_answerer(outdir / "qwen2_5_vl"),
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/make_tiny_families.py OUTDIR")
    for role, path in build_tiny_families(Path(sys.argv[1])).items():
        print(f"{role}: {path}")
