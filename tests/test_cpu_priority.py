"""Indexing below searches in the CPU scheduler (``pagelens/core/cpu_priority.py``, setting ``indexing_nice``):
the lowered thread and what it starts, the server's job worker and its startup repair."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from pagelens.core.cpu_priority import lower_thread_priority

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")


def nice_of(native_id: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, native_id)


def in_thread(fn):  # noqa: ANN001, ANN201 - run fn in a fresh thread, return its result
    out: dict[str, object] = {}
    t = threading.Thread(target=lambda: out.setdefault("value", fn()))
    t.start()
    t.join()
    return out["value"]


def test_the_calling_thread_alone_is_lowered_and_what_it_starts_inherits() -> None:
    main_before = nice_of(threading.get_native_id())

    def lowered() -> tuple[int | None, int, int, int]:
        base = nice_of(threading.get_native_id())
        got = lower_thread_priority(5)
        child: dict[str, int] = {}
        t = threading.Thread(target=lambda: child.setdefault("nice", nice_of(threading.get_native_id())))
        t.start()
        t.join()
        proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpriority(os.PRIO_PROCESS, 0))"],
                              capture_output=True, text=True, check=True)
        return got, base, child["nice"], int(proc.stdout)

    got, base, child_thread, child_process = in_thread(lowered)
    assert got == min(19, base + 5)
    assert child_thread == got and child_process == got  # the embedder's threads, the sandboxed parsers
    assert nice_of(threading.get_native_id()) == main_before  # the searches' threads keep theirs


def test_zero_changes_nothing_and_the_cap_is_19() -> None:
    def zero() -> tuple[int | None, int, int]:
        before = nice_of(threading.get_native_id())
        return lower_thread_priority(0), before, nice_of(threading.get_native_id())

    got, before, after = in_thread(zero)
    assert got is None and after == before
    assert in_thread(lambda: lower_thread_priority(40)) == 19


def _settings(tmp_path: Path, nice: int):  # noqa: ANN202
    from pagelens.core.settings import Settings

    return Settings(_env_file=None, data_dir=tmp_path / "data", tuning={"indexing_nice": nice})  # type: ignore[call-arg]


def test_the_job_worker_thread_runs_lowered_by_the_setting(tmp_path: Path) -> None:
    from pagelens.app.jobs import JobStore, JobWorker

    settings = _settings(tmp_path, 7)
    base = nice_of(threading.get_native_id())
    worker = JobWorker(JobStore(settings.data_dir), SimpleNamespace(settings=settings), poll_s=0.05)  # type: ignore[arg-type]
    worker.start()
    try:
        native = worker._thread.native_id  # type: ignore[union-attr]
        deadline = time.monotonic() + 10
        while nice_of(native) != min(19, base + 7) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert nice_of(native) == min(19, base + 7)
        assert nice_of(threading.get_native_id()) == base
    finally:
        worker.stop()


def test_the_startup_repair_runs_lowered_and_zero_turns_it_off(tmp_path: Path) -> None:
    from pagelens.app.repair import StartupRepair

    base = nice_of(threading.get_native_id())
    for setting, expected in ((4, min(19, base + 4)), (0, base)):
        seen: list[int] = []

        def optimize(force: bool, stop: threading.Event, seen: list[int] = seen) -> list[object]:
            seen.append(nice_of(threading.get_native_id()))
            return []

        repair = StartupRepair(SimpleNamespace(settings=_settings(tmp_path, setting), optimize=optimize))  # type: ignore[arg-type]
        repair.start()
        assert repair.done.wait(10)
        repair.stop()
        assert seen == [expected]
