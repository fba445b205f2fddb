"""The original files of indexed documents, kept so that users can download them (``PAGELENS_KEEP_ORIGINALS``).

Layout under ``<data_dir>/originals``, content-addressed by the file's sha256 (the document's identity:
``doc_id`` is its first 16 hex characters)::

    <sha256[:2]>/<sha256>.<ext>

``ext`` is the extension of the format the file was recognised as by content (``pagelens.ingest.sniff``:
pdf, png, jpg, tif, docx, ...), so the same bytes indexed twice, under any name or in any collection, are
stored once. The indexer keeps a copy of every document it opens (``keep``; the copy is checked against
the sha256 while it is written, atomically: temp file + rename); the service removes it when the last
document with that content is deleted (``discard``). Documents indexed before originals were kept, or with
the setting off, have none: ``find`` returns None and the API says to index the file again.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mimetypes
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pagelens.ingest.sniff import EXTENSIONS

from pagelens.core.types import PageFilter

if TYPE_CHECKING:
    from pagelens.index.stores.base import VectorStore

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024  # bytes read and hashed at a time
# the media type of each stored extension (``pagelens.ingest.sniff.EXTENSIONS``), not left to the system's
# mime.types (which may lack the office formats)
_OOXML = "application/vnd.openxmlformats-officedocument"
_ODF = "application/vnd.oasis.opendocument"
_MEDIA = {"pdf": "application/pdf", "png": "image/png", "jpg": "image/jpeg", "tif": "image/tiff",
          "docx": f"{_OOXML}.wordprocessingml.document", "xlsx": f"{_OOXML}.spreadsheetml.sheet",
          "pptx": f"{_OOXML}.presentationml.presentation", "odt": f"{_ODF}.text", "ods": f"{_ODF}.spreadsheet",
          "odp": f"{_ODF}.presentation", "odg": f"{_ODF}.graphics", "doc": "application/msword",
          "xls": "application/vnd.ms-excel", "ppt": "application/vnd.ms-powerpoint", "rtf": "application/rtf",
          "html": "text/html"}
MEDIA_TYPES = (*sorted(set(_MEDIA.values())), "application/octet-stream")  # every type an original is served as


class OriginalStore:
    """Original files under ``root`` (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()

    def _dir(self, sha256: str) -> Path:
        return self.root / sha256[:2]

    def find(self, sha256: str) -> Path | None:
        """The kept original with this sha256 (64 lowercase hex), or None when none is kept."""
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            return None
        folder = self._dir(sha256)
        with contextlib.suppress(OSError):
            for entry in folder.iterdir():
                if entry.name.startswith(sha256 + ".") and not entry.name.endswith(".tmp") and entry.is_file():
                    return entry
        return None

    def keep(self, source: Path, sha256: str, fmt: str) -> Path | None:
        """Copy ``source`` (a file of format ``fmt``, a key of ``pagelens.ingest.sniff.EXTENSIONS``) into the
        store unless a file with this content is there already; returns the kept path. None (with a
        warning naming the file) when the copy fails or the file's bytes are no longer those of ``sha256``
        (changed since it was opened): the document is still indexed, only its original is not kept."""
        found = self.find(sha256)
        if found is not None:
            return found
        target = self._dir(sha256) / f"{sha256}.{EXTENSIONS.get(fmt, 'bin')}"
        tmp: str | None = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{sha256}.", suffix=".tmp")
            digest = hashlib.sha256()
            with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
            if digest.hexdigest() != sha256:
                log.warning("%s changed while it was indexed: its original is not kept (index it again to keep "
                            "it for download)", source)
                return None
            os.chmod(tmp, 0o600)
            os.replace(tmp, target)
            tmp = None
            return target
        except OSError as exc:
            log.warning("the original of %s could not be kept in %s (%s): it cannot be downloaded until it is "
                        "indexed again", source, self.root, exc)
            return None
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def discard(self, sha256: str) -> bool:
        """Remove the kept original with this sha256; True when one was removed."""
        found = self.find(sha256)
        if found is None:
            return False
        with contextlib.suppress(OSError):
            found.unlink()
            with contextlib.suppress(OSError):
                found.parent.rmdir()  # only when empty
            return True
        return False


def discard_unless_used(originals: OriginalStore, store: VectorStore, sha256: str) -> bool:
    """Remove the kept original with this sha256 unless a document of any collection of ``store`` still has
    it (a document's ``doc_id`` is the first 16 hex characters of its sha256); True when one was removed."""
    doc_filter = PageFilter(doc_ids=[sha256[:16]])
    if any(store.count(name, doc_filter) for name in store.list_collections()):
        return False
    return originals.discard(sha256)


def media_type(path: Path) -> str:
    """The media type of a kept original, from its stored extension (``application/octet-stream`` if unknown)."""
    ext = path.suffix.lstrip(".").lower()
    return _MEDIA.get(ext) or mimetypes.guess_type(f"x.{ext}")[0] or "application/octet-stream"
