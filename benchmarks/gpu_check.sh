#!/usr/bin/env bash
# The GPU check in one call (<= 8 minutes): paper DiT + orchestrator, the Wan2.2 VAE decode, tiny end to end, each
# next to the cost model's estimate. JSON on stdout (see gpu_check.py). On the device machine, from the repo root:
#   bash benchmarks/gpu_check.sh [--gpu h200] [--repeats 3]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD/src
exec timeout 480 "$PY" benchmarks/gpu_check.py "$@"
