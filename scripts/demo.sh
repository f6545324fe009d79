#!/usr/bin/env bash
# The main job: stream the bundled character speaking a transcript into out/demo.mp4.
# No trained model is bundled yet, so this streams with RANDOM weights (and says so).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
mkdir -p out
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/streamchar generate --random-init \
  --text "Hello! I am a streaming character. Every chunk of my speech and video is generated together, faster than you can watch it." \
  --ref-image src/streamchar/bundled/character.png --out out/demo.mp4 --max-seconds 11 --timings out/demo_timings.json \
  --sampler student "$@"
