#!/usr/bin/env bash
# Every GPU check of issue 7 in one prepared run, sized for a lent machine's 15 minutes (its start and
# transfers included): ~8 minutes of work, each step under its own timeout, logs and tables in $OUT.
#
#   here:        bash scripts/gpu_pack.sh            (wheels and the $PAGELENS_SHARED_DIR files the machine lacks)
#   device tool: run(command="bash bench/gpu_check.sh", carry=[".whl", ".shared"], timeout_s=580)
#
# Steps (seconds are the timeouts):
#   pytest-gpu (100)  bf16 embeddings, on-device preprocessing, the CUDA-graph answer decoder
#                     (answer_decoder=graph) against the eager loop and generate(), the auto defaults on
#                     CUDA. Once it passed on a real GPU, set GRAPH_DECODER_GPU_VALIDATED in
#                     answer/answerer.py so that answer_decoder=auto picks the graph decoder on CUDA
#   answer (180)      256M and 500M architectures, 1 and 3 pages, ours (the graph decoder, opted in with
#                     --decoder graph until pytest-gpu passed; torchvision preprocessing on the GPU) vs
#                     generate(), peak memory with the
#                     retriever held on the GPU too
#   ingest (200)      64 real pages end to end: plain loop, Indexer with preprocessing in the workers / on
#                     the GPU / + one document per forward / + torch.compile, and the forward alone
#   query (80)        the API's query path on the GPU
#   retrieval (90)    if time is left: GPU exact MaxSim and rerank rows at 2,000 synthetic pages
# A step that would overrun the budget is skipped with a message, never cut mid-table;
# GPU_CHECK_STEPS="answer query" reruns only those. $OUT gets gpu_check.log and one NAME.log per step
# (the tables are in them): 6 files, within the device tool's 8.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/pagelens-gpu-out}
mkdir -p "$OUT"
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET_S:-560}
log() { echo "[gpu_check $(( $(date +%s) - START ))s] $*" | tee -a "$OUT/gpu_check.log"; }

PY=${PY:-python3}
WHEELS=${GPU_CHECK_WHEELS:-.whl}
SITE=${GPU_CHECK_SITE:-/tmp/site}
if [ -d "$WHEELS" ] && [ -z "${GPU_CHECK_NO_WHEELS:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl \
    || { log "wheel install failed"; exit 1; }
  export PYTHONPATH=$SITE:$PWD
else
  export PYTHONPATH=$PWD
fi
if [ -d .shared ]; then
  export PAGELENS_SHARED_DIR=$PWD/.shared PAGELENS_SHARED=$PWD/.shared
  export PAGELENS_SHARED_SMOLVLM=$PWD/.shared/models/SmolVLM-256M-Instruct
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$OUT/gpu_check.log"
$PY -c "import importlib.metadata as m, torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
*[f'{p} {m.version(p)}' for p in ('transformers', 'colpali_engine', 'qdrant-edge-py', 'pymupdf')])" 2>&1 | tee -a "$OUT/gpu_check.log"

STEPS=${GPU_CHECK_STEPS:-pytest-gpu answer ingest query retrieval}  # a rerun can name only the steps it needs
step() {  # step NAME TIMEOUT_S CMD... : runs if named in STEPS and the budget allows, output to $OUT/NAME.log
  local name=$1 limit=$2; shift 2
  case " $STEPS " in *" $name "*) ;; *) return ;; esac
  local left=$(( BUDGET - ($(date +%s) - START) ))
  if [ "$left" -lt "$limit" ]; then log "SKIP $name: ${left}s left of the budget, it needs up to ${limit}s"; return; fi
  log "START $name (timeout ${limit}s): $*"
  timeout --kill-after=5 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  log "END $name: exit $rc ($(tail -n 1 "$OUT/$name.log" | cut -c1-160))"
}

step pytest-gpu 100 $PY -m pytest tests/test_gpu.py -m gpu -q -p no:cacheprovider
step answer 180 $PY bench/answer.py --gpu-only --500m --new-tokens 96 --reps 3 --decoder graph
step ingest 200 $PY bench/ingest.py --gpu-only --real-pages 64 --batch 16 --image-processors torchvision --compile
step query 80 $PY bench/query.py --device cuda
# only if the steps above left the time: the GPU rows of the retrieval bench (exact MaxSim and the
# fast rerank on the device) on 2,000 synthetic pages
step retrieval 90 $PY bench/retrieval.py --pages 2000 --queries 20 --local-pages 0 --no-real
log "done"
