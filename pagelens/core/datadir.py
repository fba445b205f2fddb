"""One writer process per data dir: an advisory ``flock`` on ``<data dir>/pagelens.lock``.

Why: Qdrant Edge locks a collection's write-ahead log only while that shard is open in a process, so
nothing stopped ``pagelens delete -c X --all`` from removing the files of a collection a running
``pagelens serve`` had open, two processes from creating the same collection, or from rewriting
``aliases.json`` under each other; and two job workers on one ``jobs.sqlite3`` would both resume the
same interrupted jobs. Who takes the lock:

* every process that opens the embedded (Qdrant Edge) store: ``QdrantEdgeStore`` claims it on its
  first operation that touches collection files (``pagelens.index.stores.factory.open_store`` gives it a
  ``DataDirLock``), and the CLI claims it before loading any model. Read-only commands (search, ask,
  docs, collections) too: Qdrant Edge refuses a second process that opens a collection anyway
  (``Can't init WAL: WouldBlock``), so with the embedded store one process at a time uses a data dir;
* every process that runs the index job worker (``pagelens serve``, ``pagelens ui``), whatever the
  vector store: the job table (``jobs.sqlite3``), the uploads and the in-memory upload passwords belong
  to one worker. With a Qdrant server (``PAGELENS_QDRANT_URL``) the CLI takes no lock: the server
  serialises writes, page images are written atomically by content hash, and ``pagelens index
  --shard I/N`` workers may run side by side.

The lock is ``flock(LOCK_EX | LOCK_NB)``: the kernel drops it when the holder exits or crashes, so there
is no stale lock to clean up (unlike a PID file). The holder writes who it is into the file (role,
pid, command line with secrets redacted, start time, host, URL) so the second process's error names
it. Within one process the lock is shared (reference counted): the API, the UI, the job worker and
the store of one server all hold the same lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pagelens.core.errors import StoreUnavailableError

LOCK_FILE = "pagelens.lock"
_SECRET_WORDS = ("password", "key", "token", "secret")

Purpose = Literal["store", "jobs"]
"""Why a process takes the lock: ``store`` (it uses the embedded Qdrant Edge store) or ``jobs`` (it runs
the index job worker next to a Qdrant server); it decides what the error tells a second process."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds a data dir: written into the lock file by the holder."""

    role: str
    pid: int
    command: str = ""
    started_at: str = ""
    host: str = ""
    url: str = ""

    def describe(self) -> str:
        """``\\`pagelens serve\\` at http://127.0.0.1:8000 (pid 123, since 2026-12-01 10:00:00 UTC)``."""
        where = f" at {self.url}" if self.url else ""
        host = f" on host {self.host}" if self.host and self.host != socket.gethostname() else ""
        since = f", since {self.started_at}" if self.started_at else ""
        return f"`{self.role}`{where} (pid {self.pid}{host}{since})"


class DataDirInUseError(StoreUnavailableError):
    """Another process holds the data dir's lock. An outage for the API (503 + Retry-After) and the
    job worker (the job waits and resumes); the CLI prints the message and exits 2."""

    code = "data_dir_in_use"
    http_status = 503

    def __init__(self, data_dir: Path, holder: LockHolder | None, purpose: Purpose = "store") -> None:
        who = holder.describe() if holder else "another process (it did not record its name)"
        if purpose == "jobs":
            why = ("Its index job worker owns the job table (jobs.sqlite3) and the uploads of this data dir, "
                   "so one server process runs per data dir.")
            fix = ("Stop it, or give this server its own PAGELENS_DATA_DIR (several pagelens servers can share "
                   "one Qdrant server).")
        else:
            why = ("The embedded Qdrant Edge store admits one process at a time: read-only commands such as "
                   "search, ask, docs and collections too, since Qdrant Edge refuses a second process that "
                   "opens a collection.")
            if holder is not None and holder.url:
                use = (f"Do this through the running server instead: its REST API ({holder.url}/docs, e.g. "
                       f"DELETE {holder.url}/v1/collections/NAME) or its web UI ({holder.url}/ui); or stop it")
            else:
                use = "Wait for it to finish or stop it"
            fix = (f"{use}; or give this process another PAGELENS_DATA_DIR, or use a Qdrant server "
                   "(PAGELENS_QDRANT_URL), which several processes can share.")
        super().__init__(f"the data dir {data_dir} is in use by {who}. {why} {fix}", data_dir=str(data_dir),
                         holder_role=holder.role if holder else None, holder_pid=holder.pid if holder else None)
        self.holder = holder


def default_role() -> str:
    """``pagelens <command>`` under the CLI, else the program name (``uvicorn``, ``pytest``...)."""
    argv = sys.argv or [""]
    prog = Path(argv[0]).name
    if prog in ("pagelens", "cli.py", "__main__.py") or prog.startswith("pagelens"):
        command = next((a for a in argv[1:] if not a.startswith("-")), "")
        return f"pagelens {command}".strip()
    return prog or "python"


def redacted_command(argv: list[str] | None = None, limit: int = 300) -> str:
    """The command line with the values of secret-looking options (``--password X``,
    ``--api-key=X``...) replaced by ``***``; at most ``limit`` characters."""
    args = list(sys.argv if argv is None else argv)
    out: list[str] = []
    hide_next = False
    for arg in args:
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        name, eq, _ = arg.partition("=")
        secret = name.startswith("-") and any(w in name.lower() for w in _SECRET_WORDS)
        if secret and eq:
            out.append(f"{name}=***")
        else:
            out.append(arg)
            hide_next = secret
    text = shlex.join(out)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_holder(path: Path) -> LockHolder | None:
    """The holder recorded in the lock file ``path`` (None: empty, unreadable or not ours)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return LockHolder(role=str(data["role"]), pid=int(data["pid"]), command=str(data.get("command", "")),
                          started_at=str(data.get("started_at", "")), host=str(data.get("host", "")),
                          url=str(data.get("url", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass
class _Held:
    fd: int
    count: int
    holder: LockHolder


_registry: dict[str, _Held] = {}  # lock file (real path) -> this process's hold on it
_registry_lock = threading.Lock()


def _forget_in_child() -> None:
    """A forked child does not hold its parent's lock: drop its copies of the descriptors, so that a
    lingering child never keeps the lock after the parent exits."""
    for held in _registry.values():
        with contextlib.suppress(OSError):
            os.close(held.fd)
    _registry.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


class DataDirLock:
    """The lock on ``data_dir/pagelens.lock`` (module docstring). ``acquire`` raises
    ``DataDirInUseError`` naming the other holder; acquire/release pairs nest and are shared by every
    ``DataDirLock`` of this process on the same data dir. Safe to call from several threads.

    role: who this process is (``pagelens serve``); purpose: why it takes the lock (``Purpose``: what the
    error tells a second process to do); url: where this process serves, recorded for the message of a
    second one.
    """

    def __init__(self, data_dir: Path, role: str | None = None, *, purpose: Purpose = "store", url: str = "",
                 wait_s: float = 1.0) -> None:
        self.data_dir = Path(data_dir).expanduser()
        self.path = self.data_dir / LOCK_FILE
        self.role = role or default_role()
        self.purpose: Purpose = purpose
        self.url = url
        self.wait_s = wait_s  # how long to wait for a holder that is just starting or stopping
        self._held = False
        self._mutex = threading.Lock()

    @property
    def held(self) -> bool:
        return self._held

    def _key(self) -> str:
        return os.path.realpath(self.path)

    def acquire(self) -> None:
        """Take (or share, within this process) the lock; a no-op when this object holds it."""
        with self._mutex:
            if self._held:
                return
            with _registry_lock:
                key = self._key()
                held = _registry.get(key)
                if held is not None:
                    held.count += 1
                else:
                    _registry[key] = self._take()
                self._held = True

    def _take(self) -> _Held:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreUnavailableError(
                f"cannot open the lock file {self.path} of the data dir: {exc.strerror or exc}. "
                "PAGELENS_DATA_DIR must be a directory this user can write to.", path=str(self.path)
            ) from exc
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = read_holder(self.path)
                # an empty record: the holder is between its flock and its write, or releasing
                if holder is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                os.close(fd)
                raise DataDirInUseError(self.data_dir, holder, self.purpose) from None
            except BaseException:
                os.close(fd)
                raise
        holder = LockHolder(role=self.role, pid=os.getpid(), command=redacted_command(),
                            started_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
                            host=socket.gethostname(), url=self.url)
        data = json.dumps(asdict(holder), ensure_ascii=False).encode("utf-8")
        with contextlib.suppress(OSError):  # without the record a second process says "another process"
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
        return _Held(fd=fd, count=1, holder=holder)

    def release(self) -> None:
        """Give back this object's share; the last share in the process unlocks (and clears the record)."""
        with self._mutex:
            if not self._held:
                return
            self._held = False
            with _registry_lock:
                key = self._key()
                held = _registry.get(key)
                if held is None:
                    return
                held.count -= 1
                if held.count > 0:
                    return
                del _registry[key]
                with contextlib.suppress(OSError):
                    os.ftruncate(held.fd, 0)
                os.close(held.fd)  # closing the last descriptor drops the flock

    def holder(self) -> LockHolder | None:
        """Who holds the lock now: this process's record while it holds it, else the file's."""
        with _registry_lock:
            held = _registry.get(self._key())
        return held.holder if held is not None else read_holder(self.path)

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
