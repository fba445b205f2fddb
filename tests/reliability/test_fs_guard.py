"""The read-only view of the filesystem the sandbox's children run in (ingest/fs_guard.py, Landlock): a child
writes, renames and deletes only under its writable folders, reads everything, opens no TCP connection
(Landlock ABI 4+), may make only Unix socket files under ``sockets_in``; and everything it starts inherits it."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pagelens.ingest.fs_guard import landlock_abi, write_guard
from pagelens.ingest.isolation import child_limits

pytestmark = pytest.mark.skipif(landlock_abi() <= 0, reason="this kernel has no Landlock: the documented "
                                "fallback (one warning, no read-only view) applies")

PROBE = r"""
import os, socket, sys
work, outside, port, sock_dir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def attempt(name, fn):
    try:
        fn(); print(name, "ok")
    except OSError as e:
        print(name, "denied" if e.errno in (1, 13) else f"errno{e.errno}")
attempt("write-work", lambda: open(os.path.join(work, "a.txt"), "w").write("x"))
attempt("rename-work", lambda: os.rename(os.path.join(work, "a.txt"), os.path.join(work, "b.txt")))
attempt("mkdir-work", lambda: os.mkdir(os.path.join(work, "sub")))
attempt("write-outside", lambda: open(os.path.join(outside, "planted.txt"), "w").write("x"))
attempt("append-existing", lambda: open(os.path.join(outside, "existing.txt"), "a").write("x"))
attempt("read-outside", lambda: open(os.path.join(outside, "existing.txt")).read())
attempt("delete-outside", lambda: os.unlink(os.path.join(outside, "existing.txt")))
attempt("devnull", lambda: open(os.devnull, "w").write("x"))
def unix():
    s = socket.socket(socket.AF_UNIX); s.bind(os.path.join(sock_dir, "pipe")); s.close()
attempt("unix-socket", unix)
attempt("file-in-socket-dir", lambda: open(os.path.join(sock_dir, "f.txt"), "w").write("x"))
def tcp():
    s = socket.socket(); s.settimeout(5); s.connect(("127.0.0.1", port)); s.close()
attempt("tcp-connect", tcp)
"""


def _probe(tmp_path: Path, make_guard: Callable[[], Any]) -> dict[str, str]:
    """What the probe child could do under ``make_guard()`` (called once the folders exist)."""
    work, outside, sock_dir = tmp_path / "work", tmp_path / "outside", tmp_path / "sockets"
    for d in (work, outside, sock_dir):
        d.mkdir(exist_ok=True)
    guard_fn = make_guard()
    (outside / "existing.txt").write_text("keep me")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        # the guard holds across exec and for the processes the child starts: run the probe under a shell
        proc = subprocess.run(["sh", "-c", 'exec "$@"', "sh", sys.executable, "-c", PROBE, str(work), str(outside),
                               str(port), str(sock_dir)], capture_output=True, text=True, timeout=60,
                              preexec_fn=guard_fn)
    assert proc.returncode == 0, proc.stderr
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines())


def test_a_guarded_child_writes_only_in_its_work_dir(tmp_path: Path) -> None:
    got = _probe(tmp_path, lambda: child_limits(0, 0, 0, writable=[tmp_path / "work"],
                                                sockets_in=[tmp_path / "sockets"]))
    assert got["write-work"] == got["rename-work"] == got["mkdir-work"] == "ok"
    assert got["write-outside"] == got["append-existing"] == got["delete-outside"] == "denied"
    assert got["read-outside"] == "ok" and got["devnull"] == "ok"
    assert got["unix-socket"] == "ok" and got["file-in-socket-dir"] == "denied"
    assert (tmp_path / "outside" / "existing.txt").read_text() == "keep me"
    assert not (tmp_path / "outside" / "planted.txt").exists()
    if landlock_abi() >= 4:
        assert got["tcp-connect"] == "denied"  # no TCP even where the network namespace is not allowed


def test_without_a_guard_the_same_child_may_do_all_of_it(tmp_path: Path) -> None:
    """The probe itself is sound: unguarded (``isolate_rendering`` off, trusted batch jobs) everything works."""
    got = _probe(tmp_path, lambda: None)
    assert set(got.values()) == {"ok"}


def test_no_writable_folder_means_nothing_but_dev_null(tmp_path: Path) -> None:
    """The PDF rendering child's view (``ChildLimits.read_only``): it answers over pipes and writes nothing."""
    got = _probe(tmp_path, lambda: write_guard([]))
    assert got["write-work"] == got["mkdir-work"] == got["write-outside"] == got["unix-socket"] == "denied"
    assert got["read-outside"] == "ok" and got["devnull"] == "ok"


@pytest.mark.parametrize("prefix", [["unshare", "--net"], ["unshare", "--net", "--map-root-user"]])
def test_the_network_namespace_prefixes_still_start_under_the_guard(prefix: list[str]) -> None:
    """``unshare --map-root-user`` (network isolation for a user who is not root) writes its own uid/gid maps
    after exec: the guard allows exactly those."""
    if subprocess.run([*prefix, "true"], capture_output=True, check=False).returncode != 0:
        pytest.skip(f"{' '.join(prefix)} is not allowed on this system")
    proc = subprocess.run([*prefix, "sh", "-c", "echo ran"], capture_output=True, text=True, timeout=30,
                          preexec_fn=child_limits(0, 0, 0, writable=[]))
    assert proc.returncode == 0 and proc.stdout.strip() == "ran", proc.stderr


def test_the_rendering_child_confines_itself_before_its_first_request() -> None:
    """The PDF child is spawned without a ``preexec_fn`` (no fork of the parent holding the GIL) and applies
    the file-size limit and the read-only view itself, before it answers ready: Landlock sets no_new_privs."""
    from pagelens.ingest import sandbox

    proc = sandbox._spawn(sandbox.ChildLimits(max_file_bytes=5_000_000, read_only=True))
    try:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        assert "NoNewPrivs:\t1" in status
        assert any(line.startswith("Max file size") and "5000000" in line for line in limits.splitlines())
    finally:
        sandbox._kill(proc)
    open_child = sandbox._spawn(sandbox.ChildLimits())  # no limits asked: none applied
    try:
        assert "NoNewPrivs:\t0" in Path(f"/proc/{open_child.pid}/status").read_text()
    finally:
        sandbox._kill(open_child)
