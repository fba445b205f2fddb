"""Shared fixtures: paths to the shared PDFs, tiny random models, isolated settings."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PAGELENS_SHARED_DIR", REPO.parent / "shared"))
REAL_PDFS = SHARED / "pdfs" / "real"
HOSTILE_PDFS = SHARED / "pdfs" / "hostile"
SHARED_MODELS = SHARED / "models"

sys.path.insert(0, str(Path(__file__).resolve().parent))

# "auto" picks bfloat16 on CPUs with native bf16 (pagelens.devices.resolve_dtype): the suite runs in
# float32 so its tolerances do not depend on the CPU it runs on; test_cpu_bf16.py covers bfloat16.
os.environ.setdefault("PAGELENS_DTYPE", "float32")
# OCR (Tesseract, seconds per scanned page) is off unless a test turns it on (tests/test_ocr.py, and the
# CLI/eval subprocess tests that index scans set what they need): the suite indexes the shared scans often.
os.environ.setdefault("PAGELENS_OCR", "off")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random ColIdefics3 retriever and Idefics3ForConditionalGeneration answerer, saved with
    ``save_pretrained`` (real SmolVLM tokenizer/processor files), built once per test session."""
    from make_tiny_models import build_tiny_models

    cached = os.environ.get("PAGELENS_TINY_MODELS")
    if cached and (Path(cached) / "retriever").is_dir() and (Path(cached) / "answerer").is_dir():
        return {"retriever": Path(cached) / "retriever", "answerer": Path(cached) / "answerer"}
    out = tmp_path_factory.mktemp("tiny-models")
    return build_tiny_models(out)


@pytest.fixture
def settings_factory(tmp_path: Path, tiny_models: dict[str, Path]):
    """Build a ``Settings`` with an isolated data dir and the tiny models; keyword overrides apply."""
    from pagelens.settings import Settings

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "data_dir": tmp_path / "data",
            "retriever_model": str(tiny_models["retriever"]),
            "answer_model": str(tiny_models["answerer"]),
            "page_longest_edge": 1024,
            "answer_longest_edge": 512,
            "device": "cpu",
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make
