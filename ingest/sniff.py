"""File checks before parsing: existence, size limits, type by content (magic bytes), sha256."""

from __future__ import annotations

import hashlib
import stat
from dataclasses import dataclass
from pathlib import Path

from pagelens.core.errors import DocumentTooLargeError, IngestError, UnsupportedFileError

CHUNK_BYTES = 1024 * 1024
PDF_HEADER_WINDOW = 1024  # bytes: readers accept a %PDF- header anywhere in the first KiB
SUPPORTED = "PDF, PNG, JPEG, TIFF"

_IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
)

# Only used to say what an unsupported file looks like.
_OTHER_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive (DOCX, XLSX, ODT, ...)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Microsoft Office file"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"{\\rtf", "an RTF document"),
    (b"%!PS", "a PostScript file"),
    (b"\x1f\x8b", "a gzip archive"),
)


@dataclass(frozen=True)
class FileFacts:
    """What was learnt from the bytes of a file: ``kind`` is "pdf"|"image", ``fmt`` pdf|png|jpeg|tiff."""

    size_bytes: int
    sha256: str
    kind: str
    fmt: str


def sniff_format(head: bytes) -> str | None:
    """Format of a file from its first bytes: "pdf", "png", "jpeg", "tiff", or None."""
    if b"%PDF-" in head[:PDF_HEADER_WINDOW]:
        return "pdf"
    for signature, fmt in _IMAGE_SIGNATURES:
        if head.startswith(signature):
            return fmt
    return None


def describe_unknown(head: bytes) -> str:
    """A short human description of an unsupported file's content."""
    for signature, what in _OTHER_SIGNATURES:
        if head.startswith(signature):
            return what
    if head[8:12] == b"WEBP" and head.startswith(b"RIFF"):
        return "a WebP image"
    text = head.lstrip()[:256].lower()
    if text.startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    if text.startswith(b"<?xml") or text.startswith(b"<svg"):
        return "an XML/SVG file"
    try:
        head[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return "unrecognised binary data"
    return "plain text"


def inspect_file(path: Path, display: str, max_file_bytes: int) -> FileFacts:
    """Check that ``path`` is a readable, non-empty, supported file within ``max_file_bytes`` bytes.

    Streams the file once for its sha256. Raises ``IngestError`` (or ``UnsupportedFileError``,
    ``DocumentTooLargeError``) with ``display`` as the file name in the message.
    """
    if "\x00" in str(path):  # the OS cannot name such a file; stat() would raise ValueError
        raise IngestError(display.replace("\x00", "\\x00"), "invalid file name (contains a NUL byte)")
    try:
        st = path.stat()
    except FileNotFoundError:
        raise IngestError(display, "file not found") from None
    except OSError as exc:
        raise IngestError(display, f"cannot access the file: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise IngestError(display, "is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise IngestError(display, "not a regular file")
    if st.st_size == 0:
        raise IngestError(display, "file is empty (0 bytes)")
    if st.st_size > max_file_bytes:
        raise DocumentTooLargeError(
            display,
            f"file is {st.st_size:,} bytes, over the limit of {max_file_bytes:,} bytes "
            "(PAGELENS_MAX_FILE_BYTES)",
            size_bytes=st.st_size,
        )
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as fh:
            head = fh.read(CHUNK_BYTES)
            fmt = sniff_format(head)
            if fmt is None:
                raise UnsupportedFileError(
                    display, f"not a supported file type (looks like {describe_unknown(head)}); "
                    f"supported: {SUPPORTED}"
                )
            chunk = head
            while chunk:
                digest.update(chunk)
                size += len(chunk)
                if size > max_file_bytes:  # grew while being read
                    raise DocumentTooLargeError(
                        display, f"file is over the limit of {max_file_bytes:,} bytes (PAGELENS_MAX_FILE_BYTES)"
                    )
                chunk = fh.read(CHUNK_BYTES)
    except OSError as exc:
        raise IngestError(display, f"cannot read the file: {exc.strerror or exc}") from None
    if size == 0:
        raise IngestError(display, "file is empty (0 bytes)")
    return FileFacts(size_bytes=size, sha256=digest.hexdigest(), kind="pdf" if fmt == "pdf" else "image", fmt=fmt)
