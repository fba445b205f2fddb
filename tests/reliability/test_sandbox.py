"""The sandbox for untrusted files (``Settings.isolate_rendering``, on by default: these tests use the default):
the killable rendering child (``ingest/sandbox.py``) and the limits every parsing child runs under
(``ingest/isolation.py``: memory, CPU time, file size, no network), for rendering, OCR and office conversion."""

from __future__ import annotations

import os
from pathlib import Path

import pagelens.ingest.sandbox as sandbox
import pytest
from conftest import REAL_PDFS
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
