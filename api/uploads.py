"""Multipart uploads streamed straight to disk, with the limits checked while the bytes arrive.

The request body is parsed incrementally (python-multipart); each file part is written to
``<dest>/<NNN>.part`` as it arrives and counted: past ``max_upload_bytes`` (all files of the request)
or ``max_file_bytes`` (one file) the upload stops at once with 413 and everything written for it is
deleted. The type is decided by content, not by the name (``pagelens.ingest.sniff``: PDF, PNG, JPEG, TIFF from
the first KiB; office and web documents by their container, read once the file is complete): anything
else is 415. Kept files are renamed ``<NNN>_<safe stem>.<ext of the sniffed
type>``: the client's name never reaches the file system (basename only, ASCII ``[A-Za-z0-9._-]``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pagelens.ingest.sniff import EXTENSIONS, kind_of, sniff_head, sniff_path
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from pagelens.app.uploads import ACCEPTED, MAX_FORM_OVERHEAD, display_name, safe_stem
from pagelens.core.errors import ApiError, IngestError
from pagelens.core.settings import Settings

FILE_FIELDS = ("files", "file")
TEXT_FIELDS = ("metadata", "force", "password")
MAX_FIELD_BYTES = 64 * 1024
MAX_HEADER_NAME_BYTES = 256  # one multipart part header's name (Content-Disposition is 19)
MAX_HEADER_VALUE_BYTES = 16 * 1024  # one multipart part header's value
MAX_PART_HEADERS = 8  # headers of one part (a browser sends 2; python-multipart >= 0.0.21 also stops at 8)
SNIFF_BYTES = 1024
_EXT = EXTENSIONS  # sniffed format -> extension of the stored file
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _open_part(path: Path) -> BinaryIO:
    """The writer of one uploaded file (a seam for tests that simulate a full disk)."""
    return open(path, "xb")  # noqa: SIM115 - closed in on_part_end / abort


def storage_error(exc: OSError) -> ApiError:
    """507 for a full disk or quota, 503 for another I/O failure while saving an upload."""
    if exc.errno in _DISK_FULL:
        return ApiError(507, "insufficient_storage", "the server has no space left to store the upload; "
                        "nothing was kept. Try again later or ask the operator to free disk space")
    return ApiError(503, "storage_unavailable", f"the upload could not be stored ({exc.strerror or 'I/O error'}); "
                    "nothing was kept. Try again later", headers={"Retry-After": "5"})


def sniff_type(head: bytes) -> str | None:
    """Format from the first bytes (``pagelens.ingest.sniff.sniff_head``): ``pdf`` | ``png`` | ``jpeg`` | ``tiff``,
    an office format, ``zip``/``cfb`` (decided by :func:`sniff_file` once the file is complete), or None."""
    return sniff_head(head)


def sniff_file(path: Path, name: str, head: bytes) -> str:
    """The final format of a complete upload (opens ZIP/OLE2 containers); raises 415 when unsupported."""
    try:
        fmt = sniff_path(path, name, head)
    except IngestError as exc:
        raise ApiError(415, "unsupported_file", str(exc), file=name) from None
    if fmt is None:
        raise ApiError(415, "unsupported_file", f"'{name}' is not {ACCEPTED} (checked by content, not by name)",
                       file=name)
    return fmt


@dataclass
class SavedFile:
    name: str  # display name
    path: Path
    size: int
    sha256: str
    kind: str


@dataclass
class UploadForm:
    files: list[SavedFile] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    force: bool = False
    # for the encrypted PDFs of this upload; never logged, never in the job row (see pagelens/app/jobs.py)
    password: str | None = field(default=None, repr=False)


class _Part:
    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.field_name = ""
        self.filename: str | None = None
        self.data = bytearray()
        self.fh: BinaryIO | None = None
        self.tmp: Path | None = None
        self.size = 0
        self.hash = hashlib.sha256()
        self.head = bytearray()
        self.kind: str | None = None


class _StreamingForm:
    """python-multipart callbacks that write file parts to disk and enforce the limits."""

    def __init__(self, dest: Path, settings: Settings) -> None:
        self.dest = dest
        self.max_total = settings.max_upload_bytes
        self.max_file = min(settings.max_file_bytes, settings.max_upload_bytes)
        self.max_files = settings.max_files_per_request
        self.total = 0
        self.part = _Part()
        self.header_field = bytearray()  # grown in place: no quadratic copies of a header streamed in pieces
        self.header_value = bytearray()
        self.fields: dict[str, str] = {}
        self.files: list[SavedFile] = []
        self.n_files = 0

    # -- callbacks ---------------------------------------------------------------------------
    def on_part_begin(self) -> None:
        self.part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        if len(self.header_field) + (end - start) > MAX_HEADER_NAME_BYTES:
            raise ApiError(400, "invalid_multipart", f"a multipart header name is longer than {MAX_HEADER_NAME_BYTES} "
                           "bytes; send each file as an ordinary form-data part")
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        if len(self.header_value) + (end - start) > MAX_HEADER_VALUE_BYTES:
            raise ApiError(400, "invalid_multipart", f"a multipart header is longer than {MAX_HEADER_VALUE_BYTES} bytes")
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        if len(self.part.headers) >= MAX_PART_HEADERS:
            raise ApiError(400, "invalid_multipart", f"a multipart part has more than {MAX_PART_HEADERS} headers")
        self.part.headers[bytes(self.header_field).lower()] = bytes(self.header_value)
        self.header_field = bytearray()
        self.header_value = bytearray()

    def on_headers_finished(self) -> None:
        part = self.part
        disposition = part.headers.get(b"content-disposition", b"")
        _, options = parse_options_header(disposition)
        name = options.get(b"name")
        if name is None:
            raise ApiError(400, "invalid_multipart", 'a multipart part has no Content-Disposition "name"')
        part.field_name = name.decode("utf-8", "replace")
        if b"filename" in options:
            if part.field_name not in FILE_FIELDS:
                raise ApiError(422, "validation_error", f"unexpected file field '{part.field_name}'; "
                               "send files in the 'files' field")
            self.n_files += 1
            if self.n_files > self.max_files:
                raise ApiError(413, "too_many_files",
                               f"at most {self.max_files} files per request; split the upload",
                               max_files=self.max_files)
            part.filename = display_name(options[b"filename"].decode("utf-8", "replace"))
            part.tmp = self.dest / f"{self.n_files:03d}.part"
            part.fh = _open_part(part.tmp)
        elif part.field_name not in TEXT_FIELDS:
            raise ApiError(422, "validation_error",
                           f"unexpected form field '{part.field_name}'; allowed: files, metadata, force, "
                           "password")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.part
        chunk = data[start:end]
        if part.fh is None:
            if len(part.data) + len(chunk) > MAX_FIELD_BYTES:
                raise ApiError(413, "field_too_large", f"form field '{part.field_name}' is over "
                               f"{MAX_FIELD_BYTES} bytes")
            part.data.extend(chunk)
            return
        part.size += len(chunk)
        self.total += len(chunk)
        if self.total > self.max_total:
            raise ApiError(413, "upload_too_large", f"the upload is over {self.max_total} bytes; "
                           "send fewer or smaller files", max_upload_bytes=self.max_total)
        if part.size > self.max_file:
            raise ApiError(413, "file_too_large", f"'{part.filename}' is over {self.max_file} bytes",
                           file=part.filename, max_file_bytes=self.max_file)
        if len(part.head) < SNIFF_BYTES:
            part.head.extend(chunk[: SNIFF_BYTES - len(part.head)])
            if len(part.head) >= SNIFF_BYTES:
                self._check_type(part)
        part.hash.update(chunk)
        part.fh.write(chunk)

    def on_part_end(self) -> None:
        part = self.part
        if part.fh is None:
            self.fields[part.field_name] = part.data.decode("utf-8", "replace")
            return
        part.fh.close()
        part.fh = None
        if part.kind is None:
            self._check_type(part)
        assert part.tmp is not None and part.filename is not None and part.kind is not None
        if part.kind in ("zip", "cfb") or kind_of(part.kind) == "office":
            part.kind = sniff_file(part.tmp, part.filename, bytes(part.head))
        final = self.dest / f"{self.n_files:03d}_{safe_stem(part.filename)}.{_EXT[part.kind]}"
        assert final.parent == self.dest  # nothing from the client can leave the job folder
        part.tmp.rename(final)
        self.files.append(SavedFile(part.filename, final, part.size, part.hash.hexdigest(), part.kind))

    def on_end(self) -> None:
        pass

    def _check_type(self, part: _Part) -> None:
        if part.size == 0:
            raise ApiError(415, "unsupported_file", f"'{part.filename}' is empty", file=part.filename)
        kind = sniff_type(bytes(part.head))
        if kind is None:
            raise ApiError(415, "unsupported_file", f"'{part.filename}' is not {ACCEPTED} "
                           "(checked by content, not by name)", file=part.filename)
        part.kind = kind

    def abort(self) -> None:
        if self.part.fh is not None:
            fh, self.part.fh = self.part.fh, None
            with contextlib.suppress(OSError):  # a full disk can fail the final flush; the folder goes anyway
                fh.close()


async def receive_upload(request: Request, dest: Path, settings: Settings) -> UploadForm:
    """Stream a ``multipart/form-data`` request into ``dest`` (created; removed again on any error).

    Fields: ``files`` (one or more files), ``metadata`` (JSON object, optional), ``force`` (bool),
    ``password`` (optional: tried on the encrypted PDFs of this upload; kept in memory only)."""
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "send the files as multipart/form-data "
                       "(field 'files')")
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "invalid_multipart", "multipart/form-data without a boundary")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > settings.max_upload_bytes + MAX_FORM_OVERHEAD:
        raise ApiError(413, "upload_too_large", f"the upload is over {settings.max_upload_bytes} bytes; "
                       "send fewer or smaller files", max_upload_bytes=settings.max_upload_bytes)
    dest.mkdir(parents=True, exist_ok=False)
    form = _StreamingForm(dest, settings)
    callbacks = {name: getattr(form, name) for name in (
        "on_part_begin", "on_part_data", "on_part_end", "on_header_field", "on_header_value",
        "on_header_end", "on_headers_finished", "on_end")}
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > settings.max_upload_bytes + MAX_FORM_OVERHEAD:
                raise ApiError(413, "upload_too_large", f"the upload is over {settings.max_upload_bytes} "
                               "bytes; send fewer or smaller files", max_upload_bytes=settings.max_upload_bytes)
            parser.write(chunk)
        parser.finalize()
        if not form.files:
            raise ApiError(422, "validation_error", "no files in the request; send them in the 'files' field")
        result = UploadForm(files=form.files)
        result.metadata = _parse_metadata(form.fields.get("metadata"))
        result.force = _parse_bool(form.fields.get("force"), "force")
        result.password = form.fields.get("password") or None
        return result
    except ApiError:
        form.abort()
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except OSError as exc:
        form.abort()
        shutil.rmtree(dest, ignore_errors=True)
        raise storage_error(exc) from exc
    except Exception as exc:
        form.abort()
        shutil.rmtree(dest, ignore_errors=True)
        from python_multipart.exceptions import FormParserError

        if isinstance(exc, FormParserError):
            raise ApiError(400, "invalid_multipart", f"the multipart body could not be parsed ({exc})") from exc
        raise
    except BaseException:
        form.abort()
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _parse_metadata(raw: str | None) -> dict[str, Any]:
    if raw is None or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ApiError(422, "validation_error", "metadata must be a JSON object") from exc
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and (v is None or isinstance(v, (str, int, float, bool))) for k, v in value.items()
    ):
        raise ApiError(422, "validation_error", "metadata must be a JSON object of scalar values")
    return value


def _parse_bool(raw: str | None, name: str) -> bool:
    if raw is None or raw.strip() == "":
        return False
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ApiError(422, "validation_error", f"{name} must be true or false")
