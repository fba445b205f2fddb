#!/usr/bin/env bash
# mypy over the package as installed: the source folders map onto one `pagelens` namespace
# (pyproject.toml package-dir), which mypy cannot follow through an editable install, so the wheel is
# built and unpacked into .typecheck/ and checked there (paths in the report: .typecheck/pagelens/...;
# pagelens/ingest/x.py is ingest/x.py in the repo, pagelens/index/... is index/..., and so on).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}; py="$(cd "$(dirname "$py")" && pwd)/$(basename "$py")"
rm -rf .typecheck build
"$py" -m pip wheel --no-deps --no-build-isolation -q -w .typecheck . >/dev/null
(cd .typecheck && "$py" -m zipfile -e pagelens-*.whl . && rm -rf build)
rm -rf build
cd .typecheck && "$py" -m mypy -p pagelens
