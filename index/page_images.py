"""Page images on disk, addressed by document sha256 and page number (not stored in Qdrant)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from PIL import Image


class PageImageStore:
    """``root/<sha256[:2]>/<sha256>/<page_no>.png``. Writes are atomic (temp file + rename), so several
    processes may write the same document's pages (content-addressed: the same bytes) at once."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, doc_sha256: str, page_no: int) -> Path:
        return self.root / doc_sha256[:2] / doc_sha256 / f"{page_no}.png"

    def save(self, doc_sha256: str, page_no: int, image: Image.Image) -> Path:
        """Write the page as PNG (fast compression) unless it is already there; returns its path."""
        target = self.path(doc_sha256, page_no)
        if target.exists():
            return target
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
        return target

    def delete_document(self, doc_sha256: str) -> None:
        """Remove the document's page images. Tolerates another process (the same document indexed into
        another collection with a Qdrant server) writing into the folder meanwhile: what it wrote after
        the listing stays."""
        folder = self.root / doc_sha256[:2] / doc_sha256
        if folder.is_dir():
            for file in folder.iterdir():
                file.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # gone, or not empty any more
                folder.rmdir()
