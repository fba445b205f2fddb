#!/usr/bin/env bash
# Installs the Debian packages the tests use: chromium (driven by Playwright for the browser tests;
# Playwright's own browser download is not used) and poppler-utils (the optional poppler rasterizer).
# Usage: scripts/install-system-deps.sh [--strict]. Without --strict a failure only warns (the
# tests that need them then skip, saying why).
set -u
strict=${1:-}
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v pdftoppm >/dev/null 2>&1 || missing+=(poppler-utils)
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
