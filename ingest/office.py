"""Office and web documents -> PDF with LibreOffice headless, then indexed as PDFs.

DOCX/XLSX/PPTX, ODT/ODS/ODP/ODG, legacy DOC/XLS/PPT, RTF and HTML (type decided by content in
``pagelens.ingest.sniff``) are converted by ``soffice --headless --convert-to pdf`` in a child process:

* one LibreOffice user profile per concurrent conversion, created fresh (in a temp folder); with
  ``Settings.isolate_rendering`` (the default) a fresh one per document, thrown away after it (a first
  start in a fresh profile costs ~1 s), else reused by the process's next conversions (a profile cannot
  be shared by two running instances), thrown away after a killed conversion and at exit. The profile
  is hardened before its first start: macros never run, linked resources of
  untrusted documents are not loaded (``BlockUntrustedRefererLinks``: an HTML ``<img src="file:///...">``
  stays empty), links and formulas are not updated or recalculated on load;
* a wall-clock limit per file (``Settings.office_timeout_s``); past it the whole process group
  (``soffice`` and ``soffice.bin``) is killed and the file fails with an error naming the limit;
* a scrubbed environment (no API keys or other secrets of the server reach LibreOffice);
* with ``Settings.isolate_rendering`` (the sandbox for untrusted input, on by default), also an
  address-space cap (``render_memory_mb``), a CPU-time cap (``render_cpu_s``), a cap on the size of the
  files it writes (``max_file_bytes``), no network (a new network namespace with ``unshare``, when the
  system allows it; announced once when not) and a read-only view of the filesystem but for the
  conversion's temp folder and profile (Landlock): ``pagelens.ingest.isolation``.

The PDF is kept under ``<data_dir>/converted/<sha256[:2]>/<sha256>.pdf`` (the sha256 of the original
file), so the ingest workers that open the document again, and re-runs, do not convert it again;
``discard_converted`` removes it with the document. The original file's name and sha256 identify the
document; only the pixels and the text layer come from the PDF.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from pagelens.ingest.isolation import child_limits, limit_prefix, network_prefix
from pagelens.ingest.sniff import EXTENSIONS, OFFICE_FORMATS

from pagelens.core.errors import IngestError
from pagelens.core.settings import Settings

logger = logging.getLogger(__name__)

DEBIAN_PACKAGES = ("libreoffice-writer-nogui", "libreoffice-calc-nogui", "libreoffice-impress-nogui")
INSTALL_HINT = (
    f"install LibreOffice (Debian/Ubuntu: apt-get install {' '.join(DEBIAN_PACKAGES)}, or run "
    "scripts/install-system-deps.sh from the pagelens repository; other systems: the LibreOffice package) "
    "or set PAGELENS_SOFFICE to its soffice program"
)
_FALLBACK_LOCATIONS = (
    "/usr/lib/libreoffice/program/soffice",
    "/opt/libreoffice/program/soffice",
    "/Applications/LibreOffice.app/Contents/MacOS/soffice",
)

# The profile's settings, written before its first start (registrymodifications.xcu).
_HARDENING: tuple[tuple[str, str, str], ...] = (
    ("/org.openoffice.Office.Common/Security/Scripting", "MacroSecurityLevel", "3"),  # very high
    ("/org.openoffice.Office.Common/Security/Scripting", "DisableMacrosExecution", "true"),
    ("/org.openoffice.Office.Common/Security/Scripting", "BlockUntrustedRefererLinks", "true"),
    ("/org.openoffice.Office.Writer/Content/Update", "Link", "0"),  # never update links on load
    ("/org.openoffice.Office.Calc/Content/Update", "Link", "1"),  # never
    ("/org.openoffice.Office.Calc/Formula/Load", "OOXMLRecalcMode", "1"),  # never recalculate on load
    ("/org.openoffice.Office.Calc/Formula/Load", "ODFRecalcMode", "1"),
    ("/org.openoffice.Office.Common/Misc", "FirstRun", "false"),
)

_pool_lock = threading.Lock()
_free_profiles: dict[int, list[Path]] = {}  # pid -> profiles ready for the next conversion
_all_profiles: list[Path] = []
_announced: set[str] = set()


class ConverterUnavailableError(IngestError):
    """LibreOffice is needed for this file and is not installed (or not where PAGELENS_SOFFICE says)."""

    code = "converter_unavailable"


def _announce(key: str, message: str) -> None:
    """Log a weaker mode once per process."""
    with _pool_lock:
        if key in _announced:
            return
        _announced.add(key)
    logger.warning("%s", message)


def find_soffice(settings: Settings) -> str | None:
    """The LibreOffice program to run: ``settings.soffice`` (a name on PATH or a path), else the usual
    install locations; None when there is none."""
    configured = settings.soffice.strip()
    if not configured:
        return None
    if os.sep in configured:
        return configured if os.access(configured, os.X_OK) else None
    found = shutil.which(configured) or (shutil.which("libreoffice") if configured == "soffice" else None)
    if found:
        return found
    if configured == "soffice":
        return next((p for p in _FALLBACK_LOCATIONS if os.access(p, os.X_OK)), None)
    return None


def converted_pdf_path(settings: Settings, sha256: str) -> Path:
    """Where the PDF converted from the file with this sha256 is kept."""
    return settings.data_dir / "converted" / sha256[:2] / f"{sha256}.pdf"


def discard_converted(settings: Settings, sha256: str) -> None:
    """Remove the kept PDF of a document (no-op when there is none)."""
    with contextlib.suppress(OSError):
        converted_pdf_path(settings, sha256).unlink()


# -- profiles -----------------------------------------------------------------------------------------


def _write_profile(root: Path) -> None:
    user = root / "user"
    user.mkdir(parents=True, exist_ok=True)
    items = "\n".join(
        f'<item oor:path="{path}"><prop oor:name="{name}" oor:op="fuse"><value>{value}</value></prop></item>'
        for path, name, value in _HARDENING
    )
    (user / "registrymodifications.xcu").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<oor:items xmlns:oor="http://openoffice.org/2001/registry" '
        'xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
        f"{items}\n</oor:items>\n",
        encoding="utf-8",
    )


def _take_profile(fresh: bool = False, template: Path | None = None) -> Path:
    """A profile no running conversion uses: a free one of this process, or a fresh one (always with
    ``fresh``: the sandbox gives each document its own profile, so no document can leave settings or
    macros behind for the next one), copied from ``template`` when given."""
    pid = os.getpid()
    with _pool_lock:
        free = _free_profiles.setdefault(pid, [])
        if free and not fresh:
            return free.pop()
    root = Path(tempfile.mkdtemp(prefix=f"pagelens-lo-{pid}-"))
    if template is not None:
        shutil.copytree(template, root, symlinks=True, dirs_exist_ok=True)
    else:
        _write_profile(root)
    with _pool_lock:
        _all_profiles.append(root)
    return root


def _soffice_command(soffice: str, profile: Path) -> list[str]:
    """LibreOffice headless in ``profile``, no window, splash, default document, recovery or lock check; the
    caller adds what to convert."""
    return [soffice, f"-env:UserInstallation={profile.as_uri()}", "--headless", "--invisible", "--nologo",
            "--nodefault", "--norestore", "--nolockcheck"]


_templates: dict[str, Path | None] = {}  # soffice -> its sandbox template profile (None: could not be made)
_template_lock = threading.Lock()
WARM_UP_RTF = b"{\\rtf1 pagelens}"  # the trusted document a template profile is started on


def _sandbox_template(soffice: str, prefix: list[str], timeout_s: float) -> Path | None:
    """A profile LibreOffice has already started in once (made per process and ``soffice``, on a trusted
    one-line document, with the sandbox's limits and network isolation but free to write its temp folder
    and profile), copied for each sandboxed conversion. Why: the first start in a new profile sets it up
    and restarts LibreOffice, whose second start must remove the single-instance pipe of the first, which
    the read-only view (``pagelens.ingest.fs_guard``) forbids; a started profile needs no restart. None
    when the warm-up fails (then conversions run without the read-only view; warned once)."""
    with _template_lock:
        if soffice in _templates:
            return _templates[soffice]
        root = Path(tempfile.mkdtemp(prefix=f"pagelens-lo-{os.getpid()}-template-"))
        _write_profile(root)
        ok = False
        with tempfile.TemporaryDirectory(prefix="pagelens-convert-") as tmp_name:
            tmp = Path(tmp_name)
            (tmp / "warm-up.rtf").write_bytes(WARM_UP_RTF)
            cmd = [*prefix, *_soffice_command(soffice, root), "--convert-to", "pdf",
                   "--outdir", str(tmp / "out"), str(tmp / "warm-up.rtf")]
            started = time.monotonic()
            with contextlib.suppress(OSError):
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, cwd=tmp, env=_environment(root, tmp),
                                        start_new_session=True, close_fds=True)
                try:
                    ok = proc.wait(timeout=timeout_s if timeout_s > 0 else None) == 0
                except subprocess.TimeoutExpired:
                    ok = False
                _kill_group(proc)
                _remove_pipes(since=started)
        with _pool_lock:
            _all_profiles.append(root)
        if not ok:
            logger.warning("LibreOffice could not prepare the sandbox's profile (its start on a one-line document "
                           "failed or took longer than %g s): office documents are converted WITHOUT the read-only "
                           "view of the filesystem. Check that `%s --headless --convert-to pdf` works here",
                           timeout_s, soffice)
            shutil.rmtree(root, ignore_errors=True)
        _templates[soffice] = root if ok else None
        return _templates[soffice]


def _give_back(profile: Path, healthy: bool) -> None:
    if healthy:
        with _pool_lock:
            _free_profiles.setdefault(os.getpid(), []).append(profile)
        return
    shutil.rmtree(profile, ignore_errors=True)


@atexit.register
def _remove_profiles() -> None:
    pid = os.getpid()
    with _pool_lock:
        mine = [p for p in _all_profiles if p.name.startswith(f"pagelens-lo-{pid}-")]
    for profile in mine:
        shutil.rmtree(profile, ignore_errors=True)


# -- the sandbox --------------------------------------------------------------------------------------


def _network_isolation() -> list[str]:
    """Command prefix that runs a program without network (``pagelens.ingest.isolation.network_prefix``)."""
    return network_prefix()


def _environment(profile: Path, tmp: Path) -> dict[str, str]:
    """The child's environment: enough to run, none of the parent's secrets."""
    env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "HOME": str(profile),
           "TMPDIR": str(tmp), "SAL_USE_VCLPLUGIN": "svp"}
    for key in ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "FONTCONFIG_PATH", "FONTCONFIG_FILE"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        proc.kill()
    proc.wait()


# -- the single-instance pipe ----------------------------------------------------------------------------

# LibreOffice binds its single-instance pipe (a Unix socket file OSL_PIPE_<uid>_SingleOfficeIPC_<hash of the
# profile>) in the first of these it may write to, whatever TMPDIR says, and removes it at exit. Sandboxed it
# may only create socket files there (pagelens.ingest.fs_guard), not remove them: the parent does.
PIPE_DIRS = (Path("/tmp"), Path("/var/tmp"))


def _remove_pipes(since: float) -> None:
    """Remove the single-instance pipes of this user's sandboxed conversions made since ``since`` (monotonic
    seconds): a fresh profile per document gives each conversion its own, which nothing connects to again."""
    import stat

    age = time.monotonic() - since + 1.0
    for folder in PIPE_DIRS:
        with contextlib.suppress(OSError):
            for entry in os.scandir(folder):
                if not entry.name.startswith(f"OSL_PIPE_{os.getuid()}_SingleOfficeIPC_"):
                    continue
                with contextlib.suppress(OSError):
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISSOCK(st.st_mode) and time.time() - st.st_ctime <= age:
                        os.unlink(entry.path)


# -- conversion ---------------------------------------------------------------------------------------


def convert_to_pdf(path: Path, fmt: str, sha256: str, display: str, settings: Settings) -> Path:
    """The PDF of the office/web document at ``path`` (format ``fmt`` from ``pagelens.ingest.sniff``, content
    sha256 ``sha256``): the kept one when this file was converted before, else converted now.

    Raises ``ConverterUnavailableError`` when LibreOffice is not installed, ``IngestError`` (naming
    ``display``) when the conversion fails, produces no PDF or runs past ``settings.office_timeout_s``.
    """
    target = converted_pdf_path(settings, sha256)
    if target.is_file() and target.stat().st_size > 0:
        return target
    what = OFFICE_FORMATS.get(fmt, fmt.upper())
    soffice = find_soffice(settings)
    if soffice is None:
        where = f" (PAGELENS_SOFFICE={settings.soffice})" if settings.soffice not in ("soffice", "") else ""
        error = ConverterUnavailableError(
            display, f"is a {what} document; pagelens converts those to PDF with LibreOffice, which was not "
            f"found{where}: {INSTALL_HINT}")
        _announce("missing", f"LibreOffice not found: office documents (DOCX, XLSX, PPTX, ODT, RTF, HTML, ...) "
                  f"cannot be indexed; {INSTALL_HINT}")
        raise error
    isolated = bool(settings.isolate_rendering)
    memory_mb, max_bytes = int(settings.render_memory_mb), int(settings.max_file_bytes)
    cpu_s = float(getattr(settings, "render_cpu_s", 0) or 0)
    limits = limit_prefix(memory_mb, cpu_s, max_bytes) if isolated else []
    prefix = [*_network_isolation(), *limits] if isolated else []
    template = _sandbox_template(soffice, prefix, min(float(settings.office_timeout_s), 120.0)) if isolated else None
    guarded = template is not None  # the read-only view needs a started profile (``_sandbox_template``)
    profile = _take_profile(fresh=isolated, template=template)
    healthy = False
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="pagelens-convert-") as tmp_name:
            tmp = Path(tmp_name)
            src = tmp / f"document.{EXTENSIONS.get(fmt, fmt)}"  # a plain name: whatever the user's file is called
            try:
                src.symlink_to(path.resolve())
            except OSError:
                shutil.copyfile(path, src)
            outdir = tmp / "out"
            cmd = [*prefix, *_soffice_command(soffice, profile)]
            if fmt == "html":  # Writer, not Writer/Web: the page layout of a printed document
                cmd += ["--infilter=HTML (StarWriter)", "--convert-to", "pdf:writer_pdf_Export"]
            else:
                cmd += ["--convert-to", "pdf"]
            cmd += ["--outdir", str(outdir), str(src)]
            timeout = float(settings.office_timeout_s)
            log_path = tmp / "soffice.log"
            with log_path.open("w+b") as log:
                proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=tmp,
                    env=_environment(profile, tmp), start_new_session=True, close_fds=True,
                    # sandboxed: writes only in its temp folder and profile, plus its pipe's socket file (limits
                    # from prlimit when there is one)
                    preexec_fn=child_limits(0 if limits else memory_mb, 0 if limits else cpu_s, 0 if limits else max_bytes,
                                            writable=[tmp, profile] if guarded else None, sockets_in=PIPE_DIRS)
                    if isolated else None,
                )
                try:
                    code = proc.wait(timeout=timeout if timeout > 0 else None)
                except subprocess.TimeoutExpired:
                    _kill_group(proc)
                    raise IngestError(
                        display, f"converting the {what} document to PDF with LibreOffice took longer than "
                        f"{timeout:g} s and was stopped (PAGELENS_OFFICE_TIMEOUT_S)") from None
                except BaseException:
                    _kill_group(proc)
                    raise
                _kill_group(proc)  # anything it left behind in its group
                if isolated:
                    _remove_pipes(since=started)
                log.seek(0)
                messages = [ln.strip() for ln in log.read(16384).decode("utf-8", "replace").splitlines()
                            if ln.strip() and "javaldx" not in ln and not ln.startswith("convert ")]
            result = outdir / "document.pdf"
            if not result.is_file() or result.stat().st_size == 0:
                why = messages[-1] if messages else f"exit status {code}"
                if code < 0 or code in (134, 137, 139):
                    why = f"LibreOffice was killed (signal/exit {code}"
                    why += f"; memory cap {settings.render_memory_mb} MiB, PAGELENS_RENDER_MEMORY_MB)" if isolated else ")"
                elif isolated and (code == 152 or code == -signal.SIGXCPU):
                    why = f"LibreOffice used more than {cpu_s:g} s of CPU time (PAGELENS_RENDER_CPU_S)"
                elif code == 153 or code == -signal.SIGXFSZ:
                    why = f"the PDF grew past {settings.max_file_bytes:,} bytes (PAGELENS_MAX_FILE_BYTES)"
                raise IngestError(
                    display, f"LibreOffice could not convert this {what} document to PDF (damaged, password-"
                    f"protected, or not really a {what} file): {why}")
            healthy = code == 0 and not isolated  # sandboxed: a profile an untrusted document ran in is not reused
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.part")
            shutil.copyfile(result, partial)
            os.replace(partial, target)
    finally:
        _give_back(profile, healthy)
    logger.info("%s: converted %s to PDF in %.1f s", display, what, time.monotonic() - started)
    return target
