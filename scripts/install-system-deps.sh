#!/usr/bin/env bash
# Installs the Debian packages pagelens and its tests use: LibreOffice's headless Writer/Calc/Impress
# (office and web documents are converted to PDF with it, ingest/office.py) with fonts for office
# documents (metric-compatible Arial/Times/Courier, Calibri/Cambria, DejaVu), Tesseract OCR with its
# orientation data and the language data of OCR_LANGS (default: eng deu fra spa ita nld pol por jpn;
# PAGELENS_OCR_LANGUAGES names the ones pagelens uses), chromium (driven by Playwright for the browser
# tests; Playwright's own browser download is not used) and poppler-utils (the optional poppler
# rasterizer). Only what is missing is installed.
# Usage: scripts/install-system-deps.sh [--strict]. Without --strict a failure only warns (office and
# scanned files then fail or are found visually only, saying what to install, and the tests that need
# them skip, saying why).
set -u
strict=${1:-}
ocr_langs=${OCR_LANGS:-"eng deu fra spa ita nld pol por jpn"}
missing=()
have_pkg() { command -v dpkg-query >/dev/null 2>&1 && dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v pdftoppm >/dev/null 2>&1 || missing+=(poppler-utils)
# LibreOffice: the -nogui flavours (no X11/GTK); the full packages count as installed too, and without
# dpkg a LibreOffice on PATH (soffice) is used as it is
for pkg in libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui; do
  if command -v dpkg-query >/dev/null 2>&1; then
    have_pkg "$pkg" || have_pkg "${pkg%-nogui}" || missing+=("$pkg")
  else
    command -v soffice >/dev/null 2>&1 || missing+=("$pkg")
  fi
done
for pkg in fonts-liberation2 fonts-crosextra-carlito fonts-crosextra-caladea fonts-dejavu-core; do
  command -v dpkg-query >/dev/null 2>&1 && ! have_pkg "$pkg" && missing+=("$pkg")
done
command -v tesseract >/dev/null 2>&1 || missing+=(tesseract-ocr)
installed_langs=$(tesseract --list-langs 2>/dev/null | tail -n +2)
for lang in osd $ocr_langs; do
  echo "$installed_langs" | grep -qx "$lang" || missing+=("tesseract-ocr-${lang//_/-}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else sudo=missing; fi
if [ "$sudo" != missing ] && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null 2>&1
  if $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    echo "installed: ${missing[*]}"
    exit 0
  fi
fi
echo "warning: could not install ${missing[*]} (apt-get install ${missing[*]}); office documents will fail with an error saying what to install, and the tests that need these packages will be skipped" >&2
[ "$strict" = "--strict" ] && exit 1
exit 0
