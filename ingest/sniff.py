"""File checks before parsing: existence, size limits, type by content (magic bytes), sha256.

The one sniffer of pagelens: PDF and images by their magic bytes; office documents by their container
(``pagelens.ingest.office`` converts them to PDF): OOXML (DOCX/XLSX/PPTX) and ODF (ODT/ODS/ODP/ODG) are ZIP
archives told apart by their ``[Content_Types].xml`` / ``mimetype`` member, legacy DOC/XLS/PPT and
password-protected OOXML are OLE2 compound files told apart by their stream names, RTF starts with
``{\\rtf``, HTML by its markup. The extension is never looked at.
"""

from __future__ import annotations

import hashlib
import re
import stat
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pagelens.core.errors import (
    DocumentTooLargeError,
    EncryptedDocumentError,
    IngestError,
    UnsupportedFileError,
)

CHUNK_BYTES = 1024 * 1024
PDF_HEADER_WINDOW = 1024  # bytes: readers accept a %PDF- header anywhere in the first KiB
SUPPORTED = ("PDF, PNG, JPEG, TIFF, and office documents (DOCX, XLSX, PPTX, ODT, ODS, ODP, DOC, XLS, PPT, "
             "RTF, HTML; converted to PDF with LibreOffice)")
IMAGE_FORMATS = ("png", "jpeg", "tiff")
# fmt -> what users call it (error messages)
OFFICE_FORMATS: dict[str, str] = {
    "docx": "DOCX", "xlsx": "XLSX", "pptx": "PPTX", "odt": "ODT", "ods": "ODS", "odp": "ODP", "odg": "ODG",
    "doc": "DOC", "xls": "XLS", "ppt": "PPT", "rtf": "RTF", "html": "HTML",
}
ZIP_MAGIC = b"PK\x03\x04"
CFB_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
MAX_CONTENT_TYPES_BYTES = 1024 * 1024  # [Content_Types].xml larger than this is not read (zip bomb guard)

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
    (b"PK\x03\x04", "a ZIP archive that is not an Office or OpenDocument file"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an OLE2 compound file that is not a Word, Excel or PowerPoint document"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"{\\rtf", "an RTF document"),
    (b"%!PS", "a PostScript file"),
    (b"\x1f\x8b", "a gzip archive"),
)


@dataclass(frozen=True)
class FileFacts:
    """What was learnt from the bytes of a file: ``kind`` is "pdf"|"image"|"office", ``fmt`` pdf|png|jpeg|
    tiff, or one of ``OFFICE_FORMATS`` (docx, xlsx, pptx, odt, ods, odp, odg, doc, xls, ppt, rtf, html)."""

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


# WHATWG MIME sniffing: these tags (then a space or ">") at the start of a document mean HTML.
_HTML_TAGS = (b"!doctype html", b"html", b"head", b"body", b"script", b"iframe", b"h1", b"div", b"font",
              b"table", b"a", b"style", b"title", b"b", b"br", b"p")
_LEADING_JUNK = re.compile(rb"\A(?:\s+|<!--.*?-->|<\?xml[^>]*\?>)*", re.S)
_ODF_MIMETYPES = {
    "application/vnd.oasis.opendocument.text": "odt",
    "application/vnd.oasis.opendocument.text-template": "odt",
    "application/vnd.oasis.opendocument.text-master": "odt",
    "application/vnd.oasis.opendocument.spreadsheet": "ods",
    "application/vnd.oasis.opendocument.spreadsheet-template": "ods",
    "application/vnd.oasis.opendocument.presentation": "odp",
    "application/vnd.oasis.opendocument.presentation-template": "odp",
    "application/vnd.oasis.opendocument.graphics": "odg",
    "application/vnd.oasis.opendocument.graphics-template": "odg",
}
ENCRYPTED_OFFICE = "encrypted-office"  # fmt of a password-protected OOXML file (an OLE2 container)


def _is_html(head: bytes) -> bool:
    text = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    text = _LEADING_JUNK.sub(b"", text[:4096], count=1).lower()
    if not text.startswith(b"<"):
        return False
    for tag in _HTML_TAGS:
        rest = text[1 + len(tag):2 + len(tag)]
        if text[1:].startswith(tag) and rest in (b" ", b">", b"\t", b"\n", b"\r", b"/"):
            return True
    return False


def _odf_from_head(head: bytes) -> str | None:
    """ODF packages store an uncompressed ``mimetype`` member first: read its value from the head."""
    if len(head) < 30 or head[30:38] != b"mimetype":
        return None
    method, = struct.unpack_from("<H", head, 8)
    stored, name_len, extra_len = struct.unpack_from("<IHH", head, 18)[0], *struct.unpack_from("<HH", head, 26)
    if method != 0 or not 0 < stored <= 100:
        return None
    start = 30 + name_len + extra_len
    return _ODF_MIMETYPES.get(head[start:start + stored].decode("ascii", "replace").strip())


def sniff_head(head: bytes) -> str | None:
    """Format from the first bytes of a file (at least its first KiB when it is that long).

    Returns "pdf", "png", "jpeg" or "tiff"; an office format decided by the head alone ("odt", "ods",
    "odp", "odg" when the ODF ``mimetype`` member comes first, "rtf", "html"); "zip" or "cfb" when the
    container must be read to decide (:func:`sniff_path`); None when the file is none of these.
    """
    fmt = sniff_format(head)
    if fmt is not None:
        return fmt
    if head.startswith(ZIP_MAGIC):
        return _odf_from_head(head) or "zip"  # sniff_path still opens an ODF package (encrypted ones)
    if head.startswith(CFB_MAGIC):
        return "cfb"
    if head.startswith(b"{\\rtf"):
        return "rtf"
    if _is_html(head):
        return "html"
    return None


def _first_member(head: bytes) -> str:
    """Name of the first member of a ZIP archive from its local header (for damaged archives)."""
    if not head.startswith(ZIP_MAGIC) or len(head) < 30:
        return ""
    (name_len,) = struct.unpack_from("<H", head, 26)
    return head[30:30 + name_len].decode("utf-8", "replace")


def _office_from_content_types(xml: str) -> str | None:
    """docx | xlsx | pptx from the main part's content type in ``[Content_Types].xml``."""
    lowered = xml.lower()
    for needles, fmt in (
        (("wordprocessingml.document.main", "wordprocessingml.template.main", "ms-word.document.macroenabled",
          "ms-word.template.macroenabled"), "docx"),
        (("spreadsheetml.sheet.main", "spreadsheetml.template.main", "ms-excel.sheet.macroenabled",
          "ms-excel.sheet.binary", "ms-excel.template.macroenabled"), "xlsx"),
        (("presentationml.presentation.main", "presentationml.slideshow.main", "presentationml.template.main",
          "ms-powerpoint.presentation.macroenabled", "ms-powerpoint.slideshow.macroenabled"), "pptx"),
    ):
        if any(n in lowered for n in needles):
            return fmt
    return None


def _zip_format(path: Path, display: str, head: bytes) -> str | None:
    """docx/xlsx/pptx/odt/ods/odp/odg for an OOXML/ODF package, None for another ZIP archive.

    Raises ``IngestError`` for a package whose ZIP container is damaged (truncated, bad directory)."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = {info.filename: info for info in zf.infolist()}
            if "mimetype" in infos and infos["mimetype"].file_size <= 200:
                odf = _ODF_MIMETYPES.get(zf.read("mimetype").decode("ascii", "replace").strip())
                manifest = infos.get("META-INF/manifest.xml")
                if odf and manifest is not None and manifest.file_size <= MAX_CONTENT_TYPES_BYTES and (
                        b"encryption-data" in zf.read(manifest)):
                    return ENCRYPTED_OFFICE  # a password-protected ODF package
                if odf:
                    return odf
            info = infos.get("[Content_Types].xml")
            if info is not None and info.file_size <= MAX_CONTENT_TYPES_BYTES:
                fmt = _office_from_content_types(zf.read(info).decode("utf-8", "replace"))
                if fmt:
                    return fmt
            for part, fmt in (("word/document.xml", "docx"), ("xl/workbook.xml", "xlsx"),
                              ("ppt/presentation.xml", "pptx")):
                if part in infos and info is not None:
                    return fmt
            return None
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - hostile archives fail in many ways (BadZipFile, zlib.error, ...)
        first = _first_member(head)
        if first in ("[Content_Types].xml", "mimetype") or first.startswith(
                ("word/", "xl/", "ppt/", "_rels/", "docProps/", "META-INF/")):
            raise IngestError(display, f"damaged office document: its ZIP container cannot be read ({exc}); "
                              "open it in its application and save it again, or export it as PDF") from None
        return None


_ENDOFCHAIN = 0xFFFFFFFA  # sector numbers at or above this are markers (end of chain, free, FAT)
_MAX_DIR_SECTORS = 4096


def cfb_stream_names(path: Path) -> set[str] | None:
    """Lower-cased names of the storages and streams of an OLE2 compound file (CFB), or None when the
    file is not a readable one. Reads only the header, the FAT sectors it needs and the directory."""
    with path.open("rb") as fh:
        header = fh.read(512)
        if len(header) < 512 or not header.startswith(CFB_MAGIC):
            return None
        (shift,) = struct.unpack_from("<H", header, 0x1E)
        if shift not in (9, 12):
            return None
        size = 1 << shift
        per_sector = size // 4
        (n_fat,) = struct.unpack_from("<I", header, 0x2C)
        (first_dir,) = struct.unpack_from("<I", header, 0x30)
        first_difat, n_difat = struct.unpack_from("<II", header, 0x44)
        difat = [s for s in struct.unpack_from("<109I", header, 0x4C) if s < _ENDOFCHAIN]

        def sector(index: int) -> bytes:
            fh.seek((index + 1) * size)
            data = fh.read(size)
            if len(data) < size:
                raise EOFError
            return data

        try:
            sec, hops = first_difat, 0
            while sec < _ENDOFCHAIN and hops < min(n_difat, 10_000):
                entries = struct.unpack(f"<{per_sector}I", sector(sec))
                difat.extend(s for s in entries[:-1] if s < _ENDOFCHAIN)
                sec, hops = entries[-1], hops + 1
            difat = difat[:n_fat]
            fat_cache: dict[int, tuple[int, ...]] = {}

            def next_sector(index: int) -> int:
                block = index // per_sector
                if block >= len(difat):
                    return _ENDOFCHAIN
                if block not in fat_cache:
                    fat_cache[block] = struct.unpack(f"<{per_sector}I", sector(difat[block]))
                return fat_cache[block][index % per_sector]

            names: set[str] = set()
            sec, seen = first_dir, set[int]()
            while sec < _ENDOFCHAIN and sec not in seen and len(seen) < _MAX_DIR_SECTORS:
                seen.add(sec)
                data = sector(sec)
                for off in range(0, size, 128):
                    (name_len,) = struct.unpack_from("<H", data, off + 0x40)
                    if data[off + 0x42] in (1, 2, 5) and 2 <= name_len <= 64 and name_len % 2 == 0:
                        names.add(data[off:off + name_len - 2].decode("utf-16-le", "replace").lower())
                sec = next_sector(sec)
        except (EOFError, struct.error, ValueError, OverflowError):
            return None
        return names


def _cfb_format(path: Path) -> str | None:
    """doc | xls | ppt, ``ENCRYPTED_OFFICE`` for password-protected OOXML, None for another CFB file."""
    names = cfb_stream_names(path)
    if not names:
        return None
    if "encryptedpackage" in names:
        return ENCRYPTED_OFFICE
    if "worddocument" in names:
        return "doc"
    if "workbook" in names or "book" in names:
        return "xls"
    if "powerpoint document" in names:
        return "ppt"
    return None


def sniff_path(path: Path, display: str | None = None, head: bytes | None = None) -> str | None:
    """Format of the file at ``path`` by its content: "pdf", "png", "jpeg", "tiff", one of
    ``OFFICE_FORMATS``, ``ENCRYPTED_OFFICE``, or None when pagelens cannot read it.

    ZIP and OLE2 containers are opened to tell DOCX from a plain ZIP archive. Raises ``IngestError``
    (naming ``display``, default the path) for an office package whose container is damaged, and
    ``OSError`` when the file cannot be read."""
    if head is None:
        with path.open("rb") as fh:
            head = fh.read(CHUNK_BYTES)
    fmt = sniff_head(head)
    if fmt == "zip" or fmt in _ODF_MIMETYPES.values():
        return _zip_format(path, display or str(path), head)
    if fmt == "cfb":
        return _cfb_format(path)
    return fmt


def kind_of(fmt: str) -> str:
    """"pdf" | "image" | "office" for a format returned by :func:`sniff_path`."""
    if fmt == "pdf":
        return "pdf"
    return "image" if fmt in IMAGE_FORMATS else "office"


# the extension a file of each format is stored with (uploads) or handed to LibreOffice with
EXTENSIONS: dict[str, str] = {"pdf": "pdf", "png": "png", "jpeg": "jpg", "tiff": "tif",
                              **{fmt: fmt for fmt in OFFICE_FORMATS}, ENCRYPTED_OFFICE: "bin"}


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

    Streams the file once for its sha256 (ZIP/OLE2 office containers are then opened to tell their
    type). A password-protected Office file raises ``EncryptedDocumentError``. Raises ``IngestError`` (or ``UnsupportedFileError``,
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
            fmt = sniff_head(head)
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
    if fmt in ("zip", "cfb") or fmt in _ODF_MIMETYPES.values():
        try:
            fmt = sniff_path(path, display, head)
        except OSError as exc:
            raise IngestError(display, f"cannot read the file: {exc.strerror or exc}") from None
        if fmt is None:
            raise UnsupportedFileError(
                display, f"not a supported file type (looks like {describe_unknown(head)}); supported: {SUPPORTED}")
    if fmt == ENCRYPTED_OFFICE:
        raise EncryptedDocumentError(
            display, "is a password-protected Office document; pagelens cannot open those: save a copy "
            "without the password (or export it as PDF) and index that")
    return FileFacts(size_bytes=size, sha256=digest.hexdigest(), kind=kind_of(fmt), fmt=fmt)
