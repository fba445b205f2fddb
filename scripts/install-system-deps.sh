#!/usr/bin/env bash
# Installs the Debian packages pagelens and its tests use: chromium (driven by Playwright for the
# browser tests; Playwright's own browser download is not used), poppler-utils (the optional poppler
# rasterizer) and Tesseract OCR with its orientation data and the language data of
# OCR_LANGS (default: eng deu fra spa ita nld pol por jpn; PAGELENS_OCR_LANGUAGES names the ones
# pagelens uses). Installs only what is missing.
# Usage: scripts/install-system-deps.sh [--strict]. Without --strict a failure only warns (the
# tests that need them then skip, saying why).
set -u
strict=${1:-}
ocr_langs=${OCR_LANGS:-"eng deu fra spa ita nld pol por jpn"}
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v pdftoppm >/dev/null 2>&1 || missing+=(poppler-utils)
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
echo "warning: could not install ${missing[*]} (apt-get install ${missing[*]}); the tests that need them will be skipped" >&2
[ "$strict" = "--strict" ] && exit 1
exit 0
