"""Batch inputs: files, directories (include/exclude globs) and manifests, plus ``--shard I/N``.

A manifest lists documents with per-document metadata:

* JSONL, one object per line: ``{"path": "a/b.pdf", "name": "optional display name",
  "metadata": {"k": "v"}}``; any other top-level key is metadata too (``{"path": "x.pdf", "year": 2021}``).
* CSV with a header: a ``path`` column, an optional ``name`` column, every other column is metadata
  (values that look like ints, floats or booleans are converted; empty cells are left out).

Paths in a manifest are relative to the manifest's folder and must stay inside it (absolute paths,
``~`` and ``..`` are refused). Metadata keys must be 1-64 letters,
digits, ``_`` or ``-`` (so they can be used as ``--where KEY=VALUE`` search filters).

Sharding: every input has a ``key`` (its path relative to the directory it was found in, the path as
written in a manifest, or the path as given for a file), and ``shard_of(key, N)`` is a stable hash of it
(sha1, not Python's salted ``hash``), so ``--shard 0/N`` ... ``--shard N-1/N`` partition the inputs the
same way on every machine, whatever the mount point of the archive.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pagelens.ingest.discover import DEFAULT_INCLUDE, discover_inputs

from pagelens.core.errors import InvalidRequestError

META_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass
class InputItem:
    """One document to index: where it is, its shard key, display name and metadata."""

    path: Path
    key: str
    name: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def coerce(value: str) -> Any:
    """``"true"`` -> True, ``"3"`` -> 3, ``"2.5"`` -> 2.5, anything else unchanged."""
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def _check_meta(meta: dict[str, Any], where: str) -> dict[str, Any]:
    for key, value in meta.items():
        if not isinstance(key, str) or not META_KEY_RE.fullmatch(key):
            raise InvalidRequestError(
                f"{where}: invalid metadata key {key!r}: use 1-64 letters, digits, '_' or '-'", key=str(key)
            )
        if isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value)):
            raise InvalidRequestError(f"{where}: metadata {key!r} must be a string, number, boolean or a list of those")
    return meta


def read_manifest(manifest: Path) -> list[InputItem]:
    """Parse a JSONL (``.jsonl``/``.ndjson``) or CSV (anything else) manifest. Raises
    ``InvalidRequestError`` naming the line for a bad entry."""
    manifest = Path(manifest).expanduser()
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidRequestError(f"cannot read the manifest {manifest}: {exc}") from exc
    base = manifest.parent
    items: list[InputItem] = []
    if manifest.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            where = f"{manifest}:{lineno}"
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise InvalidRequestError(f"{where}: not a JSON object ({exc})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("path"), str) or not obj["path"]:
                raise InvalidRequestError(f'{where}: each line needs a "path" string')
            meta = dict(obj.get("metadata") or {})
            meta.update({k: v for k, v in obj.items() if k not in ("path", "name", "metadata")})
            items.append(_item(base, obj["path"], obj.get("name"), _check_meta(meta, where), where))
    else:
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise InvalidRequestError(f"{manifest}: a CSV manifest needs a header row with a 'path' column")
        for lineno, row in enumerate(reader, start=2):
            where = f"{manifest}:{lineno}"
            path = (row.get("path") or "").strip()
            if not path:
                raise InvalidRequestError(f"{where}: empty path")
            meta = {
                k.strip(): coerce(v.strip())
                for k, v in row.items()
                if k not in ("path", "name") and k is not None and v is not None and v.strip() != ""
            }
            items.append(_item(base, path, (row.get("name") or "").strip() or None, _check_meta(meta, where), where))
    return items


def _item(base: Path, raw: str, name: str | None, meta: dict[str, Any], where: str) -> InputItem:
    """A manifest entry: a path relative to the manifest's folder that stays inside it. Absolute paths,
    ``~``, ``..`` components and NUL bytes are refused (a manifest may come from someone else, and the
    archive root is where the manifest lives)."""
    candidate = Path(raw)
    if "\x00" in raw or raw.startswith("~") or candidate.is_absolute() or ".." in candidate.parts:
        raise InvalidRequestError(
            f"{where}: path {raw!r} must be relative to the manifest's folder, without '..', '~' or an "
            "absolute path; put the manifest at the root of the files it lists",
            path=raw,
        )
    return InputItem(path=base / candidate, key=candidate.as_posix(), name=name, metadata=meta)


def collect_inputs(
    paths: Sequence[Path] = (),
    include: Sequence[str] = DEFAULT_INCLUDE,
    exclude: Sequence[str] = (),
    manifests: Sequence[Path] = (),
) -> list[InputItem]:
    """Every document to index, each once (first occurrence wins), in a deterministic order:
    files and directories (see ``discover_inputs``) first, then manifest entries (``exclude``
    applies to those too)."""
    items: list[InputItem] = []
    seen: set[Path] = set()

    def add(item: InputItem) -> None:
        key = item.path.resolve() if item.path.exists() else item.path.absolute()
        if key not in seen:
            seen.add(key)
            items.append(item)

    for raw in paths:
        root = Path(raw).expanduser()
        for file in discover_inputs([root], include=include, exclude=exclude):
            key = file.relative_to(root).as_posix() if root.is_dir() else str(raw)
            add(InputItem(path=file, key=key))
    for manifest in manifests:
        for item in read_manifest(manifest):
            if exclude and discover_inputs([item.path], exclude=exclude) == [] and item.path.exists():
                continue
            add(item)
    return items


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """``"I/N"`` -> (I, N) with 0 <= I < N; None for None/"". Raises ``InvalidRequestError``."""
    if not spec:
        return None
    match = SHARD_RE.fullmatch(spec)
    if not match:
        raise InvalidRequestError(f"--shard must look like I/N (e.g. 0/4), got {spec!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 0 <= index < count:
        raise InvalidRequestError(f"--shard {spec}: need N >= 1 and 0 <= I < N")
    return index, count


def shard_of(key: str, count: int) -> int:
    """Stable shard number in [0, count) of an input key (sha1 of the key, big-endian, mod N)."""
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def select_shard(items: Sequence[InputItem], shard: tuple[int, int] | None) -> list[InputItem]:
    if shard is None:
        return list(items)
    index, count = shard
    return [item for item in items if shard_of(item.key, count) == index]
