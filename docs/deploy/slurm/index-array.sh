#!/usr/bin/env bash
# pagelens batch indexing as a Slurm job array: task I of N runs
#   pagelens index "$ARCHIVE" --collection "$COLLECTION" --shard I/N      (with SYNC=1: ... --sync)
# A stable hash of each file's path under $ARCHIVE gives every document to exactly one task; a task
# run again (scontrol requeue, or the same array resubmitted) redoes only the pages not written yet.
#
#   sbatch --export=ALL,PAGELENS_QDRANT_URL=http://qdrant:6333,PAGELENS_PAGE_IMAGES_DIR=/shared/pagelens/pages \
#          docs/deploy/slurm/index-array.sh
#
# Multi-host layout (README, "Shards on many machines"): every node reaches one Qdrant server
# (PAGELENS_QDRANT_URL, PAGELENS_QDRANT_API_KEY) and mounts one shared page-image folder
# (PAGELENS_PAGE_IMAGES_DIR, e.g. on the cluster file system); the API servers set the same folder.
# The embedded store (no PAGELENS_QDRANT_URL) is one host, one process: this script refuses it.
# Change --array (0-based, contiguous: N tasks = N shards) and the resources to your cluster.
# Checked offline by tests/test_shards.py (bash -n, then run with a stand-in `pagelens`).
#SBATCH --job-name=pagelens-index
#SBATCH --array=0-7
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=24:00:00
#SBATCH --output=pagelens-index-%A_%a.out
set -euo pipefail

: "${PAGELENS_QDRANT_URL:?set PAGELENS_QDRANT_URL to the Qdrant server every node reaches (the embedded store is one host only)}"
: "${PAGELENS_PAGE_IMAGES_DIR:?set PAGELENS_PAGE_IMAGES_DIR to a folder every node and the API servers mount}"
: "${SLURM_ARRAY_TASK_ID:?submit this script with sbatch (it is a job array: --array=0-N)}"
ARCHIVE=${ARCHIVE:-/shared/archive}
COLLECTION=${COLLECTION:-archive}

# shard I of N from the array: I counts from the array's first task, N is the number of tasks
first=${SLURM_ARRAY_TASK_MIN:-0}
count=${SLURM_ARRAY_TASK_COUNT:?Slurm did not set SLURM_ARRAY_TASK_COUNT: submit with --array}
last=${SLURM_ARRAY_TASK_MAX:-$((first + count - 1))}
if (( last - first + 1 != count )); then
  echo "error: --array must be a contiguous range (got tasks $first-$last, $count of them)" >&2
  exit 2
fi
shard="$((SLURM_ARRAY_TASK_ID - first))/$count"

# per-task data dir on node-local disk: error reports only; the shared state is Qdrant + the image folder
export PAGELENS_DATA_DIR=${PAGELENS_DATA_DIR:-${TMPDIR:-/tmp}/pagelens-${SLURM_ARRAY_JOB_ID:-0}-${SLURM_ARRAY_TASK_ID}}
mkdir -p "$PAGELENS_DATA_DIR"
echo "pagelens shard $shard of $ARCHIVE -> $COLLECTION on $(hostname)" >&2
# SYNC=1: mirror the archive (README, "Keeping a collection in sync"): also rename moved files and delete
# the documents of this shard whose files are gone
exec pagelens index "$ARCHIVE" --collection "$COLLECTION" --shard "$shard" ${SYNC:+--sync} --json
