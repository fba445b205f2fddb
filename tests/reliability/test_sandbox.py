"""The sandbox for untrusted files (``Settings.isolate_rendering``, on by default: these tests use the default):
the killable rendering child (``ingest/sandbox.py``) and the limits every parsing child runs under
(``ingest/isolation.py``: memory, CPU time, file size, no network), for rendering, OCR and office conversion."""

from __future__ import annotations

import os
from pathlib import Path

import pagelens.ingest.sandbox as sandbox
import pytest
from conftest import HOSTILE_PDFS, REAL_PDFS
from pagelens.ingest.fs_guard import landlock_abi
from pagelens.ingest.loader import open_document

TWO_PAGES = REAL_PDFS / "fr_demolition_minutes_2023.pdf"
MANY = REAL_PDFS / "rpt_federal_register_2020-17221.pdf"


def test_page_past_the_time_limit_is_killed_and_later_pages_render(settings_factory, monkeypatch) -> None:
    monkeypatch.setattr(sandbox, "TEST_SLEEP_PAGES", {2: 30.0})
    settings = settings_factory(page_longest_edge=128, render_timeout_s=2)
    doc = open_document(MANY, settings)
    pages = list(doc.pages())  # the sleeping page is killed (the error below), not waited for
    assert [p.page_no for p in pages] == [1, *range(3, doc.page_count + 1)]
    (err,) = doc.page_errors
    assert err.page == 2 and MANY.name in str(err) and "page 2" in str(err), str(err)
    assert "time limit of 2 s" in str(err) and "PAGELENS_RENDER_TIMEOUT_S" in str(err)


def test_per_document_limit_interrupts_a_stuck_page(settings_factory, monkeypatch) -> None:
    monkeypatch.setattr(sandbox, "TEST_SLEEP_PAGES", {1: 30.0})
    settings = settings_factory(page_longest_edge=128, render_timeout_s=0,
                                max_seconds_per_document=1)
    doc = open_document(TWO_PAGES, settings)
    with pytest.raises(Exception) as info:  # page 1 killed at 1 s, then the document is over its limit
        list(doc.pages())
    assert doc.page_errors[0].page == 1 and "per document" in str(doc.page_errors[0])
    assert TWO_PAGES.name in str(info.value)


def test_memory_limit_turns_an_oversize_render_into_an_error(settings_factory) -> None:
    settings = settings_factory(page_longest_edge=12000, max_pixels_per_page=200_000_000,
                                render_memory_mb=600)
    doc = open_document(TWO_PAGES, settings)
    assert list(doc.pages()) == []
    assert [e.page for e in doc.page_errors] == [1, 2]
    for err in doc.page_errors:
        assert TWO_PAGES.name in str(err) and "memory limit of 600 MiB" in str(err), str(err)
    ok = open_document(TWO_PAGES, settings_factory(page_longest_edge=256, 
                                                   render_memory_mb=600))
    assert len(list(ok.pages())) == 2 and not ok.page_errors


@pytest.mark.parametrize("name", ["inv_qualityhosting_de.pdf", "scan_huckfinn_page_en.pdf",
                                  "ja_kampo_gazette_vertical.pdf", "fr_demolition_minutes_2023.pdf"])
def test_isolated_renders_are_identical(settings_factory, name) -> None:
    path = REAL_PDFS / name
    inproc = open_document(path, settings_factory(page_longest_edge=512, isolate_rendering=False))
    isolated = open_document(path, settings_factory(page_longest_edge=512))
    a, b = list(inproc.pages()), list(isolated.pages())
    assert len(a) == len(b) == inproc.page_count
    for pa, pb in zip(a, b, strict=True):
        assert pa.size == pb.size and pa.image.tobytes() == pb.image.tobytes(), (name, pa.page_no)
        assert pa.text == pb.text


@pytest.mark.slow
def test_all_real_pdfs_render_isolated(settings_factory) -> None:
    settings = settings_factory(page_longest_edge=256)
    pdfs = sorted(REAL_PDFS.glob("*.pdf"))
    assert len(pdfs) == 30
    for path in pdfs:
        doc = open_document(path, settings)
        assert sum(1 for _ in doc.pages()) == doc.page_count and not doc.page_errors, path.name


def _limits_of(pid: int) -> dict[str, str]:
    """/proc/<pid>/limits: {'Max address space': soft limit, ...}."""
    out = {}
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]:
        name = line[:26].strip()
        out[name] = line[26:].split()[0]
    return out


def test_the_sandbox_is_on_by_default_and_the_child_is_confined(settings_factory, monkeypatch) -> None:
    from pagelens.ingest.isolation import network_prefix

    from pagelens.core.settings import Settings

    assert Settings(_env_file=None).isolate_rendering is True  # type: ignore[call-arg]
    monkeypatch.setattr(sandbox, "_idle", [])
    settings = settings_factory(page_longest_edge=128, render_memory_mb=700, render_cpu_s=40,
                                max_file_bytes=5_000_000)
    doc = open_document(TWO_PAGES, settings)
    assert len(list(doc.pages())) == 2 and not doc.page_errors
    ((limits, child),) = sandbox._idle  # the child kept for the next document
    try:
        assert limits == sandbox.ChildLimits(700, 40.0, 5_000_000, True, read_only=True)
        if landlock_abi() > 0:  # the read-only view (ingest/fs_guard.py) was applied before the child's exec
            assert "NoNewPrivs:\t1" in Path(f"/proc/{child.pid}/status").read_text()
        got = _limits_of(child.pid)
        assert got["Max address space"] == str(700 * 1024 * 1024)
        assert got["Max file size"] == "5000000"
        # this document's 40 s on top of what the child had used (its imports): soft limit = used + 40, rounded up
        fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
        used_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        assert got["Max cpu time"] != "unlimited" and 40 <= int(got["Max cpu time"]) <= used_s + 42
        if network_prefix():  # this system allows a network namespace: the child has its own, empty one
            assert os.readlink(f"/proc/{child.pid}/ns/net") != os.readlink("/proc/self/ns/net")
        else:
            pytest.skip("no network namespace on this system (unshare --net refused): documented fallback")
    finally:
        sandbox.shutdown_idle()


def test_ocr_children_run_confined() -> None:
    """Tesseract runs through the same limits (``pagelens.ingest.ocr._run``, a generic runner)."""
    from pagelens.ingest.isolation import network_prefix
    from pagelens.ingest.ocr import OcrSandbox, _run

    from pagelens.core.settings import Settings

    box = OcrSandbox.of(Settings(_env_file=None, render_memory_mb=900, render_cpu_s=30))  # type: ignore[call-arg]
    assert box.no_network and box.memory_mb == 900 and box.cpu_s == 30.0
    proc = _run(["sh", "-c", "readlink /proc/self/ns/net; ulimit -v; ulimit -t"], b"", 10, box)
    netns, memory_kib, cpu = proc.stdout.decode().split()
    assert memory_kib == str(900 * 1024) and cpu == "30"
    if network_prefix():
        assert netns != os.readlink("/proc/self/ns/net")
    assert OcrSandbox.of(Settings(_env_file=None, isolate_rendering=False)) == OcrSandbox()  # type: ignore[call-arg]


def test_ocr_children_write_only_in_their_own_temp_folder(tmp_path: Path) -> None:
    from pagelens.ingest.ocr import OcrSandbox, _run

    from pagelens.core.settings import Settings

    if landlock_abi() <= 0:
        pytest.skip("this kernel has no Landlock: the documented fallback (a warning) applies")
    box = OcrSandbox.of(Settings(_env_file=None))  # type: ignore[call-arg]
    assert box.read_only
    outside = tmp_path / "planted.txt"
    proc = _run(["sh", "-c", f"echo x > {outside} 2>/dev/null && echo wrote || echo denied; "
                 'echo y > "$TMPDIR/scratch" && echo inside; cat /etc/hostname >/dev/null && echo reads'], b"", 10, box)
    assert proc.stdout.decode().split() == ["denied", "inside", "reads"]
    assert not outside.exists()


def test_a_cpu_bound_child_is_stopped_by_the_cpu_limit(monkeypatch) -> None:
    """RLIMIT_CPU kills a spinning child (SIGXCPU); the render worker names the limit."""
    import signal
    import subprocess

    from pagelens.ingest.isolation import child_limits

    proc = subprocess.run(["sh", "-c", "while :; do :; done"], preexec_fn=child_limits(0, 1, 0), timeout=60,
                          check=False)
    assert proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL)


def _outcome(path: Path, settings) -> str:  # noqa: ANN001
    """What opening ``path`` gives: its page count, or the error's type and message."""
    try:
        return f"{open_document(path, settings).page_count} pages"
    except Exception as exc:  # noqa: BLE001 - the message is what is compared
        return f"{type(exc).__name__}: {exc}"


def test_the_pdf_is_opened_in_the_child_never_in_this_process(settings_factory, monkeypatch) -> None:
    """Not even the first parse (validation, password, page count) of an untrusted PDF runs in the server: with
    this process' PyMuPDF made unusable, documents still open, unlock and render, and every hostile PDF gives the
    same page count or the same error as an in-process open."""
    import pagelens.ingest.pdf as pdf

    hostile = sorted(HOSTILE_PDFS.glob("*.pdf"))
    assert len(hostile) >= 20
    trusted = settings_factory(page_longest_edge=128, isolate_rendering=False)
    expected = {path.name: _outcome(path, trusted) for path in hostile}

    def no_pymupdf_here() -> None:
        raise AssertionError("PyMuPDF was used in the server process")

    monkeypatch.setattr(pdf, "_pymupdf", no_pymupdf_here)
    settings = settings_factory(page_longest_edge=128)
    try:
        got = {path.name: _outcome(path, settings) for path in hostile}
        assert got == expected
        assert expected["h_truncated_60pct_tracemonkey.pdf"].startswith("IngestError") and \
            "damaged or truncated" in expected["h_truncated_60pct_tracemonkey.pdf"]
        assert "EncryptedDocumentError" in expected["h_enc_rc4_40_pw_foo.pdf"]
        doc = open_document(HOSTILE_PDFS / "h_enc_rc4_40_pw_foo.pdf", settings, password="foo")
        assert len(list(doc.pages())) == doc.page_count >= 1 and not doc.page_errors
        doc = open_document(TWO_PAGES, settings)
        assert doc.page_count == 2 and [p.page_no for p in doc.pages()] == [1, 2]
    finally:
        sandbox.shutdown_idle()


def test_an_open_that_hangs_is_killed_at_the_time_limit(settings_factory, monkeypatch) -> None:
    from pagelens.core.errors import IngestError

    monkeypatch.setattr(sandbox, "TEST_SLEEP_PAGES", {0: 30.0})  # 0: the child sleeps before answering the open
    settings = settings_factory(page_longest_edge=128, render_timeout_s=1)
    with pytest.raises(IngestError) as info:
        open_document(TWO_PAGES, settings)
    message = str(info.value)
    assert TWO_PAGES.name in message and "could not be opened in the sandbox" in message, message
    assert "time limit of 1 s" in message and "PAGELENS_RENDER_TIMEOUT_S" in message, message
    monkeypatch.setattr(sandbox, "TEST_SLEEP_PAGES", {})
    assert open_document(TWO_PAGES, settings).page_count == 2  # a fresh child opens the next one


class _Payload:
    def __reduce__(self):  # noqa: ANN204 - what a compromised child could send: a call run on unpickling
        return (os.getpid, ())


def test_the_parent_reads_plain_data_only_from_a_child() -> None:
    """A child that parsed a hostile file is not trusted: a reply that names a class or function (pickle's way
    to run code on loading) is refused, and a reply larger than the caller's limit is not read."""
    import pickle

    def roundtrip(obj: object, limit: int = sandbox.MAX_MESSAGE) -> object:
        read, write = os.pipe()
        try:
            sandbox._write_msg(write, obj)
            return sandbox._read_msg(read, None, limit)
        finally:
            os.close(read)
            os.close(write)

    plain = ("ok", (3, 4), (3, 4), b"\x00" * 36, "text", None, [(0.1, 0.2, 0.3, 0.4, "word")])
    assert roundtrip(plain) == plain
    assert roundtrip({"page_count": 2, "messages": ["x"], "password_index": None}) == \
        {"page_count": 2, "messages": ["x"], "password_index": None}
    with pytest.raises(pickle.UnpicklingError, match="posix.getpid|os.getpid"):
        roundtrip(("ok", _Payload()))
    with pytest.raises(EOFError):
        roundtrip(b"x" * 1000, limit=100)
    assert sandbox.reply_limit(4_000_000) > 3 * 4_000_000  # a page at the pixel cap fits


def _image_outcome(path: Path, settings) -> list[str]:  # noqa: ANN001
    """What indexing an image file gives: per page its size and pixels' digest, per page error its message;
    or the error that refused the file."""
    import hashlib

    try:
        doc = open_document(path, settings)
        pages = [f"page {p.page_no} {p.size} {p.text_source} {hashlib.sha256(p.image.tobytes()).hexdigest()[:16]}"
                 for p in doc.pages()]
        return [f"{doc.page_count} pages", *pages, *(str(e) for e in doc.page_errors)]
    except Exception as exc:  # noqa: BLE001 - the message is what is compared
        return [f"{type(exc).__name__}: {exc}"]


def test_image_files_are_decoded_in_the_child_never_in_this_process(settings_factory, monkeypatch,
                                                                     tmp_path: Path) -> None:
    """Pillow parses image files in the sandbox too: with this process' image decoding made unusable, every
    kind of image (alpha, 16-bit, EXIF-rotated JPEG, multi-frame TIFF, a truncated PNG, headers over the
    pixel and page limits) gives the same pages, pixels and errors as in-process."""
    import pagelens.ingest.images as images
    from PIL import Image
    from test_ingest import png_bytes

    files = {"alpha.png": lambda p: Image.new("RGBA", (100, 50), (0, 0, 0, 0)).save(p),
             "deep.png": lambda p: Image.new("I;16", (64, 32), 40000).save(p),
             "trunc.png": lambda p: p.write_bytes(png_bytes(300, 200)),
             "bomb.png": lambda p: p.write_bytes(png_bytes(10_000, 10_000)),
             "garbage.png": lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)}
    exif = Image.Exif()
    exif[0x0112] = 6
    files["photo.jpg"] = lambda p: Image.new("RGB", (900, 400), "blue").save(p, exif=exif.tobytes(), quality=90)
    frames = [Image.new("L", (700, 900), 255), Image.new("RGB", (900, 700), "red"), Image.new("1", (300, 200))]
    files["scan.tif"] = lambda p: frames[0].save(p, save_all=True, append_images=frames[1:])
    paths = []
    for name, write in files.items():
        write(tmp_path / name)
        paths.append(tmp_path / name)
    trusted = settings_factory(page_longest_edge=256, isolate_rendering=False, ocr="off")
    expected = {p.name: _image_outcome(p, trusted) for p in paths}
    assert expected["scan.tif"][0] == "3 pages" and len(expected["scan.tif"]) == 4
    assert "page 1" in expected["trunc.png"][-1] and expected["bomb.png"][0].startswith("DocumentTooLargeError")
    assert expected["garbage.png"][0].startswith(("IngestError", "UnsupportedFileError"))

    def no_pillow_here(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("an image file was parsed in the server process")

    monkeypatch.setattr(images, "_open", no_pillow_here)
    settings = settings_factory(page_longest_edge=256, ocr="off")
    try:
        assert {p.name: _image_outcome(p, settings) for p in paths} == expected
        tight = settings_factory(page_longest_edge=256, ocr="off", max_pages_per_document=2)
        (refused,) = _image_outcome(tmp_path / "scan.tif", tight)
        assert refused.startswith("DocumentTooLargeError") and "3 pages" in refused and "scan.tif" in refused
    finally:
        sandbox.shutdown_idle()
