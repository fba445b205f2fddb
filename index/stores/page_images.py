"""Page images on disk (not in Qdrant), keyed by document content and render size.

Layout under the page-image root (``Settings.pages_dir``: ``PAGELENS_PAGE_IMAGES_DIR``, default
``<data_dir>/pages``)::

    <sha256[:2]>/<sha256>/<page_no>-<width>x<height>.png

The same bytes rendered at another size (a collection indexed at another
``PAGELENS_PAGE_LONGEST_EDGE``) get their own file, so a payload's ``width``/``height`` always match its
image. Payloads store ``image_path`` **relative to the root** (POSIX separators), so every host that
mounts the same root at any mount point finds the images (``--shard I/N`` workers on many machines).

Points written before this layout hold an absolute ``image_path`` to ``<old root>/<sha[:2]>/<sha>/<n>.png``.
``resolve`` reads them too: first the same relative file under the current root (a moved or shared
image folder), then the absolute path itself when it lies under the root or a legacy root.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image


class PageImageStore:
    """Page PNGs under ``root`` (see the module docstring). Writes are atomic (temp file + rename).

    ``legacy_roots``: folders whose absolute paths in old payloads are still read and served (the
    default root of older versions, ``<data_dir>/pages``, when the root was moved elsewhere)."""

    def __init__(self, root: Path, legacy_roots: Iterable[Path] = ()) -> None:
        self.root = Path(root).expanduser()
        self.legacy_roots = [Path(p).expanduser() for p in legacy_roots if Path(p).expanduser() != self.root]

    # -- keys -------------------------------------------------------------------------------------
    @staticmethod
    def relpath(doc_sha256: str, page_no: int, width: int, height: int) -> str:
        """The key of one rendered page: ``<sha[:2]>/<sha>/<page_no>-<width>x<height>.png`` (POSIX)."""
        return f"{doc_sha256[:2]}/{doc_sha256}/{int(page_no)}-{int(width)}x{int(height)}.png"

    def path(self, doc_sha256: str, page_no: int, width: int | None = None, height: int | None = None) -> Path:
        """Absolute path of a page image; without a size, the legacy name ``<page_no>.png``."""
        if width is None or height is None:
            return self.root / doc_sha256[:2] / doc_sha256 / f"{int(page_no)}.png"
        return self.root / self.relpath(doc_sha256, page_no, width, height)

    def save(self, doc_sha256: str, page_no: int, image: Image.Image) -> str:
        """Write the page as PNG (fast compression) unless that content at that size is already there;
        returns its path relative to the root (what payloads store)."""
        rel = self.relpath(doc_sha256, page_no, image.width, image.height)
        target = self.root / rel
        if target.exists():
            return rel
        for attempt in range(3):  # another process may remove the (empty) folder in between: mkdir again
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".png.tmp")
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        try:
            with os.fdopen(fd, "wb") as fh:
                image.save(fh, format="PNG", compress_level=1)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return rel

    # -- reading ----------------------------------------------------------------------------------
    def allowed(self, path: Path) -> bool:
        """Whether ``path`` (resolved) lies under the root or a legacy root: the only files served."""
        resolved = Path(path).resolve()
        return any(resolved.is_relative_to(r.resolve()) for r in [self.root, *self.legacy_roots])

    def resolve(self, payload: Mapping[str, Any]) -> Path | None:
        """The local file of a page point's image (it may not exist on this host), or None when the
        payload names none this store may read (no path, a path escaping the root, an absolute path
        outside the root and the legacy roots)."""
        stored = payload.get("image_path")
        if not stored:
            sha, page_no = payload.get("sha256"), payload.get("page_no")
            if sha and page_no:
                return self.path(str(sha), int(page_no))  # points written before image paths were stored
            return None
        stored = str(stored)
        posix = PurePosixPath(stored.replace("\\", "/"))
        if not posix.is_absolute() and not Path(stored).is_absolute():
            if ".." in posix.parts:
                return None
            return self.root.joinpath(*posix.parts)
        legacy = Path(stored)
        moved = self.root.joinpath(*legacy.parts[-3:])  # <sha[:2]>/<sha>/<n>.png under the current root
        if moved.is_file():
            return moved
        if self.allowed(legacy):
            return legacy
        return None

    # -- deleting ---------------------------------------------------------------------------------
    def delete_document(self, doc_sha256: str, keep: Iterable[Path] = ()) -> int:
        """Delete the images of a document except those in ``keep`` (still referenced by a collection);
        returns files deleted. The document's folder goes when it is empty."""
        folder = self.root / doc_sha256[:2] / doc_sha256
        if not folder.is_dir():
            return 0
        kept = {Path(p).resolve() for p in keep}
        deleted = 0
        for file in folder.iterdir():
            if file.is_file() and file.resolve() not in kept:
                file.unlink(missing_ok=True)
                deleted += 1
        with contextlib.suppress(OSError):  # images still referenced (or written meanwhile)
            folder.rmdir()
        return deleted
