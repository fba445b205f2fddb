"""PyMuPDF page rendering in a killable child process (``Settings.isolate_rendering``).

A long-lived child (``python -m pagelens.ingest.sandbox``, a fresh interpreter: no fork of the server's threads)
opens each document once and renders the pages it is asked for; after a document it is kept idle and
reused for the next one (importing PyMuPDF costs ~0.8 s, rendering a page ~20-50 ms), unless it was
killed. The parent waits for each
page under a wall-clock limit (``Settings.render_timeout_s``, and no longer than what is left of
``Settings.max_seconds_per_document``); the child's address space is capped with ``RLIMIT_AS``
(``Settings.render_memory_mb``, set by the child after its imports); its CPU time per document
(``Settings.render_cpu_s``) and the size of files it writes (``Settings.max_file_bytes``) are capped too, and
it runs without network where the system allows it (``pagelens.ingest.isolation``). A page past either limit ends as
an ``IngestError`` naming the file, the page and the limit (in ``SourceDocument.page_errors``); the child
is killed and a fresh one renders the next pages.

Protocol (pipes): the parent writes one pickled request per message (length-prefixed): first the limits,
answered ``("ready",)`` once the child's imports are done (waited for up to ``STARTUP_TIMEOUT_S``, not counted
in any page's limit); then per document one that carries the path and password (never on the command line), the next ones a page index and the target
size settings (and, when OCR may run, the OCR mode, minimum characters and dpi). The child answers
``("ok", size, rendered size, samples, text, ocr_copy, words)`` or ``("error", kind, message)``; ``ocr_copy`` is
``((w, h), dpi, gray samples)`` when the page's text layer is unusable (``pagelens.ingest.ocr.needs_ocr``): the
page rendered in gray for Tesseract, which the parent then runs (``pagelens.ingest.ocr``), else None;
``words``: the text layer's words as (x0, y0, x1, y1 page fractions, word) tuples (``_word_fractions``, no numpy
in the child: it starts faster) or None. Before any page, ``open_pdf`` asks ``{"inspect": True}``: the child answers
``("info", {page_count, repaired, needs_pass, password_index, messages[, count_error]})`` (which of the document message's
``passwords`` unlocked it) or ``("error", "open", {reason, messages})``, so not even the first parse of an untrusted
PDF happens in this process.

Messages are plain data only (tuples, lists, dicts, str, bytes, numbers, None): ``_read_msg`` refuses a pickle that
names any class or function (a child that parsed a hostile file is not trusted to send code), and a reply larger
than the page could be (``reply_limit``) ends as a crashed child.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import logging
import os
import pickle
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pagelens.ingest.words import WordBoxes

from pagelens.ingest.fs_guard import landlock_available
from pagelens.ingest.isolation import child_limits, network_prefix

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("!Q")
STARTUP_TIMEOUT_S = 120.0  # s: a fresh child's interpreter start and imports (not counted in any page's limit)
# children kept idle: one opens the next document (``inspect``) while another renders the current one's pages
MAX_IDLE = 2
MAX_MESSAGE = 1 << 34  # bytes: no message is larger, whatever the caller's own limit

# Test hook: {page_no: seconds} the child sleeps before rendering that page; page 0: before answering
# ``inspect`` (tests only).
TEST_SLEEP_PAGES: dict[int, float] = {}

_idle: list[tuple[ChildLimits, subprocess.Popen[bytes]]] = []  # (limits, child) ready for the next document
_idle_lock = threading.Lock()


@dataclass(frozen=True)
class ChildLimits:
    """Limits of a rendering child: address space (MiB, set by the child after its imports), CPU seconds per
    document (``RLIMIT_CPU``, raised by the child by this much at each new document: SIGXCPU past it),
    written-file size (bytes, ``RLIMIT_FSIZE``), whether it runs in a new network namespace and whether it
    sees the filesystem read-only (``pagelens.ingest.fs_guard``: it writes nothing, its pages go over the
    pipe). 0/False: none."""

    memory_mb: int = 0
    cpu_s: float = 0.0
    max_file_bytes: int = 0
    no_network: bool = False
    read_only: bool = False


def _spawn(limits: ChildLimits) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    # the child imports what this process imports (a checkout on sys.path, an editable install...)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    prefix = network_prefix() if limits.no_network else []
    # the file-size limit and the read-only view are applied by the child itself, before it reads any request:
    # a preexec_fn would make Popen fork this whole process (with its models) holding the GIL, 20-40 ms in
    # which no other thread of a server runs (measured 2026-12-07, 2-core Intel Xeon); without one it spawns
    # (vfork), ~1-4 ms. Where the kernel has no Landlock, this process (whose log is read) warns once.
    if limits.read_only:
        landlock_available()
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "pagelens.ingest.sandbox"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, close_fds=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    _write_msg(proc.stdin.fileno(), {"memory_mb": limits.memory_mb, "cpu_s": limits.cpu_s,
                                     "max_file_bytes": limits.max_file_bytes, "read_only": limits.read_only})
    # its imports are done before the first page's time limit starts (a loaded machine: seconds)
    try:
        ready = _read_msg(proc.stdout.fileno(), time.monotonic() + STARTUP_TIMEOUT_S)
    except (TimeoutError, EOFError, OSError, pickle.UnpicklingError):
        ready = None
    if ready != ("ready",):
        code = _kill(proc)
        raise RenderLimitExceeded("crash", f"the rendering process did not start (exit {code}, or not ready "
                                  f"within {STARTUP_TIMEOUT_S:g} s)")
    return proc


def _kill(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            proc.kill()
    for stream in (proc.stdin, proc.stdout):
        with contextlib.suppress(OSError):
            if stream is not None:
                stream.close()
    return proc.wait()


@atexit.register
def shutdown_idle() -> None:
    """Kill the idle children (they also exit by themselves when this process goes away)."""
    with _idle_lock:
        idle = [proc for _, proc in _idle]
        _idle.clear()
    for proc in idle:
        _kill(proc)


class DocumentOpenError(Exception):
    """MuPDF could not open the document in the child: its reason and MuPDF's messages."""

    def __init__(self, reason: str, messages: list[str]) -> None:
        super().__init__(reason)
        self.messages = messages


class DocumentRejected(Exception):
    """The child's checks refused the document (an image over the pixel or page limit, a damaged header): the
    ``IngestError`` class name it raised, its reason and detail (plain values), for the parent to raise again."""

    def __init__(self, error_type: str, reason: str, detail: dict[str, Any]) -> None:
        super().__init__(reason)
        self.error_type = error_type
        self.reason = reason
        self.detail = detail


class RenderLimitExceeded(Exception):
    """The child went past a limit (``kind``: "time" | "memory" | "crash") on one page."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _write_msg(fd: int, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise TimeoutError
        chunk = os.read(fd, min(n - len(chunks), 1 << 22))
        if not chunk:
            raise EOFError
        chunks.extend(chunk)
    return bytes(chunks)


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles plain data only: ``find_class`` (how a pickle names a class or function to import and call)
    always refuses, so a child compromised by a hostile file cannot run code in this process."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused: the message names {module}.{name}; only plain data is accepted")


def _read_msg(fd: int, deadline: float | None = None, limit: int = MAX_MESSAGE) -> Any:
    """One message (plain data, at most ``limit`` bytes: a larger one raises ``EOFError`` before it is read)."""
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))
    if size > min(limit, MAX_MESSAGE):
        raise EOFError
    return _PlainUnpickler(io.BytesIO(_read_exact(fd, size, deadline))).load()


def reply_limit(max_pixels: int) -> int:
    """Bytes a page's reply may take: its RGB samples (3 per pixel, ``max_pixels`` with a row and a column of
    rounding), the gray OCR copy (``pagelens.ingest.ocr.MAX_OCR_PIXELS``) and 256 MiB for its text and words."""
    from pagelens.ingest.ocr import MAX_OCR_PIXELS

    side = int(max_pixels ** 0.5) + 2
    return 3 * (max_pixels + 2 * side) + MAX_OCR_PIXELS + (256 << 20)


class RenderWorker:
    """The parent's handle on one child rendering the pages of one PDF."""

    def __init__(self, path: Path, password: str | None, memory_mb: int, limits: ChildLimits | None = None,
                 passwords: Sequence[str] | None = None, image: dict[str, Any] | None = None) -> None:
        self.path = path
        # an image file (Pillow in the child): {"format": "png" | "jpeg" | "tiff", "display": name in its errors,
        # "max_pixels": px per frame, "max_pages": frames}; None: a PDF
        self.image = image
        # tried in order by the child when the PDF is encrypted (``inspect`` says which one worked)
        self.passwords = list(passwords) if passwords is not None else ([password] if password else [])
        self.memory_mb = memory_mb
        self.limits = limits if limits is not None else ChildLimits(memory_mb=memory_mb)
        self.proc: subprocess.Popen[bytes] | None = None
        self.busy = False  # a request is out and its reply not read: the child cannot be reused

    def _start(self) -> subprocess.Popen[bytes]:
        proc = None
        with _idle_lock:
            while _idle:
                limits, candidate = _idle.pop()
                if limits == self.limits and candidate.poll() is None:
                    proc = candidate
                    break
                _kill(candidate)
        if proc is None:
            proc = _spawn(self.limits)
        assert proc.stdin is not None
        message = {"path": str(self.path), "passwords": self.passwords, "sleep": dict(TEST_SLEEP_PAGES),
                   "image": self.image}
        try:
            _write_msg(proc.stdin.fileno(), message)
        except OSError:
            _kill(proc)
            proc = _spawn(self.limits)
            assert proc.stdin is not None
            _write_msg(proc.stdin.fileno(), message)
        self.proc = proc
        return proc

    def _ask(self, request: dict[str, Any], timeout_s: float, limit: int) -> Any:
        """Send ``request`` and read the reply within ``timeout_s`` (0: none); a child past a limit is killed
        and ``RenderLimitExceeded`` names the limit."""
        proc = self.proc if self.proc is not None and self.proc.poll() is None else self._start()
        assert proc.stdin is not None and proc.stdout is not None
        deadline = time.monotonic() + timeout_s if timeout_s > 0 else None
        self.busy = True
        try:
            _write_msg(proc.stdin.fileno(), request)
            reply = _read_msg(proc.stdout.fileno(), deadline, limit)
        except TimeoutError:
            self.close()
            raise RenderLimitExceeded("time", f"rendering was stopped after the time limit of {timeout_s:g} s "
                                      "per page (PAGELENS_RENDER_TIMEOUT_S)") from None
        except (EOFError, BrokenPipeError, OSError, pickle.UnpicklingError):
            code = self.close()
            if code == -signal.SIGXCPU:
                raise RenderLimitExceeded(
                    "cpu", f"rendering was stopped after the CPU-time limit of {self.limits.cpu_s:g} s per document "
                    "(PAGELENS_RENDER_CPU_S)") from None
            if code == -signal.SIGXFSZ:
                raise RenderLimitExceeded(
                    "file", f"the rendering process wrote a file past {self.limits.max_file_bytes:,} bytes "
                    "(PAGELENS_MAX_FILE_BYTES)") from None
            raise RenderLimitExceeded(
                "crash", f"the rendering process died (exit {code}) or sent a malformed reply; most likely the "
                f"memory limit of {self.memory_mb} MiB (PAGELENS_RENDER_MEMORY_MB) or a MuPDF crash") from None
        self.busy = False
        if not isinstance(reply, tuple) or not reply:
            self.close()
            raise RenderLimitExceeded("crash", "the rendering process sent a malformed reply")
        return reply

    def inspect(self, timeout_s: float) -> dict[str, Any]:
        """Open the document in the child: ``{"page_count": int, "repaired": bool, "needs_pass": bool,
        "password_index": int | None, "messages": [str]}`` (``password_index``: which of ``passwords`` unlocked
        it, None when none did or none was needed). Raises ``DocumentOpenError`` when MuPDF cannot open it,
        ``RenderLimitExceeded`` past a limit."""
        reply = self._ask({"inspect": True}, timeout_s, 1 << 20)
        if reply[0] == "info" and len(reply) == 2 and isinstance(reply[1], dict):
            return reply[1]
        if reply[0] == "error" and len(reply) == 3 and reply[1] == "open" and isinstance(reply[2], dict):
            raise DocumentOpenError(str(reply[2].get("reason", "")), [str(m) for m in reply[2].get("messages", [])])
        if reply[0] == "error" and len(reply) == 3 and reply[1] == "ingest" and isinstance(reply[2], dict):
            raise DocumentRejected(str(reply[2].get("type", "")), str(reply[2].get("reason", "")),
                                   dict(reply[2].get("detail") or {}))
        if reply[0] == "error" and len(reply) == 3 and reply[1] == "memory":
            self.close()
            raise RenderLimitExceeded("memory", f"opening the document exceeded the memory limit of {self.memory_mb} MiB "
                                      f"(PAGELENS_RENDER_MEMORY_MB): {reply[2]}")
        self.close()
        raise RenderLimitExceeded("crash", "the rendering process sent a malformed reply")

    def render(self, index: int, longest_edge: int, max_pixels: int, timeout_s: float,
               ocr: dict[str, Any] | None = None
               ) -> tuple[tuple[int, int], tuple[int, int], bytes, str, Any, WordBoxes | None]:
        """(target size, rendered size, RGB samples, text, OCR copy or None, word boxes or None) of page
        ``index`` (0-based);
        raises ``RenderLimitExceeded`` past a limit (the child is then killed), ``RuntimeError`` for an
        ordinary render failure. ``ocr``: {mode, min_chars, dpi} when the child should render a gray OCR
        copy of pages whose text layer is unusable."""
        reply = self._ask({"page": index, "longest": longest_edge, "max_pixels": max_pixels, "ocr": ocr},
                          timeout_s, reply_limit(max_pixels))
        if reply[0] == "ok":
            _, size, got, samples, text, ocr_copy, words = reply
            from pagelens.ingest.words import WordBoxes

            boxes = WordBoxes.build([w[4] for w in words], [w[:4] for w in words]) if words else None
            return size, got, samples, text, ocr_copy, boxes
        _, kind, message = reply
        if kind == "memory":
            self.close()  # a fresh child for the next page
            raise RenderLimitExceeded("memory", f"rendering exceeded the memory limit of {self.memory_mb} MiB "
                                      f"(PAGELENS_RENDER_MEMORY_MB): {message}")
        raise RuntimeError(message)

    def close(self) -> int | None:
        """Kill the child (if any); returns its exit status."""
        proc, self.proc = self.proc, None
        return None if proc is None else _kill(proc)

    def release(self) -> None:
        """Done with this document: keep a healthy child idle for the next one (``MAX_IDLE`` at most)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None and not self.busy:
            with _idle_lock:
                if len(_idle) < MAX_IDLE:
                    _idle.append((self.limits, proc))
                    return
        _kill(proc)


# -- the child -----------------------------------------------------------------------------------------


def _is_memory_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "malloc" in text or "out of memory" in text or "cannot allocate" in text


def _word_fractions(page: Any) -> list[tuple[float, float, float, float, str]] | None:
    """The page's words as (x0, y0, x1, y1, word) in fractions of the rendered page (rotation applied):
    ``pagelens.ingest.words.words_from_pymupdf`` without numpy. None when there are none."""
    try:
        import pymupdf

        raw = page.get_text("words")
        matrix, rect = page.rotation_matrix, page.rect
    except Exception:  # noqa: BLE001 - no text layer is not an error
        return None
    width, height = float(rect.width), float(rect.height)
    out = []
    for item in raw or ():
        word = "".join(ch for ch in str(item[4]) if ch >= " " and not ch.isspace())
        if word and width > 0 and height > 0:
            r = pymupdf.Rect(item[:4]) * matrix
            out.append(((r.x0 - rect.x0) / width, (r.y0 - rect.y0) / height, (r.x1 - rect.x0) / width,
                        (r.y1 - rect.y0) / height, word))
    return out or None


def _mupdf_warnings(pymupdf: Any) -> list[str]:
    """MuPDF's messages since the last call (the parent filters and logs them)."""
    try:
        return [line for line in str(pymupdf.TOOLS.mupdf_warnings(reset=True)).splitlines() if line][:20]
    except Exception:  # noqa: BLE001 - diagnostics only
        return []


def _open_image(path: str, req: dict[str, Any]) -> tuple[Any, int, dict[str, Any] | None]:
    """(the open image, its frames, None) or (None, 0, the failure for ``inspect``): the parent's own checks
    (``pagelens.ingest.images.open_checked``) run here; an ``IngestError`` goes back as its class, reason and
    detail."""
    from pagelens.ingest import images as image_files

    from pagelens.core.errors import IngestError

    limits = SimpleNamespace(max_pixels_per_page=int(req["max_pixels"]), max_pages_per_document=int(req["max_pages"]))
    try:
        image, frames = image_files.open_checked(Path(path), str(req.get("display") or path), str(req["format"]),
                                                 limits)
        return image, frames, None
    except IngestError as exc:
        detail = {k: v for k, v in exc.detail.items() if k not in ("path", "page") and isinstance(v, (int, str))}
        return None, 0, {"type": type(exc).__name__, "reason": exc.reason, "detail": detail}
    except BaseException as exc:  # noqa: BLE001 - Pillow's own failures: a damaged file
        return None, 0, {"type": "IngestError", "reason": f"damaged {str(req['format']).upper()} image: {exc}",
                         "detail": {}}


def _image_frame(image: Any, frames: int, req: dict[str, Any], image_req: dict[str, Any]) -> tuple[Any, ...]:
    """The reply to a page request on an image file: ``pagelens.ingest.images.decode_frame`` of frame
    ``req["page"]``, in the PDF pages' reply format (no text layer; ``ocr_copy`` when OCR was asked for)."""
    from pagelens.ingest import images as image_files

    settings = SimpleNamespace(page_longest_edge=int(req["longest"]), max_pixels_per_page=int(req["max_pixels"]))
    try:
        rgb, gray = image_files.decode_frame(image, int(req["page"]), frames, settings,
                                             str(image_req.get("display") or ""), ocr_copy=bool(req.get("ocr")))
        ocr_copy = None if gray is None else (gray[0].size, gray[1], gray[0].tobytes())
        return ("ok", rgb.size, rgb.size, rgb.tobytes(), "", ocr_copy, None)
    except BaseException as exc:  # noqa: BLE001 - every failure is reported to the parent
        kind = "memory" if _is_memory_error(exc) else "render"
        return ("error", kind, image_files.frame_error(exc))


def _child() -> None:  # pragma: no cover - runs in the child process
    import pymupdf
    from pagelens.ingest.geometry import fit_size

    pymupdf.TOOLS.mupdf_display_errors(False)
    pymupdf.TOOLS.mupdf_display_warnings(False)
    fd_in, fd_out = sys.stdin.buffer.fileno(), sys.stdout.buffer.fileno()
    sys.stdout = sys.stderr  # nothing else may write on the reply pipe
    init = _read_msg(fd_in)
    confine = child_limits(0, 0, int(init.get("max_file_bytes") or 0),
                           writable=[] if init.get("read_only") else None)
    if confine is not None:  # before any request: the file-size limit and the read-only view (Landlock)
        confine()
    cap = int(init["memory_mb"]) * 1024 * 1024
    if cap > 0:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    cpu_s = float(init.get("cpu_s") or 0)
    _write_msg(fd_out, ("ready",))
    doc: Any = None
    image: Any = None  # a PIL image (an image file) instead of a PDF
    image_req: dict[str, Any] = {}
    open_error = "no document opened"
    info: dict[str, Any] = {}
    open_failure: dict[str, Any] | None = {"reason": "no document opened", "messages": []}
    sleeps: dict[int, float] = {}
    while True:
        try:
            req = _read_msg(fd_in)
        except EOFError:
            return
        if "path" in req:  # the next document
            if cpu_s > 0:  # this document's CPU budget on top of what the child has used so far
                used = resource.getrusage(resource.RUSAGE_SELF)
                soft = int(used.ru_utime + used.ru_stime + cpu_s + 0.999)
                _, hard = resource.getrlimit(resource.RLIMIT_CPU)
                with contextlib.suppress(ValueError, OSError):
                    resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))
            if doc is not None:
                doc.close()
            doc = None
            sleeps = {int(k): float(v) for k, v in (req.get("sleep") or {}).items()}
            passwords = [str(p) for p in req.get("passwords") or ()]
            _mupdf_warnings(pymupdf)  # drop the previous document's
            info = {"page_count": 0, "repaired": False, "needs_pass": False, "password_index": None, "messages": []}
            open_failure = None
            if image is not None:
                image.close()
            image, image_req = None, req.get("image")
            if image_req:  # an image file: Pillow (imported on the first one) in this sandbox too
                image, frames, open_failure = _open_image(req["path"], image_req)
                info["page_count"] = frames
                open_error = "the image could not be opened in the rendering process"
                continue
            try:
                doc = pymupdf.open(req["path"], filetype="pdf")
                info["needs_pass"] = bool(doc.needs_pass)
                if doc.needs_pass:
                    info["password_index"] = next((i for i, pw in enumerate(passwords) if doc.authenticate(pw)), None)
                    if info["password_index"] is None:
                        doc, open_error = None, "the PDF could not be unlocked in the rendering process"
                if doc is not None:
                    try:
                        info["page_count"] = int(doc.page_count)
                    except Exception as exc:  # noqa: BLE001 - a damaged page tree: the parent names it
                        info["count_error"] = str(exc)
                    info["repaired"] = bool(getattr(doc, "is_repaired", False))
                info["messages"] = _mupdf_warnings(pymupdf)
            except Exception as exc:  # noqa: BLE001 - reported to inspect and on the first page request
                doc, open_error = None, f"the PDF could not be opened in the rendering process ({exc})"
                open_failure = {"reason": str(exc), "messages": _mupdf_warnings(pymupdf)}
            continue
        if "inspect" in req:
            if 0 in sleeps:
                time.sleep(sleeps[0])
            if open_failure is None:
                _write_msg(fd_out, ("info", info))
            else:
                _write_msg(fd_out, ("error", "ingest" if "type" in open_failure else "open", open_failure))
            continue
        if image is not None:
            _write_msg(fd_out, _image_frame(image, int(info["page_count"]), req, image_req))
            continue
        if doc is None:
            _write_msg(fd_out, ("error", "render", open_error))
            continue
        index = int(req["page"])
        if index + 1 in sleeps:
            time.sleep(sleeps[index + 1])
        pix = None
        try:
            page = doc.load_page(index)
            rect = page.rect
            w, h = fit_size(rect.width, rect.height, int(req["longest"]), int(req["max_pixels"]))
            matrix = pymupdf.Matrix(w / rect.width, h / rect.height)
            pix = page.get_pixmap(matrix=matrix, colorspace=pymupdf.csRGB, alpha=False)
            if pix.stride != pix.width * 3:
                raise RuntimeError(f"unexpected pixmap stride {pix.stride}")
            samples = pix.samples
            try:
                text = str(page.get_text("text"))
            except Exception:  # noqa: BLE001 - no text layer is not an error
                text = ""
            words = _word_fractions(page) if text.strip() else None
            ocr_copy = None
            ocr = req.get("ocr")
            if ocr:
                from pagelens.ingest.ocr import needs_ocr, ocr_pixels_dpi

                if needs_ocr(text, SimpleNamespace(ocr=ocr["mode"], ocr_min_chars=ocr["min_chars"])):
                    dpi = ocr_pixels_dpi(rect.width, rect.height, int(ocr["dpi"]))
                    gray = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY, alpha=False)
                    if gray.stride != gray.width:
                        raise RuntimeError(f"unexpected gray pixmap stride {gray.stride}")
                    ocr_copy = ((gray.width, gray.height), dpi, gray.samples)
                    del gray
            reply: tuple[Any, ...] = ("ok", (w, h), (pix.width, pix.height), samples, text, ocr_copy, words)
        except BaseException as exc:  # noqa: BLE001 - every failure is reported to the parent
            pix = None
            reply = ("error", "memory" if _is_memory_error(exc) else "render", str(exc) or type(exc).__name__)
        try:
            _write_msg(fd_out, reply)
        except MemoryError:
            _write_msg(fd_out, ("error", "memory", "reply too large for the memory limit"))
        del pix, reply


if __name__ == "__main__":  # pragma: no cover
    _child()
