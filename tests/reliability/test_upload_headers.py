"""Multipart part headers are bounded (issue 26.5, ``api/uploads.py``): header names, values and the number
of headers per part are capped (a 400 naming the limit, before any growth), plus a bounded hypothesis pass
over the part-header parsing with random names, values, counts and chunkings. Fast: no models, no server."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pagelens.api.uploads import MAX_HEADER_NAME_BYTES, MAX_PART_HEADERS, UploadForm, receive_upload

from pagelens.core.errors import ApiError
from pagelens.core.settings import Settings

BOUNDARY = b"----pagelensfuzz"
PDF = b"%PDF-1.4\n" + b"1 0 obj<<>>endobj\n" * 80 + b"%%EOF\n"
SETTINGS = Settings(_env_file=None, data_dir=Path("/nonexistent-unused"))  # type: ignore[call-arg]


class _Request:
    """What ``receive_upload`` reads of a Starlette request: headers and the body stream in chunks."""

    def __init__(self, body: bytes, chunk: int) -> None:
        self.headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY.decode()}",
                        "content-length": str(len(body))}
        self._body, self._chunk = body, max(1, chunk)

    async def stream(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self._body), self._chunk):
            yield self._body[i:i + self._chunk]


def _body(headers: list[tuple[bytes, bytes]], data: bytes = PDF) -> bytes:
    head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return b"--" + BOUNDARY + b"\r\n" + head + b"\r\n" + data + b"\r\n--" + BOUNDARY + b"--\r\n"


def _upload(body: bytes, dest: Path, chunk: int = 65536) -> UploadForm:
    return asyncio.run(receive_upload(_Request(body, chunk), dest, SETTINGS))  # type: ignore[arg-type]


DISPOSITION = (b"Content-Disposition", b'form-data; name="files"; filename="a.pdf"')


def test_an_ordinary_part_is_saved(tmp_path: Path) -> None:
    form = _upload(_body([DISPOSITION, (b"Content-Type", b"application/pdf")]), tmp_path / "d", chunk=7)
    (saved,) = form.files
    assert saved.path.read_bytes() == PDF and saved.name == "a.pdf"


@pytest.mark.parametrize("chunk", [1, 13, 65536])
def test_a_huge_header_name_is_refused_early(tmp_path: Path, chunk: int) -> None:
    dest = tmp_path / f"d{chunk}"
    body = _body([DISPOSITION, (b"X" * 200_000, b"v")])
    with pytest.raises(ApiError) as info:
        _upload(body, dest, chunk=chunk)
    assert info.value.http_status == 400 and info.value.code == "invalid_multipart"
    if chunk < 1000:  # streamed in pieces: our cap (python-multipart's own only sees one write at a time)
        assert f"longer than {MAX_HEADER_NAME_BYTES} bytes" in info.value.message
    assert not dest.exists()  # nothing kept


def test_too_many_headers_and_a_huge_value_are_refused(tmp_path: Path) -> None:
    many = [DISPOSITION, *((f"X-H{i}".encode(), b"v") for i in range(MAX_PART_HEADERS))]
    for chunk in (3, 65536):  # ours or python-multipart's own cap (newer releases), with what was exceeded
        with pytest.raises(ApiError, match=f"more than {MAX_PART_HEADERS} headers|header count exceeded") as info:
            _upload(_body(many), tmp_path / f"a{chunk}", chunk=chunk)
        assert info.value.http_status == 400 and info.value.code == "invalid_multipart"
        with pytest.raises(ApiError, match="header is longer than|header size exceeded"):
            _upload(_body([DISPOSITION, (b"X-Big", b"v" * 40_000)]), tmp_path / f"b{chunk}", chunk=chunk)
    assert len(many) == MAX_PART_HEADERS + 1
    form = _upload(_body(many[:MAX_PART_HEADERS]), tmp_path / "c")  # at the cap: accepted
    assert len(form.files) == 1


FUZZ = hsettings(max_examples=int(os.environ.get("PAGELENS_FUZZ_EXAMPLES", "200")), deadline=None,
                 derandomize=not os.environ.get("PAGELENS_FUZZ_RANDOM"), database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
names = st.one_of(st.binary(min_size=0, max_size=40), st.sampled_from([b"Content-Type", b"content-disposition"]),
                  st.integers(1, 3 * MAX_HEADER_NAME_BYTES).map(lambda n: b"N" * n))
values = st.one_of(st.binary(max_size=60), st.sampled_from([b'form-data; name="files"; filename="x.pdf"',
                                                            b'form-data; name="metadata"', b"text/plain"]))


@FUZZ
@given(headers=st.lists(st.tuples(names, values), max_size=MAX_PART_HEADERS + 4), with_disposition=st.booleans(),
       chunk=st.integers(1, 4096), data=st.one_of(st.just(PDF), st.binary(max_size=64)))
def test_fuzz_part_headers(tmp_path_factory: Any, headers: list[tuple[bytes, bytes]], with_disposition: bool,
                           chunk: int, data: bytes) -> None:
    """Any part headers: an UploadForm or an ``ApiError`` with a 4xx status; never another exception, never
    a header name past the cap accepted, never files left behind after an error."""
    dest = tmp_path_factory.mktemp("fz") / "d"
    parts = ([DISPOSITION] if with_disposition else []) + headers
    try:
        form = _upload(_body(parts, data), dest, chunk=chunk)
    except ApiError as exc:
        assert 400 <= exc.http_status < 500, exc
        assert not dest.exists()
        return
    assert all(len(n) <= MAX_HEADER_NAME_BYTES for n, _ in parts if b"\r" not in n and b"\n" not in n and b":" not in n)
    assert len(parts) <= MAX_PART_HEADERS or any(b"\r" in n + v or b"\n" in n + v or b":" in n for n, v in parts)
    assert all(f.path.is_file() for f in form.files)
