"""A read-only view of the filesystem for the children that parse untrusted files, with Linux Landlock.

``write_guard(writable)`` returns what a child runs between fork and exec (``preexec_fn``, via
``pagelens.ingest.isolation.child_limits``): from then on that process and everything it starts may read
every file as before but create, write, truncate, rename or delete files only under the ``writable``
folders (its work dir: a conversion's temp folder and LibreOffice profile; none for the PDF rendering
child, which answers over pipes) and write ``/dev/null``. Where the kernel's Landlock supports it (ABI 4,
Linux 6.7) the child also may not open TCP connections nor listen: a second wall besides the network
namespace (``pagelens.ingest.isolation.network_prefix``), and the only one where namespaces are not allowed.

Landlock needs no privileges and no helper program (three system calls, ``landlock(7)``); where the
kernel lacks it (before Linux 5.13, or not in the boot's ``lsm=`` list) the children run without this
view and one warning says how to get it. Probed once per process (``landlock_abi``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import struct
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # the same on x86-64 and arm64
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH, _RULE_NET_PORT = 1, 2
_PR_SET_NO_NEW_PRIVS = 38
_O_PATH = getattr(os, "O_PATH", 0o10000000)

# landlock(7) filesystem rights: the ones that change the filesystem (reading and executing stay allowed)
_WRITE_FILE, _REMOVE_DIR, _REMOVE_FILE = 1 << 1, 1 << 4, 1 << 5
_MAKE = sum(1 << b for b in range(6, 13))  # char, dir, reg, sock, fifo, block, sym
_MAKE_SOCK = 1 << 9
_REFER, _TRUNCATE = 1 << 13, 1 << 14  # ABI 2, ABI 3
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4

_lock = threading.Lock()
_abi: list[int] = []
_warned: list[bool] = []


def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0: none here); probed once per process."""
    with _lock:
        if _abi:
            return _abi[0]
    abi = 0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        got = int(libc.syscall(_SYS_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION))
        abi = got if got > 0 else 0
    except (OSError, AttributeError):
        abi = 0
    with _lock:
        _abi[:] = [abi]
    return abi


def _write_rights(abi: int) -> int:
    rights = _WRITE_FILE | _REMOVE_DIR | _REMOVE_FILE | _MAKE
    if abi >= 2:
        rights |= _REFER
    if abi >= 3:
        rights |= _TRUNCATE
    return rights


def landlock_available() -> int:
    """The kernel's Landlock ABI (0: none, then warned once per process, with the fix)."""
    abi = landlock_abi()
    if abi <= 0:
        with _lock:
            first = not _warned
            _warned[:] = [True]
        if first:
            log.warning("untrusted files are parsed by child processes that may WRITE ANYWHERE this user may: this "
                        "kernel has no Landlock (Linux >= 5.13 with 'landlock' in its lsm= boot list). To give "
                        "them a read-only view of the filesystem, run pagelens on such a kernel")
    return abi


def write_guard(writable: Sequence[Path], sockets_in: Sequence[Path] = ()) -> Callable[[], None] | None:
    """A ``preexec_fn`` that confines the child's writes to ``writable`` (folders) and ``/dev/null`` and, with
    Landlock ABI >= 4, forbids TCP connect and bind; None where the kernel has no Landlock (warned once,
    with the fix). Under ``sockets_in`` (existing folders) it may also create Unix socket files, and nothing
    else (LibreOffice binds its single-instance pipe in /tmp whatever TMPDIR says). The rule set is prepared
    here, in the parent; the child only opens the folders and makes three system calls."""
    abi = landlock_available()
    if abi <= 0:
        return None
    fs_rights = _write_rights(abi)
    file_rights = _WRITE_FILE | (_TRUNCATE if abi >= 3 else 0)
    net_rights = _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0
    attr = struct.pack("=QQ", fs_rights, net_rights) if net_rights else struct.pack("=Q", fs_rights)
    rules = [(os.fsencode(str(Path(p).resolve())), fs_rights) for p in writable]
    rules += [(os.fsencode(str(Path(p).resolve())), _MAKE_SOCK) for p in sockets_in if Path(p).is_dir()]
    rules.append((b"/dev/null", file_rights))
    # its own user-namespace maps, which ``unshare --map-root-user`` (the network namespace where this user
    # is not root: pagelens.ingest.isolation.network_prefix) writes after exec; /proc/self is the child's
    rules += [(p, file_rights) for p in (b"/proc/self/uid_map", b"/proc/self/gid_map", b"/proc/self/setgroups")]
    libc = ctypes.CDLL(None, use_errno=True)
    syscall = libc.syscall
    prctl = libc.prctl

    def apply() -> None:  # pragma: no cover - runs in the child between fork and exec
        buf = ctypes.create_string_buffer(attr, len(attr))
        ruleset = int(syscall(_SYS_CREATE_RULESET, buf, len(attr), 0))
        if ruleset < 0:
            raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
        try:
            for path, rights in rules:
                try:
                    fd = os.open(path, _O_PATH | os.O_CLOEXEC)
                except FileNotFoundError:
                    if path.startswith(b"/proc/"):
                        continue  # a kernel without it (no user namespaces): nothing to allow
                    raise
                try:
                    rule = ctypes.create_string_buffer(struct.pack("=Qi", rights, fd), 12)
                    if int(syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, rule, 0)) < 0:
                        raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path!r}")
                finally:
                    os.close(fd)
            if int(prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) < 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
            if int(syscall(_SYS_RESTRICT_SELF, ruleset, 0)) < 0:
                raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
        finally:
            os.close(ruleset)

    return apply
