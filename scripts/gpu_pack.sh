#!/usr/bin/env bash
# Pack what a lent GPU machine lacks, for bench/gpu_check.sh (run it here, where PyPI is reachable):
#   .whl/     wheels of the packages its image does not have, at the versions this repo runs with (it
#             has torch, torchvision, numpy, pillow, httpx, typer, rich, peft, safetensors, tokenizers,
#             matplotlib, pytest, huggingface-hub 1.33...; Python 3.12; no network). pymupdf is 1.26.7
#             there: 2.0's wheel alone is over the device tool's 64 MiB limit. huggingface-hub stays
#             the image's (2.x needs httpx2; transformers takes >= 1.31).
#   .shared/  the SmolVLM configs and tokenizer from $PAGELENS_SHARED_DIR/models and the smaller PDFs of
#             $PAGELENS_SHARED_DIR/pdfs/real (>= 64 pages): that data folder is not part of the repository
#             and does not travel.
# Both are git-ignored; name them in the device call's carry: [".whl", ".shared"].
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SHARED=${PAGELENS_SHARED_DIR:-../shared}

rm -rf .whl .shared && mkdir -p .whl .shared/models .shared/pdfs/real
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
pkgs=("pymupdf==1.26.7")
for name in transformers peft colpali_engine qdrant-edge-py qdrant-client pdf2image \
            pydantic pydantic_core pydantic-settings annotated-types typing-inspection typing_extensions \
            python-dotenv fastapi starlette annotated-doc opentelemetry-api uvicorn python-multipart; do
  pkgs+=("$name==$(version "$name")")
done
platforms=()
for n in 17 27 28 31 34 35; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "${GPU_PYTHON_VERSION:-3.12}" --implementation cp \
  "${platforms[@]}" --platform manylinux2014_x86_64 -d .whl "${pkgs[@]}"

cp -r "$SHARED/models/SmolVLM-256M-Instruct" .shared/models/
rm -f .shared/models/SmolVLM-256M-Instruct/*.lfs-pointer
mkdir -p .shared/models/SmolVLM-500M-Instruct
cp "$SHARED/models/SmolVLM-500M-Instruct/config.json" .shared/models/SmolVLM-500M-Instruct/
# PDFs up to 500 kB: 78 pages, ~2.5 MB (bench/ingest.py takes the shortest first)
find "$SHARED/pdfs/real" -name '*.pdf' -size -500k -exec cp {} .shared/pdfs/real/ \;

du -sh .whl .shared
total=$(du -sbc .whl .shared $(git ls-files) 2>/dev/null | tail -1 | cut -f1)
echo "travels: $((total / 1048576)) MiB of the device tool's 64 MiB"
[ "$total" -lt $((64 * 1048576)) ] || { echo "over the 64 MiB limit" >&2; exit 1; }
