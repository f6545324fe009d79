#!/usr/bin/env bash
# The main job: the bundled character (the `tiny` student) speaks a short text into out/demo.mp4.
# Extra arguments go to `streamchar demo` (--text "...", --ref-image face.png, --out file.mp4, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
mkdir -p out
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/streamchar demo --out out/demo.mp4 --timings out/demo_timings.json "$@"
