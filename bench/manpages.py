"""Real documents in Dutch, Polish, Spanish, Italian and Portuguese for ``bench/languages.py``: Debian's
translated manual pages (packages ``manpages-nl``, ``manpages-pl``, ``manpages-es``, ``manpages-it``,
``manpages-pt-br``), fetched with ``apt-get download`` from the Debian mirror at bench time (nothing is
copied into the repository), formatted by ``man`` as UTF-8 text and turned into PDFs by LibreOffice.

They are human-written translations (the Debian/po4a translators'), with the untranslated English
passages real translations keep: not invoices, but real running text in each language, so the
inflected-form queries are measured on words people wrote, next to the synthetic invoices of
``tests/multilingual_docs.py``.

    python bench/manpages.py /tmp/manpages   # -> /tmp/manpages/pdf/man_<lang>_<page>.pdf
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGES = {"nl": "manpages-nl", "pl": "manpages-pl", "es": "manpages-es", "it": "manpages-it",
            "pt": "manpages-pt-br"}
MAN_DIRS = {"nl": "nl", "pl": "pl", "es": "es", "it": "it", "pt": "pt_BR"}
# formatted length window (characters): 2-6 pages of running text each
MIN_CHARS, MAX_CHARS = 6000, 22000


def _man_text(page: Path) -> str:
    """The man page formatted as plain UTF-8 text (80 columns, no overstrike)."""
    env = {**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": "", "LC_ALL": "C.UTF-8"}
    out = subprocess.run(["man", "-l", "-E", "UTF-8", str(page)], capture_output=True, env=env, timeout=60)
    text = out.stdout.decode("utf-8", "replace")
    col = subprocess.run(["col", "-bx"], input=text.encode(), capture_output=True, timeout=60)
    return col.stdout.decode("utf-8", "replace") if col.returncode == 0 else text


def _pick(root: Path, lang: str, per_lang: int) -> list[tuple[str, str]]:
    """The first ``per_lang`` pages (by name, sections 1, 5, 8) whose text is in the length window and
    detected as ``lang``: [(name, text)]."""
    from pagelens.index.stores.text_analysis import detect_language

    picked: list[tuple[str, str]] = []
    for section in ("man1", "man5", "man8"):
        folder = root / "usr" / "share" / "man" / MAN_DIRS[lang] / section
        for page in sorted(folder.glob("*.gz")) if folder.is_dir() else []:
            if len(picked) >= per_lang:
                return picked
            if not page.name[0].isalnum():  # '[' (test): a name unfit for a file
                continue
            raw = len(gzip.decompress(page.read_bytes()))
            if not 4000 <= raw <= 40000:
                continue
            text = _man_text(page)
            body = text.split("\n", 1)[-1]  # without the header line naming the page (aliases share a body)
            if any(body == t.split("\n", 1)[-1] for _, t in picked):
                continue
            if MIN_CHARS <= len(text) <= MAX_CHARS and detect_language(text)[0] == lang:
                picked.append((page.name.removesuffix(".gz").replace(".", "_"), text))
    return picked


def debian_manpage_pdfs(out: Path, per_lang: int = 3, langs: tuple[str, ...] = tuple(PACKAGES)) -> list[Path]:
    """PDFs of ``per_lang`` translated man pages per language in ``out/pdf`` (made once; kept). Needs
    ``apt-get`` with a reachable Debian mirror, ``man`` and LibreOffice (``soffice``); raises
    ``RuntimeError`` naming what is missing."""
    pdf_dir = out / "pdf"
    done = sorted(pdf_dir.glob("man_*.pdf"))
    if done and {p.name.split("_")[1] for p in done} >= set(langs):
        return done
    for tool in ("apt-get", "dpkg-deb", "man", "soffice"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed: the Debian man-page corpus needs apt-get, dpkg-deb, "
                               "man and LibreOffice (scripts/install-system-deps.sh)")
    debs, root, txt = out / "debs", out / "root", out / "txt"
    for d in (debs, root, txt, pdf_dir):
        d.mkdir(parents=True, exist_ok=True)
    for lang in langs:
        package = PACKAGES[lang]
        if not list(debs.glob(f"{package}_*.deb")):
            r = subprocess.run(["apt-get", "download", package], cwd=debs, capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                raise RuntimeError(f"apt-get download {package} failed: {r.stderr.strip()[-300:]}")
        deb = sorted(debs.glob(f"{package}_*.deb"))[0]
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, timeout=300)
        for name, text in _pick(root, lang, per_lang):
            (txt / f"man_{lang}_{name}.txt").write_text(text, encoding="utf-8")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(["soffice", f"-env:UserInstallation=file://{profile}", "--headless", "--convert-to", "pdf",
                        "--outdir", str(pdf_dir), *map(str, sorted(txt.glob("*.txt")))],
                       check=True, capture_output=True, timeout=900)
    return sorted(pdf_dir.glob("man_*.pdf"))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    for path in debian_manpage_pdfs(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/manpages")):
        print(path)
