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

# "auto" picks bfloat16 on CPUs with native bf16 (pagelens.core.devices.resolve_dtype): the suite runs in
# float32 so its tolerances do not depend on the CPU it runs on; test_cpu_bf16.py covers bfloat16.
os.environ.setdefault("PAGELENS_DTYPE", "float32")
# OCR (Tesseract, seconds per scanned page) is off unless a test turns it on (tests/test_ocr.py, and the
# CLI/eval subprocess tests that index scans set what they need): the suite indexes the shared scans often.
os.environ.setdefault("PAGELENS_OCR", "off")
# Starlette's TestClient sends "Host: testserver": the Host check (pagelens/app/request_guard.py) accepts it
# in the suite's in-process apps; tests/reliability/test_request_guard.py checks real servers without it.
os.environ.setdefault("PAGELENS_ALLOWED_HOSTS", "testserver")


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
    from pagelens.core.settings import Settings

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


# -- tests that need ../shared ---------------------------------------------------------------------------
# ../shared (the real and hostile PDFs, the real SmolVLM tokenizer and configs the tiny models are built
# from) exists on the development machines only. Where it is missing, the tests that need it are skipped,
# each with the reason, and the rest of the suite runs: a test needs it when it (or a fixture or a helper
# of its module it calls) names REAL_PDFS / HOSTILE_PDFS / SHARED / SHARED_MODELS or a module constant
# holding a path under SHARED, or when it uses the tiny models and they cannot be built (no
# ../shared/models and no prebuilt PAGELENS_TINY_MODELS).

_SHARED_NAMES = {"REAL_PDFS", "HOSTILE_PDFS", "SHARED", "SHARED_MODELS", "SHARED_MODEL", "SHARED_SMOLVLM"}


def _under_shared(value: object, depth: int = 0) -> bool:
    if isinstance(value, Path):
        try:
            return value.is_relative_to(SHARED)
        except (ValueError, TypeError):
            return False
    if depth < 2 and isinstance(value, (list, tuple, set, frozenset)):
        return any(_under_shared(v, depth + 1) for v in list(value)[:50])
    if depth < 2 and isinstance(value, dict):
        return any(_under_shared(v, depth + 1) for v in list(value.values())[:50])
    return False


def _uses_shared(func: object, seen: set[int]) -> bool:
    """True when ``func`` or a function of the test modules it calls names a shared path."""
    import types

    func = getattr(func, "__wrapped__", func)
    code = getattr(func, "__code__", None)
    if code is None or id(func) in seen:
        return False
    seen.add(id(func))
    module_globals = getattr(func, "__globals__", {})
    stack = [code]
    while stack:
        current = stack.pop()
        for name in current.co_names:
            if name in _SHARED_NAMES:
                return True
            value = module_globals.get(name)
            if _under_shared(value):
                return True
            in_tests = isinstance(value, types.FunctionType) and value.__code__.co_filename.startswith(
                str(REPO / "tests"))
            if in_tests and _uses_shared(value, seen):
                return True
        stack.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    return False


def _tiny_models_buildable() -> bool:
    cached = os.environ.get("PAGELENS_TINY_MODELS")
    if cached and (Path(cached) / "retriever").is_dir() and (Path(cached) / "answerer").is_dir():
        return True
    from make_tiny_models import SHARED_MODEL

    return (SHARED_MODEL / "config.json").is_file()


def _why_shared_is_needed(item: pytest.Item) -> str | None:
    if "tiny_models" in getattr(item, "fixturenames", ()) and not _tiny_models_buildable():
        return (f"the tiny test models are built from the real SmolVLM tokenizer in {SHARED_MODELS}, which is "
                "missing (or set PAGELENS_TINY_MODELS to prebuilt ones)")
    if SHARED.is_dir():
        return None
    callspec = getattr(item, "callspec", None)
    if callspec is not None and any(_under_shared(v) for v in callspec.params.values()):
        return f"needs {SHARED} (shared test PDFs), which is missing"
    seen: set[int] = set()
    funcs = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info is not None else ()):
        funcs += [d.func for d in defs]
    if any(f is not None and _uses_shared(f, seen) for f in funcs):
        return f"needs {SHARED} (shared test PDFs), which is missing"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SHARED.is_dir() and _tiny_models_buildable():
        return  # the development machines: every test runs
    for item in items:
        reason = _why_shared_is_needed(item)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))
