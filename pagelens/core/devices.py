"""Device, dtype and attention-implementation resolution: the one place that decides where models run.

``get_device("auto")`` picks CUDA, then Apple MPS, then the CPU. ``resolve_dtype`` and
``resolve_attn_implementation`` turn the ``Settings`` strings (``dtype``, ``attn_implementation``)
into what ``from_pretrained`` takes. Nothing here loads a model.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from typing import Any

import torch

from pagelens.core.errors import PagelensError

logger = logging.getLogger(__name__)

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
_ATTN = ("eager", "sdpa", "flash_attention_2")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def get_device(spec: str = "auto") -> torch.device:
    """Resolve ``auto | cpu | cuda | cuda:N | mps`` to a ``torch.device``.

    ``auto``: ``cuda`` (device 0) if CUDA is available, else ``mps``, else ``cpu``. An explicit device that
    is not available raises ``PagelensError`` naming it (rather than failing later inside a forward pass).
    """
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError) as exc:
        raise PagelensError(
            f"unknown device '{spec}'; use auto, cpu, cuda, cuda:N or mps (PAGELENS_DEVICE)", device=spec
        ) from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PagelensError(
                f"device '{spec}' requested but CUDA is not available; set PAGELENS_DEVICE=cpu or auto",
                device=spec,
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PagelensError(
                f"device '{spec}' requested but only {torch.cuda.device_count()} CUDA device(s) exist",
                device=spec,
            )
    elif device.type == "mps" and not _mps_available():
        raise PagelensError(
            f"device '{spec}' requested but MPS is not available; set PAGELENS_DEVICE=cpu or auto",
            device=spec,
        )
    return device


def native_bf16_in_cpuinfo(path: str = "/proc/cpuinfo") -> bool:
    """Whether the ``flags`` line of a Linux cpuinfo file lists ``avx512_bf16`` or ``amx_bf16``
    (False when the file is missing or has no flags line, e.g. macOS or ARM)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return bool(set(line.split(":", 1)[1].split()) & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (x86 AVX512-BF16 or AMX). Without it torch
    emulates bf16, slower than float32."""
    return native_bf16_in_cpuinfo()


def resolve_dtype(spec: str, device: torch.device) -> torch.dtype:
    """Resolve ``auto | float32 | bfloat16 | float16`` for ``device``.

    ``auto``: bfloat16 on CUDA (float16 on GPUs without bf16 support), float16 on MPS; on the CPU,
    bfloat16 where it is native (``cpu_has_native_bf16``), else float32. Measured on an AMD EPYC with
    AVX512-BF16 (bench/README.md): the colSmol-256M architecture's forward 2.4x faster than float32
    (token embeddings within cosine 0.9996 of it), SmolVLM-256M's time to first token 2.1x and decode
    1.4x. ``PAGELENS_DTYPE=float32`` keeps full precision.
    """
    spec = (spec or "auto").strip().lower()
    if spec != "auto":
        try:
            return _DTYPES[spec]
        except KeyError:
            raise PagelensError(
                f"unknown dtype '{spec}'; use auto, float32, bfloat16 or float16 (PAGELENS_DTYPE)", dtype=spec
            ) from None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def flash_attn_available() -> bool:
    """True when the ``flash_attn`` package is importable (it is only useful on CUDA)."""
    try:
        from transformers.utils import is_flash_attn_2_available

        return bool(is_flash_attn_2_available())
    except Exception:  # pragma: no cover - very old/new transformers
        return importlib.util.find_spec("flash_attn") is not None


def resolve_attn_implementation(spec: str, device: torch.device, model_class: Any | None = None) -> str:
    """Resolve ``auto | eager | sdpa | flash_attention_2`` for ``device`` (and optionally a model class).

    ``auto``: ``flash_attention_2`` on CUDA when ``flash_attn`` is importable (and the class supports it),
    else ``sdpa``; ``eager`` when ``model_class`` declares it supports neither. An explicit
    ``flash_attention_2`` without CUDA or without the package falls back to ``sdpa`` with a warning.
    Loaders should still retry with ``eager`` if ``from_pretrained`` refuses the choice (see
    ``pagelens.models.embedder``).
    """
    spec = (spec or "auto").strip().lower()
    if spec not in (*_ATTN, "auto"):
        raise PagelensError(
            f"unknown attention implementation '{spec}'; use auto, eager, sdpa or flash_attention_2",
            attn_implementation=spec,
        )
    supports_sdpa = bool(getattr(model_class, "_supports_sdpa", True)) if model_class is not None else True
    supports_fa2 = (
        bool(
            getattr(model_class, "_supports_flash_attn", getattr(model_class, "_supports_flash_attn_2", True))
        )
        if model_class is not None
        else True
    )
    if spec == "flash_attention_2" and not (
        device.type == "cuda" and flash_attn_available() and supports_fa2
    ):
        logger.warning("flash_attention_2 requested but unavailable on %s; using sdpa", device)
        spec = "sdpa"
    if spec == "auto":
        if device.type == "cuda" and flash_attn_available() and supports_fa2:
            return "flash_attention_2"
        spec = "sdpa"
    if spec == "sdpa" and not supports_sdpa:
        logger.info(
            "%s does not support sdpa; using eager attention", getattr(model_class, "__name__", "model")
        )
        return "eager"
    return spec
