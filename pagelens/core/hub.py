"""Locating model weights: a local directory as is, or a hub id from the HF cache first.

Shared by the retriever (``pagelens.models.embedder``) and the answerer (``pagelens.answer.answerer``). The network is
tried only when the cache misses and the hub is not offline, with a short timeout, so an offline
machine fails in well under a second with one ``ModelUnavailableError`` that says which model, where
it looked and how to fix it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pagelens.core.errors import ModelUnavailableError

log = logging.getLogger(__name__)

HUB_ALLOW = ["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model"]
HUB_IGNORE = ["checkpoint-*/*", "dump/*", "runs/*"]
HUB_ETAG_TIMEOUT_S = 10.0
MODEL_MARKERS = ("config.json", "adapter_config.json")


class Unavailable(Exception):
    """Why a model could not be had and where we looked; turned into one ``ModelUnavailableError``."""

    def __init__(self, reason: str, looked: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.looked = looked


def hub_offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, read at call time (huggingface_hub caches them at import)."""
    truthy = {"1", "true", "yes", "on"}
    if any(
        os.environ.get(v, "").strip().lower() in truthy for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    ):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE) and "HF_HUB_OFFLINE" not in os.environ
    except Exception:  # pragma: no cover
        return False


def hf_cache_dir() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # pragma: no cover
        return os.path.expanduser("~/.cache/huggingface/hub")


def looks_like_path(model: str) -> bool:
    """A string that can only be a filesystem path (a hub id is ``name`` or ``org/name``)."""
    return (
        model.startswith(("/", ".", "~"))
        or "\\" in model
        or os.path.isabs(model)
        or model.count("/") > 1
        or Path(model).expanduser().exists()
    )


def resolve_model_dir(
    model: str,
    revision: str | None,
    base_dir: Path | None = None,
    markers: Sequence[str] = MODEL_MARKERS,
) -> Path:
    """A local directory holding ``model`` (a local path, or a hub id at ``revision``).

    ``base_dir`` lets a relative name resolve beside another model (a LoRA adapter's base). A cached hub
    snapshot counts only when it holds one of ``markers``. Raises ``Unavailable``.
    """
    candidates = [Path(model).expanduser()]
    if base_dir is not None and not Path(model).is_absolute():
        candidates.insert(0, base_dir / model)
    for path in candidates:
        if path.is_dir():
            return path.resolve()
    if looks_like_path(model):
        path = candidates[-1]
        what = "is not a directory" if path.exists() else "does not exist"
        raise Unavailable(f"local path {path} {what}", f"the local path {path}")

    from huggingface_hub import snapshot_download

    cache = hf_cache_dir()
    kwargs: dict[str, Any] = {"revision": revision, "allow_patterns": HUB_ALLOW, "ignore_patterns": HUB_IGNORE}
    try:
        found = Path(snapshot_download(model, local_files_only=True, **kwargs))
        if any((found / marker).is_file() for marker in markers):
            return found
        local_reason = f"the cached snapshot {found} has no {' / '.join(markers)}"
    except Exception as exc:  # LocalEntryNotFoundError and friends
        local_reason = f"not in the HF cache ({type(exc).__name__})"
    if hub_offline():
        raise Unavailable(
            f"{local_reason} and the hub is offline (HF_HUB_OFFLINE=1)",
            f"the HF cache {cache} (hub id '{model}', offline)",
        )
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        log.info("downloading %s (revision %s) from %s", model, revision or "default", endpoint)
        return Path(snapshot_download(model, etag_timeout=HUB_ETAG_TIMEOUT_S, **kwargs))
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise Unavailable(
            f"{local_reason}, and downloading from {endpoint} failed: {type(exc).__name__}: {first_line}",
            f"the HF cache {cache} and {endpoint} (hub id '{model}')",
        ) from exc


def unavailable_error(
    role: str, model: str, revision: str | None, err: Unavailable, env_var: str, default_hub_id: str
) -> ModelUnavailableError:
    """The one user-facing load error: which model, where we looked, how to fix it."""
    rev = f" (revision {revision})" if revision else ""
    is_path = looks_like_path(model)
    hub_id = default_hub_id if is_path else model
    looked = err.looked if not is_path else f"{err.looked} (a path, so the HF cache {hf_cache_dir()} was not searched)"
    message = (
        f"{role} model '{model}'{rev} is unavailable: {err.reason}. Looked in {looked}. "
        f"To fix: on a machine with network run `huggingface-cli download {hub_id} --local-dir DIR` "
        f"(for a LoRA adapter also download the base model named in its adapter_config.json), copy DIR "
        f"here and set {env_var}=DIR"
        + ("." if is_path else "; or allow downloads (HF_HUB_OFFLINE=0, or HF_ENDPOINT=<mirror>).")
    )
    return ModelUnavailableError(message, model=model, revision=revision, looked=err.looked, hf_cache=hf_cache_dir())
