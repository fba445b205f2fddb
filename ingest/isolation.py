"""What every child process that parses an untrusted file runs under (``Settings.isolate_rendering``, on by
default): the PDF rendering child (``pagelens.ingest.sandbox``), LibreOffice (``pagelens.ingest.office``)
and Tesseract (``pagelens.ingest.ocr``).

- no network: a new, empty network namespace (``unshare --net``, util-linux) when the system allows it,
  probed once per process; when it does not (no user namespaces, a locked-down container) the children
  run with the host's network and one warning says how to get isolation;
- resource limits set between fork and exec (``child_limits``): address space (``RLIMIT_AS``, MiB), CPU
  time (``RLIMIT_CPU``, s; past it the kernel kills the child with SIGXCPU) and the size of any file it
  writes (``RLIMIT_FSIZE``, bytes; past it SIGXFSZ);
- a read-only view of the filesystem but for the child's work dir (``writable`` of ``child_limits``:
  ``pagelens.ingest.fs_guard``, Landlock; none for the rendering child, the conversion's temp folder and
  profile for LibreOffice, a temp folder for Tesseract), which also closes TCP to it where the kernel allows;
- a scrubbed environment is each caller's (LibreOffice), the LibreOffice profile is fresh per document.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from pagelens.ingest.fs_guard import write_guard

log = logging.getLogger(__name__)

_lock = threading.Lock()
_netns: list[list[str]] = []  # the probed prefix ([] = none possible), once per process
_warned: set[str] = set()


def network_prefix() -> list[str]:
    """Command prefix that runs a program in a new network namespace (no network at all), [] when this
    system does not allow it (then warned once)."""
    with _lock:
        if _netns:
            return list(_netns[0])
    prefix: list[str] = []
    unshare = shutil.which("unshare")
    if unshare:
        for candidate in ([unshare, "--net"], [unshare, "--net", "--map-root-user"]):
            try:
                ok = subprocess.run([*candidate, "true"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, timeout=10, check=False).returncode == 0
            except (OSError, subprocess.SubprocessError):
                ok = False
            if ok:
                prefix = candidate
                break
    with _lock:
        _netns[:] = [prefix]
        first = "netns" not in _warned
        _warned.add("netns")
    if not prefix and first:
        log.warning("untrusted files are parsed by child processes WITH network access: this system does not "
                    "allow a network namespace (unshare --net). To parse them without network, run pagelens where "
                    "unprivileged user namespaces are enabled (sysctl kernel.unprivileged_userns_clone=1), as "
                    "root, or in a container started without network")
    return prefix


def child_limits(memory_mb: int, cpu_s: float, max_bytes: int, writable: Sequence[Path] | None = None,
                 sockets_in: Sequence[Path] = ()) -> Callable[[], None] | None:
    """A ``preexec_fn`` that caps the child's address space (MiB), CPU seconds and written-file size
    (bytes), 0 leaving that one unlimited, and, unless ``writable`` is None, lets it write only under the
    ``writable`` folders (``pagelens.ingest.fs_guard.write_guard``: a read-only view of the rest, no TCP;
    Unix socket files may also be made under ``sockets_in``); None when there is nothing to apply."""
    guard = write_guard(writable, sockets_in) if writable is not None else None
    if memory_mb <= 0 and cpu_s <= 0 and max_bytes <= 0 and guard is None:
        return None

    def apply() -> None:  # pragma: no cover - runs in the child between fork and exec
        for kind, value in ((resource.RLIMIT_AS, memory_mb * 1024 * 1024), (resource.RLIMIT_CPU, int(cpu_s + 0.999)),
                            (resource.RLIMIT_FSIZE, max_bytes)):
            if value > 0:
                with contextlib.suppress(ValueError, OSError):
                    resource.setrlimit(kind, (value, value))
        if guard is not None:
            guard()

    return apply


def limit_prefix(memory_mb: int, cpu_s: float, max_bytes: int) -> list[str]:
    """The same limits as a ``prlimit`` (util-linux) command prefix, which also holds for every process the
    program starts after exec; [] when there is no prlimit (use ``child_limits``)."""
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        return []
    prefix = [prlimit]
    if memory_mb > 0:
        prefix.append(f"--as={memory_mb * 1024 * 1024}")
    if cpu_s > 0:
        prefix.append(f"--cpu={int(cpu_s + 0.999)}")
    if max_bytes > 0:
        prefix.append(f"--fsize={max_bytes}")
    return [*prefix, "--"]
