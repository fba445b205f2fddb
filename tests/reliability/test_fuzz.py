"""Bounded fuzzing (hypothesis, derandomized): mutated real PDFs through ``open_document`` + ``pages()``,
and random bodies and names through the upload endpoint.

Ingest: every outcome is pages (plus per-page errors) or an ``IngestError``; never another exception
type, never more than ``EXAMPLE_LIMIT_S`` per example (and a hard ``faulthandler`` exit on a real hang).
Inputs that once failed are kept under ``regressions/`` and replayed first.
"""

from __future__ import annotations

import faulthandler
import os
import time
from pathlib import Path

import pytest
from api_helpers import wait_job
from conftest import REAL_PDFS
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pagelens.ingest.loader import open_document

from pagelens.core.errors import IngestError
from pagelens.server import create_app

SEEDS = sorted(p for p in REAL_PDFS.glob("*.pdf") if p.stat().st_size < 80_000)
REGRESSIONS = Path(__file__).parent / "regressions"
EXAMPLE_LIMIT_S = 20.0
HANG_EXIT_S = 120.0
# PAGELENS_FUZZ_EXAMPLES=500 PAGELENS_FUZZ_RANDOM=1 for a longer, non-repeatable campaign
FUZZ = hsettings(max_examples=int(os.environ.get("PAGELENS_FUZZ_EXAMPLES", "30")), deadline=None,
                 derandomize=not os.environ.get("PAGELENS_FUZZ_RANDOM"), database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

mutation = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(0, 255), st.integers(1, 64)),
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("splice"), st.floats(0, 1), st.integers(0, len(SEEDS) - 1), st.floats(0, 1), st.integers(1, 4096)),
    st.tuples(st.just("delete"), st.floats(0, 1), st.integers(1, 2048)),
    st.tuples(st.just("repeat"), st.floats(0, 1), st.integers(1, 2048)),
)


def mutate(data: bytes, ops: list[tuple]) -> bytes:
    buf = bytearray(data)
    for op in ops:
        at = int(op[1] * len(buf)) if buf else 0
        if op[0] == "flip":  # overwrite `count` bytes with one value
            buf[at:at + op[3]] = bytes([op[2]]) * len(buf[at:at + op[3]])
        elif op[0] == "truncate":
            del buf[at:]
        elif op[0] == "splice":  # insert a slice of another real PDF
            other = SEEDS[op[2]].read_bytes()
            start = int(op[3] * len(other))
            buf[at:at] = other[start:start + op[4]]
        elif op[0] == "delete":
            del buf[at:at + op[2]]
        elif op[0] == "repeat":
            buf[at:at] = buf[at:at + op[2]] * 3
    return bytes(buf)


def check_ingest(path: Path, settings) -> str:
    """Open and render ``path``; returns the outcome, raises on a forbidden one."""
    faulthandler.dump_traceback_later(HANG_EXIT_S, exit=True)
    start = time.monotonic()
    try:
        doc = open_document(path, settings)
        pages = list(doc.pages())
        assert len(pages) + len(doc.page_errors) == doc.page_count
        outcome = f"{len(pages)} pages, {len(doc.page_errors)} bad"
    except IngestError as exc:
        assert str(path) in str(exc) or path.name in str(exc)
        outcome = f"IngestError: {exc.reason[:60]}"
    finally:
        faulthandler.cancel_dump_traceback_later()
    elapsed = time.monotonic() - start
    assert elapsed < EXAMPLE_LIMIT_S, f"{path.name} took {elapsed:.1f} s"
    return outcome


@pytest.fixture
def fuzz_settings(settings_factory):
    return settings_factory(page_longest_edge=96, max_pixels_per_page=4_000_000, max_pages_per_document=50)


@pytest.mark.parametrize("regression", sorted(REGRESSIONS.glob("*.pdf")), ids=lambda p: p.name)
def test_regressions(regression: Path, fuzz_settings) -> None:
    check_ingest(regression, fuzz_settings)


@FUZZ
@given(seed=st.integers(0, len(SEEDS) - 1), ops=st.lists(mutation, min_size=1, max_size=4))
def test_fuzz_ingest(seed: int, ops: list[tuple], fuzz_settings, tmp_path_factory) -> None:
    data = mutate(SEEDS[seed].read_bytes(), ops)
    path = tmp_path_factory.mktemp("fz") / "mutated.pdf"
    path.write_bytes(data)
    try:
        check_ingest(path, fuzz_settings)
    except BaseException:
        keep = REGRESSIONS / f"crash_{SEEDS[seed].stem[:20]}_{len(data)}.pdf"
        if len(data) < 200_000 and not keep.exists():
            REGRESSIONS.mkdir(exist_ok=True)
            keep.write_bytes(data)
        raise


names = st.one_of(
    st.text(min_size=0, max_size=40),
    st.sampled_from(["../../etc/passwd", "/abs/x.pdf", "a\x00b.pdf", "C:\\x\\y.pdf", "x\".pdf", "\r\nX: y.pdf",
                     "é" * 300 + ".pdf", ".", "..", "con.pdf"]),
)
bodies = st.one_of(
    st.binary(max_size=2048),
    st.binary(max_size=2048).map(lambda b: b"%PDF-1.4\n" + b),
    st.binary(max_size=2048).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),
    st.binary(max_size=512).map(lambda b: b"\xff\xd8\xff" + b),
    st.tuples(st.integers(0, len(SEEDS) - 1), st.lists(mutation, max_size=2)).map(
        lambda t: mutate(SEEDS[t[0]].read_bytes(), t[1])),
)


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory, tiny_models):
    from pagelens.core.settings import Settings

    settings = Settings(_env_file=None, data_dir=tmp_path_factory.mktemp("fuzzapi"),  # type: ignore[call-arg]
                        retriever_model=str(tiny_models["retriever"]), answer_model=str(tiny_models["answerer"]),
                        page_longest_edge=96, device="cpu", max_upload_bytes=400_000, max_pages_per_document=20)
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/collections", json={"name": "fz"}).status_code == 201
        client.accepted = []  # type: ignore[attr-defined]
        yield client
        for job_id in client.accepted:  # type: ignore[attr-defined]
            job = wait_job(client, job_id, timeout=300)
            assert job["status"] == "done", job
            for doc in job["documents"]:
                assert doc["status"] in ("indexed", "updated", "skipped", "partial", "failed"), doc
                if doc["status"] == "failed":
                    assert doc["errors"] and doc["name"] in doc["errors"][0]["error"], doc


@FUZZ
@given(files=st.lists(st.tuples(names, bodies), min_size=0, max_size=3),
       extra=st.sampled_from([None, "metadata", "force", "bogus"]), value=st.text(max_size=20))
def test_fuzz_upload(files, extra, value, fuzz_client) -> None:
    boundary = b"fzBOUNDARY7"
    parts = []
    for name, data in files:
        raw = name.encode("utf-8", "surrogatepass")
        parts.append(b"--" + boundary + b'\r\nContent-Disposition: form-data; name="files"; filename="' + raw
                     + b'"\r\nContent-Type: application/octet-stream\r\n\r\n' + data + b"\r\n")
    if extra:
        parts.append(b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + extra.encode()
                     + b'"\r\n\r\n' + value.encode("utf-8", "surrogatepass") + b"\r\n")
    body = b"".join(parts) + b"--" + boundary + b"--\r\n"
    r = fuzz_client.post("/v1/collections/fz/documents", content=body,
                         headers={"Content-Type": f"multipart/form-data; boundary={boundary.decode()}"})
    assert r.status_code == 202 or 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    body_json = r.json()
    if r.status_code == 202:
        fuzz_client.accepted.append(body_json["id"])
    else:
        assert set(body_json) == {"error"} and body_json["error"]["message"], body_json
