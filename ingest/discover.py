"""Expand command-line inputs (files and directories) into the list of files to ingest."""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_INCLUDE: tuple[str, ...] = (
    "*.pdf", "*.png", "*.jpg", "*.jpeg", "*.tif", "*.tiff",
    # office and web documents, converted to PDF with LibreOffice (ingest/office.py)
    "*.docx", "*.docm", "*.doc", "*.odt", "*.rtf", "*.xlsx", "*.xlsm", "*.xls", "*.ods",
    "*.pptx", "*.pptm", "*.ppt", "*.odp", "*.html", "*.htm",
)


def _matches(path: Path, patterns: Sequence[str], root: Path | None = None) -> bool:
    """Case-insensitive glob match on the file name, or on the path relative to ``root``."""
    name = path.name.lower()
    rel = path.relative_to(root).as_posix().lower() if root is not None else None
    for pattern in patterns:
        pat = pattern.lower()
        if fnmatch.fnmatchcase(name, pat) or (rel is not None and fnmatch.fnmatchcase(rel, pat)):
            return True
    return False


def _walk(root: Path) -> Iterator[Path]:
    """Files under ``root``, depth-first in sorted order; hidden entries (".name") and symlinked
    directories are skipped (no loops)."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            if not filename.startswith("."):
                yield Path(dirpath) / filename


def discover_inputs(
    paths: Sequence[Path],
    include: Sequence[str] = DEFAULT_INCLUDE,
    exclude: Sequence[str] = (),
) -> list[Path]:
    """Files to ingest, in a deterministic order, each once.

    - A file given explicitly is kept whatever its extension (its content decides its type later).
    - A directory is walked recursively (sorted; hidden entries skipped); its files are kept when
      their name matches one of ``include`` (case-insensitive globs).
    - ``exclude`` globs (matched on the file name, or on the path relative to the directory walked)
      drop files, explicit ones included.
    - A path that does not exist is returned as given, so that ``open_document`` reports
      "file not found" for it with the other per-file errors.
    """
    found: list[Path] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve() if path.exists() else path.absolute()
        if key not in seen:
            seen.add(key)
            found.append(path)

    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            for file in _walk(path):
                if _matches(file, include, path) and not _matches(file, exclude, path):
                    add(file)
        elif not path.exists():
            logger.debug("input %s does not exist", path)
            add(path)
        elif not _matches(path, exclude):
            add(path)
    return found
