"""Shared helpers of the benchmark scripts: device label, timing (warm-up, p50/p95), markdown tables.

Every figure is printed as one row: figure | ours | baseline | ratio | device | date, where ratio is
``baseline / ours`` for times (higher = ours faster) and ``ours / baseline`` for rates and recalls
(see ``Row.ratio``). Nothing here imports torch at module import time.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/x.py` from the repo root
    sys.path.insert(0, str(ROOT))

# The benches' data folder (real PDFs in pdfs/real, SmolVLM configs in models/): not part of the repository;
# PAGELENS_SHARED names it (default: a folder "shared" beside the checkout).
SHARED = Path(os.environ.get("PAGELENS_SHARED", ROOT.parent / "shared"))
SHARED_SMOLVLM = SHARED / "models" / "SmolVLM-256M-Instruct"
REAL_PDFS = SHARED / "pdfs" / "real"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


def gpu_name() -> str | None:
    """CUDA device name, or None when torch or CUDA is unavailable."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(0)


def device_label(gpu: bool = False) -> str:
    """'<CPU model>, N cores' (+ ' / <GPU>' when ``gpu`` and one is present)."""
    label = f"{cpu_model()}, {cpu_cores()} cores"
    if gpu:
        name = gpu_name()
        if name:
            label = f"{name} ({label})"
    return label


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
        return f"{one:.2f}/{five:.2f}/{fifteen:.2f}"
    except OSError:  # pragma: no cover
        return "n/a"


def today() -> str:
    return os.environ.get("BENCH_DATE") or _dt.date.today().isoformat()


def skip(section: str, reason: str) -> None:
    """Print a clear skip line (GPU parts on a machine without CUDA)."""
    print(f"SKIP {section}: {reason}", flush=True)


def require_cuda(section: str) -> bool:
    """True when CUDA is usable; else prints a skip message and returns False."""
    try:
        import torch
    except ImportError:
        skip(section, "torch is not installed")
        return False
    if not torch.cuda.is_available():
        skip(section, "torch.cuda is not available on this machine (run it on a lent GPU, see bench/README.md)")
        return False
    return True


# --- timing ----------------------------------------------------------------------------------


@dataclass
class Timing:
    samples: list[float]

    @property
    def p50(self) -> float:
        return percentile(self.samples, 50)

    @property
    def p95(self) -> float:
        return percentile(self.samples, 95)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default) without numpy."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def sync_cuda() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
    except ImportError:
        pass


def time_calls(fn: Callable[[Any], Any], args: Sequence[Any], warmup: int = 2, cuda: bool = False) -> tuple[Timing, list[Any]]:
    """Call ``fn(a)`` for each ``a`` in ``args`` (after ``warmup`` untimed calls on the first ones);
    returns the per-call times (s) and the results."""
    for a in list(args)[:warmup]:
        fn(a)
    times: list[float] = []
    results: list[Any] = []
    for a in args:
        if cuda:
            sync_cuda()
        t0 = time.perf_counter()
        r = fn(a)
        if cuda:
            sync_cuda()
        times.append(time.perf_counter() - t0)
        results.append(r)
    return Timing(times), results


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.s = time.perf_counter() - self.t0


# --- results table ---------------------------------------------------------------------------


@dataclass
class Row:
    figure: str
    ours: float | None
    baseline: float | None
    unit: str = "s"
    higher_is_better: bool = False
    baseline_name: str = ""
    device: str = ""
    note: str = ""

    def ratio(self) -> str:
        if self.ours in (None, 0) or self.baseline in (None, 0):
            return "-"
        r = (self.ours / self.baseline) if self.higher_is_better else (self.baseline / self.ours)
        return f"{r:.2f}x"


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "":
        return f"{value:.3f}"
    return f"{value:.3g} {unit}"


@dataclass
class Table:
    title: str
    rows: list[Row] = field(default_factory=list)

    def add(self, *args: Any, **kwargs: Any) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row

    def markdown(self) -> str:
        date = today()
        lines = [
            f"### {self.title}",
            f"date {date}, load average {load_average()}, python {platform.python_version()}",
            "",
            "| figure | ours | baseline | ratio | device | date |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in self.rows:
            base = fmt(r.baseline, r.unit)
            if r.baseline_name and r.baseline is not None:
                base = f"{base} ({r.baseline_name})"
            fig = r.figure + (f" [{r.note}]" if r.note else "")
            lines.append(
                f"| {fig} | {fmt(r.ours, r.unit)} | {base} | {r.ratio()} | {r.device or device_label()} | {date} |"
            )
        return "\n".join(lines)

    def print(self, out: Path | None = None) -> None:
        text = self.markdown()
        print("\n" + text + "\n", flush=True)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            with out.open("a", encoding="utf-8") as fh:
                fh.write(text + "\n\n")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {load_average()}] {msg}", file=sys.stderr, flush=True)
