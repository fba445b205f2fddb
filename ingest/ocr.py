"""OCR of pages without a usable text layer: Tesseract (the ``tesseract`` program of Debian's
``tesseract-ocr`` packages, installed by ``scripts/install-system-deps.sh``).

Why the program and not PyMuPDF's built-in OCR or a Python binding: every page runs in its own
``tesseract`` process, so the per-page time limit (``Settings.ocr_timeout_s``) is a kill, memory, CPU and
file-size caps and no network are possible (``isolate_rendering``, on by default: ``pagelens.ingest.isolation``), a
Tesseract crash on a hostile image cannot take an ingest worker down, and orientation detection
(OSD, ``--psm 0``) comes with it. Recognition asks for TSV output, so each word comes with its box
(``OcrResult.words``, kept for region-level citations: ``pagelens.ingest.words``). PyMuPDF's OCR runs in-process (no kill, no OSD); tesserocr needs
a matching libtesseract build; pytesseract would only wrap the same subprocess calls.

What is OCRed (``needs_ocr``): with ``Settings.ocr`` ``auto`` (default), pages whose text layer is
unusable: fewer than ``Settings.ocr_min_chars`` letters and digits (scans, photos, pages with only a
stamp of text), or mojibake (over ``MOJIBAKE_SHARE`` of its characters are control characters,
U+FFFD or private-use code points: fonts without a Unicode map); image files (PNG/JPEG/TIFF) always.
``force``: every page (the OCR text replaces the text layer); ``off``: none.

How (``ocr_image``), per page: (1) OSD on a 150-dpi copy gives the rotation (0/90/180/270) and the
script; the page is turned upright; small skew (a few degrees) is left to Tesseract's own layout
analysis, which handles it (tested at 1.5 degrees). (2) Recognition with the configured languages
of that script (``Settings.ocr_languages``: Latin-script ones for Latin, ``jpn`` for Japanese/Han...)
at ``Settings.ocr_dpi``. Tesseract runs single-threaded (``OMP_THREAD_LIMIT=1``): the ingest
workers are the parallelism.

When Tesseract (or a configured language) is missing, indexing goes on: ``ocr_status`` says so,
the indexer announces it once per run with the fix, and such pages keep what text layer they have
(found visually only when they have none).
"""

from __future__ import annotations

import functools
import io
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pagelens.ingest.isolation import child_limits, network_prefix
from pagelens.ingest.words import WordBoxes, parse_tesseract_tsv
from PIL import Image

log = logging.getLogger(__name__)

MOJIBAKE_SHARE = 0.05  # share of suspicious characters above which a text layer is unusable
OSD_DPI = 150
MAX_OCR_PIXELS = 25_000_000  # px: larger OCR renders are scaled down (A4 at 300 dpi is 8.7 Mpx, A3 17.4)
# Tesseract scripts (OSD) -> the traineddata that read them
SCRIPT_LANGUAGES = {
    "Japanese": ("jpn", "jpn_vert"), "Han": ("chi_sim", "chi_tra", "jpn"), "Hangul": ("kor",),
    "Cyrillic": ("rus", "ukr", "bul", "srp"), "Greek": ("ell",), "Arabic": ("ara",),
}
NON_LATIN = {lang for langs in SCRIPT_LANGUAGES.values() for lang in langs}
DEBIAN_PACKAGE = "tesseract-ocr-{lang}"  # Debian's package of one language's traineddata


@dataclass(frozen=True)
class OcrStatus:
    """Whether OCR can run: ``available``; ``languages``: the configured languages that are
    installed; ``missing``: configured but not installed; ``message``: what to tell the user (empty
    when all is well)."""

    available: bool
    version: str = ""
    languages: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    message: str = ""


@dataclass
class OcrResult:
    """Text of one page; ``rotation``: degrees the page was turned to be upright (clockwise);
    ``script``: as detected by OSD; ``languages``: the traineddata used; ``seconds``: wall time."""

    text: str
    rotation: int = 0
    script: str = ""
    languages: str = ""
    seconds: float = 0.0
    error: str = ""
    steps: dict[str, float] = field(default_factory=dict)
    words: WordBoxes | None = None  # word boxes as fractions of the image given (not of the upright copy)


def configured_languages(value: str) -> tuple[str, ...]:
    """``"eng+deu"`` / ``"eng,deu"`` / ``"eng deu"`` -> ("eng", "deu")."""
    return tuple(dict.fromkeys(p for p in re.split(r"[+,\s]+", value or "") if p))


@functools.lru_cache(maxsize=8)
def ocr_status(tesseract_cmd: str, languages: str, mode: str = "auto") -> OcrStatus:
    """Probe the ``tesseract`` program once per process (``--version``, ``--list-langs``)."""
    if mode == "off":
        return OcrStatus(False, message="")
    wanted = configured_languages(languages)
    exe = shutil.which(tesseract_cmd)
    if exe is None:
        return OcrStatus(False, message=(
            f"Tesseract OCR is not installed ('{tesseract_cmd}' not found): scanned pages and images are "
            "found visually only, not by their words. Install it with scripts/install-system-deps.sh "
            "(Debian: apt-get install tesseract-ocr tesseract-ocr-deu ...), set PAGELENS_TESSERACT_CMD to "
            "its path, or set PAGELENS_OCR=off to silence this."))
    try:
        version = subprocess.run([exe, "--version"], capture_output=True, timeout=30, text=True)
        listed = subprocess.run([exe, "--list-langs"], capture_output=True, timeout=30, text=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return OcrStatus(False, message=f"Tesseract OCR at {exe} does not run ({exc}): scanned pages and "
                         "images are found visually only; reinstall tesseract-ocr or set PAGELENS_OCR=off.")
    installed = {ln.strip() for ln in listed.stdout.splitlines()[1:] if ln.strip()}
    have = tuple(lang for lang in wanted if lang in installed)
    missing = tuple(lang for lang in wanted if lang not in installed)
    first = (version.stdout or version.stderr).splitlines()
    ver = first[0].strip() if first else "tesseract"
    if not have:
        return OcrStatus(False, ver, (), missing, message=(
            f"none of the OCR languages {'+'.join(wanted) or '(none)'} (PAGELENS_OCR_LANGUAGES) is installed "
            f"for {ver}: scanned pages and images are found visually only. Install them: apt-get install "
            + " ".join(DEBIAN_PACKAGE.format(lang=lang.replace("_", "-").lower()) for lang in wanted)))
    message = ""
    if missing:
        message = (f"OCR languages {'+'.join(missing)} are not installed (PAGELENS_OCR_LANGUAGES): scans in them "
                   "are read with the other languages only, which misreads their accented letters. Install: "
                   "apt-get install " + " ".join(DEBIAN_PACKAGE.format(lang=lang.replace("_", "-").lower())
                                                 for lang in missing))
    if "osd" not in installed:
        message = (message + "; " if message else "") + (
            "Tesseract's orientation data is not installed (apt-get install tesseract-ocr-osd): pages scanned "
            "sideways or upside down are not turned upright before OCR")
    return OcrStatus(True, ver, have, missing, message)


def status_from_settings(settings: Any) -> OcrStatus:
    return ocr_status(str(getattr(settings, "tesseract_cmd", "tesseract")),
                      str(getattr(settings, "ocr_languages", "eng")), str(getattr(settings, "ocr", "auto")))


def suspicious_share(text: str) -> float:
    """Share of characters that betray a broken text layer: control characters (other than
    whitespace), U+FFFD and private-use code points."""
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return 0.0
    bad = sum(1 for c in chars if ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or c == "\ufffd"
              or 0xE000 <= ord(c) <= 0xF8FF)
    return bad / len(chars)


def usable_text(text: str | None, min_chars: int) -> bool:
    """Whether a text layer is usable: at least ``min_chars`` letters/digits and not mojibake."""
    if not text:
        return False
    if sum(1 for c in text if c.isalnum()) < min_chars:
        return False
    return suspicious_share(text) <= MOJIBAKE_SHARE


def needs_ocr(text: str | None, settings: Any) -> bool:
    """Whether this page's text layer should be replaced by OCR (``Settings.ocr``: auto/force/off)."""
    mode = getattr(settings, "ocr", "auto")
    if mode == "off":
        return False
    if mode == "force":
        return True
    return not usable_text(text, int(getattr(settings, "ocr_min_chars", 32)))


def ocr_pixels_dpi(width_pt: float, height_pt: float, dpi: int, max_pixels: int = MAX_OCR_PIXELS) -> int:
    """The dpi to render a ``width_pt`` x ``height_pt`` page at for OCR: ``dpi``, lowered so the
    render stays under ``max_pixels`` px."""
    area_in2 = max(width_pt, 1.0) * max(height_pt, 1.0) / (72.0 * 72.0)
    cap = int((max_pixels / area_in2) ** 0.5)
    return max(36, min(int(dpi), cap))


def _png(image: Image.Image, dpi: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", dpi=(dpi, dpi), compress_level=1)
    return buf.getvalue()


@dataclass(frozen=True)
class OcrSandbox:
    """Limits of each tesseract process when ``isolate_rendering`` (ingest/isolation.py): address space
    (MiB), CPU seconds, written-file size (bytes), no network, writes only in its own temp folder. All 0/False:
    none."""

    memory_mb: int = 0
    cpu_s: float = 0.0
    max_file_bytes: int = 0
    no_network: bool = False
    read_only: bool = False

    @classmethod
    def of(cls, settings: Any) -> OcrSandbox:
        if not getattr(settings, "isolate_rendering", False):
            return cls()
        return cls(int(getattr(settings, "render_memory_mb", 0) or 0), float(getattr(settings, "render_cpu_s", 0) or 0),
                   int(getattr(settings, "max_file_bytes", 0) or 0), True, True)


def _run(cmd: list[str], data: bytes, timeout_s: float, sandbox: OcrSandbox) -> subprocess.CompletedProcess[bytes]:
    """One tesseract process: stdin PNG, stdout text; killed past ``timeout_s`` (0: none). Sandboxed, it
    may write only in a temp folder of its own (its TMPDIR, removed after it)."""
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    prefix = network_prefix() if sandbox.no_network else []
    with tempfile.TemporaryDirectory(prefix="pagelens-ocr-") as work:
        if sandbox.read_only:
            env["TMPDIR"] = work
        return subprocess.run([*prefix, *cmd], input=data, capture_output=True, timeout=timeout_s or None, env=env,
                              cwd=work, preexec_fn=child_limits(sandbox.memory_mb, sandbox.cpu_s, sandbox.max_file_bytes,
                                                                writable=[Path(work)] if sandbox.read_only else None))


def _osd(exe: str, image: Image.Image, dpi: int, timeout_s: float, sandbox: OcrSandbox) -> tuple[int, str]:
    """(rotation to apply clockwise, script) from Tesseract's OSD on a ``OSD_DPI`` copy; (0, "") when
    it cannot tell (too little text)."""
    scale = min(1.0, OSD_DPI / max(dpi, 1))
    small = image if scale >= 1.0 else image.resize(
        (max(1, int(image.width * scale)), max(1, int(image.height * scale))), Image.Resampling.BILINEAR)
    proc = _run([exe, "stdin", "stdout", "--psm", "0", "-l", "osd"], _png(small, int(dpi * scale)), timeout_s,
                sandbox)
    out = proc.stdout.decode("utf-8", "replace")
    rotate = re.search(r"Rotate:\s*(\d+)", out)
    script = re.search(r"Script:\s*(\w+)", out)
    return (int(rotate.group(1)) % 360 if rotate else 0), (script.group(1) if script else "")


CJK_SCRIPTS = ("Japanese", "Han", "Hangul")


def languages_for_script(script: str, installed: tuple[str, ...]) -> str:
    """The installed configured traineddata for an OSD script: for Japanese/Han/Hangul that script's
    languages alone (Latin models only slow CJK down); for any other script the Latin-script ones plus
    that script's (OSD's script guess is unreliable among alphabets: it called a Polish invoice
    Cyrillic in our tests)."""
    wanted = SCRIPT_LANGUAGES.get(script, ())
    chosen = [lang for lang in installed if lang in wanted]
    if chosen and script in CJK_SCRIPTS:
        return "+".join(chosen)
    latin = [lang for lang in installed if lang not in NON_LATIN and lang != "osd"]
    return "+".join([*latin, *chosen] or list(installed))


def ocr_image(image: Image.Image, settings: Any, dpi: int, deadline_s: float | None = None) -> OcrResult:
    """OCR one page image (any mode; converted to grayscale) rendered at ``dpi``.

    Never raises for a page: a Tesseract failure or time-out is returned in ``OcrResult.error`` (the
    caller keeps the text layer it had and reports the page). ``deadline_s``: seconds left for the
    whole page (OSD + recognition), default ``settings.ocr_timeout_s``."""
    status = status_from_settings(settings)
    started = time.monotonic()
    if not status.available:
        return OcrResult("", error=status.message or "OCR is off")
    exe = shutil.which(str(getattr(settings, "tesseract_cmd", "tesseract"))) or "tesseract"
    budget = float(deadline_s if deadline_s is not None else getattr(settings, "ocr_timeout_s", 60.0) or 0.0)
    sandbox = OcrSandbox.of(settings)
    gray = image.convert("L")
    if gray.width * gray.height > MAX_OCR_PIXELS:
        scale = (MAX_OCR_PIXELS / (gray.width * gray.height)) ** 0.5
        gray = gray.resize((max(1, int(gray.width * scale)), max(1, int(gray.height * scale))), Image.Resampling.LANCZOS)
        dpi = max(36, int(dpi * scale))
    result = OcrResult("")

    def left() -> float:
        return max(0.001, budget - (time.monotonic() - started)) if budget else 0.0

    try:
        rotation, script = 0, ""
        if "osd" not in status.missing and _has_osd(exe):
            t0 = time.monotonic()
            rotation, script = _osd(exe, gray, dpi, left(), sandbox)
            result.steps["osd_s"] = time.monotonic() - t0
        if rotation:
            gray = gray.rotate(-rotation, expand=True, fillcolor=255)  # PIL turns counter-clockwise
        langs = languages_for_script(script, status.languages)
        t0 = time.monotonic()
        # TSV: the words with their boxes; the text is rebuilt from it (``parse_tesseract_tsv``)
        proc = _run([exe, "stdin", "stdout", "-l", langs, "--psm", "3", "tsv"], _png(gray, dpi), left(), sandbox)
        result.steps["recognise_s"] = time.monotonic() - t0
        result.rotation, result.script, result.languages = rotation, script, langs
        if proc.returncode != 0:
            message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            result.error = f"tesseract failed (exit {proc.returncode}): {message[-1] if message else 'no message'}"
        else:
            parsed = parse_tesseract_tsv(proc.stdout.decode("utf-8", "replace"), gray.width, gray.height, rotation)
            result.text, result.words = _clean(parsed.text), parsed.words
    except subprocess.TimeoutExpired:
        result.error = (f"OCR was stopped after the time limit of {budget:g} s per page (PAGELENS_OCR_TIMEOUT_S); "
                        "the page is found visually only")
    except OSError as exc:
        result.error = f"tesseract could not run: {exc}"
    result.seconds = time.monotonic() - started
    return result


@functools.lru_cache(maxsize=4)
def _has_osd(exe: str) -> bool:
    try:
        listed = subprocess.run([exe, "--list-langs"], capture_output=True, timeout=30, text=True)
    except (OSError, subprocess.SubprocessError):
        return False
    return "osd" in {ln.strip() for ln in listed.stdout.splitlines()[1:]}


def _clean(text: str) -> str:
    """Tesseract output without form feeds and runs of blank lines."""
    text = text.replace("\x0c", "\n")
    return re.sub(r"\n{3,}", "\n\n", text).strip()
